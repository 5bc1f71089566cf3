"""What synthesis writes, from the user's command lines (``monai-gvae synthesize``, ``python -m monai.bundle run``):
reproducible DICOM with derived UIDs, one upright orientation in PNG/NIfTI/DICOM checked against the embedded
brain's anatomy, DICOM-SEG labels, and the best-metric log of lower-is-better validation metrics (issue 18).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch
from PIL import Image

from conftest import subprocess_env
from monai_gvae.cli import main

REPO = Path(__file__).resolve().parents[1]
BRAIN2D = REPO / "bundles" / "gvae_brain2d"
CEREBELLUM = 3  # label value of the cerebellum in the embedded brain data (monai_gvae.data.BRAIN_CLASS_NAMES)
# identifiers of a real-looking reference DICOM; none may appear in any written byte
REF_IDENTIFIERS = ("Roe^Richard", "PID-0042-1234", "19550505", "20200202", "ACC12345678", "Nowhere General")

# --- a stand-in model whose every sample is the embedded brain slice with the most cerebellum ---------------------
# (its anatomy is known, so orientation can be checked; a short training run would generate no anatomy). Written as
# a module so that a `python -m monai.bundle run` subprocess can import it too.
STUB_MODULE = textwrap.dedent(
    '''
    import numpy as np
    import torch

    from monai_gvae.data import load_brain_slices
    from monai_gvae.networks import GVAE
    from monai_gvae.transforms import pack_image_label

    CEREBELLUM = 3


    def brain_slice():
        """(image (1, 64, 64) in [0, 1], label (1, 64, 64)): the embedded slice with the most cerebellum."""
        items = load_brain_slices("all")
        best = max(items, key=lambda item: int((np.asarray(item["label"]) == CEREBELLUM).sum()))
        return torch.as_tensor(best["image"]).float(), torch.as_tensor(best["label"]).long()


    class BrainSliceGVAE(GVAE):
        """A GVAE of the gvae_brain2d layout whose decoder returns the embedded slice for every latent vector."""

        def __init__(self):
            super().__init__(spatial_dims=2, in_channels=5, image_size=64, latent_size=4, image_channels=1,
                             num_classes=4, architecture="conv", base_channels=2, max_channels=4)
            image, label = brain_slice()
            self.register_buffer("slice_packed", pack_image_label(image, label, 4))  # (5, 64, 64) in [-1, 1]

        def decode(self, z, condition=None):
            return self.slice_packed.unsqueeze(0).expand(z.shape[0], -1, -1, -1).to(z.device)


    def model():
        return BrainSliceGVAE().eval()
    '''
)


@pytest.fixture(scope="module")
def stub_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("stub")
    (folder / "brain_slice_stub.py").write_text(STUB_MODULE)
    return folder


@pytest.fixture(scope="module")
def stub(stub_dir):
    sys.path.insert(0, str(stub_dir))
    try:
        import brain_slice_stub

        yield brain_slice_stub
    finally:
        sys.path.remove(str(stub_dir))
        sys.modules.pop("brain_slice_stub", None)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    """Two different (untrained) joint image+label GVAEs of the gvae_brain2d layout, saved as checkpoints."""
    from monai_gvae.networks import GVAE

    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for name, seed in (("a", 0), ("b", 1)):
        torch.manual_seed(seed)
        model = GVAE(spatial_dims=2, in_channels=5, image_size=32, latent_size=8, image_channels=1, num_classes=4,
                     architecture="conv", base_channels=4, max_channels=8)
        paths[name] = str(folder / f"model_{name}.pt")
        torch.save({"gvae": model.state_dict()}, paths[name])
    return paths


def run(*args: str, env_path: Path | None = None) -> subprocess.CompletedProcess:
    env = subprocess_env()
    if env_path is not None:
        env["PYTHONPATH"] = f"{env_path}:{env.get('PYTHONPATH', '')}"
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    output = f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"exit {proc.returncode}\n{output}"
    return proc


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def dicom_identity(folder: Path) -> set[str]:
    """Every UID and Patient ID of the DICOM files in ``folder``."""
    found = set()
    for path in folder.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID", "PatientID"):
            found.add(str(getattr(ds, keyword)))
    return found


def reference_dicom(folder: Path) -> Path:
    """A real-looking axial MR slice carrying patient identifiers (128 x 128 pixels of 0.5 mm)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    name, pid, birth, date, accession, institution = REF_IDENTIFIERS
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = generate_uid(), generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = name, pid, birth
    ds.StudyDate = ds.ContentDate = date
    ds.AccessionNumber, ds.InstitutionName = accession, institution
    ds.Modality, ds.InstanceNumber = "MR", 1
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [-32.0, -32.0, 10.0], [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing, ds.SliceThickness = [0.5, 0.5], 2.0
    ds.Rows = ds.Columns = 128
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.arange(128 * 128) % 4096).astype("<u2").tobytes()
    path = folder / f"{pid}.dcm"
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


