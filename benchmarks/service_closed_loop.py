"""The service's closed loop: studies without a prior, a prior trained from them through the API,
new studies that start from it.

On a built-in family (Branin by default) through a real server (`metaprior serve` in a child
process, with its training worker):

1. `--first` studies with no prior, `--first-evals` evaluations each, on tasks of the family;
   each is marked finished.
2. `client.train_prior(family)` with the config's defaults (`ReptileConfig()`, or `--steps`
   outer steps): the job trains on the finished studies (the meta-batch shrunk to their number)
   and its prior becomes the family's current version.
3. `--new` new studies on other tasks of the family, never seen by training, start from it.

Regret is normalised, `(best - y*) / (y_max - y*)` with the task's y* and y_max. The figure of
merit is the median regret at 5 evaluations of the new studies against the first ones'; the
issue asks for at most half.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.service_closed_loop
    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.service_closed_loop --store postgresql://... --threads 2

It prints a table and writes a CSV (one row per study and evaluation) to `--out`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pandas as pd  # noqa: E402
import torch  # noqa: E402

import metaprior as mp  # noqa: E402
from benchmarks.machine import cpu_description  # noqa: E402
from metaprior.service import Client  # noqa: E402
from metaprior.service.launch import ServerProcess  # noqa: E402

# The registry's box families (`family_space` reads the bounds).
FAMILIES = tuple(mp.tasks.family_names(typed=False))
CHECKPOINTS = (1, 3, 5, 10)


def family_space(fam) -> mp.SearchSpace:
    lo, hi = fam.bounds.tolist()
    return mp.SearchSpace([mp.Float(f"x{j + 1}", lo[j], hi[j]) for j in range(fam.dim)])


def run_study(client: Client, family: str, name: str, task, evals: int, seed: int,
              options: dict, phase: str, finish: bool) -> list[dict]:
    study = client.create_study(family, name=name, seed=seed, options=options)
    cols = study.space.names
    rows, best = [], float("inf")
    span = max(task.y_max - task.y_min, 1e-12)
    for i in range(evals):
        trials = study.ask()
        X = torch.tensor(trials[cols].to_numpy(), dtype=torch.float64)
        y = task(X).tolist()
        study.tell(trials, y)
        best = min(best, *y)
        rows.append({"phase": phase, "study": name, "task": task.name, "seed": seed,
                     "prior_version": study.prior_version, "iteration": i + 1, "y": y[0],
                     "best": best, "regret": (best - task.y_min) / span})
    if finish:
        study.finish()
    return rows


def run_many(jobs: list[tuple], threads: int) -> list[dict]:
    """`run_study(*args)` for each job, on `threads` threads."""
    out: list[dict] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    queue = list(jobs)

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                args = queue.pop(0)
            try:
                rows = run_study(*args)
            except BaseException as e:  # noqa: BLE001 - re-raised below
                errors.append(e)
                return
            with lock:
                out.extend(rows)

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]
    return out


def regret_at(df: pd.DataFrame, phase: str, k: int) -> list[float]:
    sub = df[(df["phase"] == phase) & (df["iteration"] == k)]
    return sub["regret"].tolist()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--family", choices=FAMILIES, default="branin")
    p.add_argument("--store", help="store URL (default: a temporary SQLite file)")
    p.add_argument("--first", type=int, default=16, help="studies without a prior")
    p.add_argument("--first-evals", type=int, default=20)
    p.add_argument("--new", type=int, default=8, help="studies with the trained prior")
    p.add_argument("--new-evals", type=int, default=10)
    p.add_argument("--steps", type=int, help="outer steps of training (default: the config's)")
    p.add_argument("--threads", type=int, default=1, help="studies run at once (use 1 on SQLite, "
                   "whose write lock serialises asks anyway)")
    p.add_argument("--num-restarts", type=int, default=8)
    p.add_argument("--raw-samples", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/service_closed_loop.csv")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    fam = mp.tasks.get_family(args.family)
    options = {"num_restarts": args.num_restarts, "raw_samples": args.raw_samples}
    work = Path(tempfile.mkdtemp(prefix="metaprior-loop-"))
    store = args.store or f"sqlite:///{work / 'store.db'}"
    tasks = fam.held_out_tasks(args.first + args.new, seed=args.seed)
    first_tasks, new_tasks = tasks[:args.first], tasks[args.first:]
    tag = f"{args.family}-loop-{time.time_ns()}"
    with ServerProcess(store, workdir=work) as server:
        client = Client(server.url, token=server.token, timeout=600)
        client.create_family(tag, family_space(fam))
        t0 = time.perf_counter()
        rows = run_many([(client, tag, f"{tag}-first-{i}", t, args.first_evals, args.seed + i,
                          options, "first", True) for i, t in enumerate(first_tasks)],
                        args.threads)
        t_first = time.perf_counter() - t0
        cfg = mp.ReptileConfig() if args.steps is None else mp.ReptileConfig(outer_steps=args.steps)
        t0 = time.perf_counter()
        job = client.train_prior(tag, config=cfg, seed=args.seed).wait(timeout=3600)
        t_train = time.perf_counter() - t0
        rows += run_many([(client, tag, f"{tag}-new-{i}", t, args.new_evals, args.seed + 100 + i,
                           options, "new", False) for i, t in enumerate(new_tasks)], args.threads)
    df = pd.DataFrame(rows)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    print(f"closed loop on {args.family}: {args.first} studies without a prior x "
          f"{args.first_evals} evaluations, prior trained through the API (job {job.id}, "
          f"version {job.prior_version}, {t_train:.0f} s: {job.message}), {args.new} new studies "
          f"on other tasks; store {store.split('://')[0]}; commit {commit}; {cpu_description()}")
    print(f"  first studies took {t_first:.0f} s")
    print(f"  {'evaluations':>11}  {'first: median regret':>21}  {'new: median regret':>19}  ratio")
    for k in CHECKPOINTS:
        if k > min(args.first_evals, args.new_evals):
            continue
        a, b = statistics.median(regret_at(df, "first", k)), statistics.median(regret_at(df, "new", k))
        print(f"  {k:>11}  {a:>21.4g}  {b:>19.4g}  {b / a if a > 0 else float('nan'):.3f}")
    a5 = statistics.median(regret_at(df, "first", 5))
    b5 = statistics.median(regret_at(df, "new", 5))
    verdict = "meets" if b5 <= a5 / 2 else "misses"
    print(f"  at 5 evaluations: new/first = {b5 / a5:.3f} ({verdict} the bar of 0.5)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.assign(family=args.family, commit=commit).to_csv(out, index=False)
    print(f"  wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
