"""Build hook: the wheel carries the repository's bundles (``bundles/NAME``) as package data.

Everything else is declared in ``setup.cfg``. The bundle folders live at the top of the repository, where README's
commands use them; ``build_py`` copies each one's ``configs/``, ``docs/`` and ``LICENSE`` (the files
``monai_gvae.bundle.catalog.bundle_files`` selects, never what a run wrote) into ``monai_gvae/bundle/shipped/NAME`` of
the build, so that ``monai-gvae bundle init`` and ``monai-gvae train`` find them wherever the package is installed.
An editable install reads the repository's ``bundles/`` directly (one source either way).
"""

import importlib.util
import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def _catalog():
    # the catalog module uses the standard library only: loaded by path, without importing the package (torch)
    spec = importlib.util.spec_from_file_location("_monai_gvae_catalog", HERE / "monai_gvae" / "bundle" / "catalog.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithBundles(build_py):
    """``build_py`` that also writes the shipped bundles into the build."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads bundles/ in the repository
        catalog = _catalog()
        shipped = Path(self.build_lib) / "monai_gvae" / "bundle" / "shipped"
        if shipped.exists():
            shutil.rmtree(shipped)
        for metadata in sorted((HERE / "bundles").glob("*/configs/metadata.json")):
            bundle = metadata.parent.parent
            for rel in catalog.bundle_files(bundle):
                target = shipped / bundle.name / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(bundle / rel, target)
                os.chmod(target, 0o644)


setup(cmdclass={"build_py": BuildPyWithBundles})