# --- reproducible DICOM ---------------------------------------------------------------------------------------------


def test_dicom_reruns_are_byte_identical_and_uids_differ_across_seeds_and_models(checkpoints, tmp_path):
    def synthesize(checkpoint: str, seed: int, out: Path, subprocess_run: bool = False) -> Path:
        argv = ["synthesize", "--checkpoint", checkpoint, "-n", "2", "--out", str(out), "--format", "dicom",
                "--seed", str(seed), "--no-progress"]
        if subprocess_run:  # the command as a user types it
            run("-m", "monai_gvae", *argv)
        else:  # the same entry point in this process: no interpreter start-up (about 5 s a run on 2 cores)
            assert main(argv) == 0
        return out

    # the first run in a process of its own, the rerun in this one: byte identity across processes
    first = files_of(synthesize(checkpoints["a"], 3, tmp_path / "first", subprocess_run=True))
    again = files_of(synthesize(checkpoints["a"], 3, tmp_path / "again"))
    assert set(first) == set(again) == {
        f"synthetic_0000{i}_{k}.dcm" for i in range(2) for k in ("image", "label", "seg")
    } | {"manifest.json"}
    for name in first:
        if name != "manifest.json":  # only the manifest's creation time may differ
            assert first[name] == again[name], f"{name} differs between two runs with the same seed and model"

    # UIDs and Patient IDs: unique within a run, and none shared with another seed or another model
    same = dicom_identity(tmp_path / "first")
    sops = [str(pydicom.dcmread(p).SOPInstanceUID) for p in (tmp_path / "first").glob("*.dcm")]
    assert len(set(sops)) == len(sops) == 6
    assert all(re.fullmatch(r"2\.25\.\d{1,39}", uid) for uid in sops)
    other_seed = dicom_identity(synthesize(checkpoints["a"], 4, tmp_path / "seed4"))
    other_model = dicom_identity(synthesize(checkpoints["b"], 3, tmp_path / "model_b"))
    assert not same & other_seed and not same & other_model and not other_seed & other_model


def test_derived_uids_are_stable_distinct_and_valid():
    from monai_gvae.data import SyntheticStudy, derived_uid

    assert derived_uid("m", "seed=0", "index=1") == derived_uid("m", "seed=0", "index=1")
    assert len({derived_uid("m", f"seed={s}", f"index={i}") for s in range(20) for i in range(20)}) == 400
    uid = derived_uid("x")
    assert uid.startswith("2.25.") and len(uid) <= 64 and int(uid[5:]) < 2**128
    a, b = SyntheticStudy.new("0", entropy="e"), SyntheticStudy.new("0", entropy="e")
    assert a == b and a.uid("series") == b.uid("series")
    assert SyntheticStudy.new("0", entropy="f").study_uid != a.study_uid
    assert SyntheticStudy.new("0").study_uid != SyntheticStudy.new("0").study_uid  # no entropy: random


# --- one upright orientation, checked against the anatomy ------------------------------------------------------------


def _posterior_in_rows(label: np.ndarray) -> None:
    """The cerebellum lies in the lower part of an upright axial view (below the brain's centre)."""
    rows, _ = np.nonzero(label == CEREBELLUM)
    brain_rows, _ = np.nonzero(label > 0)
    assert rows.size and rows.mean() > brain_rows.mean() + 3 and rows.mean() > label.shape[0] / 2


