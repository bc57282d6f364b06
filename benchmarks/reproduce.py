"""Rerun some runs of a benchmark CSV on this commit and compare them with the stored rows.

Usage:
    python -m benchmarks.reproduce benchmarks/results/harm.csv --method metaprior --runs 3

Picks `--runs` (family, task, seed) runs of `--method` spread over the families, reruns each
with `benchmarks.run.run_one` (same block, budget and cache), and prints the largest difference
of the observed values `y` from the stored ones. Identical rows mean the stored figures still
describe this commit's code for that method.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd
import torch

from benchmarks.context import load_context
from benchmarks.provenance import read_rows
from benchmarks.run import Run, block_tasks, run_one


def pick_runs(df: pd.DataFrame, method: str, n_runs: int) -> pd.DataFrame:
    """`n_runs` distinct (family, task, seed) runs of `method`, cycling over the families."""
    runs = df[df.method == method][["family", "task", "seed", "block"]].drop_duplicates()
    runs = runs.assign(k=runs.groupby("family").cumcount()).sort_values(["k", "family"])
    return runs.head(n_runs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("csv")
    p.add_argument("--method", default="metaprior")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--tasks", type=int, default=8, help="held-out tasks per family in the CSV")
    p.add_argument("--cache", default="benchmarks/results/cache")
    p.add_argument("--yahpo-data", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    df = read_rows(args.csv)
    worst = 0.0
    for run in pick_runs(df, args.method, args.runs).itertuples():
        stored = df[(df.method == args.method) & (df.task == run.task) & (df.seed == run.seed)]
        stored = stored.sort_values("iteration")
        family = load_context(run.family, args.cache, args.yahpo_data).family
        names = [t.name for t in block_tasks(family, run.block, args.tasks)]
        index = names.index(run.task)
        rows = run_one(Run(run.family, index, int(run.seed), args.method, len(stored),
                           args.tasks, run.block), args.cache, args.yahpo_data)
        gap = float((pd.Series([r["y"] for r in rows]) - stored.y.to_numpy()).abs().max())
        worst = max(worst, gap)
        print(f"{run.family} {run.task} seed {run.seed}: {len(rows)} evaluations, "
              f"largest |y - stored y| = {gap:.3g}", flush=True)
    print(f"largest difference over all runs: {worst:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
