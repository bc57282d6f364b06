"""Cross-validated scores of meta-training length on a table family (session 17's diagnostic).

The training tasks are dealt into 5 folds (as `patches/cross_validated_outer_steps.patch`
deals them); a run on 4 folds with the benchmark's config is scored every 100 outer steps on
the held-out fold's table rows by three measures of the unadapted network: the regret of the
row it predicts lowest, the mean regret of its 5 lowest rows, and the Spearman correlation of
its predictions with the rows' values. Prints each measure's best step and its curve.

usage: python cv_criteria.py FAMILY SEED YAHPO_DATA   (from the repository root)
"""

import copy
import dataclasses
import sys
import warnings

import torch

from benchmarks.context import prior_config
from metaprior.meta.reptile import ReptileTrainer
from metaprior.tasks import get_family
from metaprior.tasks.family import make_generator

warnings.simplefilter("ignore")
name, seed, yahpo = sys.argv[1], int(sys.argv[2]), sys.argv[3]
family = get_family(name, yahpo)
cfg = prior_config(family)
train = family.split_index["train"]
order = train[torch.randperm(len(train),
                             generator=make_generator(seed, "validation-folds", family.name))]
checks = list(range(100, cfg.outer_steps + 1, 100))
scores = {k: torch.zeros(len(checks), dtype=torch.float64) for k in ("zero_shot", "top5", "spearman")}
n_held = 0


def ranks(v: torch.Tensor) -> torch.Tensor:
    return v.argsort().argsort().double()


for fold in range(5):
    held = order[fold::5]
    kept = train[~torch.isin(train, held)]
    training = copy.copy(family)
    training.split_index = {"train": kept, "test": family.split_index["test"]}
    fold_cfg = dataclasses.replace(cfg, tasks_per_step=min(cfg.tasks_per_step, len(kept)))
    trainer = ReptileTrainer(training, fold_cfg, seed, None)
    for i, step in enumerate(checks):
        while trainer.step < step:
            trainer.outer_step()
        prior = trainer.snapshot()
        for task in held.tolist():
            rows = slice(int(family.offsets[task]),
                         int(family.offsets[task] + family.counts[task]))
            X, y = family.X[rows], family.Y[rows].double()
            with torch.no_grad():
                predicted = prior.net(prior.to_unit(X)).double()
            regret = (y - y.min()) / (y.max() - y.min())
            scores["zero_shot"][i] += regret[predicted.argmin()]
            scores["top5"][i] += regret[predicted.argsort()[:5]].mean()
            scores["spearman"][i] += torch.corrcoef(torch.stack([ranks(predicted),
                                                                 ranks(y)]))[0, 1]
    n_held += len(held)
for key, total in scores.items():
    curve = total / n_held
    best = int(curve.argmax()) if key == "spearman" else int(curve.argmin())
    print(name, key, "best", checks[best],
          " ".join(f"{s}:{v:.3f}" for s, v in zip(checks, curve.tolist(), strict=True)))