def _posterior_in_world(label: np.ndarray, voxel_to_ras: np.ndarray) -> None:
    """In world coordinates (RAS) the cerebellum is posterior to the rest of the brain: its mean y is lower."""
    def world(mask: np.ndarray) -> np.ndarray:
        index = np.argwhere(mask).astype(float)
        index = np.concatenate([index, np.zeros((len(index), 3 - index.shape[1]))], axis=1)  # 2D: slice 0
        affine = np.asarray(voxel_to_ras, dtype=float)
        if affine.shape == (3, 3):  # a 2D affine (MONAI's readers of 2D images)
            affine = np.block([[affine[:2, :2], np.zeros((2, 1)), affine[:2, 2:]], [np.zeros((1, 2)), 1, 0],
                               [np.zeros((1, 3)), 1]])
        return nib.affines.apply_affine(affine, index)

    ras, brain = world(label == CEREBELLUM), world(label > 0)
    assert ras[:, 1].mean() < brain[:, 1].mean() - 3
    assert abs(ras[:, 0].mean() - brain[:, 0].mean()) < 6  # midline: centred left-right


def test_png_nifti_dicom_are_upright_and_read_back_as_generated(stub, monkeypatch, tmp_path):
    """`monai-gvae synthesize --bundle bundles/gvae_brain2d` in every format, the model generating a known slice."""
    from monai.data import PILReader, PydicomReader
    from monai.transforms import LoadImage

    import monai_gvae.networks
    from monai_gvae.data import load_image
    from monai_gvae.data.writers import default_affine

    model = stub.model()
    monkeypatch.setattr(monai_gvae.networks, "load_gvae", lambda *args, **kwargs: model)
    monkeypatch.setattr(monai_gvae.networks, "bundle_model_path", lambda bundle: str(Path(bundle) / "models/model.pt"))
    image, label = (t[0].numpy() for t in stub.brain_slice())
    _posterior_in_rows(label)  # the embedded data: radiological views, anterior up

    outputs = {}
    for fmt in ("png", "nifti", "dicom"):
        out = tmp_path / fmt
        argv = ["synthesize", "--bundle", str(BRAIN2D), "-n", "1", "--out", str(out), "--format", fmt, "--no-progress"]
        assert main(argv) == 0
        outputs[fmt] = out

    # PNG: as seen, rows first; MONAI's PILReader without its default axis swap reads it back
    png = outputs["png"]
    pixels = np.asarray(Image.open(png / "synthetic_00000_image.png"))
    assert np.array_equal(pixels, np.round(image * 255).astype(np.uint8))
    png_label = np.asarray(Image.open(png / "synthetic_00000_label.png"))
    assert np.array_equal(png_label, label)
    _posterior_in_rows(png_label)
    reread = LoadImage(reader=PILReader(reverse_indexing=False), image_only=True)(png / "synthetic_00000_label.png")
    assert np.array_equal(np.asarray(reread), label)
    assert np.array_equal(load_image(png / "synthetic_00000_label.png")[0].numpy(), label)

    # NIfTI: the array as generated, with an affine that says where anterior is (an upright axial view)
    nifti = outputs["nifti"]
    img, seg = nib.load(nifti / "synthetic_00000_image.nii.gz"), nib.load(nifti / "synthetic_00000_label.nii.gz")
    assert np.allclose(np.asarray(img.dataobj), image, atol=1e-6) and np.array_equal(np.asarray(seg.dataobj), label)
    assert np.allclose(img.affine, default_affine(2)) and nib.aff2axcodes(img.affine) == ("P", "L", "S")
    _posterior_in_world(label, seg.affine)
    loaded = LoadImage(image_only=True)(nifti / "synthetic_00000_label.nii.gz")  # MONAI's defaults
    assert np.array_equal(np.asarray(loaded), label) and np.allclose(np.asarray(loaded.affine), seg.affine)
    manifest = json.loads((nifti / "manifest.json").read_text())
    assert np.allclose(manifest["affine"], default_affine(2))

    # DICOM: pixel rows as seen, Image Orientation/Position consistent with them
    dicom = outputs["dicom"]
    ds = pydicom.dcmread(dicom / "synthetic_00000_label.dcm")
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]  # rows: patient's left, down: posterior
    assert np.array_equal(ds.pixel_array, label)
    _posterior_in_rows(ds.pixel_array)
    for name, expected, tol in (("image", image, 1e-4), ("label", label, 0)):
        sitk_image = sitk.ReadImage(str(dicom / f"synthetic_00000_{name}.dcm"))
        assert np.abs(sitk.GetArrayFromImage(sitk_image)[0] - expected).max() <= tol  # SimpleITK: (1, rows, columns)
        loaded = load_image(dicom / f"synthetic_00000_{name}.dcm")
        assert np.abs(loaded[0].numpy() - expected).max() <= tol
        monai_reader = LoadImage(reader=PydicomReader(swap_ij=False), image_only=True)
        assert np.abs(np.asarray(monai_reader(dicom / f"synthetic_00000_{name}.dcm")) - expected).max() <= tol
    # SimpleITK's physical points (LPS): the cerebellum is posterior (+y)
    sitk_label = sitk.ReadImage(str(dicom / "synthetic_00000_label.dcm"))
    points = np.array([sitk_label.TransformIndexToPhysicalPoint((int(c), int(r), 0))
                       for r, c in np.argwhere(label == CEREBELLUM)])
    brain = np.array([sitk_label.TransformIndexToPhysicalPoint((int(c), int(r), 0)) for r, c in np.argwhere(label > 0)])
    assert points[:, 1].mean() > brain[:, 1].mean() + 3
    # the DICOM label's affine as MONAI reads it places the anatomy where the NIfTI does
    _posterior_in_world(label, np.asarray(load_image(dicom / "synthetic_00000_label.dcm").affine))


