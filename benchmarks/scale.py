"""Scale benchmarks: throughput and peak memory against the meta-batch size, table size, ranks.

  (a) task-adaptations/s and peak memory against B = 100, 1,000, 10,000 on CPU, with the inner
      loop chunked (chunk_size=1000) and unchunked, next to `metaprior.meta.memory`'s estimate;
  (b) a TableFamily of 10^4, 10^5, 10^6 rows (1,000 tasks): build time, sample() time per
      meta-batch and memory, to show that sampling cost does not grow with the table;
  (c) 1 vs 2 processes (torchrun, gloo) at a large B.

Every setting runs in a fresh subprocess and reports `ru_maxrss` after the work minus
`ru_maxrss` just before it: the extra resident memory the work needed beyond everything the
process had touched already (imports, the family). torch's CPU allocator is plain malloc, so
tracemalloc would not see its tensors.

Usage (about 3 minutes on 2 cores):
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scale.py [--quick] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULT = "RESULT "


def max_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- workers (run in fresh subprocesses) -------------------------------------------------
def train_worker(spec: dict) -> dict:
    """Meta-train `steps` outer steps of B tasks on Branin; rate and extra peak memory."""
    import torch

    from metaprior.config import ReptileConfig
    from metaprior.meta import distributed as dist_utils
    from metaprior.meta.memory import bytes_per_task, unchunked_bytes
    from metaprior.meta.reptile import meta_train
    from metaprior.tasks import Branin

    torch.set_num_threads(1)
    family = Branin()
    cfg = ReptileConfig(outer_steps=spec["steps"], tasks_per_step=spec["B"],
                        chunk_size=spec["chunk"], checkpoint_every=10**6)
    # One warm-up step on a small batch, so that lazy initialisation is not billed to B.
    meta_train(family, ReptileConfig(outer_steps=1, tasks_per_step=8), seed=1, progress=False,
               shift_prior=False)
    before = max_rss_mb()
    prior = meta_train(family, cfg, seed=0, progress=False, shift_prior=False)
    rank, world = dist_utils.rank_and_size()
    shard = -(-spec["B"] // world)
    chunk = min(spec["chunk"] or shard, shard)
    estimate = (bytes_per_task(cfg, family.dim) * chunk + unchunked_bytes(cfg, family.dim)) / 2**20
    dist_utils.shutdown()
    return {"rank": rank, "world": world, "rate": prior.stats["task_adaptations_per_s"],
            "seconds": prior.stats["seconds"], "extra_mb": max_rss_mb() - before,
            "estimate_mb": estimate}


def table_worker(spec: dict) -> dict:
    """Build a TableFamily of `rows` rows over `tasks` tasks and time sample() on it."""
    import numpy as np
    import pandas as pd
    import torch

    from metaprior.tasks.family import make_generator
    from metaprior.tasks.table import TableFamily

    torch.set_num_threads(1)
    rows, tasks = spec["rows"], spec["tasks"]
    rng = np.random.default_rng(0)
    task = rng.permutation(np.arange(rows) % tasks)  # rows / tasks rows per task
    x = rng.random((rows, 2))
    shift = rng.normal(size=tasks)
    y = np.sin(6 * x[:, 0]) + (x[:, 1] - 0.5) ** 2 + shift[task] + 0.01 * rng.normal(size=rows)
    df = pd.DataFrame({"task": [f"t{i:05d}" for i in task], "x1": x[:, 0], "x2": x[:, 1],
                       "y": y})
    before = max_rss_mb()
    t0 = time.perf_counter()
    family = TableFamily.from_dataframe(df, task="task", inputs=["x1", "x2"], output="y")
    build_s = time.perf_counter() - t0
    built = max_rss_mb()
    g = make_generator(0, "bench")
    family.sample(spec["B"], spec["P"], g)  # warm-up
    t0 = time.perf_counter()
    for _ in range(spec["reps"]):
        family.sample(spec["B"], spec["P"], g)
    sample_ms = 1000 * (time.perf_counter() - t0) / spec["reps"]
    sample_extra = max_rss_mb() - built
    # Reference: the bare cost of gathering as many random rows from tables this size.
    idx = torch.randint(rows, (spec["reps"], spec["B"] * spec["P"]), generator=g)
    t0 = time.perf_counter()
    for i in range(spec["reps"]):
        family.X[idx[i]], family.Y[idx[i]]
    gather_ms = 1000 * (time.perf_counter() - t0) / spec["reps"]
    table_mb = (family.X.nbytes + family.Y.nbytes) / 2**20
    return {"build_s": build_s, "sample_ms": sample_ms, "gather_ms": gather_ms,
            "table_mb": table_mb,
            "build_extra_mb": built - before, "sample_extra_mb": sample_extra}


WORKERS = {"train": train_worker, "table": table_worker}


def run_setting(spec: dict, nproc: int = 1, timeout: float = 600) -> list[dict]:
    """Run one worker in a fresh process (or `nproc` under torchrun); its RESULT lines."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    script = [str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", *script]
    else:
        cmd = [sys.executable, *script]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    found = [json.loads(line[len(RESULT):]) for line in proc.stdout.splitlines()
             if line.startswith(RESULT)]
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"{spec} failed (rc={proc.returncode}): {proc.stderr[-2000:]}")
    return found


