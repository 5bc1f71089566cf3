"""Driver for the distributed resumption test (tests/test_multi_gpu.py), run by torchrun with 2 CPU processes on gloo:

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_resume_train.py OUTPUT_DIR

In one process group, three runs of the gvae_brain2d bundle's multi-GPU training config (shrunk to 16x16 synthetic
slices with a random flip, a tiny network, 4 iterations per epoch and rank, a checkpoint every 3 iterations, so
some fall inside an epoch): an uninterrupted one in OUTPUT_DIR/reference; one in OUTPUT_DIR/run that crashes after
iteration 8 (the last checkpoint is iteration 6's, in the middle of epoch 2); and a fresh one that resumes it with
``resume=true``. Each rank writes OUTPUT_DIR/rank{R}.pt with the weights and optimiser states both runs ended with.
Each run builds its objects afresh from the config after ``initialize`` (``set_determinism``), as a new process
would. Not collected by pytest (no ``test_`` prefix).
"""

from __future__ import annotations

import os
import sys

import torch
from ignite.engine import Events
from monai.bundle import ConfigParser

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "bundles", "gvae_brain2d", "configs")
CRASH_AFTER = 8


class Crash(Exception):
    """Stands in for a crash of every process."""


def overrides(output_dir: str, resume: bool) -> dict:
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
        # 16 slices over 2 ranks, 2 per batch: 4 iterations per epoch and rank
        "batch_size": 2,
        "max_epochs": 3,
        "resume": resume,
        "kl_warmup_iterations": 4,
        "train#dataset": {
            "_target_": "Dataset",
            "data": data(16, seed=1),
            "transform": {"_target_": "Compose", "transforms": [
                {"_target_": "RandFlipd", "keys": ["image", "label"], "prob": 0.5, "spatial_axis": 1},
                "@preprocessing",
            ]},
        },
        "validate#dataset": {"_target_": "Dataset", "data": data(4, seed=2), "transform": "@preprocessing"},
        "val_interval": 1,
        "train#checkpoint_saver#epoch_level": False,
        "train#checkpoint_saver#save_interval": 3,
    }


def train(output_dir: str, resume: bool = False, crash_after: int | None = None) -> tuple[dict, str | None]:
    """One run; returns this rank's final weights and optimiser states, and the checkpoint it resumed from."""
    parser = ConfigParser()
    parser.read_config([os.path.join(CONFIGS, "train.yaml"), os.path.join(CONFIGS, "multi_gpu_train.yaml")])
    parser.read_meta(os.path.join(CONFIGS, "metadata.json"))
    parser.update(overrides(output_dir, resume))
    parser.get_parsed_content("initialize")
    trainer = parser.get_parsed_content("train#trainer")
    if crash_after is not None:
        def crash(engine):
            raise Crash(f"crash after iteration {engine.state.iteration}")

        trainer.add_event_handler(Events.ITERATION_COMPLETED(once=crash_after), crash)
    try:
        parser.get_parsed_content("run")
    except Exception as e:  # a config expression wraps what it raises
        if crash_after is None or not isinstance(e.__cause__ or e.__context__, Crash):
            raise
    handler = parser.get_parsed_content("train#checkpoint_saver")
    state = {
        "gvae": parser.get_parsed_content("network_def").state_dict(),
        "critic": parser.get_parsed_content("critic").state_dict(),
        "optimizer": parser.get_parsed_content("optimizer").state_dict(),
        "critic_optimizer": parser.get_parsed_content("critic_optimizer").state_dict(),
        "iteration": trainer.state.iteration,
    }
    return {k: (v if not isinstance(v, dict) else _clone(v)) for k, v in state.items()}, handler.resumed_from


def _clone(value):
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def main(out: str) -> None:
    torch.set_num_threads(1)
    reference, _ = train(os.path.join(out, "reference"))
    crashed, _ = train(os.path.join(out, "run"), crash_after=CRASH_AFTER)
    resumed, resumed_from = train(os.path.join(out, "run"), resume=True)
    rank = torch.distributed.get_rank()
    torch.save({"rank": rank, "reference": reference, "crashed_at": crashed["iteration"], "resumed": resumed,
                "resumed_from": resumed_from}, os.path.join(out, f"rank{rank}.pt"))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