def test_reference_geometry_keeps_the_output_upright(stub, tmp_path):
    """A RAS-ordered NIfTI reference (x first, as most NIfTI files are) places the sample in its plane, upright."""
    from monai_gvae.bundle import synthesize

    reference = tmp_path / "ref.nii.gz"
    affine = np.array([[1.0, 0, 0, -90], [0, 1.0, 0, -126], [0, 0, 2.0, -72], [0, 0, 0, 1]])  # RAS voxel order
    nib.save(nib.Nifti1Image(np.zeros((128, 128, 40), np.float32), affine), reference)
    image, label = (t[0].numpy() for t in stub.brain_slice())
    synthesize(stub.model(), str(tmp_path / "out"), num_samples=1, reference=str(reference))
    written = nib.load(tmp_path / "out" / "synthetic_00000_label.nii.gz")
    assert np.array_equal(np.asarray(written.dataobj), label)
    assert nib.aff2axcodes(written.affine) == ("P", "L", "S")
    _posterior_in_world(label, written.affine)
    # the reference's field of view and middle slice: 128 mm across, 2 mm pixels, centred where the reference is
    assert np.allclose(np.linalg.norm(written.affine[:3, :2], axis=0), 2.0)
    centre = nib.affines.apply_affine(written.affine, [31.5, 31.5, 0])
    assert np.allclose(centre, nib.affines.apply_affine(affine, [63.5, 63.5, 20]))


def test_bundle_inferring_writes_upright_nifti_and_dicom_with_seg(stub_dir, checkpoints, tmp_path):
    """`python -m monai.bundle run inferring` of the default bundle (its network replaced by the known-slice model;
    the bundle still refuses to start without a readable checkpoint, so one is given)."""
    image_label = {}
    for fmt in ("nifti", "dicom"):
        out = tmp_path / fmt
        run("-m", "monai.bundle", "run", "inferring",
            "--config_file", str(BRAIN2D / "configs" / "inference.yaml"),
            "--meta_file", str(BRAIN2D / "configs" / "metadata.json"), "--bundle_root", str(BRAIN2D),
            "--network_def", "$__import__('brain_slice_stub').model()", "--device", "$torch.device('cpu')",
            "--output_dir", str(out), "--num_samples", "1", "--format", fmt, "--checkpoint", checkpoints["a"],
            env_path=stub_dir)
        image_label[fmt] = out
    sys.path.insert(0, str(stub_dir))
    try:
        import brain_slice_stub

        label = brain_slice_stub.brain_slice()[1][0].numpy()
    finally:
        sys.path.remove(str(stub_dir))
    written = nib.load(image_label["nifti"] / "synthetic_00000_label.nii.gz")
    assert np.array_equal(np.asarray(written.dataobj), label)
    _posterior_in_world(label, written.affine)
    dicom = image_label["dicom"]
    _posterior_in_rows(pydicom.dcmread(dicom / "synthetic_00000_label.dcm").pixel_array)
    seg = hd.seg.segread(dicom / "synthetic_00000_seg.dcm")
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["cortex", "deep grey matter", "cerebellum"]
    manifest = json.loads((dicom / "manifest.json").read_text())
    assert manifest["class_names"] == ["background", "cortex", "deep grey matter", "cerebellum"]
    assert manifest["files"][0]["segmentation"] == "synthetic_00000_seg.dcm"


