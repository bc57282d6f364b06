"""Where the shift posterior puts each task's embedding, against the family's shift prior.

`prior_trust` multiplies the prior's GPs' weight by `family_probability`: whether the task's
embedding `(t, a, b)` lies where the family's tasks' do. This prints, for held-out tasks of
each family ("help") and tasks unlike it ("harm"), the shift posterior's particles on a few
Sobol points of the task: their median squared Mahalanobis distance under the shift prior, the
median output scale `a` and offset `b`, and the family probability they give. Sobol points,
not a BO run's, so that each task is seen the same way and in seconds.

Usage:
    python -m benchmarks.embedding_distance --families branin,forrester,hartmann3 --points 10 \\
        --cache benchmarks/results/v3/cache
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import pandas as pd
import torch

from benchmarks.context import build_context, load_context
from benchmarks.run import block_tasks
from metaprior.family_membership import embedding_distance2, family_probability
from metaprior.gp.trusted import PRIOR_PROBABILITY
from metaprior.shift import infer_shift
from metaprior.space import box_from_unit

# The protocol's task counts: 8 held-out tasks, and 9 unlike the family (3 of each kind).
BLOCK_TASKS = {"help": 8, "harm": 9}


def embeddings(ctx, n_points: int, seed: int = 0) -> pd.DataFrame:
    """One row per task of both blocks: the shift posterior on `n_points` scrambled Sobol
    points of the task (`d` columns of the box), summarised."""
    prior = ctx.prior
    rows = []
    for block, n_tasks in BLOCK_TASKS.items():
        for task in block_tasks(ctx.family, block, n_tasks):
            U = torch.quasirandom.SobolEngine(prior.dim, scramble=True, seed=seed).draw(
                n_points, dtype=torch.float64)
            X = box_from_unit(U, prior.bounds)
            with torch.no_grad():
                y = task(X).reshape(-1)
            particles = infer_shift(prior, prior.to_unit(X), prior.normalize_y(y), seed=seed)
            rows.append({
                "block": block, "task": task.name,
                "distance2": float(embedding_distance2(prior.shift_prior, particles).median()),
                "a": float(particles.a.median()), "b": float(particles.b.median()),
                "family_probability": family_probability(prior.shift_prior, particles,
                                                         PRIOR_PROBABILITY)})
    return pd.DataFrame(rows)


def run(families: list[str], n_points: int, cache: str, yahpo_dir: str | None,
        seed: int = 0) -> pd.DataFrame:
    frames = []
    for family in families:
        build_context(family, cache, ["metaprior"], yahpo_dir, progress=False)
        df = embeddings(load_context(family, cache, yahpo_dir), n_points, seed)
        frames.append(df.assign(family=family, points=n_points))
    return pd.concat(frames, ignore_index=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.embedding_distance",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--families", default="branin,forrester,hartmann3")
    p.add_argument("--points", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default="benchmarks/results/cache")
    p.add_argument("--yahpo-data", default=None)
    p.add_argument("--out", default=None, help="CSV of the rows (default: print only)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = run(args.families.split(","), args.points, args.cache, args.yahpo_data, args.seed)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(args.out, index=False)
    print(df.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    summary = df.groupby(["family", "block"]).distance2.agg(["min", "median", "max"])
    print(summary.to_string(float_format=lambda v: f"{v:.3g}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
