"""Which of the default model's GPs holds the weight after a few evaluations, task by task.

`prior_trust` is the summed weight of the prior's two GPs times the probability that the
task's embedding is the family's (`family_probability`). This prints each GP's weight
(`TrustedPriorModel.component_weights`) in a BO run of the default on tasks of both blocks, so
that a prior trusted as a moved family member (the shift ensemble) can be told apart from one
trusted as an adapted network (the informed GP). The weights are those of the model that
proposed the last evaluation (fitted on `budget - 1` points), as the `prior_trust` column of
the benchmark's rows records them.

Usage:
    python -m benchmarks.component_weights --families branin,hartmann3 --harm-tasks 3 \\
        --help-tasks 2 --budget 10 --cache benchmarks/results/v3/cache
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import pandas as pd
import torch

from benchmarks.context import build_context, load_context
from benchmarks.methods import make_method
from benchmarks.run import block_tasks

# The protocol's held-out tasks per family: the help tasks are the first of these.
PROTOCOL_HELP_TASKS = 8


def weights_after(ctx, task, budget: int, seed: int = 0) -> dict[str, float]:
    """Each GP's weight, the family probability and `prior_trust` after a run of the default
    (`metaprior`) of `budget` evaluations on `task`."""
    opt = make_method("metaprior", ctx, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(budget):
            X = opt.ask()
            opt.tell(X, task(X).reshape(-1))
    return {**opt.model.component_weights, "family_probability": opt.model.family_probability,
            "prior_trust": opt.prior_trust}


def run(families: list[str], harm_tasks: int, help_tasks: int, budget: int, cache: str,
        yahpo_dir: str | None, seed: int = 0) -> pd.DataFrame:
    rows = []
    for family in families:
        build_context(family, cache, ["metaprior"], yahpo_dir, progress=False)
        ctx = load_context(family, cache, yahpo_dir)
        tasks = [("harm", t) for t in block_tasks(ctx.family, "harm", harm_tasks)]
        tasks += [("help", t) for t in
                  block_tasks(ctx.family, "help", PROTOCOL_HELP_TASKS)[:help_tasks]]
        for block, task in tasks:
            rows.append({"family": family, "block": block, "task": task.name, "seed": seed,
                         "budget": budget, **weights_after(ctx, task, budget, seed)})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.component_weights",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--families", default="branin,hartmann3")
    p.add_argument("--harm-tasks", type=int, default=3)
    p.add_argument("--help-tasks", type=int, default=2)
    p.add_argument("--budget", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default="benchmarks/results/cache")
    p.add_argument("--yahpo-data", default=None)
    p.add_argument("--out", default=None, help="CSV of the weights (default: print only)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    df = run(args.families.split(","), args.harm_tasks, args.help_tasks, args.budget,
             args.cache, args.yahpo_data, args.seed)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(args.out, index=False)
    print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
