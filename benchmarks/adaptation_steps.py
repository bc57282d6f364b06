"""How many inner steps (and what step size) should test-time adaptation take for n points?

Held-out few-shot MSE (units of the family's output variance) of a prior's meta-init adapted
on K points, for fixed step counts, other step sizes, the inner Adam option, and a rule that
grows the steps with K. Priors come from the benchmark cache (`python -m benchmarks.run`
builds them) or are meta-trained with `ReptileConfig()` when missing.

    OMP_NUM_THREADS=1 python -m benchmarks.adaptation_steps --families branin,forrester
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
from pathlib import Path

import pandas as pd
import torch

import metaprior as mp

SHOTS = (1, 2, 3, 5, 10)
# (label, config changes, steps as a function of K)
VARIANTS = [
    ("sgd 0.02, 64 steps (default)", {}, lambda k: 64),
    ("sgd 0.02, 256 steps", {}, lambda k: 256),
    ("sgd 0.005, 64 steps", {"inner_lr": 0.005}, lambda k: 64),
    ("sgd 0.05, 64 steps", {"inner_lr": 0.05}, lambda k: 64),
    ("adam 0.003, 64 steps", {"inner_optimizer": "adam", "inner_lr": 0.003}, lambda k: 64),
    ("sgd 0.02, 32 K steps (8..256)", {}, lambda k: max(8, min(256, 32 * k))),
]


def load_prior(name: str, cache: Path) -> mp.MetaPrior:
    path = cache / f"{name}.prior"
    if path.exists():
        return mp.MetaPrior.load(path)
    return mp.meta_train(mp.tasks.get_family(name), mp.ReptileConfig(), seed=0, progress=False)


def main(argv=None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--families", default="branin,forrester")
    p.add_argument("--tasks", type=int, default=64)
    p.add_argument("--cache", type=Path, default=Path("benchmarks/results/cache"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for name in args.families.split(","):
        prior, family = load_prior(name, args.cache), mp.tasks.get_family(name)
        for label, changes, steps in VARIANTS:
            variant = copy.copy(prior)
            variant.config = dataclasses.replace(prior.config, **changes)
            for k in SHOTS:
                df = mp.evaluate_few_shot(variant, family, shots=[k], n_tasks=args.tasks,
                                          steps=steps(k))
                mse = df.set_index("method").mse
                rows.append({"family": name, "variant": label, "shots": k,
                             "adapted": mse["meta_adapted"], "unadapted": mse["meta_unadapted"]})
    df = pd.DataFrame(rows)
    for name, g in df.groupby("family", sort=False):
        table = g.pivot(index="variant", columns="shots", values="adapted")
        table.loc["(unadapted meta-init)"] = g.groupby("shots").unadapted.first()
        print(f"\n{name}: held-out query MSE after adapting on K points")
        print(table.round(3).to_string())
    return df


if __name__ == "__main__":
    main()
