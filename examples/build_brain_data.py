#!/usr/bin/env python
"""Rebuild the embedded brain MRI data set from the Debian ``mricron-data`` templates.

The package ships two small arrays derived from the MRIcron templates (Debian package ``mricron-data``):
``brain2d_64.npz`` (axial 64x64 slices of the brain-extracted Colin27 T1 with a 4-class label map merged from the
AAL atlas) and ``brain3d_64.npz`` (the whole brain volume and label map at 64x64x64). The processing is package
code, documented step by step in ``monai_gvae.data.brain_build``; the build is deterministic: running it again on
the same input files reproduces the shipped arrays bit for bit (``tests/test_data_brain.py`` checks this when
the templates are installed).

Usage::

    python examples/build_brain_data.py
    python examples/build_brain_data.py --templates-dir /usr/share/mricron/templates --out /tmp/x
"""

from __future__ import annotations

import argparse
from pathlib import Path

from monai_gvae.data.brain_build import DEFAULT_OUT, write_arrays


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--templates-dir", type=Path, default=Path("/usr/share/mricron/templates"))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--size", type=int, default=64, help="output edge length in pixels/voxels")
    parser.add_argument("--min-coverage", type=float, default=0.12, help="min brain fraction of the 2D crop")
    parser.add_argument("--slice-step", type=int, default=1, help="keep every n-th qualifying axial slice")
    parser.add_argument("--margin", type=int, default=2, help="voxels added around the brain bounding box")
    args = parser.parse_args(argv)
    try:
        lines = write_arrays(args.templates_dir, args.out, args.size, args.min_coverage, args.slice_step, args.margin)
    except FileNotFoundError as e:
        parser.error(str(e))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