# --- DICOM-SEG ------------------------------------------------------------------------------------------------------


def test_dicom_seg_beside_the_series_marked_synthetic(stub, monkeypatch, tmp_path):
    """`monai-gvae synthesize --format dicom --reference REAL.dcm`: the label also as DICOM-SEG, read back with
    highdicom and pydicom; its segments are the bundle's classes and hold the generated label exactly."""
    import monai_gvae.networks
    from monai_gvae.data import load_image_folder

    model = stub.model()
    monkeypatch.setattr(monai_gvae.networks, "load_gvae", lambda *args, **kwargs: model)
    monkeypatch.setattr(monai_gvae.networks, "bundle_model_path", lambda bundle: str(Path(bundle) / "models/model.pt"))
    reference = reference_dicom(tmp_path)
    out = tmp_path / "out"
    argv = ["synthesize", "--bundle", str(BRAIN2D), "-n", "2", "--out", str(out), "--format", "dicom",
            "--reference", str(reference), "--seed", "5", "--no-progress"]
    assert main(argv) == 0
    label = stub.brain_slice()[1][0].numpy()

    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["files"][1]
    image_ds = pydicom.dcmread(out / entry["image"])
    seg_path = out / entry["segmentation"]
    # highdicom: segment names, pixels per segment, references
    seg = hd.seg.segread(seg_path)
    assert seg.number_of_segments == 3
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["cortex", "deep grey matter", "cerebellum"]
    assert seg.SegmentSequence[2].SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Cerebellum"
    combined = seg.get_pixels_by_source_instance([image_ds.SOPInstanceUID], combine_segments=True)
    assert np.array_equal(combined[0], label)
    for number in (1, 2, 3):
        mask = seg.get_pixels_by_source_instance([image_ds.SOPInstanceUID], segment_numbers=[number])
        assert np.array_equal(mask[0, ..., 0].astype(bool), label == number)
    # pydicom: the object itself
    ds = pydicom.dcmread(seg_path)
    assert ds.Modality == "SEG" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == image_ds.SeriesInstanceUID
    referenced = ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
    assert referenced.ReferencedSOPInstanceUID == image_ds.SOPInstanceUID
    assert ds.FrameOfReferenceUID == image_ds.FrameOfReferenceUID and ds.StudyInstanceUID == image_ds.StudyInstanceUID
    assert ds.SeriesInstanceUID != image_ds.SeriesInstanceUID
    # marked synthetic like the images, with the images' synthetic patient and no date of a real event
    assert ds.SyntheticData == "YES" and "SYNTHETIC" in ds.SeriesDescription and "SYNTHETIC" in ds.ContentDescription
    assert ds.PatientName == image_ds.PatientName and "SYNTHETIC" in str(ds.PatientName)
    assert ds.PatientID == image_ds.PatientID and ds.PatientBirthDate == "" and ds.StudyDate == ""
    ref = pydicom.dcmread(reference)
    forbidden = list(REF_IDENTIFIERS) + [ref.StudyInstanceUID, ref.SeriesInstanceUID, ref.SOPInstanceUID,
                                         ref.FrameOfReferenceUID, "Richard"]
    for path in out.rglob("*"):
        data = path.read_bytes()
        for text in forbidden:
            assert text.encode() not in data, f"{text!r} found in {path.name}"
    # a synthesize output folder read as data: images only (class-index labels and DICOM-SEG objects skipped)
    loaded = load_image_folder(out, spatial_dims=2)
    assert sorted(loaded.names) == ["synthetic_00000_image", "synthetic_00001_image"]