# ---- the three studies ------------------------------------------------------------------
def study_batch(quick: bool) -> list[dict]:
    sizes = [(100, 20), (1000, 3), (10_000, 2)] if not quick else [(100, 2), (1000, 1)]
    chunk = 1000 if not quick else 250
    rows = []
    for B, steps in sizes:
        for c in (None, chunk):
            r = run_setting({"kind": "train", "B": B, "steps": steps, "chunk": c})[0]
            rows.append({"B": B, "chunk_size": c or "none", "outer_steps": steps,
                         "adaptations_per_s": round(r["rate"], 1),
                         "peak_extra_mb": round(r["extra_mb"], 1),
                         "estimate_mb": round(r["estimate_mb"], 1)})
            print_row(rows[-1])
    return rows


def study_table(quick: bool) -> list[dict]:
    sizes = [10**4, 10**5, 10**6] if not quick else [10**4, 10**5]
    rows = []
    for n in sizes:
        r = run_setting({"kind": "table", "rows": n, "tasks": 1000, "B": 256, "P": 50,
                         "reps": 200})[0]
        rows.append({"rows": n, "tasks": 1000, "build_s": round(r["build_s"], 3),
                     "sample_ms_B256_P50": round(r["sample_ms"], 3),
                     "random_gather_ms": round(r["gather_ms"], 3),
                     "table_mb": round(r["table_mb"], 1),
                     "build_extra_mb": round(r["build_extra_mb"], 1),
                     "sample_extra_mb": round(r["sample_extra_mb"], 1)})
        print_row(rows[-1])
    return rows


def study_procs(quick: bool) -> list[dict]:
    B, steps = (4000, 2) if not quick else (500, 1)
    rows = []
    for nproc in (1, 2):
        found = run_setting({"kind": "train", "B": B, "steps": steps, "chunk": 1000}, nproc)
        rank0 = next(r for r in found if r["rank"] == 0)
        rows.append({"processes": nproc, "B": B, "outer_steps": steps,
                     "adaptations_per_s": round(rank0["rate"], 1),
                     "seconds": round(rank0["seconds"], 2),
                     "peak_extra_mb_per_rank": round(max(r["extra_mb"] for r in found), 1)})
        print_row(rows[-1])
    rows[1]["speedup"] = round(rows[1]["adaptations_per_s"] / rows[0]["adaptations_per_s"], 2)
    rows[0]["speedup"] = 1.0
    return rows


def print_row(row: dict) -> None:
    print("  " + "  ".join(f"{k}={v}" for k, v in row.items()), flush=True)


def print_table(title: str, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    widths = [max(len(k), *(len(str(r.get(k, ""))) for r in rows)) for k in keys]
    print(f"\n{title}")
    print("  ".join(k.rjust(w) for k, w in zip(keys, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r.get(k, "")).rjust(w) for k, w in zip(keys, widths, strict=True)))


def write_csv(path: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--only", choices=["batch", "table", "procs"], action="append")
    args = parser.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        print(RESULT + json.dumps(WORKERS[spec["kind"]](spec)), flush=True)
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    studies = {
        "batch": ("(a) meta-batch size B on CPU, 1 thread (Branin, default config: P=50, k=16, "
                  "hidden 32x32x32)", study_batch),
        "table": ("(b) TableFamily size (1,000 tasks; sample B=256 tasks x P=50 points)",
                  study_table),
        "procs": ("(c) 1 vs 2 processes (torchrun, gloo, chunk_size=1000)", study_procs),
    }
    t0 = time.perf_counter()
    for name in args.only or list(studies):
        title, fn = studies[name]
        print(f"\n{title}: running", flush=True)
        rows = fn(args.quick)
        print_table(title, rows)
        write_csv(out / f"scale_{name}.csv", rows)
    print(f"\nwrote {out}/scale_*.csv in {time.perf_counter() - t0:.0f} s; "
          f"host has {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
