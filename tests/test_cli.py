"""The ``monai-gvae`` command line, end to end on a tiny trained model, and the writers behind it.

Commands run as ``sys.executable -m monai_gvae`` subprocesses from the repository root (main paths) or
in-process through ``monai_gvae.cli.main`` (error paths, to keep the suite fast).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch

from conftest import subprocess_env
from evaluation_oracle import expected_metrics
from monai_gvae.cli import main, parse_overrides
from monai_gvae.data import load_brain_slices

REPO = Path(__file__).resolve().parents[1]
SIZE = 32
NUM_CLASSES = 4
# identifiers of the real-looking reference DICOM; none may appear in any written byte
REF_PATIENT_NAME = "Doe^Janet"
REF_PATIENT_ID = "PID-4711-0815"
REF_BIRTH_DATE = "19610203"
REF_STUDY_DATE = "20190707"
REF_ACCESSION = "ACC99887766"


def run_cli(*args: str, expect: int | None = 0) -> subprocess.CompletedProcess:
    env = subprocess_env()  # repository importable, OMP_NUM_THREADS=1
    proc = subprocess.run(
        [sys.executable, "-m", "monai_gvae", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    if expect is not None:
        assert proc.returncode == expect, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def cli(*args: str | Path) -> int:
    """``monai-gvae ARGS --no-progress`` in-process (error paths and repeats, faster than a subprocess): the exit
    status."""
    return main([*(str(a) for a in args), "--no-progress"])


def cli_synthesize(checkpoint: str | Path, out: Path, num_samples: int, *options: str) -> int:
    """``monai-gvae synthesize --checkpoint CHECKPOINT -n NUM_SAMPLES --out OUT OPTIONS`` in-process: exit status."""
    return cli("synthesize", "--checkpoint", checkpoint, "-n", num_samples, "--out", out, *options)


def _slices(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Brain slices at 32x32: images (N, 1, 32, 32) in [0, 1], labels (N, 1, 32, 32) int64."""
    from monai_gvae.data import load_brain_slices

    items = load_brain_slices(split)
    image = torch.from_numpy(np.stack([i["image"] for i in items]))
    label = torch.from_numpy(np.stack([i["label"] for i in items])).float()
    image = torch.nn.functional.interpolate(image, size=(SIZE, SIZE), mode="area")
    label = torch.nn.functional.interpolate(label, size=(SIZE, SIZE), mode="nearest").long()
    return image, label


def _write_folder(root: Path, images: torch.Tensor, labels: torch.Tensor) -> None:
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
    for i, (x, y) in enumerate(zip(images, labels)):
        nib.save(nib.Nifti1Image(x[0].numpy(), np.eye(4)), root / "images" / f"slice_{i:03d}.nii.gz")
        nib.save(nib.Nifti1Image(y[0].numpy().astype(np.uint8), np.eye(4)), root / "labels" / f"slice_{i:03d}.nii.gz")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny joint image+label GVAE (32x32, latent 8) trained for a few iterations on brain slices,
    saved as {'gvae': state_dict}; plus the training and held-out slices written as NIfTI folders."""
    from monai_gvae.engines import GVAETrainer
    from monai_gvae.networks import GVAE, GVAECritic
    from monai_gvae.transforms import pack_image_label

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("cli")
    train_images, train_labels = _slices("train")
    test_images, test_labels = _slices("test")
    _write_folder(root / "train", train_images, train_labels)
    _write_folder(root / "test", test_images, test_labels)
    packed = torch.stack([pack_image_label(x, y, NUM_CLASSES) for x, y in zip(train_images, train_labels)])
    loader = torch.utils.data.DataLoader([{"image": p} for p in packed], batch_size=8, shuffle=True, drop_last=True)
    kwargs = dict(
        spatial_dims=2,
        in_channels=1 + NUM_CLASSES,
        image_size=SIZE,
        architecture="conv",
        base_channels=4,
        max_channels=16,
    )
    gvae = GVAE(latent_size=8, image_channels=1, num_classes=NUM_CLASSES, **kwargs)
    critic = GVAECritic(**{k: v for k, v in kwargs.items()})
    trainer = GVAETrainer(
        device="cpu",
        max_epochs=3,
        train_data_loader=loader,
        network=gvae,
        critic=critic,
        optimizer=torch.optim.Adam(gvae.parameters(), 1e-3),
        critic_optimizer=torch.optim.Adam(critic.parameters(), 1e-4),
        seed=0,
    )
    trainer.run()
    checkpoint = root / "model.pt"
    torch.save({"gvae": gvae.state_dict()}, checkpoint)
    return {"root": root, "checkpoint": str(checkpoint), "train_images": train_images}


@pytest.fixture(scope="module")
def reference_dicom(tmp_path_factory) -> Path:
    """A reference DICOM slice carrying patient identifiers (and a file name holding the patient ID)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder = tmp_path_factory.mktemp("reference")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"  # MR Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = generate_uid(), generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = REF_PATIENT_NAME, REF_PATIENT_ID, REF_BIRTH_DATE
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = REF_STUDY_DATE
    ds.AccessionNumber, ds.InstitutionName = REF_ACCESSION, "St Elsewhere Hospital"
    ds.Modality, ds.InstanceNumber = "MR", 1
    ds.ImagePositionPatient = [-100.0, -120.0, 35.0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.5, 0.5]
    ds.SliceThickness = 3.0
    ds.Rows = ds.Columns = 128
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.arange(128 * 128) % 4096).astype("<u2").tobytes()
    path = folder / f"{REF_PATIENT_ID}.dcm"
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def _all_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _digest(folder: Path, skip: tuple[str, ...] = ("manifest.json",)) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in _all_files(folder)
        if p.name not in skip
    }


