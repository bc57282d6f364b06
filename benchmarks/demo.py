"""`make demo`: meta-train a prior on Branin, then race it against uninformed BO.

Everything is built in: no data download. On 2 CPU cores it takes about two to three minutes:
meta-training (~30 s), the few-shot table, then BO on held-out tasks, a regret table and a plot
in `demo_out/`.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import pandas as pd
import torch

import metaprior as mp
from benchmarks.context import build_context, held_out, load_context
from benchmarks.report import markdown_report, plot_family
from benchmarks.run import COLUMNS, run_one
from metaprior.meta.evaluate import few_shot_table

FAMILY = "branin"
METHODS = ["random", "bo", "metaprior-mean", "metaprior-both", "metaprior-shift"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="metaprior demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="demo_out")
    p.add_argument("--tasks", type=int, default=6)
    p.add_argument("--budget", type=int, default=15)
    p.add_argument("--quick", action="store_true", help="a few seconds; for tests")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    cache = out / "cache"
    t0 = time.perf_counter()
    print(f"1. Meta-training a prior on the {FAMILY} family (batched Reptile)...", flush=True)
    build_context(FAMILY, cache, METHODS, quick=args.quick, progress=True)
    ctx = load_context(FAMILY, str(cache))
    print(f"   done in {time.perf_counter() - t0:.0f} s; prior saved to {cache / FAMILY}.prior\n")
    print("2. Few-shot MSE on held-out tasks (units of the family's output variance):")
    fs = mp.evaluate_few_shot(ctx.prior, ctx.family, shots=[1, 2, 3, 5, 10], n_tasks=32)
    print(few_shot_table(fs).round(4).to_string(), "\n")
    n_tasks = len(held_out(ctx.family, args.tasks))
    print(f"3. BO on {n_tasks} held-out tasks, budget {args.budget}: {', '.join(METHODS)}",
          flush=True)
    rows = []
    for ti in range(n_tasks):
        for method in METHODS:
            rows += run_one(FAMILY, ti, 0, method, args.budget, args.tasks, str(cache), None)
    df = pd.DataFrame(rows, columns=COLUMNS)
    with open(out / "demo_runs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    checkpoints = tuple(c for c in (1, 3, 5, 10, 15) if c <= args.budget)
    print(markdown_report(df, checkpoints))
    plot_family(df, FAMILY, out / "demo_regret.png")
    med = df.groupby(["method", "iteration"]).regret.median()
    at5 = {m: med[m][min(5, args.budget)] for m in METHODS}
    print("Median normalised regret after 5 evaluations: "
          + ", ".join(f"{m} {v:.3g}" for m, v in at5.items()))
    print(f"Plot: {out / 'demo_regret.png'}; runs: {out / 'demo_runs.csv'}; "
          f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
