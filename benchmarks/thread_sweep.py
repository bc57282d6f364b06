"""Task-adaptations per second of the compiled CPU inner loop as torch's thread count grows.

B tasks (default 4,000) of the default network (d=1, hidden 32x32x32), 50 SGD steps of 10
points out of 100, timed once per thread count after a warm-up call:

    python -m benchmarks.thread_sweep --threads 1 4 16
"""

from __future__ import annotations

import argparse
import time

import torch

from metaprior import cpu_kernel
from metaprior.adaptation import adapt_batched, n_epochs, order_keys
from metaprior.nets import init_params, stack


def sweep(n_tasks: int, threads: list[int], steps: int = 50, n_points: int = 100,
          batch_size: int = 10) -> dict[int, float]:
    """Adaptations per wall-clock second for each thread count."""
    g = torch.Generator().manual_seed(0)
    params = stack(init_params(1, (32, 32, 32), g), n_tasks)
    X = torch.rand(n_tasks, n_points, 1, generator=g)
    Y = torch.randn(n_tasks, n_points, generator=g)
    mask = torch.ones(n_tasks, n_points, dtype=torch.bool)
    keys = order_keys(n_epochs(steps, n_points, batch_size), n_tasks, n_points, g)
    rates = {}
    for n in threads:
        torch.set_num_threads(n)
        adapt_batched(params, X, Y, mask, keys, steps, batch_size, 0.02)  # warm-up
        t0 = time.perf_counter()
        adapt_batched(params, X, Y, mask, keys, steps, batch_size, 0.02)
        rates[n] = n_tasks / (time.perf_counter() - t0)
    return rates


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=4000)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args(argv)
    print(f"compiled loop: {cpu_kernel.load() is not None}")
    for n, rate in sweep(args.tasks, args.threads).items():
        print(f"B={args.tasks} threads={n}: {rate:,.0f} task-adaptations/s", flush=True)


if __name__ == "__main__":
    main()