def test_help_for_every_command(capsys):
    # in-process: every subprocess test below already runs `python -m monai_gvae`
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    top = capsys.readouterr().out
    for command, option in (
        ("synthesize", "--reference"),
        ("evaluate", "--data"),
        ("memorization", "--percentile"),
        ("train", "--overwrite"),
    ):
        assert command in top
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0 and option in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["synthesize", "--checkpoint", "m.pt", "--bundle", "b", "-n", "1", "--out", "o"])  # exclusive sources
    assert exit_info.value.code == 2


def test_synthesize_nifti_seed_reproduces_and_refuses_overwrite(tiny, tmp_path, capsys):
    out = tmp_path / "nifti"
    run_cli(
        "synthesize", "--checkpoint", tiny["checkpoint"], "-n", "3", "--out", str(out), "--seed", "7", "--no-progress"
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["synthetic"] is True and manifest["seed"] == 7 and manifest["num_samples"] == 3
    assert manifest["model_sha256"] == hashlib.sha256(Path(tiny["checkpoint"]).read_bytes()).hexdigest()
    assert manifest["version"] and manifest["created"]
    assert [f["image"] for f in manifest["files"]] == [f"synthetic_{i:05d}_image.nii.gz" for i in range(3)]
    image = nib.load(out / "synthetic_00000_image.nii.gz")
    label = nib.load(out / "synthetic_00000_label.nii.gz")
    assert b"SYNTHETIC" in image.header["descrip"].tobytes() and b"0.1" in image.header["descrip"].tobytes()
    assert image.shape == (SIZE, SIZE) and set(np.unique(np.asarray(label.dataobj))) <= set(range(NUM_CLASSES))
    before = _digest(out, skip=())  # the manifest included

    # refusal: exit 1, the message names an existing file, nothing changed
    assert cli_synthesize(tiny["checkpoint"], out, 3, "--seed", "8") == 1
    assert "already exist" in capsys.readouterr().err
    assert _digest(out, skip=()) == before

    # the same seed in another folder gives byte-identical image and label files
    again = tmp_path / "again"
    assert cli_synthesize(tiny["checkpoint"], again, 3, "--seed", "7") == 0
    assert _digest(again) == _digest(out)
    # sample i of a seed does not depend on the batch size or on how many are drawn (up to float rounding)
    smaller = tmp_path / "smaller"
    assert cli_synthesize(tiny["checkpoint"], smaller, 2, "--seed", "7", "--batch-size", "1") == 0
    for name in ("synthetic_00001_image.nii.gz", "synthetic_00001_label.nii.gz"):
        a, b = (np.asarray(nib.load(folder / name).dataobj) for folder in (out, smaller))
        assert np.abs(a.astype(float) - b).max() < 1e-5 if "image" in name else (a != b).mean() < 0.01
    # --overwrite with another seed replaces them
    assert cli_synthesize(tiny["checkpoint"], again, 3, "--seed", "8", "--overwrite") == 0
    assert _digest(again)["synthetic_00000_image.nii.gz"] != before["synthetic_00000_image.nii.gz"]
    assert not [p for p in again.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_synthesize_dicom_round_trip_without_identifiers(tiny, reference_dicom, tmp_path):
    out = tmp_path / "dicom"
    run_cli(
        "synthesize",
        "--checkpoint",
        tiny["checkpoint"],
        "-n",
        "2",
        "--out",
        str(out),
        "--format",
        "dicom",
        "--reference",
        str(reference_dicom),
        "--seed",
        "3",
    )
    files = _all_files(out)
    assert {p.name for p in files} == {
        f"synthetic_0000{i}_{k}.dcm" for i in range(2) for k in ("image", "label", "seg")
    } | {"manifest.json"}
    forbidden = [
        REF_PATIENT_NAME,
        REF_PATIENT_ID,
        REF_BIRTH_DATE,
        REF_STUDY_DATE,
        REF_ACCESSION,
        "Elsewhere",
        "Janet",
    ]
    ref = pydicom.dcmread(reference_dicom)
    forbidden += [ref.StudyInstanceUID, ref.SeriesInstanceUID, ref.SOPInstanceUID, ref.FrameOfReferenceUID]
    for path in files:
        data = path.read_bytes()
        for text in forbidden:
            assert text.encode() not in data, f"{text!r} found in {path.name}"

    manifest = json.loads((out / "manifest.json").read_text())
    image_path, label_path = out / manifest["files"][0]["image"], out / manifest["files"][0]["label"]
    ds, ds_label = pydicom.dcmread(image_path), pydicom.dcmread(label_path)
    assert ds.SyntheticData == "YES" and list(ds.ImageType) == ["DERIVED", "SECONDARY"] and ds.ConversionType == "SYN"
    assert "SYNTHETIC" in ds.ImageComments and "SYNTHETIC" in str(ds.PatientName)
    assert ds.PatientBirthDate == "" and ds.StudyDate == ""
    assert ds_label.StudyInstanceUID == ds.StudyInstanceUID and ds_label.SeriesInstanceUID != ds.SeriesInstanceUID
    uids = {pydicom.dcmread(p).StudyInstanceUID for p in files if p.suffix == ".dcm"}
    assert len(uids) == 2  # one study per synthetic subject
    # geometry from the reference: 128 px of 0.5 mm -> 32 px of 2 mm, same field-of-view corner and orientation
    assert [float(v) for v in ds.PixelSpacing] == [2.0, 2.0]
    assert [float(v) for v in ds.ImagePositionPatient] == [-99.25, -119.25, 35.0]
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]

    # SimpleITK reads it with the geometry; values back in [0, 1]; labels are class indices
    img = sitk.ReadImage(str(image_path))
    assert img.GetSize()[:2] == (SIZE, SIZE) and img.GetSpacing()[:2] == (2.0, 2.0)
    assert np.allclose(img.GetOrigin(), (-99.25, -119.25, 35.0))
    arr = sitk.GetArrayFromImage(img)
    assert arr.min() >= 0.0 and arr.max() <= 1.0 + 1e-6 and arr.std() > 0
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(label_path)))
    assert set(np.unique(labels)) <= set(range(NUM_CLASSES))
    reader = sitk.ImageSeriesReader()
    # per sample: the image, the class-index label and the DICOM-SEG series
    assert list(reader.GetGDCMSeriesIDs(str(out))) and len(reader.GetGDCMSeriesIDs(str(out))) == 6

    # MONAI's reader gives back the generated array: compare with the NIfTI output of the same seed
    from monai_gvae.data.inputs import load_image

    nifti = tmp_path / "nifti"
    assert cli_synthesize(tiny["checkpoint"], nifti, 1, "--seed", "3") == 0
    expected = np.asarray(nib.load(nifti / "synthetic_00000_image.nii.gz").dataobj)
    assert np.abs(load_image(image_path)[0].numpy() - expected).max() < 1e-4
    assert np.allclose(arr[0], load_image(image_path)[0].numpy(), atol=1e-6)  # SimpleITK: (z, rows, columns)


