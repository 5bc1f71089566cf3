"""Multi-process training the MONAI way: torchrun, 2 CPU processes on gloo, the bundle's multi_gpu_train.yaml; a
distributed run killed and resumed ends with the weights of an uninterrupted one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from reliability_helpers import assert_same_state

REPO = Path(__file__).resolve().parents[1]

# Test-only third config: before the process group is destroyed, each rank saves what it ended with.
PROBE = """
finalize:
  - "$torch.save({'rank': torch.distributed.get_rank(), 'world_size': torch.distributed.get_world_size(), \
'iteration': @train#trainer.state.iteration, 'seed': @train#trainer.latent_generator.initial_seed(), \
'latents': torch.randn(4, @latent_size, generator=torch.Generator().manual_seed(@train#trainer.latent_generator.initial_seed())), \
'encoder_is_ddp': isinstance(@train#trainer.encoder, torch.nn.parallel.DistributedDataParallel), \
'params': {k: v.detach().clone() for k, v in list(@network_def.named_parameters()) + list(@critic.named_parameters())}}, \
os.path.join(@output_dir, 'rank%d.pt' % torch.distributed.get_rank()))"
  - "$torch.distributed.barrier()"
  - "$torch.distributed.destroy_process_group()"
"""


def test_torchrun_two_cpu_processes_gloo(tmp_path):
    probe = tmp_path / "probe.yaml"
    probe.write_text(PROBE)
    out = tmp_path / "run"
    folder = "bundles/gvae_brain2d/configs"
    configs = f"['{folder}/train.yaml','{folder}/multi_gpu_train.yaml','{probe}']"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "monai.bundle", "run", "training", "--config_file", configs,
        "--meta_file", f"{folder}/metadata.json", "--bundle_root", "bundles/gvae_brain2d",
        # 46 training slices over 2 ranks (23 each), batch 8 per rank: 2 iterations; validation on both ranks
        "--max_epochs", "1", "--base_channels", "4", "--latent_size", "8", "--batch_size", "8",
        "--val_interval", "1", "--output_dir", str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and all(r["encoder_is_ddp"] for r in ranks)
    assert [r["iteration"] for r in ranks] == [2, 2]
    # gradients were averaged: every parameter of encoder, generator and critic is identical on both ranks ...
    assert ranks[0]["params"].keys() == ranks[1]["params"].keys()
    for key, value in ranks[0]["params"].items():
        assert torch.equal(value, ranks[1]["params"][key]), key
    # ... although each rank drew its own latents (the trainer adds the rank to the seed)
    assert [r["seed"] for r in ranks] == [0, 1]
    assert not torch.allclose(ranks[0]["latents"], ranks[1]["latents"])
    # rank 0 wrote the checkpoint, holding the unwrapped networks (no DDP "module." prefix)
    ckpt = torch.load(out / "model.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in ckpt["gvae"])
    for key, value in ckpt["gvae"].items():
        if key in ranks[0]["params"]:
            assert torch.equal(value, ranks[0]["params"][key]), key
    assert (out / "samples.png").is_file()


def test_distributed_resume_matches_uninterrupted(tmp_path):
    """2 processes (gloo): a run that crashed after iteration 8 and resumed from its last checkpoint (iteration 6, in the
    middle of epoch 2) ends on every rank with the weights and optimiser states of an uninterrupted run, bit for
    bit: each rank's random streams (latents, the data pipeline's flips) are in the checkpoint. The three runs are in
    one torchrun launch (tests/ddp_resume_train.py)."""
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(REPO / "tests" / "ddp_resume_train.py"), str(tmp_path)]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for r in ranks:
        assert r["crashed_at"] == 8 and r["resumed_from"].endswith("checkpoint_iteration=6.pt")
        assert r["reference"]["iteration"] == r["resumed"]["iteration"] == 12
        assert_same_state(r["reference"], r["resumed"], f"rank{r['rank']}")
    # and the ranks agree on the weights and optimiser states (BatchNorm statistics are each rank's own)
    def weights(r):
        return {k: v for k, v in r.items() if k != "gvae"} | {
            "gvae": {k: v for k, v in r["gvae"].items() if "running_" not in k and "num_batches" not in k}}

    assert_same_state(weights(ranks[0]["resumed"]), weights(ranks[1]["resumed"]))
    # the checkpoints hold every rank's random states (rank 0's also where a single process keeps them)
    ckpt = torch.load(tmp_path / "run" / "checkpoint_iteration=9.pt", weights_only=True)
    assert len(ckpt["rng_state_per_rank"]) == 2 and ckpt["checkpoint_meta"]["exact_resume"]
    assert_same_state(ckpt["rng_state_per_rank"][0]["rng_state"], ckpt["rng_state"])
    assert not torch.equal(*(r["rng_state"]["engine"]["latent_generator"] for r in ckpt["rng_state_per_rank"]))
