"""`metaprior demo` (what `make demo` runs): meta-train a prior on Branin, then race BO with it
against uninformed BO, on held-out tasks of the family (help) and on tasks unlike it (harm).

Everything is built in (no data, no repository): meta-training (about a minute on one core),
the few-shot table, BO on held-out tasks, the same prior on tasks unlike Branin with the trust
the default model placed in it, and a plot of the regret curves when matplotlib is installed.
Run it again with the same `--out` and the prior is loaded instead of trained.

Metric: normalised regret `(best - y*) / (y_max - y*)` of the best value so far, median over
the tasks (one seed each); 0 is the task's optimum.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pandas as pd
import torch

import metaprior as mp
from metaprior.cli import Parser
from metaprior.meta.evaluate import few_shot_table
from metaprior.tasks.mismatch import KINDS, mismatched_tasks

# Method -> Optimizer keywords besides the prior; "bo" runs without one.
METHODS = {
    "bo": {},                          # uninformed BO: Sobol design, then SingleTaskGP + qLogNEI
    "metaprior": {},                   # the default: trusts the prior as far as the data agree
    "metaprior-mean": {"mode": "mean"},  # trusts the adapted network fully, always
}
CHECKPOINTS = (1, 3, 5, 10, 15, 20, 30)
TRUST_AFTER = 10  # evaluations after which the default's prior_trust is reported
FLOOR = 1e-6  # the plot's log scale draws a regret of 0 here


def parse_args(argv=None) -> argparse.Namespace:
    """The demo's options (`metaprior demo --help`), with --quick's smaller defaults."""
    # The command's parser: a bad option is one line, as for every other subcommand.
    p = Parser(prog="metaprior demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="demo_out", help="folder for the prior, runs and plot "
                   "(default demo_out)")
    p.add_argument("--tasks", type=int, help="held-out tasks (default 6); the race on tasks "
                   "unlike Branin takes half as many (at least one)")
    p.add_argument("--budget", type=int, help="evaluations per run (default 15)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="processes for the BO runs (default: 2, or 1 on one core)")
    p.add_argument("--quick", action="store_true", help="a tiny prior and race (default 2 "
                   "tasks, budget 5), to check that it runs; the numbers mean little")
    args = p.parse_args(argv)
    if args.tasks is None:
        args.tasks = 2 if args.quick else 6
    if args.budget is None:
        args.budget = 5 if args.quick else 15
    if args.tasks < 1 or args.budget < 2 or args.workers < 1:
        p.error(f"--tasks and --workers must be >= 1 and --budget >= 2 (got {args.tasks}, "
                f"{args.workers}, {args.budget})")
    return args


def train_or_load(family, path: Path, quick: bool) -> mp.MetaPrior:
    """The demo's prior: loaded from `path` when an earlier run saved it, else meta-trained
    with our defaults (a few outer steps with `quick`) and saved there."""
    if path.exists():
        print(f"   loaded from {path} (delete it to train again)")
        return mp.MetaPrior.load(path)
    cfg = mp.ReptileConfig()
    if quick:
        cfg = dataclasses.replace(cfg, outer_steps=60, tasks_per_step=8, points_per_task=20)
    # The shift prior (a few seconds) is the default model's shift ensemble, --quick too.
    prior = mp.meta_train(family, cfg, seed=0, progress=True)
    prior.save(path)
    return prior


@functools.lru_cache(maxsize=4)
def block_tasks(block: str, n_tasks: int) -> list:
    """The tasks of a race: Branin's held-out tasks ("help"), or tasks unlike Branin ("harm");
    cached, since each worker process rebuilds them (they hold closures, which do not pickle)."""
    family = mp.tasks.Branin()
    if block == "help":
        return family.held_out_tasks(n_tasks, seed=0)
    return mismatched_tasks(family, n_tasks)


@functools.lru_cache(maxsize=2)
def load_prior(path: str) -> mp.MetaPrior:
    """The prior file at `path`, read once per process."""
    return mp.MetaPrior.load(path)


def run_one(block: str, n_tasks: int, index: int, method: str, prior_path: str, budget: int,
            optimizer_kwargs: dict) -> pd.DataFrame:
    """`method` on task `index` of `block` (seed 0): one row per evaluation with its normalised
    regret and the prior_trust of the model that proposed the point."""
    torch.set_num_threads(1)  # tiny networks and GPs: more threads only add overhead
    task = block_tasks(block, n_tasks)[index]
    prior = None if method == "bo" else load_prior(prior_path)
    res = mp.minimize(task, task.bounds, budget=budget, prior=prior, seed=0,
                      **METHODS[method], **optimizer_kwargs)
    h = res.history[["iteration", "y", "best", "prior_trust"]]
    span = max(task.y_max - task.y_min, 1e-12)
    return h.assign(block=block, task=task.name, method=method,
                    regret=((h.best - task.y_min) / span).clip(lower=0.0))


def race(block: str, n_tasks: int, prior_path: Path, budget: int, optimizer_kwargs: dict,
         pool=None) -> pd.DataFrame:
    """Every method of `METHODS` on every task of `block`, in `pool`'s worker processes (or
    here without one); prints a line as each task's runs come in."""
    jobs = [(block, n_tasks, i, m, str(prior_path), budget, optimizer_kwargs)
            for i in range(n_tasks) for m in METHODS]
    results = pool.map(run_one, *zip(*jobs, strict=True)) if pool else (run_one(*j) for j in jobs)
    runs = []
    for df in results:  # in the order of `jobs`
        runs.append(df)
        if len(runs) % len(METHODS) == 0:
            print(f"   {df.task.iloc[0]}: done", flush=True)
    return pd.concat(runs, ignore_index=True)