@pytest.mark.parametrize("fmt", ["dicom", "png"])
def test_synthesize_same_seed_byte_identical_in_every_format(tiny, tmp_path, fmt):
    """docs/cli.md: the same seed, batch size and device give byte-identical image and label files in every format
    (DICOM UIDs derived from the model, seed, sample index and content; NIfTI is checked above)."""
    outs = [tmp_path / f"run{i}" for i in range(2)]
    for out in outs:
        assert main(["synthesize", "--checkpoint", tiny["checkpoint"], "-n", "2", "--out", str(out), "--format", fmt,
                     "--seed", "5", "--no-progress"]) == 0
    assert _digest(outs[0]) == _digest(outs[1])


def test_synthesize_png_marked_synthetic(tiny, tmp_path):
    from PIL import Image

    from monai_gvae.data.inputs import load_image

    out = tmp_path / "png"
    assert cli_synthesize(tiny["checkpoint"], out, 2, "--format", "png", "--seed", "3") == 0
    with Image.open(out / "synthetic_00001_image.png") as im:
        assert im.text["Synthetic"] == "YES" and "SYNTHETIC" in im.text["Description"] and im.size == (SIZE, SIZE)
    with Image.open(out / "synthetic_00001_label.png") as im:
        assert im.text["Synthetic"] == "YES" and set(np.unique(np.asarray(im))) <= set(range(NUM_CLASSES))
    dicom = tmp_path / "dicom"
    assert cli_synthesize(tiny["checkpoint"], dicom, 2, "--format", "dicom", "--seed", "3") == 0
    from_png = load_image(out / "synthetic_00001_image.png")[0].numpy() / 255.0
    from_dicom = load_image(dicom / "synthetic_00001_image.dcm")[0].numpy()
    assert np.abs(from_png - from_dicom).max() <= 0.5 / 255 + 1e-4  # same orientation, 8-bit quantisation


