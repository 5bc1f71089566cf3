"""Write 20 labelled 3D scans made by MONAI's ``create_test_image_3d`` (noisy spheres, 3 classes) as
``OUT/images/scanNN.nii.gz`` + ``OUT/labels/scanNN.nii.gz``: a folder of several scans to run the few-label
benchmark's scan protocol on (``--k-unit volume``) end to end. Spheres, not anatomy: a smoke and timing run.

    python docs/fewlabels/scans_demo/make_scans.py /tmp/scans
"""

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.data.synthetic import create_test_image_3d

out = Path(sys.argv[1])
for sub in ("images", "labels"):
    (out / sub).mkdir(parents=True, exist_ok=True)
for n in range(20):
    image, label = create_test_image_3d(64, 64, 48, num_objs=8, rad_max=14, rad_min=6, noise_max=0.3,
                                        num_seg_classes=3, random_state=np.random.RandomState(n))
    nib.save(nib.Nifti1Image(image.astype(np.float32), np.eye(4)), str(out / "images" / f"scan{n:02d}.nii.gz"))
    nib.save(nib.Nifti1Image(label.astype(np.int16), np.eye(4)), str(out / "labels" / f"scan{n:02d}.nii.gz"))
print(f"20 scans in {out}")
