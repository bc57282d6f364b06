"""Run families x methods x seeds on held-out tasks and append to a long-format CSV.

Usage:
    python -m benchmarks.run --families branin,forrester --tasks 8 --seeds 2 --budget 30 \\
        --out benchmarks/results/runs.csv --workers 2

The CSV has one row per evaluation: family, task, seed, method, iteration, y, best, regret,
seconds, block, prior_trust, and where the row came from (commit, versions, machine). A
(family, task, seed, method) run already complete in the CSV is skipped, so an interrupted run
resumes where it stopped; rows of another commit are refused unless `--allow-mixed`.
`--workers N` runs N processes, one thread each. The whole standard protocol is
`python -m benchmarks.protocol` (`make bench`).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import ExitStack
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from benchmarks.context import build_context, held_out, load_context
from benchmarks.methods import METHODS, make_method
from benchmarks.provenance import provenance, read_rows, row_codes
from metaprior.priorfile import atomic_write_bytes
from metaprior.tasks import family_names, mismatched_tasks

PROVENANCE = ["commit", "code", "versions", "machine"]
RUN_KEY = ["family", "task", "seed", "method"]  # one BO run
COLUMNS = ["family", "task", "seed", "method", "iteration", "y", "best", "regret", "seconds",
           "block", "prior_trust", *PROVENANCE]
BLOCKS = ("help", "harm")
# The standard protocol's families (../shared/DESIGN.md): the registry's box families, the
# built-ins then the YAHPO scenarios.
ALL_FAMILIES = tuple(family_names(typed=False))


class MixedCommitsError(SystemExit):
    """A results file holds rows of another commit than the one about to append to it."""


class RunsFailedError(SystemExit):
    """Some runs raised; every other run's rows were written."""


@dataclass(frozen=True)
class Run:
    """One BO run of the benchmark: `budget` evaluations of `method` on a task of `block`."""

    family: str
    task_index: int
    seed: int
    method: str
    budget: int
    n_tasks: int  # tasks of the block, so that `task_index` names the same task everywhere
    block: str = "help"


@lru_cache(maxsize=64)
def block_tasks(family, block: str, n_tasks: int) -> list:
    """The tasks of a block: the family's held-out tasks ("help") or tasks unlike it ("harm").

    Cached per process (a worker runs many tasks of one family, and a surrogate family's y*
    takes seconds to find); `load_context` returns one family object per name.
    """
    if block == "harm":
        return mismatched_tasks(family, n_tasks)
    return held_out(family, n_tasks)


def run_one(run: Run, cache_dir: str, yahpo_dir: str | None,
            origin: dict[str, str] | None = None) -> list[dict]:
    """The rows of one BO run, one per evaluation; `origin` fills the provenance columns."""
    ctx = load_context(run.family, cache_dir, yahpo_dir)
    task = block_tasks(ctx.family, run.block, run.n_tasks)[run.task_index]
    opt = make_method(run.method, ctx, run.seed)
    span = max(task.y_max - task.y_min, 1e-12)
    origin = origin or dict.fromkeys(PROVENANCE, "unknown")
    rows, best = [], float("inf")
    for it in range(1, run.budget + 1):
        t0 = time.perf_counter()
        X = opt.ask()
        seconds = time.perf_counter() - t0
        y = task(X).reshape(-1)
        opt.tell(X, y)
        best = min(best, float(y[0]))
        rows.append({"family": run.family, "task": task.name, "seed": run.seed,
                     "method": run.method, "iteration": it, "y": float(y[0]), "best": best,
                     "regret": max(best - task.y_min, 0.0) / span, "seconds": seconds,
                     "block": run.block, "prior_trust": getattr(opt, "prior_trust", float("nan")),
                     **origin})
    return rows


def _worker_init() -> None:
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