def test_synthesize_intensity_range_and_16_bit_png(tiny, tmp_path):
    """--intensity-range LOW HIGH maps the generated [0, 1] images linearly onto [LOW, HIGH]; --png-bit-depth 16 writes
    16-bit grey levels over the range (0 -> LOW, 65535 -> HIGH), the 8-bit levels' 257 times finer."""
    from PIL import Image

    from monai_gvae.data.inputs import load_image

    def synth(out, *extra):
        assert main(["synthesize", "--checkpoint", tiny["checkpoint"], "-n", "2", "--out", str(tmp_path / out),
                     "--seed", "4", "--no-progress", *extra]) == 0
        return tmp_path / out

    unit, ct = synth("unit"), synth("ct", "--intensity-range", "-1000", "1000")
    assert json.loads((ct / "manifest.json").read_text())["intensity_range"] == [-1000.0, 1000.0]
    for i in range(2):
        a = np.asarray(nib.load(unit / f"synthetic_0000{i}_image.nii.gz").dataobj, dtype=np.float64)
        b = np.asarray(nib.load(ct / f"synthetic_0000{i}_image.nii.gz").dataobj, dtype=np.float64)
        assert 0 <= a.min() < a.max() <= 1 and -1000 <= b.min() < b.max() <= 1000
        assert np.allclose(b, -1000 + 2000 * a, atol=1e-3)  # float32 rounding of values up to 1000
        labels = [np.asarray(nib.load(d / f"synthetic_0000{i}_label.nii.gz").dataobj) for d in (unit, ct)]
        assert np.array_equal(*labels)  # the range is about intensities only

    png8, png16 = synth("png8", "--format", "png"), synth("png16", "--format", "png", "--png-bit-depth", "16")
    png16_ct = synth("png16_ct", "--format", "png", "--png-bit-depth", "16", "--intensity-range", "-1000", "1000")
    for i in range(2):
        name = f"synthetic_0000{i}_image.png"
        values01 = np.asarray(nib.load(unit / f"synthetic_0000{i}_image.nii.gz").dataobj, dtype=np.float64)
        with Image.open(png8 / name) as im8, Image.open(png16 / name) as im16, Image.open(png16_ct / name) as im_ct:
            assert im8.mode == "L" and im16.mode.startswith("I") and im16.text["Synthetic"] == "YES"
            assert im16.text["IntensityRange"] == "0 -> 0, 65535 -> 1"
            assert im_ct.text["IntensityRange"] == "0 -> -1000, 65535 -> 1000"
            p8, p16, p_ct = (np.asarray(im).astype(np.int64) for im in (im8, im16, im_ct))
        # stored upright: the PNG's rows are the array's rows; grey levels are the rounded values over the range
        assert np.array_equal(p16, np.round(values01 * 65535)) and np.array_equal(p8, np.round(values01 * 255))
        assert len(np.unique(p16)) > len(np.unique(p8)) and np.abs(p16 / 257 - p8).max() <= 0.5 + 1e-9
        assert np.abs(p_ct - p16).max() <= 1  # same levels, another meaning (float32 rounding of the CT values)
        # MONAI's reader gives the generated array back (16-bit: to 1/65535)
        assert np.abs(load_image(png16 / name)[0].numpy() / 65535 - values01).max() <= 0.5 / 65535 + 1e-7
    labels16 = [np.asarray(Image.open(d / "synthetic_00000_label.png")) for d in (png8, png16)]
    assert labels16[0].dtype == labels16[1].dtype == np.uint8 and np.array_equal(*labels16)  # labels stay 8-bit


