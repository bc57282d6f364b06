"""Checkpoints: a run killed mid-training resumes to exactly the uninterrupted result."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from helpers import small_config

from metaprior.errors import CheckpointError
from metaprior.meta.reptile import meta_train
from metaprior.tasks import Logistic

CFG = small_config(outer_steps=300, tasks_per_step=8, inner_steps=5, checkpoint_every=10)

CHILD = textwrap.dedent("""
    import sys
    import torch
    torch.set_num_threads(1)
    from metaprior.config import ReptileConfig
    from metaprior.meta.reptile import meta_train
    from metaprior.tasks import Logistic
    cfg = ReptileConfig.from_dict({cfg!r})
    print("started", flush=True)
    meta_train(Logistic(), cfg, seed=5, progress=False, checkpoint=sys.argv[1], shift_prior=False)
""")


def checkpoint_step(path: Path) -> int:
    return int(torch.load(path, weights_only=True)["step"])


def same_params(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.params, b.params, strict=True))


@pytest.fixture(scope="module")
def uninterrupted():
    return meta_train(Logistic(), CFG, seed=5, progress=False, shift_prior=False)


def kill_after_first_checkpoint(tmp_path: Path) -> tuple[Path, bool]:
    """Run meta_train in a child process and SIGKILL it once a checkpoint exists.

    Returns the checkpoint path and whether the child was still running when killed.
    """
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(cfg=CFG.to_dict()))
    ckpt = tmp_path / "run.ckpt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(ckpt)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        alive = proc.poll() is None
        if alive:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if not ckpt.exists():
        out, err = proc.communicate()
        raise AssertionError(f"child wrote no checkpoint (rc={proc.returncode}): {err.decode()}")
    return ckpt, alive


def test_killed_run_resumes_bit_identical(tmp_path, uninterrupted):
    ckpt, killed_mid_run = kill_after_first_checkpoint(tmp_path)
    step = checkpoint_step(ckpt)
    assert step % CFG.checkpoint_every == 0 or step == CFG.outer_steps
    if not killed_mid_run or step >= CFG.outer_steps:
        # The child finished before the kill: make a partial checkpoint deterministically.
        ckpt.unlink()
        meta_train(Logistic(), CFG, seed=5, progress=False, checkpoint=ckpt, max_steps=40,
                   shift_prior=False)
        step = checkpoint_step(ckpt)
    assert 0 < step < CFG.outer_steps
    # The killed child left no half-written checkpoint behind (atomic writes).
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []
    resumed = meta_train(Logistic(), CFG, seed=5, progress=False, checkpoint=ckpt, resume=True,
                         shift_prior=False)
    assert resumed.stats["outer_steps_done"] == CFG.outer_steps
    assert same_params(resumed, uninterrupted)
    assert checkpoint_step(ckpt) == CFG.outer_steps


def test_max_steps_then_resume_is_bit_identical(tmp_path, uninterrupted):
    ckpt = tmp_path / "part.ckpt"
    part = meta_train(Logistic(), CFG, seed=5, progress=False, checkpoint=ckpt, max_steps=137,
                      shift_prior=False)
    assert part.stats["outer_steps_done"] == 137 and checkpoint_step(ckpt) == 137
    assert not same_params(part, uninterrupted)
    more = meta_train(Logistic(), CFG, seed=5, progress=False, checkpoint=ckpt, resume=True,
                      max_steps=100, shift_prior=False)
    assert more.stats["outer_steps_done"] == 237
    done = meta_train(Logistic(), CFG, seed=5, progress=False, checkpoint=ckpt, resume=True,
                      shift_prior=False)
    assert same_params(done, uninterrupted)


def test_loss_history_survives_resume_at_any_step(tmp_path, uninterrupted):
    # 137 is not a multiple of the 10 steps averaged per history entry.
    ckpt = tmp_path / "part.ckpt"
    meta_train(Logistic(), CFG, seed=5, progress=False, checkpoint=ckpt, max_steps=137,
               shift_prior=False)
    done = meta_train(Logistic(), CFG, seed=5, progress=False, checkpoint=ckpt, resume=True,
                      shift_prior=False)
    assert done.stats["loss_history"] == uninterrupted.stats["loss_history"]


def test_resume_without_checkpoint_starts_fresh(tmp_path, uninterrupted):
    fresh = meta_train(Logistic(), CFG, seed=5, progress=False, checkpoint=tmp_path / "new.ckpt",
                       resume=True, shift_prior=False)
    assert same_params(fresh, uninterrupted)


def test_resume_refuses_another_run(tmp_path):
    ckpt = tmp_path / "a.ckpt"
    meta_train(Logistic(), CFG, seed=5, progress=False, checkpoint=ckpt, max_steps=3,
               shift_prior=False)
    with pytest.raises(CheckpointError, match="seed=5.*6"):
        meta_train(Logistic(), CFG, seed=6, progress=False, checkpoint=ckpt, resume=True,
                   shift_prior=False)
    other = dataclasses.replace(CFG, inner_lr=0.5)
    with pytest.raises(CheckpointError, match="config"):
        meta_train(Logistic(), other, seed=5, progress=False, checkpoint=ckpt, resume=True,
                   shift_prior=False)


def test_corrupt_checkpoint(tmp_path):
    ckpt = tmp_path / "bad.ckpt"
    ckpt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="bad.ckpt"):
        meta_train(Logistic(), CFG, seed=5, progress=False, checkpoint=ckpt, resume=True,
                   shift_prior=False)
