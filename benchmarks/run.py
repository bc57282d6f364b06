"""Run families x methods x seeds on held-out tasks and append to a long-format CSV.

Usage:
    python -m benchmarks.run --families branin,forrester --tasks 8 --seeds 2 --budget 30 \\
        --out benchmarks/results/standard.csv --workers 2

The CSV has one row per evaluation: family, task, seed, method, iteration, y, best, regret,
seconds. A (family, task, seed, method) run already complete in the CSV is skipped, so an
interrupted run resumes where it stopped. `--workers N` runs N processes, one thread each.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from benchmarks.context import build_context, held_out, load_context
from benchmarks.methods import METHODS, make_method
from metaprior.tasks import family_names, mismatched_tasks

COLUMNS = ["family", "task", "seed", "method", "iteration", "y", "best", "regret", "seconds",
           "block", "prior_trust", "commit"]
BLOCKS = ("help", "harm")
# The standard protocol's families (../shared/DESIGN.md): the registry's box families, the
# built-ins then the YAHPO scenarios.
ALL_FAMILIES = tuple(family_names(typed=False))


def block_tasks(family, block: str, n_tasks: int) -> list:
    """The tasks of a block: the family's held-out tasks ("help") or tasks unlike it ("harm")."""
    if block == "harm":
        return mismatched_tasks(family, n_tasks)
    return held_out(family, n_tasks)


def git_commit() -> str:
    """The repository's commit, with "+dirty" when the tree has uncommitted changes."""
    try:
        root = Path(__file__).resolve().parent.parent
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                             capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, text=True, capture_output=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_one(family: str, task_index: int, seed: int, method: str, budget: int, n_tasks: int,
            cache_dir: str, yahpo_dir: str | None, block: str = "help",
            commit: str = "unknown") -> list[dict]:
    """One BO run: `budget` evaluations of `method` on task `task_index` of `block`."""
    ctx = load_context(family, cache_dir, yahpo_dir)
    task = block_tasks(ctx.family, block, n_tasks)[task_index]
    opt = make_method(method, ctx, seed)
    span = max(task.y_max - task.y_min, 1e-12)
    rows, best = [], float("inf")
    for it in range(1, budget + 1):
        t0 = time.perf_counter()
        X = opt.ask()
        seconds = time.perf_counter() - t0
        y = task(X).reshape(-1)
        opt.tell(X, y)
        best = min(best, float(y[0]))
        rows.append({"family": family, "task": task.name, "seed": seed, "method": method,
                     "iteration": it, "y": float(y[0]), "best": best,
                     "regret": max(best - task.y_min, 0.0) / span, "seconds": seconds,
                     "block": block, "prior_trust": getattr(opt, "prior_trust", float("nan")),
                     "commit": commit})
    return rows


def _worker_init() -> None:
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


def completed_runs(path: Path, budget: int) -> set[tuple]:
    """(family, task, seed, method) runs with all `budget` rows already in the CSV (task names
    differ between blocks)."""
    if not path.exists() or path.stat().st_size == 0:
        return set()
    df = pd.read_csv(path)
    if list(df.columns) != COLUMNS:
        raise SystemExit(f"metaprior bench: error: {path} has columns {list(df.columns)}, "
                         f"expected {COLUMNS}; write to a new file")
    counts = df.groupby(["family", "task", "seed", "method"]).iteration.max()
    return {k for k, v in counts.items() if v >= budget}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="metaprior bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--families", default="branin,forrester",
                   help=f"comma-separated, or 'all' = {','.join(ALL_FAMILIES)}")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated")
    p.add_argument("--tasks", type=int, default=8, help="held-out tasks per family")
    p.add_argument("--seeds", type=int, default=2, help="seeds per task")
    p.add_argument("--budget", type=int, default=30, help="evaluations per run")
    p.add_argument("--block", choices=BLOCKS, default="help",
                   help="held-out tasks of each family (help) or tasks unlike it (harm)")
    p.add_argument("--out", default="benchmarks/results/runs.csv")
    p.add_argument("--cache", default="benchmarks/results/cache",
                   help="trained priors and baselines (reused across runs)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--yahpo-data", default=os.environ.get("METAPRIOR_YAHPO_DATA"))
    p.add_argument("--quick", action="store_true", help="tiny meta-training, for smoke tests")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    families = list(ALL_FAMILIES) if args.families == "all" else args.families.split(",")
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        print(f"metaprior bench: error: unknown methods {unknown}; known: {METHODS}",
              file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = completed_runs(out, args.budget)
    commit = git_commit()
    jobs = []
    for fam in families:
        build_context(fam, args.cache, methods, args.yahpo_data, args.quick,
                      progress=not args.no_progress)
        tasks = block_tasks(load_context(fam, args.cache, args.yahpo_data).family, args.block,
                            args.tasks)
        for ti, task in enumerate(tasks):
            for seed in range(args.seeds):
                for m in methods:
                    if (fam, task.name, seed, m) not in done:
                        jobs.append((fam, ti, seed, m, args.budget, args.tasks, args.cache,
                                     args.yahpo_data, args.block, commit))
    write_header = not out.exists() or out.stat().st_size == 0
    bar = tqdm(total=len(jobs), desc="bench runs", disable=args.no_progress)
    with open(out, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if write_header:
            writer.writeheader()

        def record(rows):
            writer.writerows(rows)
            f.flush()
            bar.update(1)

        if args.workers <= 1:
            for job in jobs:
                record(run_one(*job))
        else:
            ctx = get_context("spawn")
            with ProcessPoolExecutor(args.workers, mp_context=ctx,
                                     initializer=_worker_init) as pool:
                futures = [pool.submit(run_one, *job) for job in jobs]
                for fut in as_completed(futures):
                    record(fut.result())
    bar.close()
    print(f"{len(jobs)} runs written to {out} ({len(done)} were already there)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