def test_2d_model_on_3d_and_dicom_series_references(tiny, tmp_path):
    """A 2D model with a 3D reference (NIfTI volume, DICOM series folder) is placed on the reference's middle slice
    (index depth // 2) with the reference's orientation and in-plane field of view."""
    from monai_gvae.data.writers import SyntheticStudy, write_synthetic_dicom

    volume = tmp_path / "ref3d.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((64, 64, 20), np.float32),
                             np.array([[-1.0, 0, 0, 90], [0, 1.0, 0, -126], [0, 0, 3.0, -72], [0, 0, 0, 1]])), volume)
    series = Path(write_synthetic_dicom(np.zeros((1, 8, 6, 5), np.float32), str(tmp_path / "series"),
                                        affine=np.diag([0.7, 0.8, 1.5, 1.0]), study=SyntheticStudy.new("0")))
    # by hand: 64 -> 32 pixels doubles the spacing, the outer edge of the field of view stays (origin + half the
    # old spacing - half the new one), and the slice is the reference's slice 20 // 2 = 10 (resp. 5 // 2 = 2).
    # Stored upright (docs/cli.md, "Geometry"): the array's rows run posterior (y falls from the most anterior row,
    # -126 + 63 - 0.5), its columns towards the patient's left (x falls from 90 - 0.5)
    expected = {
        volume: [[0, -2.0, 0, 90 - 0.5], [-2.0, 0, 0, -126 + 63 - 0.5], [0, 0, 3.0, -72 + 3.0 * 10], [0, 0, 0, 1]],
        series: [[0, -0.7 * 8 / 32, 0, 0.7 * 7 + 0.7 * (1 - 8 / 32) / 2],
                 [-0.8 * 6 / 32, 0, 0, 0.8 * 5 + 0.8 * (1 - 6 / 32) / 2], [0, 0, 1.5, 1.5 * 2], [0, 0, 0, 1]],
    }
    for reference, affine in expected.items():
        out = tmp_path / f"on_{reference.name}"
        assert main(["synthesize", "--checkpoint", tiny["checkpoint"], "-n", "1", "--out", str(out), "--reference",
                     str(reference), "--no-progress"]) == 0
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["geometry_from_reference"] is True
        assert np.allclose(manifest["affine"], affine, atol=1e-5), (reference.name, manifest["affine"])
        image = nib.load(out / "synthetic_00000_image.nii.gz")
        assert image.shape == (SIZE, SIZE) and np.allclose(image.affine, affine, atol=1e-5), image.affine
    # as DICOM, on the series: the slice's position in the patient frame (LPS: x and y negated)
    out = tmp_path / "dicom_on_series"
    assert main(["synthesize", "--checkpoint", tiny["checkpoint"], "-n", "1", "--out", str(out), "--format", "dicom",
                 "--reference", str(series), "--no-progress"]) == 0
    ds = pydicom.dcmread(out / "synthetic_00000_image.dcm")
    ras = np.array(expected[series])[:3, 3]
    assert np.allclose([float(v) for v in ds.ImagePositionPatient], [-ras[0], -ras[1], ras[2]], atol=1e-4)


