"""The bundles travel with the package (issue 21): `monai-gvae bundle list/init`, the written folder runs with MONAI's
command from any working directory, `monai-gvae train` uses the shipped default bundle, and the wheel carries them."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from monai.bundle import verify_metadata

from cli_helpers import cli, monai_bundle, stderr_lines
from monai_gvae.bundle import SCHEMA_FILE, catalog

pytestmark = [pytest.mark.filterwarnings("ignore:No hash value provided")]

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--max_epochs", "1", "--train#trainer#epoch_length", "2", "--base_channels", "4", "--latent_size", "8"]


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_shipped_bundles_are_the_repository_bundles():
    names = catalog.bundle_names()
    assert names == sorted(p.parent.parent.name for p in (REPO / "bundles").glob("*/configs/metadata.json"))
    assert catalog.DEFAULT_BUNDLE_NAME in names
    files = catalog.bundle_files(catalog.bundle_path("gvae_brain2d"))
    assert {"LICENSE", "configs/train.yaml", "configs/metadata.json", "configs/inference.yaml", "configs/logging.conf",
            "docs/README.md", "docs/data_license.txt"} <= set(files)
    assert not any(f.startswith(("models/", "output/")) for f in files)


def test_bundle_list_names_every_bundle(tmp_path):
    proc = cli("bundle", "list", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in catalog.bundle_names():
        assert name in proc.stdout


def test_bundle_init_writes_a_complete_bundle_that_verifies_offline(tmp_path, no_network):
    proc = cli("bundle", "init", "gvae_brain2d", "b", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "b"
    written = sorted(str(p.relative_to(folder).as_posix()) for p in folder.rglob("*") if p.is_file())
    assert written == catalog.bundle_files(catalog.bundle_path("gvae_brain2d"))
    assert "Apache License" in (folder / "LICENSE").read_text()
    assert "mricron" in (folder / "docs" / "data_license.txt").read_text().lower()
    # MONAI's offline metadata check with the schema shipped in the package (`monai-gvae bundle schema`)
    schema = cli("bundle", "schema", cwd=tmp_path).stdout.strip()
    assert Path(schema).is_file() and Path(schema).samefile(SCHEMA_FILE)
    verify_metadata(meta_file=str(folder / "configs" / "metadata.json"), filepath=schema)


def test_bundle_init_refuses_a_folder_that_is_not_empty(tmp_path):
    folder = tmp_path / "b"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    proc = cli("bundle", "init", "gvae_brain2d", str(folder), cwd=tmp_path)
    assert proc.returncode == 1
    assert stderr_lines(proc) == [stderr_lines(proc)[0]] and "not empty" in proc.stderr and "--overwrite" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]  # nothing written
    proc = cli("bundle", "init", "gvae_brain2d", str(folder), "--overwrite", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (folder / "configs" / "train.yaml").is_file() and (folder / "notes.txt").read_text() == "mine"


def test_unknown_bundle_lists_the_known_ones(tmp_path):
    proc = cli("bundle", "init", "gvae_nope", "b", cwd=tmp_path)
    assert proc.returncode == 2
    assert "gvae_nope" in proc.stderr
    assert all(name in proc.stderr for name in catalog.bundle_names())
    assert not (tmp_path / "b").exists()
    with pytest.raises(ValueError, match="gvae_brain2d"):
        catalog.init_bundle("gvae_nope", tmp_path / "c")


def test_initialised_bundle_runs_with_monais_command_from_any_working_directory(tmp_path):
    assert cli("bundle", "init", "gvae_brain2d", "b", cwd=tmp_path).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    b = tmp_path / "b"
    proc = monai_bundle("run", "training", "--config_file", str(b / "configs" / "train.yaml"), "--meta_file",
                        str(b / "configs" / "metadata.json"), "--bundle_root", str(b), *SMALL, cwd=elsewhere)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert (b / "models" / "model.pt").is_file() and not any(elsewhere.iterdir())


def test_train_without_bundle_uses_the_shipped_default(tmp_path):
    proc = cli("train", *SMALL, "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert (tmp_path / "runs" / "gvae_brain2d" / "model.pt").is_file()
    assert "runs/gvae_brain2d" in proc.stdout


def test_train_takes_a_bundle_folder_or_the_name_of_a_shipped_bundle(tmp_path, monkeypatch):
    from monai_gvae.bundle.training import resolve_bundle

    monkeypatch.chdir(tmp_path)
    assert Path(resolve_bundle(None)) == catalog.bundle_path("gvae_brain2d")
    assert Path(resolve_bundle("gvae_mnist")) == catalog.bundle_path("gvae_mnist")
    (tmp_path / "gvae_mnist").mkdir()  # a folder of that name in the working directory comes first
    assert resolve_bundle("gvae_mnist") == "gvae_mnist"
    with pytest.raises(FileNotFoundError, match="gvae_brain2d, gvae_brain3d"):
        resolve_bundle("nowhere")


def test_wheel_carries_bundles_data_notices_and_schema_but_no_tests(tmp_path):
    """`pip wheel` of the repository: what issue 21 asks a wheel to hold (CI installs and runs it, .ci/run)."""
    pytest.importorskip("setuptools")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                           str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = tmp_path.glob("monai_gvae-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = "monai_gvae/bundle/shipped/"
    for name in catalog.bundle_names():
        expected = {shipped + name + "/" + f for f in catalog.bundle_files(REPO / "bundles" / name)}
        assert expected <= set(names), sorted(expected - set(names))
    assert not any(n.startswith(shipped) and ("/models/" in n or "/output/" in n) for n in names)
    for required in ("monai_gvae/bundle/schema/meta_schema_gvae.json", "monai_gvae/data/resources/brain2d_64.npz",
                     "monai_gvae/data/resources/brain3d_64.npz", "monai_gvae/data/resources/BRAIN_DATA_NOTICE.txt"):
        assert required in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith("tests/") or "/tests/" in n or "conftest" in n for n in names)
    meta = json.loads(zipfile.ZipFile(wheel).read(shipped + "gvae_brain2d/configs/metadata.json"))
    assert meta["version"] == json.loads((REPO / "bundles/gvae_brain2d/configs/metadata.json").read_text())["version"]
