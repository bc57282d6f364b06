"""Distributed meta-training: 2 real gloo processes under torchrun reproduce the 1-process run.

Each rank adapts half of every meta-batch and the updates are summed by an all-reduce, so the
result equals the single-process run with the same B up to float32 summation order.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from metaprior.config import ReptileConfig
from metaprior.errors import ConfigError
from metaprior.meta import distributed as dist_utils
from metaprior.meta.memory import bytes_per_task, chunk_size_for_memory, unchunked_bytes
from metaprior.meta.reptile import meta_train
from metaprior.prior import MetaPrior
from metaprior.tasks import Branin

# Float32 sums of (theta - phi) over 2 x 4 tasks instead of 8, then 30 Adam steps.
ATOL = 1e-5
CFG = ReptileConfig(outer_steps=30, tasks_per_step=8, points_per_task=20, inner_steps=5,
                    inner_batch_size=10, hidden=(16, 16), checkpoint_every=10)
SEED = 3
PARTIAL_STEPS = 13  # not a multiple of checkpoint_every: the last save is the one at the end

WORKER = textwrap.dedent("""
    import os
    import shutil
    import sys
    from pathlib import Path

    import torch
    torch.set_num_threads(1)
    from metaprior.config import ReptileConfig
    from metaprior.meta import distributed as dist_utils
    from metaprior.meta.reptile import meta_train
    from metaprior.tasks import Branin

    cfg = ReptileConfig.from_dict({cfg!r})
    out = Path(sys.argv[1])
    rank = int(os.environ["RANK"])
    # Full run; each rank is given its own checkpoint path so that a write by rank 1 would
    # show up as a file.
    prior = meta_train(Branin(), cfg, seed={seed}, progress=False,
                       checkpoint=out / f"rank{{rank}}" / "full.ckpt", shift_prior=False)
    if dist_utils.is_main_process():
        prior.save(out / "dist.prior")
    # Then an interrupted run on one shared checkpoint...
    meta_train(Branin(), cfg, seed={seed}, progress=False, checkpoint=out / "shared.ckpt",
               max_steps={partial}, shift_prior=False)
    if dist_utils.is_main_process():
        shutil.copy(out / "shared.ckpt", out / "partial.ckpt")
    # ... resumed by fresh trainers. Rank 0 writes the checkpoint as its meta_train returns:
    # the barrier keeps rank 1 from reading it before it exists.
    dist_utils.barrier()
    prior = meta_train(Branin(), cfg, seed={seed}, progress=False,
                       checkpoint=out / "shared.ckpt", resume=True, shift_prior=False)
    if dist_utils.is_main_process():
        prior.save(out / "resumed.prior")
    dist_utils.barrier()
    dist_utils.shutdown()