def test_unreadable_reference_fails_without_outputs(tiny, tmp_path, capsys):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"this is not a NIfTI file")
    out = tmp_path / "out"
    assert cli_synthesize(tiny["checkpoint"], out, 2, "--reference", bad) == 1
    err = capsys.readouterr().err
    assert "broken.nii.gz" in err and "cannot read" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_inconsistent_dicom_series_named(tmp_path):
    from monai_gvae.data.inputs import InputImageError, find_images, load_image
    from monai_gvae.data.writers import SyntheticStudy, write_synthetic_dicom

    volume = np.random.default_rng(0).random((1, 8, 6, 5)).astype(np.float32)
    series = Path(
        write_synthetic_dicom(
            volume, str(tmp_path / "series"), affine=np.diag([0.7, 0.8, 1.5, 1.0]), study=SyntheticStudy.new("0")
        )
    )
    assert sorted(p.name for p in series.iterdir()) == [f"slice_{k:04d}.dcm" for k in range(5)]
    loaded = load_image(series)
    assert tuple(loaded.shape) == (1, 8, 6, 5) and np.abs(loaded.numpy() - volume).max() < 1e-4
    assert np.allclose(np.asarray(loaded.affine), np.diag([0.7, 0.8, 1.5, 1.0]), atol=1e-5)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(series)))
    volume_sitk = reader.Execute()
    assert volume_sitk.GetSize() == (8, 6, 5) and np.allclose(volume_sitk.GetSpacing(), (0.7, 0.8, 1.5))
    assert np.abs(sitk.GetArrayFromImage(volume_sitk) - volume[0].transpose(2, 1, 0)).max() < 1e-4
    (series / "slice_0002.dcm").unlink()  # a missing slice
    with pytest.raises(InputImageError, match="irregular slice spacing.*slice_0001.dcm.*slice_0003.dcm"):
        find_images(tmp_path)


