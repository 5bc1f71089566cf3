#!/usr/bin/env python
"""Write the Colin27 T1 template and its 4-class AAL label map as NIfTI volumes in an ``images/`` + ``labels/``
folder: a labelled data set for ``examples/fewlabels_benchmark.py --data-dir`` (for a clone: it reads the Debian
package ``mricron-data``).

The volumes are the 1 mm templates in RAS voxel order (181 x 217 x 181): axis 0 runs left to right, 1 posterior to
anterior, 2 inferior to superior; labels 0 background, 1 cortex, 2 deep grey matter, 3 cerebellum (the embedded
slices' classes, ``monai_gvae.data.brain_build``). Slicing along axis 1 gives coronal slices, a second few-label
task beside the embedded axial one::

    python examples/export_brain_volume.py --out /tmp/colin27
    python examples/fewlabels_benchmark.py --data-dir /tmp/colin27 --axis 1 --output-dir runs/coronal
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np

from monai_gvae.data.brain_build import load_templates, merge_labels


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--templates-dir", type=Path, default=Path("/usr/share/mricron/templates"))
    parser.add_argument("--out", type=Path, required=True, help="folder to create (images/, labels/)")
    args = parser.parse_args(argv)
    try:
        image, atlas, affine = load_templates(args.templates_dir)
    except FileNotFoundError as e:
        parser.error(f"{e} (install the Debian package mricron-data)")
    label = merge_labels(atlas, image > 0)
    for sub, array in (("images", image.astype(np.float32)), ("labels", label.astype(np.uint8))):
        folder = args.out / sub
        folder.mkdir(parents=True, exist_ok=False)
        nib.save(nib.Nifti1Image(array, affine), str(folder / "colin27.nii.gz"))
    print(f"wrote {args.out}/images/colin27.nii.gz and {args.out}/labels/colin27.nii.gz {image.shape}")


if __name__ == "__main__":
    main()
