"""`make demo`: meta-train a prior on Branin, then race it against uninformed BO, on tasks of
the family (help) and on tasks unlike it (harm).

Everything is built in: no data download. On 2 CPU cores it takes a few minutes: meta-training
(~30 s), the few-shot table, BO on held-out tasks, BO on tasks unlike Branin with the trust the
default model placed in the prior, a regret table and a plot in `demo_out/`.
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
METHODS = ["random", "bo", "metaprior", "metaprior-mean", "metaprior-shift"]
HARM_METHODS = ["bo", "metaprior", "metaprior-mean"]


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
    n_harm = max(1, n_tasks // 2)
    print(f"\n4. The same prior on {n_harm} tasks unlike Branin (another landscape, the negated "
          f"objective, a far translation), budget {args.budget}: {', '.join(HARM_METHODS)}",
          flush=True)
    harm = []
    for ti in range(n_harm):
        for method in HARM_METHODS:
            harm += run_one(FAMILY, ti, 0, method, args.budget, n_harm, str(cache), None,
                            block="harm")
    hd = pd.DataFrame(harm, columns=COLUMNS)
    last = hd[hd.iteration == args.budget]
    print(f"Median normalised regret after {args.budget} evaluations: "
          + ", ".join(f"{m} {last[last.method == m].regret.median():.3g}" for m in HARM_METHODS))
    trust = hd[(hd.method == "metaprior") & (hd.iteration == min(10, args.budget))]
    print(f"prior_trust of the default model after {min(10, args.budget)} evaluations: "
          + ", ".join(f"{t:.2f}" for t in trust.prior_trust) + " (it stopped following the "
          "prior; on the help tasks: "
          + ", ".join(f"{t:.2f}" for t in df[(df.method == 'metaprior')
                                            & (df.iteration == min(10, args.budget))].prior_trust)
          + ")")
    print(f"Plot: {out / 'demo_regret.png'}; runs: {out / 'demo_runs.csv'}; "
          f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