def regret_table(df: pd.DataFrame, budget: int) -> str:
    """Median normalised regret per method (rows) at the checkpoints within `budget`."""
    at = [c for c in CHECKPOINTS if c < budget] + [budget]
    table = (df[df.iteration.isin(at)].groupby(["method", "iteration"]).regret.median()
             .unstack().reindex(index=list(METHODS)))
    table.columns = [f"@{c}" for c in table.columns]
    return table.to_string(float_format=lambda v: f"{v:.2e}")


def trust_after(df: pd.DataFrame, n: int) -> pd.Series:
    """The default model's prior_trust after `n` evaluations, per task (the trust with which it
    proposed point n + 1)."""
    rows = df[(df.method == "metaprior") & (df.iteration == n + 1)]
    return rows.set_index("task").prior_trust


def plot(df: pd.DataFrame, path: Path) -> str:
    """Median regret curves, help and harm side by side; says where it went, or why not."""
    try:
        import matplotlib
    except ImportError:
        return "plot skipped: matplotlib is not installed (pip install matplotlib)"
    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    blocks = list(dict.fromkeys(df.block))
    fig, axes = plt.subplots(1, len(blocks), figsize=(5 * len(blocks), 3.8), squeeze=False)
    for ax, block in zip(axes[0], blocks, strict=True):
        med = df[df.block == block].groupby(["method", "iteration"]).regret.median().unstack(0)
        for method in METHODS:
            ax.plot(med.index, med[method].clip(lower=FLOOR),
                    "--" if method == "bo" else "-", label=method)
        ax.set_yscale("log")
        ax.set_xlabel("evaluations")
        ax.set_ylabel("median normalised regret")
        ax.set_title({"help": "held-out Branin tasks", "harm": "tasks unlike Branin"}[block])
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"plot: {path}"


def main(argv=None) -> int:
    """Run the demo; returns 0."""
    args = parse_args(argv)
    torch.set_num_threads(1)  # tiny networks and GPs: more threads only add overhead
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    family = mp.tasks.Branin()
    # With --quick, cheaper acquisition optimisation too; otherwise the library's defaults.
    optimizer_kwargs = {"num_restarts": 2, "raw_samples": 32} if args.quick else {}
    t0 = time.perf_counter()

    print("1. Meta-training a prior on the Branin family (batched Reptile)...", flush=True)
    prior_path = out / ("branin-quick.prior" if args.quick else "branin.prior")
    prior = train_or_load(family, prior_path, args.quick)
    print(f"   {time.perf_counter() - t0:.0f} s so far\n")

    n_fs = 8 if args.quick else 32
    print(f"2. Few-shot MSE on {n_fs} held-out tasks, after K observations (units of the "
          f"family's output variance; lower is better):")
    fs = mp.evaluate_few_shot(prior, family, shots=[1, 2, 3, 5, 10], n_tasks=n_fs)
    print(few_shot_table(fs).to_string(float_format=lambda v: f"{v:.4f}"), "\n")

    # Each (task, method) run is one job: spread over worker processes, one thread each.
    pool = (ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"))
            if args.workers > 1 else None)
    try:
        print(f"3. BO on {args.tasks} held-out tasks, budget {args.budget}: "
              f"{', '.join(METHODS)}", flush=True)
        help_df = race("help", args.tasks, prior_path, args.budget, optimizer_kwargs, pool)
        print("Median normalised regret after n evaluations (0 = the task's optimum):")
        print(regret_table(help_df, args.budget), "\n")

        n_harm = max(1, args.tasks // 2)
        print(f"4. The same prior on {n_harm} tasks unlike Branin ({', '.join(KINDS)}: another "
              f"landscape, the negated objective, a far translation), budget {args.budget}",
              flush=True)
        harm_df = race("harm", n_harm, prior_path, args.budget, optimizer_kwargs, pool)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    print("Median normalised regret after n evaluations:")
    print(regret_table(harm_df, args.budget))
    n = min(TRUST_AFTER, args.budget - 1)
    harm_trust, help_trust = trust_after(harm_df, n), trust_after(help_df, n)
    print(f"prior_trust of the default model after {n} evaluations (1: the past applies, "
          f"0: it does not):\n   unlike Branin: "
          + ", ".join(f"{t:.2f} ({name.split('-')[2]})" for name, t in harm_trust.items())
          + "\n   held-out Branin: " + ", ".join(f"{t:.2f}" for t in help_trust) + "\n")

    runs = pd.concat([help_df, harm_df], ignore_index=True)
    runs.to_csv(out / "demo_runs.csv", index=False)
    print(plot(runs, out / "demo_regret.png"))
    print(f"runs: {out / 'demo_runs.csv'}; total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