""")


def torchrun(script: Path, out: Path) -> None:
    """Launch 2 CPU processes; `--standalone` picks a free port for the rendezvous."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    if proc.returncode != 0:
        raise AssertionError(f"torchrun failed (rc={proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def max_diff(a: MetaPrior, b: MetaPrior) -> float:
    return max(float((p - q).abs().max()) for p, q in zip(a.params, b.params, strict=True))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One torchrun launch (full run, partial run, resume) and its output folder."""
    out = tmp_path_factory.mktemp("dist")
    script = out / "worker.py"
    script.write_text(WORKER.format(cfg=CFG.to_dict(), seed=SEED, partial=PARTIAL_STEPS))
    torchrun(script, out)
    partial_step = int(torch.load(out / "partial.ckpt", weights_only=True)["step"])
    return out, partial_step


@pytest.fixture(scope="module")
def single():
    return meta_train(Branin(), CFG, seed=SEED, progress=False, shift_prior=False)


def test_two_processes_match_one_process(runs, single):
    out, _ = runs
    dist = MetaPrior.load(out / "dist.prior")
    assert dist.stats["world_size"] == 2 and single.stats["world_size"] == 1
    assert dist.stats["outer_steps_done"] == CFG.outer_steps
    diff = max_diff(dist, single)
    assert diff < ATOL, f"2-process prior differs from 1-process by {diff}"
    # Training moved the weights far more than the tolerance: the comparison has teeth.
    init = meta_train(Branin(), dataclasses.replace(CFG, outer_steps=1), seed=SEED,
                      progress=False, shift_prior=False)
    assert max_diff(init, single) > 100 * ATOL
    assert dist.stats["loss_history"] == pytest.approx(single.stats["loss_history"], abs=1e-4)


def test_only_rank_zero_writes(runs):
    out, _ = runs
    assert (out / "rank0" / "full.ckpt").exists()
    assert not (out / "rank1").exists(), list((out / "rank1").rglob("*"))
    ckpt = torch.load(out / "rank0" / "full.ckpt", weights_only=True)
    assert ckpt["step"] == CFG.outer_steps


def test_resume_under_two_processes(runs):
    out, partial_step = runs
    assert partial_step == PARTIAL_STEPS
    resumed = MetaPrior.load(out / "resumed.prior")
    full = MetaPrior.load(out / "dist.prior")
    assert resumed.stats["outer_steps_done"] == CFG.outer_steps
    # Same world size, same reduction order: the resumed run is bit-identical.
    assert max_diff(resumed, full) == 0.0


def test_chunked_inner_loop_matches_unchunked(single):
    chunked = meta_train(Branin(), dataclasses.replace(CFG, chunk_size=3), seed=SEED,
                         progress=False, shift_prior=False)
    diff = max_diff(chunked, single)
    assert diff < ATOL, f"chunk_size=3 differs from chunk_size=None by {diff}"


@pytest.mark.parametrize("n_tasks,world", [(8, 2), (7, 2), (10, 3), (3, 5), (1, 1), (0, 2)])
def test_shards_cover_every_task_once(n_tasks, world):
    seen = []
    for rank in range(world):
        s = dist_utils.shard(n_tasks, rank, world)
        seen.extend(range(n_tasks)[s])
    assert seen == list(range(n_tasks))


def test_shard_rejects_bad_rank():
    with pytest.raises(ConfigError, match="rank 2"):
        dist_utils.shard(8, 2, 2)


def test_single_process_helpers_are_no_ops():
    t = torch.ones(3)
    dist_utils.all_reduce_sum([t])
    assert torch.equal(t, torch.ones(3))
    assert dist_utils.broadcast_object({"a": 1}) == {"a": 1}
    dist_utils.check_same(5, "step")
    assert dist_utils.is_main_process()
    assert dist_utils.rank_and_size() == (0, 1)


def test_memory_budget_gives_a_bounded_chunk_size():
    cfg = dataclasses.replace(CFG, tasks_per_step=10_000)
    small = chunk_size_for_memory(cfg, dim=2, max_memory_mb=64)
    large = chunk_size_for_memory(cfg, dim=2, max_memory_mb=4096)
    assert 1 <= small < large <= cfg.tasks_per_step
    # The estimate of the chosen chunk fits the budget; one more task's worth would not matter.
    used = small * bytes_per_task(cfg, 2) + unchunked_bytes(cfg, 2)
    assert used <= 64 * 2**20
    # A rank adapts only its shard: never a chunk larger than ceil(B / world).
    assert chunk_size_for_memory(cfg, dim=2, max_memory_mb=10**6, world_size=4) == 2500
    # A wider network costs more per task, so fewer tasks fit.
    wide = dataclasses.replace(cfg, hidden=(256, 256))
    assert chunk_size_for_memory(wide, dim=2, max_memory_mb=64) < small


@pytest.mark.parametrize("budget", [0.01, 0, -5, float("nan")])
def test_memory_budget_rejects_impossible_budgets(budget):
    with pytest.raises(ConfigError, match="max_memory_mb"):
        chunk_size_for_memory(dataclasses.replace(CFG, tasks_per_step=10_000), 2, budget)
