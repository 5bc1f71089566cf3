"""Crash-safe checkpoints: SIGKILL and resume give the uninterrupted run's weights; atomic files; resume rules."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.handlers import CheckpointLoader
import reliability_train
from reliability_helpers import assert_same_state, state_of, tiny_run

from monai_gvae.handlers import (
    CHECKPOINT_FORMAT,
    atomic_torch_save,
    check_earlier_run,
    earlier_run_files,
    find_checkpoints,
    latest_checkpoint,
    upgrade_checkpoint,
)
from monai_gvae.networks import load_gvae

REPO = Path(__file__).resolve().parents[1]
DRIVER = REPO / "tests" / "reliability_train.py"


class Crash(Exception):
    """Stands in for a crash in the in-process tests."""


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    env["OMP_NUM_THREADS"] = "1"
    return env


def _weights(path: Path) -> dict:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return {k: ckpt[k] for k in ("gvae", "critic", "optimizer", "critic_optimizer", "trainer")}


def test_sigkill_during_checkpoint_write_then_resume_matches_uninterrupted(tmp_path):
    """The bundle's training config in a subprocess, SIGKILLed half way through writing the checkpoint of iteration 10
    (after those of iterations 6 and 8), resumed with resume=true: the final weights and optimiser states are
    bit-identical to an uninterrupted run's, and no truncated file ever had a checkpoint's name."""
    ref_dir, run_dir, log = tmp_path / "reference", tmp_path / "killed", tmp_path / "victim.log"
    with open(log, "w") as out:
        victim = subprocess.Popen(
            [sys.executable, str(DRIVER), str(run_dir), "--pause-in-save", "10"], cwd=REPO, env=_env(),
            stdout=out, stderr=subprocess.STDOUT, text=True,
        )
    try:
        reliability_train.train(str(ref_dir))  # the uninterrupted reference, meanwhile, in this process
        deadline = time.monotonic() + 300
        while "PAUSED" not in log.read_text():
            if victim.poll() is not None:
                pytest.fail("the training process ended before the checkpoint write to interrupt:\n" + log.read_text()[-3000:])
            assert time.monotonic() < deadline, "timed out waiting for the checkpoint write"
            time.sleep(0.05)
        os.kill(victim.pid, signal.SIGKILL)
        assert victim.wait(timeout=60) == -signal.SIGKILL
    finally:
        if victim.poll() is None:
            victim.kill()
    names = sorted(os.listdir(run_dir))
    # the checkpoints before the kill are complete; the interrupted write is only a hidden temporary file
    assert "checkpoint_iteration=8.pt" in names and "checkpoint_iteration=6.pt" in names
    assert "checkpoint_iteration=10.pt" not in names and "model.pt" not in names
    assert any(n.startswith(".checkpoint_iteration=10.pt.") for n in names)
    found, rejected = find_checkpoints(run_dir)
    assert [c.iteration for c in found] == [8, 6] and not rejected

    resumed = subprocess.run(
        [sys.executable, str(DRIVER), str(run_dir), "--resume"], cwd=REPO, env=_env(),
        capture_output=True, text=True, timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "removing" in resumed.stderr and ".checkpoint_iteration=10.pt." in resumed.stderr
    assert not any(n.startswith(".") for n in os.listdir(run_dir))
    final_ref, final_resumed = _weights(ref_dir / "model.pt"), _weights(run_dir / "model.pt")
    assert final_resumed["trainer"]["iteration"] == 12
    assert_same_state(final_ref, final_resumed)


@pytest.mark.parametrize("epoch_level, crash_at", [(True, 5), (False, 4)], ids=["epoch-checkpoints", "mid-epoch-checkpoint"])
def test_crash_and_resume_in_process_is_exact(tmp_path, epoch_level, crash_at):
    """Epoch checkpoints, and a checkpoint in the middle of an epoch (iteration 3 of 2-iteration epochs): resuming
    after a crash replays the data order and random draws exactly."""
    interval = 1 if epoch_level else 3
    reference = tiny_run(str(tmp_path / "ref"), epoch_level=epoch_level, save_interval=interval)
    reference.trainer.run()

    def crash(run):
        run.trainer.add_event_handler(Events.ITERATION_COMPLETED(once=crash_at), lambda e: (_ for _ in ()).throw(Crash()))

    first = tiny_run(str(tmp_path / "run"), epoch_level=epoch_level, save_interval=interval, before_attach=crash)
    with pytest.raises(Crash):
        first.trainer.run()
    second = tiny_run(str(tmp_path / "run"), epoch_level=epoch_level, save_interval=interval, resume=True)
    second.trainer.run()
    expected_start = 4 if epoch_level else 3
    assert second.handler.resumed_from.endswith("epoch=2.pt" if epoch_level else "iteration=3.pt")
    assert torch.load(second.handler.resumed_from, weights_only=True)["trainer"]["iteration"] == expected_start
    assert second.trainer.state.iteration == reference.trainer.state.iteration == 6
    assert_same_state(state_of(reference), state_of(second))


def test_resume_from_an_explicit_checkpoint_path(tmp_path):
    """resume=PATH continues from that checkpoint, not from the newest one: here from epoch 1 of a finished run, in
    another folder and in the run's own folder (which holds newer checkpoints), exactly as the run went on."""
    reference = tiny_run(str(tmp_path / "ref"), n_saved=None)
    reference.trainer.run()
    epoch_1 = tmp_path / "ref" / "checkpoint_epoch=1.pt"
    for folder in (tmp_path / "branch", tmp_path / "ref"):
        run = tiny_run(str(folder), n_saved=None, resume=str(epoch_1))
        started: list[int] = []
        run.trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: started.append(e.state.iteration))
        run.trainer.run()
        assert run.handler.resumed_from == str(epoch_1) and started[0] == 3  # epoch 1 ended at iteration 2
        assert run.trainer.state.iteration == 6
        assert_same_state(state_of(reference), state_of(run))
    with pytest.raises(ValueError, match="cannot resume from"):  # a file that is no checkpoint is named
        (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
        tiny_run(str(tmp_path / "junk_run"), resume=str(tmp_path / "junk.pt")).trainer.run()


def test_ema_generator_is_saved_resumed_exactly_and_loaded_with_key_gvae_ema(tmp_path):
    """The trainer's EMA generator is in every checkpoint, comes back exactly on resume, and load_gvae(key="gvae_ema")
    and `monai-gvae synthesize --key gvae_ema` use it."""
    from monai_gvae.bundle.synthesis import synthesize
    from monai_gvae.cli import main

    reference = tiny_run(str(tmp_path / "ref"), ema_decay=0.8)
    reference.trainer.run()

    def crash(run):
        run.trainer.add_event_handler(Events.ITERATION_COMPLETED(once=5), lambda e: (_ for _ in ()).throw(Crash()))

    with pytest.raises(Crash):
        tiny_run(str(tmp_path / "run"), ema_decay=0.8, before_attach=crash).trainer.run()
    resumed = tiny_run(str(tmp_path / "run"), ema_decay=0.8, resume=True)
    resumed.trainer.run()
    ema = resumed.trainer.generator_ema
    assert resumed.handler.resumed_from.endswith("epoch=2.pt") and ema.n_averaged.item() == 6
    assert_same_state(reference.trainer.generator_ema.state_dict(), ema.state_dict())
    model_file = tmp_path / "run" / "model.pt"
    assert_same_state(torch.load(model_file, weights_only=True)["trainer"]["generator_ema"], ema.state_dict())

    # key="gvae_ema": the trained encoder with the averaged generator
    averaged = load_gvae(model_file, key="gvae_ema")
    plain = load_gvae(model_file)
    for name, value in averaged.state_dict().items():
        if name.startswith("generator."):
            assert torch.equal(value, ema.module.state_dict()[name[len("generator."):]]), name
        else:
            assert_same_state(value, plain.state_dict()[name], name)
    z = torch.randn(3, 4)
    with torch.no_grad():
        assert not torch.allclose(averaged.decode(z), plain.decode(z))
    # the command line writes the averaged generator's samples
    assert main(["synthesize", "--checkpoint", str(model_file), "--key", "gvae_ema", "-n", "2", "--out",
                 str(tmp_path / "cli_ema"), "--seed", "3", "--no-progress"]) == 0
    by_hand = resumed.gvae.__class__.from_state_dict(resumed.gvae.state_dict())
    by_hand.generator.load_state_dict(ema.module.state_dict())
    synthesize(by_hand.eval(), str(tmp_path / "by_hand"), num_samples=2, seed=3)
    synthesize(plain, str(tmp_path / "plain"), num_samples=2, seed=3)
    import nibabel as nib

    for name in ("synthetic_00000_image.nii.gz", "synthetic_00001_label.nii.gz"):
        cli, expected, other = (np.asarray(nib.load(tmp_path / d / name).dataobj) for d in ("cli_ema", "by_hand", "plain"))
        assert np.array_equal(cli, expected), name
    assert not np.array_equal(*(np.asarray(nib.load(tmp_path / d / "synthetic_00000_image.nii.gz").dataobj)
                                for d in ("cli_ema", "plain")))
    # a run without ema_decay has no average to load: said so
    tiny_run(str(tmp_path / "no_ema"), max_epochs=1).trainer.run()
    with pytest.raises(ValueError, match="no EMA generator"):
        load_gvae(tmp_path / "no_ema" / "model.pt", key="gvae_ema")
    assert main(["synthesize", "--checkpoint", str(tmp_path / "no_ema" / "model.pt"), "--key", "gvae_ema", "-n", "1",
                 "--out", str(tmp_path / "nothing"), "--no-progress"]) == 1


def test_distributed_resume_takes_each_ranks_own_random_states(tmp_path, monkeypatch, caplog):
    """In a distributed run each rank restores its own entry of rng_state_per_rank; a checkpoint without them (or
    written by another number of processes) re-seeds each rank from the seed, its rank and the iteration, saying so.
    (Stands in for rank 1 of 2 in this process; tests/test_multi_gpu.py runs the real thing.)"""
    import copy
    import logging

    from monai_gvae.handlers import resume as resume_module

    run = tiny_run(str(tmp_path), max_epochs=1)
    run.trainer.run()
    ckpt = torch.load(tmp_path / "model.pt", weights_only=True)
    monkeypatch.setattr(resume_module, "world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    tracker = resume_module.RandomStateTracker(mid_epoch=False, logger=logging.getLogger("test"))
    rank1 = copy.deepcopy(ckpt["rng_state"])
    rank1["engine"]["latent_generator"] = torch.Generator().manual_seed(99).get_state()
    per_rank = [{"rng_state": ckpt["rng_state"]}, {"rng_state": rank1}]
    tracker.restore(run.trainer, {**ckpt, "rng_state_per_rank": per_rank}, "x.pt")
    assert torch.equal(run.trainer.latent_generator.get_state(), rank1["engine"]["latent_generator"])
    for written, reason in ((ckpt, "without per-rank random states"),
                            ({**ckpt, "rng_state_per_rank": [{"rng_state": rank1}] * 4}, "by 4 processes")):
        caplog.clear()
        with caplog.at_level("WARNING"):
            tracker.restore(run.trainer, written, "old.pt")
        assert reason in caplog.text and "re-seeded per rank" in caplog.text
        seed = 0 + 7919 * 1 + 1_000_003 * run.trainer.state.iteration
        assert torch.equal(run.trainer.latent_generator.get_state(), torch.Generator().manual_seed(seed).get_state())


def test_resume_without_random_states_would_differ(tmp_path):
    """Control for the test above: restoring weights and optimisers alone (what MONAI's CheckpointLoader does) does
    not reproduce the uninterrupted run, so the random-state part of the checkpoint is what makes it exact."""
    reference = tiny_run(str(tmp_path / "ref"))
    reference.trainer.run()
    first = tiny_run(str(tmp_path / "run"), max_epochs=2)
    first.trainer.run()
    second = tiny_run(str(tmp_path / "other"))
    ckpt_path = tmp_path / "run" / "checkpoint_epoch=2.pt"
    loader = CheckpointLoader(str(ckpt_path), {
        "gvae": second.gvae, "critic": second.critic, "optimizer": second.opt_g,
        "critic_optimizer": second.opt_d, "trainer": second.trainer,
    })
    loader.attach(second.trainer)  # also proves MONAI's CheckpointLoader reads these checkpoints
    second.trainer.run()
    assert second.trainer.state.iteration == 6
    with pytest.raises(AssertionError):
        assert_same_state(state_of(reference)["gvae"], state_of(second)["gvae"])


def test_completed_run_resumes_to_nothing_and_extends_exactly(tmp_path):
    reference = tiny_run(str(tmp_path / "ref"), max_epochs=4)
    reference.trainer.run()
    done = tiny_run(str(tmp_path / "run"), max_epochs=3)
    done.trainer.run()
    final = tmp_path / "run" / "model.pt"
    before = final.read_bytes()
    again = tiny_run(str(tmp_path / "run"), max_epochs=3, resume=True)
    again.trainer.run()
    assert again.trainer.state.iteration == 6 and final.read_bytes() == before  # nothing trained, nothing rewritten
    longer = tiny_run(str(tmp_path / "run"), max_epochs=4, resume=True)
    longer.trainer.run()
    assert longer.handler.resumed_from == str(final)  # the final checkpoint wins at equal iteration
    assert_same_state(state_of(reference), state_of(longer))
    assert torch.load(final, weights_only=True)["checkpoint_meta"]["iteration"] == 8


def test_refuses_folder_of_another_run_and_missing_resume_file(tmp_path):
    tiny_run(str(tmp_path), max_epochs=1).trainer.run()
    with pytest.raises(FileExistsError, match="model.pt"):
        tiny_run(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        tiny_run(str(tmp_path / "x"), resume=str(tmp_path / "nope.pt"))


def test_only_rank_0_deletes_an_earlier_run_under_overwrite(tmp_path, monkeypatch):
    """Under DDP every rank attaches the handler; only rank 0 may delete (the others would race it), while every
    rank still refuses a folder of another run without overwrite."""
    import monai_gvae.handlers.checkpoint as checkpoint_module

    run = tiny_run(str(tmp_path), max_epochs=2)
    run.trainer.run()
    stale = tmp_path / ".checkpoint_epoch=9.pt.tmp123"  # what an interrupted write leaves
    stale.write_bytes(b"partial")
    earlier = sorted(os.listdir(tmp_path))
    assert "model.pt" in earlier
    monkeypatch.setattr(checkpoint_module, "_is_rank0", lambda: False)
    with pytest.raises(FileExistsError, match="earlier run"):
        tiny_run(str(tmp_path), max_epochs=2)
    run = tiny_run(str(tmp_path), max_epochs=2, before_attach=lambda r: setattr(r.handler, "overwrite", True))
    assert sorted(os.listdir(tmp_path)) == earlier  # a non-zero rank deleted nothing
    monkeypatch.setattr(checkpoint_module, "_is_rank0", lambda: True)
    tiny_run(str(tmp_path), max_epochs=2, before_attach=lambda r: setattr(r.handler, "overwrite", True))
    assert not stale.exists() and not any(n.endswith(".pt") for n in os.listdir(tmp_path))  # rank 0 cleaned up


def test_unreadable_or_poisoned_checkpoints_are_skipped_on_resume(tmp_path, caplog):
    run = tiny_run(str(tmp_path), max_epochs=3, n_saved=None)
    run.trainer.run()
    os.remove(tmp_path / "model.pt")
    # a truncated file under a checkpoint name (e.g. written by a non-atomic saver) and a NaN-poisoned one
    good = (tmp_path / "checkpoint_epoch=3.pt").read_bytes()
    (tmp_path / "checkpoint_epoch=3.pt").write_bytes(good[: len(good) // 2])
    ckpt = torch.load(tmp_path / "checkpoint_epoch=2.pt", weights_only=True)
    next(v for v in ckpt["gvae"].values() if isinstance(v, torch.Tensor) and v.is_floating_point()).fill_(float("nan"))
    torch.save(ckpt, tmp_path / "checkpoint_epoch=2.pt")
    with caplog.at_level("WARNING"):
        info, loaded = latest_checkpoint(tmp_path)
    assert info.path.endswith("checkpoint_epoch=1.pt") and loaded["checkpoint_meta"]["iteration"] == 2
    assert "checkpoint_epoch=3.pt" in caplog.text and "non-finite" in caplog.text
    resumed = tiny_run(str(tmp_path), max_epochs=3, resume=True)
    resumed.trainer.run()
    assert resumed.handler.resumed_from.endswith("checkpoint_epoch=1.pt")


def test_atomic_save_keeps_old_file_on_failure_and_sets_normal_permissions(tmp_path):
    path = tmp_path / "c.pt"
    atomic_torch_save({"a": torch.ones(2)}, path)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # not mkstemp's owner-only 0600

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_torch_save({"a": torch.zeros(2), "b": Unpicklable()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    assert os.listdir(tmp_path) == ["c.pt"]


def test_checkpoint_contents(tmp_path):
    run = tiny_run(str(tmp_path), max_epochs=1)
    run.trainer.run()
    ckpt = torch.load(tmp_path / "model.pt", weights_only=True)  # loadable without unpickling code
    assert {"gvae", "critic", "optimizer", "critic_optimizer", "trainer", "rng_state", "config", "checkpoint_meta"} <= set(ckpt)
    rng = ckpt["rng_state"]
    assert {"python", "numpy", "torch", "engine", "data"} <= set(rng) and "latent_generator" in rng["engine"]
    assert len(rng["data"]) >= 1  # the RandFlipd's generator
    config = ckpt["config"]
    assert config["user"] == {"test": "tiny_run"} and config["trainer"]["seed"] == 0
    assert config["network"]["latent_size"] == 4 and config["trainer"]["loss_function"]["kl_warmup_iterations"] == 2
    assert ckpt["checkpoint_meta"]["kind"] == "final" and ckpt["checkpoint_meta"]["iteration"] == 2
    model = load_gvae(tmp_path / "model.pt")
    assert_same_state(model.state_dict(), run.gvae.state_dict())


def test_cli_train_resume_and_overwrite(tmp_path):
    """`monai-gvae train`: --resume true continues the run in output_dir, --overwrite replaces it."""
    from monai_gvae.cli import main

    out = tmp_path / "run"
    common = ["train", "--no-progress", "--output_dir", str(out), "--train#trainer#epoch_length", "1",
              "--base_channels", "4", "--max_channels", "8", "--latent_size", "8",
              "--train#checkpoint_saver#save_interval", "1"]
    assert main([*common, "--max_epochs", "1"]) == 0
    assert main([*common, "--max_epochs", "1"]) == 1  # refuses the folder of an earlier run
    assert main([*common, "--max_epochs", "2", "--resume", "true"]) == 0
    ckpt = torch.load(out / "model.pt", weights_only=True)
    assert ckpt["trainer"]["iteration"] == 2 and (out / "checkpoint_epoch=2.pt").is_file()
    assert main([*common, "--max_epochs", "1", "--overwrite"]) == 0
    assert torch.load(out / "model.pt", weights_only=True)["trainer"]["iteration"] == 1
    assert not (out / "checkpoint_epoch=2.pt").exists()  # no checkpoint of the replaced run left to mix in


def test_trainer_state_is_the_trainers_entry(tmp_path):
    """Format 2: what the trainer owns (its random generators, gradient scalers, KL weight) is inside its own entry,
    from GVAETrainer.state_dict(); the handler adds nothing beside it."""
    run = tiny_run(str(tmp_path), max_epochs=1)
    run.trainer.run()
    ckpt = torch.load(tmp_path / "model.pt", weights_only=True)
    assert ckpt["checkpoint_meta"]["format"] == CHECKPOINT_FORMAT == 2
    trainer = ckpt["trainer"]
    assert trainer["iteration"] == 2 and set(trainer["grad_scalers"]) == {"scaler_g", "scaler_d"}
    assert torch.equal(trainer["random_generators"]["latent_generator"], ckpt["rng_state"]["engine"]["latent_generator"])
    assert trainer["loss_schedule"]["kl_weight"] == pytest.approx(1e-3)  # warm-up over 2 iterations: complete
    assert not {"generator_ema", "grad_scalers"} & set(ckpt)


def _as_format_1(path: Path) -> None:
    """Rewrite a checkpoint in the layout of format 1: the trainer's EMA and scalers beside the save_dict entries,
    its random generators only among the random states, the trainer's entry Ignite's state alone."""
    ckpt = torch.load(path, weights_only=True)
    trainer = ckpt["trainer"]
    ckpt["trainer"] = {k: trainer[k] for k in ("epoch_length", "iteration", "max_epochs")}
    if any(trainer["grad_scalers"].values()):
        ckpt["grad_scalers"] = trainer["grad_scalers"]
    if "generator_ema" in trainer:
        ckpt["generator_ema"] = trainer["generator_ema"]
    ckpt["checkpoint_meta"]["format"] = 1
    torch.save(ckpt, path)


def test_format_1_checkpoints_resume_exactly(tmp_path):
    """Checkpoints written before the trainer owned its state (format 1) are found and resume bit-exactly; a fresh
    trainer with an EMA gets the EMA generator of the file."""
    reference = tiny_run(str(tmp_path / "ref"))
    reference.trainer.run()
    first = tiny_run(str(tmp_path / "run"), max_epochs=2)
    first.trainer.run()
    os.remove(tmp_path / "run" / "model.pt")
    _as_format_1(tmp_path / "run" / "checkpoint_epoch=2.pt")
    found, rejected = find_checkpoints(tmp_path / "run")
    assert [c.iteration for c in found] == [4, 2] and not rejected
    resumed = tiny_run(str(tmp_path / "run"), resume=True)
    resumed.trainer.run()
    assert resumed.handler.resumed_from.endswith("checkpoint_epoch=2.pt")
    assert_same_state(state_of(reference), state_of(resumed))

    # an EMA generator of format 1 (beside the entries) lands in the trainer's EMA
    ckpt = torch.load(tmp_path / "run" / "checkpoint_epoch=2.pt", weights_only=True)
    ema = torch.optim.swa_utils.AveragedModel(first.gvae.generator)
    ckpt["generator_ema"] = {k: v + 1 if v.is_floating_point() else v for k, v in ema.state_dict().items()}
    upgraded = upgrade_checkpoint(ckpt)
    assert "generator_ema" not in upgraded and upgraded["checkpoint_meta"]["format"] == 2
    assert set(upgraded["trainer"]) >= {"generator_ema", "random_generators"}
    assert upgrade_checkpoint(upgraded) is upgraded


EARLIER_RUN = ["model.pt", "checkpoint_epoch=1.pt", "checkpoint_iteration=7.pt", "model_key_metric=0.31.pt",
               "key_metric=0.5.pt"]
NOT_A_RUN = [".checkpoint_epoch=1.pt.tmp8fz", "checkpoint_notes.txt", "pretrained.pt", "metrics.json"]


def test_one_definition_of_an_earlier_runs_files(tmp_path):
    for name in NOT_A_RUN:
        (tmp_path / name).write_bytes(b"x")
    assert earlier_run_files(tmp_path) == [] and check_earlier_run(tmp_path) == []
    for name in EARLIER_RUN:
        (tmp_path / name).write_bytes(b"x")
    assert earlier_run_files(tmp_path) == sorted(str(tmp_path / n) for n in EARLIER_RUN)
    assert earlier_run_files(tmp_path, file_prefix="other", final_filename=None) == [
        str(tmp_path / "key_metric=0.5.pt"), str(tmp_path / "model_key_metric=0.31.pt")]
    with pytest.raises(FileExistsError, match=r"earlier run \(.*checkpoint_epoch=1.pt.*\); resume it"):
        check_earlier_run(tmp_path)
    assert check_earlier_run(tmp_path, overwrite=True) == sorted(str(tmp_path / n) for n in EARLIER_RUN)
    assert sorted(os.listdir(tmp_path)) == sorted(NOT_A_RUN)


@pytest.mark.parametrize("name", EARLIER_RUN + NOT_A_RUN)
def test_handler_and_train_bundle_refuse_the_same_files(tmp_path, monkeypatch, name):
    """GVAECheckpointHandler at attach and train_bundle before anything runs make one check, so they refuse the
    same folders."""
    from ignite.engine import Engine
    from monai.bundle import ConfigWorkflow

    from monai_gvae.bundle.training import train_bundle
    from monai_gvae.handlers import GVAECheckpointHandler

    (tmp_path / name).write_bytes(b"x")
    refused = name in EARLIER_RUN

    class Started(Exception):
        """train_bundle got past its check."""

    monkeypatch.setattr(ConfigWorkflow, "initialize", lambda self: (_ for _ in ()).throw(Started()))
    with pytest.raises(FileExistsError if refused else Started, match=name if refused else None):
        train_bundle(REPO / "bundles" / "gvae_brain2d", overrides={"output_dir": str(tmp_path)})
    handler = GVAECheckpointHandler(tmp_path, {"net": torch.nn.Linear(1, 1)})
    if refused:
        with pytest.raises(FileExistsError, match=name):
            handler.attach(Engine(lambda engine, batch: None))
    else:
        handler.attach(Engine(lambda engine, batch: None))
