"""Regret of BO with a meta-learned prior (each mode) against uninformed BO, on held-out tasks.

Families Forrester (1-D) and Branin (2-D); priors meta-trained with `ReptileConfig()` at seed 0
on the training split; held-out tasks from the families' separate test stream. Each (task, seed)
runs `minimize` with budget 20 and the Optimizer's defaults; the metric is the normalised regret
`(best - y_min) / (y_max - y_min)`, reported as the median (and interquartile range) over tasks
and seeds at 1, 5, 10 and 20 evaluations.

Target: the prior's median regret at 5 evaluations is below uninformed BO's at 20, on both.
Methods: uninformed BO ("none"), the prior in each mode (including "shift", which infers the
task's translation of the network), and "none"/"mean" with a trust region ("+tr").

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.bo_quality           # about 10 min per family
    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.bo_quality --quick   # about 1 min

The committed results ran one process per family, side by side on our two cores:

    python -m benchmarks.bo_quality --families forrester --out benchmarks/results/bo_quality_forrester.csv
    python -m benchmarks.bo_quality --families branin --out benchmarks/results/bo_quality_branin.csv
    python -m benchmarks.bo_quality --from-csv benchmarks/results/bo_quality_*.csv

Mode "shift" was added later, into its own files (`--methods shift --out
benchmarks/results/bo_quality_<family>_shift.csv`); the glob above picks them up.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from linear_operator.utils.warnings import NumericalWarning  # noqa: E402

import metaprior as mp  # noqa: E402
from benchmarks.methods import TRUST_REGION  # noqa: E402
from metaprior.tasks import TaskFamily, family_names, get_family  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "bo_quality.csv"
# Method name -> (uses the prior, Optimizer keywords). "none" is uninformed BO; "+tr" restricts
# each BO step to the standard run's trust region around the incumbent (`Optimizer(trust_region=)`).
METHODS = {
    "none": (False, {}),
    "mean": (True, {"mode": "mean"}),
    "kernel": (True, {"mode": "kernel"}),
    "both": (True, {"mode": "both"}),
    "none+tr": (False, {"trust_region": TRUST_REGION}),
    "mean+tr": (True, {"mode": "mean", "trust_region": TRUST_REGION}),
    "shift": (True, {"mode": "shift"}),
}
# The check's protocol; any name of the package's registry can be given with --families.
FAMILIES = ("forrester", "branin")
CHECKPOINTS = (1, 5, 10, 20)


def run_one(task, prior, method: str, seed: int, budget: int, opt_kwargs: dict) -> pd.DataFrame:
    uses_prior, kw = METHODS[method]
    kw = {"prior": prior if uses_prior else None, **kw}
    res = mp.minimize(task.fn, task.bounds, budget=budget, seed=seed, **kw, **opt_kwargs)
    h = res.history
    span = task.y_max - task.y_min
    return pd.DataFrame({"iteration": h["iteration"], "y": h["y"], "best": h["best"],
                         "regret": (h["best"] - task.y_min) / span, "source": h["source"],
                         "seconds": h["seconds"]})


def run(families: list[TaskFamily], n_tasks: int, seeds, budget: int, config: mp.ReptileConfig,
        opt_kwargs: dict, methods=tuple(METHODS)) -> pd.DataFrame:
    frames = []
    for family in families:
        t0 = time.perf_counter()
        prior = mp.meta_train(family, config, seed=0, progress=False)
        print(f"{family.name}: prior meta-trained in {time.perf_counter() - t0:.0f} s", flush=True)
        t0 = time.perf_counter()
        for task in family.held_out_tasks(n_tasks, seed=0):
            for seed in seeds:
                for method in methods:
                    df = run_one(task, prior, method, seed, budget, opt_kwargs)
                    frames.append(df.assign(family=family.name, task=task.name, seed=seed,
                                            method=method))
        print(f"{family.name}: BO runs took {time.perf_counter() - t0:.0f} s", flush=True)
    cols = ["family", "task", "seed", "method", "iteration", "y", "best", "regret", "source",
            "seconds"]
    return pd.concat(frames, ignore_index=True)[cols]


def summary(df: pd.DataFrame, checkpoints) -> pd.DataFrame:
    """Median [q25, q75] regret per family and method at each checkpoint."""
    rows = []
    for (family, method), g in df.groupby(["family", "method"], sort=False):
        row = {"family": family, "method": method}
        for k in checkpoints:
            r = g[g["iteration"] == k]["regret"]
            row[f"@{k}"] = f"{r.median():.1e} [{r.quantile(0.25):.1e}, {r.quantile(0.75):.1e}]"
            row[f"median@{k}"] = r.median()
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--budget", type=int, default=20)
    ap.add_argument("--num-restarts", type=int, default=None, help="Optimizer default if unset")
    ap.add_argument("--raw-samples", type=int, default=None, help="Optimizer default if unset")
    ap.add_argument("--quick", action="store_true",
                    help="3 tasks, 1 seed, budget 10, 300-step priors, 2 restarts")
    ap.add_argument("--families", nargs="+", choices=family_names(), default=list(FAMILIES))
    ap.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--from-csv", type=Path, nargs="+", default=None,
                    help="only print the table of earlier runs' CSVs (e.g. one per family)")
    args = ap.parse_args(argv)
    config = mp.ReptileConfig()
    opt_kwargs = {k: v for k, v in (("num_restarts", args.num_restarts),
                                    ("raw_samples", args.raw_samples)) if v is not None}
    if args.quick:
        args.tasks, args.seeds, args.budget = 3, [0], 10
        config = dataclasses.replace(config, outer_steps=300)
        opt_kwargs = {"num_restarts": 2, "raw_samples": 64}
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=NumericalWarning)
    if args.from_csv is not None:
        df = pd.concat([pd.read_csv(p) for p in args.from_csv], ignore_index=True)
        args.budget = int(df["iteration"].max())
    else:
        df = run([get_family(f) for f in args.families], args.tasks, args.seeds, args.budget,
                 config, opt_kwargs, args.methods)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(args.out, index=False)
    checkpoints = [k for k in CHECKPOINTS if k <= args.budget]
    table = summary(df, checkpoints)
    n_runs = df.groupby(["family", "method"])[["task", "seed"]].nunique().iloc[0]
    print(f"\nnormalised regret, median [IQR] over {n_runs['task']} held-out tasks x "
          f"{n_runs['seed']} seeds (method none: uninformed BO)")
    with pd.option_context("display.width", 200, "display.max_colwidth", 40):
        print(table[["family", "method", *[f"@{k}" for k in checkpoints]]].to_string(index=False))
    if 5 in checkpoints:
        last = checkpoints[-1]
        for family, g in table.groupby("family", sort=False):
            if not (g["method"] == "none").any():
                continue
            base = float(g[g["method"] == "none"][f"median@{last}"].iloc[0])
            for _, r in g[g["method"] != "none"].iterrows():
                ok = "meets" if r["median@5"] < base else "MISSES"
                print(f"{family} {r['method']}: median regret @5 {r['median@5']:.2e} vs "
                      f"uninformed @{last} {base:.2e} ({ok} the target)")
    if args.from_csv is None:
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