def test_segmentation_writer_volume_and_errors(tmp_path):
    from monai_gvae.data import SyntheticStudy, write_synthetic_dicom, write_synthetic_segmentation

    rng = np.random.default_rng(0)
    volume, label = rng.random((1, 6, 5, 4)).astype(np.float32), rng.integers(0, 3, (1, 6, 5, 4))
    study = SyntheticStudy.new("7", entropy="volume test")
    series = write_synthetic_dicom(volume, str(tmp_path / "series"), affine=np.diag([0.7, 0.8, 1.5, 1.0]), study=study)
    seg_path = write_synthetic_segmentation(label, str(tmp_path / "seg.dcm"), series, class_names=["bg", "a", "b"])
    seg = hd.seg.segread(seg_path)
    slices = sorted((pydicom.dcmread(p) for p in Path(series).iterdir()), key=lambda d: int(d.InstanceNumber))
    frames = seg.get_pixels_by_source_instance([d.SOPInstanceUID for d in slices], combine_segments=True)
    # slice k of the series holds voxels (i, j, k) as (column i, row j): frames are the label's slices transposed
    assert np.array_equal(frames, np.moveaxis(label[0], 2, 0).transpose(0, 2, 1))
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["a", "b"]
    with pytest.raises(FileExistsError):
        write_synthetic_segmentation(label, seg_path, series, class_names=["bg", "a", "b"])
    with pytest.raises(ValueError, match="class_names names only 2 classes"):
        write_synthetic_segmentation(label, str(tmp_path / "x.dcm"), series, class_names=["bg", "a"])
    with pytest.raises(ValueError, match="does not match the source images"):
        write_synthetic_segmentation(label[..., :3], str(tmp_path / "y.dcm"), series, class_names=["bg", "a", "b"])
    with pytest.raises(ValueError, match="class indices"):
        write_synthetic_segmentation(label - 1, str(tmp_path / "z.dcm"), series)


# --- best-metric log: errors are lower-is-better ---------------------------------------------------------------------


def test_training_log_best_metric_follows_the_minimum(tmp_path):
    """`python -m monai.bundle run training`: the logged best validation error is the lowest so far, at its epoch."""
    proc = run("-m", "monai.bundle", "run", "training",
               "--config_file", str(BRAIN2D / "configs" / "train.yaml"),
               "--meta_file", str(BRAIN2D / "configs" / "metadata.json"), "--bundle_root", str(BRAIN2D),
               "--output_dir", str(tmp_path / "run"), "--max_epochs", "4", "--val_interval", "1",
               "--base_channels", "4", "--latent_size", "8")
    log = proc.stdout + proc.stderr
    # the bundle's ValidationLogger line: "validation after epoch E: val_reconstruction_mae V (best B at epoch F)"
    number = r"([0-9.eE+-]+)"
    lines = re.findall(rf"validation after epoch \d+: val_reconstruction_mae {number} \(best {number} at epoch (\d+)\)",
                       log)
    values = [float(v) for v, _, _ in lines]
    best = [(float(b), int(e)) for _, b, e in lines]
    assert len(values) == len(best) == 4, log[-3000:]
    for k, (value, epoch) in enumerate(best):
        lowest = int(np.argmin(values[: k + 1]))
        assert epoch == lowest + 1 and abs(value - values[lowest]) < 1e-4, (values, best)


def test_bundles_compare_their_validation_error_as_lower_is_better(monkeypatch):
    from monai.bundle import ConfigParser
    from monai.engines.utils import default_metric_cmp_fn

    from monai_gvae.engines import lower_is_better

    assert lower_is_better(0.1, 0.2) and not lower_is_better(0.2, 0.1) and default_metric_cmp_fn(0.2, 0.1)
    monkeypatch.chdir(REPO)  # where the bundles' shared config blocks resolve from
    for name in ("gvae_brain2d", "gvae_mnist", "gvae_lsun", "gvae_celebahq", "gvae_brain3d"):
        parser = ConfigParser()
        parser.read_config(str(REPO / "bundles" / name / "configs" / "train.yaml"))
        assert list(parser.get_parsed_content("validate#key_metric")) == ["val_reconstruction_mae"]
        cmp_fn = parser.get_parsed_content("validate#evaluator#metric_cmp_fn", lazy=False)
        assert cmp_fn is lower_is_better, name