def test_evaluate_writes_json(tiny, tmp_path, capsys):
    out = tmp_path / "eval.json"
    proc = run_cli(
        "evaluate",
        "--checkpoint",
        tiny["checkpoint"],
        "--data",
        str(tiny["root"] / "test"),
        "--out",
        str(out),
        "--no-progress",
    )
    report = json.loads(out.read_text())
    assert json.loads(proc.stdout)["metrics"] == report["metrics"]
    metrics = report["metrics"]
    assert report["num_images"] == len(load_brain_slices("test")) and set(metrics) == {
        "reconstruction_l1_01",
        "kl",
        "elbo",
        "mmd_gaussian",
        "ms_ssim_diversity",
        "sharpness_ratio",
        "reconstruction_dice",
    }
    assert set(report["definitions"]) == set(metrics) and report["settings"]["seed"] == 0
    assert 0 < metrics["reconstruction_l1_01"] < 1 and metrics["kl"] >= 0 and 0 <= metrics["reconstruction_dice"] <= 1
    assert metrics["elbo"] < 0 and 0 < metrics["ms_ssim_diversity"] <= 1 and math.isfinite(metrics["mmd_gaussian"])
    assert metrics["sharpness_ratio"] > 0
    # the values, recomputed by hand from the files (read with nibabel, scaled per image to [0, 1] as the command
    # does by default) and the model: the command reads, scales, packs and evaluates what the definitions say
    from monai_gvae.networks import load_gvae

    files = sorted((tiny["root"] / "test" / "images").iterdir())
    assert report["files"] == [f.name.replace(".nii.gz", "") for f in files]
    images = torch.stack([torch.from_numpy(np.asarray(nib.load(f).dataobj, dtype=np.float32))[None] for f in files])
    low, high = images.amin((1, 2, 3), keepdim=True), images.amax((1, 2, 3), keepdim=True)
    images = (images - low) / (high - low)
    labels = torch.stack([torch.from_numpy(np.asarray(nib.load(f.parent.parent / "labels" / f.name).dataobj))
                          for f in files])
    onehot = torch.nn.functional.one_hot(labels.long(), NUM_CLASSES).movedim(-1, 1).float()
    expected = expected_metrics(load_gvae(tiny["checkpoint"]), torch.cat([images * 2 - 1, onehot * 2 - 1], 1), seed=0)
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
    # E_q[log p(x|z)] of a discretised likelihood is at most 0, so the ELBO is at most -KL
    assert metrics["elbo"] <= -metrics["kl"]
    # an existing report is not overwritten; a joint model without labels is refused, naming the problem
    assert cli("evaluate", "--checkpoint", tiny["checkpoint"], "--data", tiny["root"] / "test", "--out", out) == 1
    assert cli("evaluate", "--checkpoint", tiny["checkpoint"], "--data", tiny["root"] / "test" / "images") == 1
    # a truncated input: exit 1, the message names the file, no report written
    broken = tmp_path / "broken"
    shutil.copytree(tiny["root"] / "test", broken)
    whole = (broken / "images" / "slice_004.nii.gz").read_bytes()
    (broken / "images" / "slice_004.nii.gz").write_bytes(whole[: len(whole) // 2])
    assert cli("evaluate", "--checkpoint", tiny["checkpoint"], "--data", broken, "--out", tmp_path / "b.json") == 1
    assert "slice_004.nii.gz" in capsys.readouterr().err and not (tmp_path / "b.json").exists()


def test_memorization_flags_planted_near_copies_only(tiny, tmp_path):
    synthetic = tmp_path / "synthetic"
    assert cli_synthesize(tiny["checkpoint"], synthetic, 12, "--seed", "1") == 0
    shutil.copy(tiny["root"] / "train" / "images" / "slice_010.nii.gz", synthetic / "planted_copy.nii.gz")
    # near-copies: a training slice with faint noise (RMS distance 0.023 after the min-max scaling, against 5th
    # percentiles of 0.117 for the held-out slices and 0.032 for training leave-one-out), and one moved by a pixel
    # (0.126: pixel RMS is not shift-invariant, see the feature space below)
    train_images = tiny["train_images"]
    noisy = train_images[20, 0] + 0.01 * torch.randn(train_images.shape[2:], generator=torch.Generator().manual_seed(0))
    nib.save(nib.Nifti1Image(noisy.numpy(), np.eye(4)), synthetic / "planted_noisy.nii.gz")
    shifted = torch.roll(train_images[30, 0], 1, dims=0)
    nib.save(nib.Nifti1Image(shifted.numpy(), np.eye(4)), synthetic / "planted_shifted.nii.gz")
    out = tmp_path / "report"
    proc = run_cli(
        "memorization",
        "--synthetic",
        str(synthetic),
        "--train",
        str(tiny["root"] / "train"),
        "--holdout",
        str(tiny["root"] / "test"),
        "--out",
        str(out),
        "--no-progress",
    )
    report = json.loads((out / "memorization.json").read_text())
    assert report["flagged"] == ["planted_copy", "planted_noisy"], proc.stdout
    rows = {s["name"]: s for s in report["samples"]}
    assert rows["planted_copy"]["nearest_training"] == "slice_010" and rows["planted_copy"]["pixel_distance"] < 1e-6
    assert rows["planted_noisy"]["nearest_training"] == "slice_020"
    threshold = report["spaces"]["pixel"]["threshold"]
    assert rows["planted_noisy"]["pixel_distance"] < threshold < rows["planted_shifted"]["pixel_distance"]
    assert report["spaces"]["pixel"]["num_synthetic"] == 15  # 12 samples + 3 planted; label files skipped
    assert (out / "memorization_closest_pairs.png").stat().st_size > 0
    # without a held-out folder (training leave-one-out reference) the result is the same; --fail-on-flagged -> 3
    assert (
        cli("memorization", "--synthetic", synthetic, "--train", tiny["root"] / "train", "--out", tmp_path / "r2",
            "--fail-on-flagged")
        == 3
    )
    assert json.loads((tmp_path / "r2" / "memorization.json").read_text())["flagged"] == ["planted_copy", "planted_noisy"]
    # from Python, a shift-invariant feature space (Fourier magnitudes) flags the shifted copy as well
    from monai_gvae.bundle.evaluation import check_memorization

    def fourier(images):
        return torch.fft.fft2(images.double()).abs().flatten(1)

    with_features = check_memorization(tiny["root"] / "train", tmp_path / "r4", synthetic_dir=synthetic,
                                       holdout_dir=tiny["root"] / "test", feature_fn=fourier)
    assert with_features["flagged"] == ["planted_copy", "planted_noisy", "planted_shifted"]
    shifted_row = next(s for s in with_features["samples"] if s["name"] == "planted_shifted")
    assert not shifted_row["pixel_flagged"] and shifted_row["feature_flagged"]
    assert shifted_row["feature_nearest_training"] == "slice_030"
    # fresh samples drawn from the model itself are not flagged
    assert (
        cli("memorization", "--checkpoint", tiny["checkpoint"], "-n", "32", "--seed", "5", "--train",
            tiny["root"] / "train", "--out", tmp_path / "r3", "--fail-on-flagged")
        == 0
    )


def test_train_wrapper_runs_bundle_and_protects_checkpoints(tmp_path):
    out = tmp_path / "run"
    overrides = [
        "--output_dir",
        str(out),
        "--max_epochs",
        "1",
        "--train#trainer#epoch_length",
        "1",
        "--base_channels",
        "4",
        "--max_channels",
        "8",
        "--latent_size",
        "8",
    ]
    run_cli("train", "--no-progress", *overrides)
    assert (out / "model.pt").is_file() and (out / "samples.png").is_file()
    from monai_gvae.networks import load_gvae

    assert load_gvae(out / "model.pt").latent_size == 8
    stamp = (out / "model.pt").stat().st_mtime_ns
    assert main(["train", "--no-progress", *overrides]) == 1  # refuses: checkpoints exist
    assert (out / "model.pt").stat().st_mtime_ns == stamp


def test_parse_overrides():
    assert parse_overrides(["--max_epochs", "2", "--lr=0.5", "--amp", "true", "--name", "x y", "--ids", "[1, 2]"]) == {
        "max_epochs": 2,
        "lr": 0.5,
        "amp": True,
        "name": "x y",
        "ids": [1, 2],
    }
    with pytest.raises(ValueError, match="needs a value"):
        parse_overrides(["--max_epochs"])


def test_synthesize_3d_dicom_series_and_rollback(tmp_path, monkeypatch):
    from monai_gvae.bundle import synthesis
    from monai_gvae.networks import GVAE

    torch.manual_seed(0)
    model = GVAE(
        spatial_dims=3,
        in_channels=1,
        image_size=16,
        latent_size=4,
        architecture="conv",
        base_channels=2,
        max_channels=4,
    )
    reference = tmp_path / "ref.nii.gz"
    ref_affine = np.array([[-1.0, 0, 0, 90], [0, 1.0, 0, -126], [0, 0, 1.0, -72], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(np.zeros((64, 64, 32), np.float32), ref_affine), reference)
    out = tmp_path / "dicom3d"
    manifest = synthesis.synthesize(model, str(out), num_samples=2, format="dicom", reference=str(reference))
    series = out / manifest["files"][1]["image"]
    assert series.is_dir() and len(list(series.iterdir())) == 16
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(series)))
    volume = reader.Execute()
    assert volume.GetSize() == (16, 16, 16) and np.allclose(volume.GetSpacing(), (4.0, 4.0, 2.0))
    assert pydicom.dcmread(next(series.iterdir())).SyntheticData == "YES"
    # PNG cannot hold volumes: refused before anything is written
    with pytest.raises(ValueError, match="PNG holds 2D images"):
        synthesis.synthesize(model, str(tmp_path / "png"), num_samples=1, format="png")
    assert not (tmp_path / "png").exists()

    # a failure part-way removes what the run wrote: no partial outputs
    calls = {"n": 0}
    real_writer = synthesis.write_synthetic_nifti

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real_writer(*args, **kwargs)

    monkeypatch.setattr(synthesis, "write_synthetic_nifti", failing)
    with pytest.raises(OSError, match="disk full"):
        synthesis.synthesize(model, str(tmp_path / "partial"), num_samples=4, format="nifti")
    assert calls["n"] == 3 and list((tmp_path / "partial").iterdir()) == []
