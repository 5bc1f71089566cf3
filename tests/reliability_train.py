"""Driver for the crash/resume tests (tests/test_reliability_resume.py): runs the gvae_brain2d bundle's training
config, shrunk to 16x16 synthetic slices and a tiny network, in a process of its own.

    python tests/reliability_train.py OUTPUT_DIR [--resume] [--pause-in-save ITERATION] [--max-epochs N]

``--pause-in-save N`` makes the checkpoint write at iteration N stop half way through (the temporary file holds
half of the bytes), print ``PAUSED`` and wait to be killed: the parent sends SIGKILL, like a crash or an OOM kill
during a write. Not collected by pytest (no ``test_`` prefix).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "bundles", "gvae_brain2d", "configs")


def overrides(output_dir: str, max_epochs: int, resume: bool) -> dict:

    def data(n: int, seed: int) -> dict:
        return {"_target_": "monai_gvae.data.synthetic_slices", "num_samples": n, "image_size": 16,
                "num_seg_classes": 3, "seed": seed}

    return {
        "bundle_root": os.path.join(REPO, "bundles", "gvae_brain2d"),
        "output_dir": output_dir,
        "image_size": 16,
        "base_channels": 4,
        "max_channels": 8,
        "latent_size": 8,
        "batch_size": 4,
        "max_epochs": max_epochs,
        "resume": resume,
        "kl_warmup_iterations": 4,
        # 12 slices / batch 4 = 3 iterations per epoch; a random flip, so that the data pipeline's own random state
        # must be restored too
        "train#dataset": {
            "_target_": "Dataset",
            "data": data(12, seed=1),
            "transform": {
                "_target_": "Compose",
                "transforms": [
                    {"_target_": "RandFlipd", "keys": ["image", "label"], "prob": 0.5, "spatial_axis": 1},
                    "@preprocessing",
                ],
            },
        },
        "validate#dataset": {"_target_": "Dataset", "data": data(4, seed=2), "transform": "@preprocessing"},
        "val_interval": 2,
        # a checkpoint every 2 iterations: some in the middle of an epoch, some at its end
        "train#checkpoint_saver#epoch_level": False,
        "train#checkpoint_saver#save_interval": 2,
    }


def pause_in_save(iteration: int) -> None:
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        meta = obj.get("checkpoint_meta") if isinstance(obj, dict) else None
        if meta is not None and meta["iteration"] == iteration and not isinstance(f, io.BytesIO):
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            f.write(data[: len(data) // 2])
            f.flush()
            print("PAUSED", flush=True)
            time.sleep(600)
        return real_save(obj, f, *args, **kwargs)

    torch.save = save


def train(output_dir: str, resume: bool = False, max_epochs: int = 4) -> None:
    """Run the shrunk bundle training in this process (the uninterrupted reference of the tests)."""
    torch.set_num_threads(1)
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(
        config_file=os.path.join(CONFIGS, "train.yaml"),
        meta_file=os.path.join(CONFIGS, "metadata.json"),
        logging_file=False,
        workflow_type="train",
        **overrides(output_dir, max_epochs, resume),
    )
    workflow.initialize()
    workflow.run()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--pause-in-save", type=int, default=None)
    parser.add_argument("--max-epochs", type=int, default=4)
    args = parser.parse_args()
    if args.pause_in_save is not None:
        pause_in_save(args.pause_in_save)
    train(args.output_dir, args.resume, args.max_epochs)
    print("DONE", flush=True)


if __name__ == "__main__":
    sys.exit(main())