def read_results(path: Path) -> pd.DataFrame | None:
    """The rows already in a results CSV (None if there is none); refuses other columns."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    df = read_rows(path)
    if list(df.columns) != COLUMNS:
        raise SystemExit(f"metaprior bench: error: {path} has columns {list(df.columns)}, "
                         f"expected {COLUMNS}; write to a new file")
    return df if len(df) else None


def whole_lines(data: bytes) -> bytes:
    """`data` up to its last newline: without the line a killed append may have cut."""
    return data[:data.rfind(b"\n") + 1]


def repair_results(path: Path, budget: int) -> pd.DataFrame | None:
    """Drop what an interrupted append left in a results CSV, and return its rows.

    A run's rows are appended in one write once the run has ended, so a process killed while
    writing can only cut the file's last run: a cut-off last line, or fewer than `budget` rows
    of the last run. Both are removed (the file is rewritten atomically), so the run is redone
    whole instead of being counted twice. Earlier runs are never touched.
    """
    if not path.exists() or path.stat().st_size == 0:
        return None
    data = path.read_bytes()
    lines = whole_lines(data).splitlines(keepends=True)
    if len(lines) > 1:
        df = read_rows(io.BytesIO(b"".join(lines)))
        if list(df.columns) == COLUMNS:
            last = df[RUN_KEY].iloc[-1]
            same = (df[RUN_KEY] == last).all(axis=1).to_numpy()
            # rows of the last run at the end of the file (the first False, from the end)
            n_last = len(same) if same.all() else int(np.argmin(same[::-1]))
            if n_last < budget:
                lines = lines[:len(lines) - n_last]
    repaired = b"".join(lines)
    if repaired != data:
        atomic_write_bytes(path, repaired)
    return read_results(path)


def check_one_commit(df: pd.DataFrame | None, path: Path, origin: dict[str, str],
                     allow_mixed: bool) -> None:
    """Refuse to append rows of `origin` (`provenance()`) to a file holding rows of other code
    (the `code` column: commits that differ only in the README and the results share a file)."""
    if df is None or allow_mixed:
        return
    this = row_codes(pd.DataFrame([origin]))[0]
    others = sorted(set(df.loc[row_codes(df) != this, "commit"].astype(str)))
    if others:
        raise MixedCommitsError(
            f"metaprior bench: error: {path} holds rows of commit(s) {others} with other code, "
            f"this is {origin['commit']}; resume on that commit (git worktree add DIR "
            f"{others[0].split('+')[0]}), write to a new file, or pass --allow-mixed")


def completed_runs(df: pd.DataFrame | None, budget: int) -> set[tuple]:
    """(family, task, seed, method) runs with all `budget` rows in `df` (task names differ
    between blocks)."""
    if df is None:
        return set()
    counts = df.groupby(["family", "task", "seed", "method"]).iteration.max()
    return {k for k, v in counts.items() if v >= budget}


def plan_runs(families: list[str], methods: list[str], n_tasks: int, seeds: int, budget: int,
              block: str, cache: str, yahpo_dir: str | None, done: set[tuple]) -> list[Run]:
    """The runs of one block not yet in `done`, family by family (contexts must be built)."""
    runs = []
    for fam in families:
        tasks = block_tasks(load_context(fam, cache, yahpo_dir).family, block, n_tasks)
        for ti, task in enumerate(tasks):
            for seed in range(seeds):
                for m in methods:
                    if (fam, task.name, seed, m) not in done:
                        runs.append(Run(fam, ti, seed, m, budget, n_tasks, block))
    return runs


def execute(runs: list[tuple[Path, Run]], cache: str, yahpo_dir: str | None, workers: int,
            origin: dict[str, str], progress: bool = True) -> None:
    """Run each `(path, run)` in order and append its rows to `path` as soon as it ends."""
    paths = sorted({path for path, _ in runs})
    bar = tqdm(total=len(runs), desc="bench runs", disable=not progress)
    with ExitStack() as stack:
        writers = {}
        for path in paths:
            header = not path.exists() or path.stat().st_size == 0
            f = stack.enter_context(open(path, "a", newline=""))
            writers[path] = (f, csv.DictWriter(f, fieldnames=COLUMNS))
            if header:
                writers[path][1].writeheader()

        def record(path: Path, rows: list[dict]) -> None:
            f, writer = writers[path]
            writer.writerows(rows)
            f.flush()
            os.fsync(f.fileno())  # a finished run survives a crash of the machine
            bar.update(1)

        failed = []
        if workers <= 1:
            for path, run in runs:
                try:
                    record(path, run_one(run, cache, yahpo_dir, origin))
                except Exception as e:  # noqa: BLE001  (reported below; the others go on)
                    failed.append((run, e))
        else:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn"),
                                     initializer=_worker_init) as pool:
                futures = {pool.submit(run_one, run, cache, yahpo_dir, origin): (path, run)
                           for path, run in runs}
                for fut in as_completed(futures):
                    path, run = futures[fut]
                    try:
                        rows = fut.result()
                    except Exception as e:  # noqa: BLE001  (one failed run must not cost the rest)
                        failed.append((run, e))
                        continue
                    record(path, rows)
    bar.close()
    if failed:
        lines = "\n".join(f"  {r}: {type(e).__name__}: {e}" for r, e in failed)
        raise RunsFailedError(f"metaprior bench: error: {len(failed)} of {len(runs)} runs "
                              f"failed (the others are written; rerun to retry):\n{lines}")


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
    p.add_argument("--allow-mixed", action="store_true",
                   help="append to a file that holds rows of another commit")
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
    origin = provenance()
    existing = repair_results(out, args.budget)
    check_one_commit(existing, out, origin, args.allow_mixed)
    done = completed_runs(existing, args.budget)
    for fam in families:
        build_context(fam, args.cache, methods, args.yahpo_data, args.quick,
                      progress=not args.no_progress)
    runs = plan_runs(families, methods, args.tasks, args.seeds, args.budget, args.block,
                     args.cache, args.yahpo_data, done)
    execute([(out, r) for r in runs], args.cache, args.yahpo_data, args.workers, origin,
            progress=not args.no_progress)
    print(f"{len(runs)} runs written to {out} ({len(done)} were already there)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
