"""How long to meta-train on a table: the outer steps chosen by cross-validation over its tasks.

A table family has a fixed, often small set of training tasks (25 for YAHPO's lcbench), and
Reptile keeps fitting them after it has stopped learning what they share. On lcbench, priors
of 500-1000 outer steps put the default's median regret after 5 BO evaluations at 0.015-0.029
over three training seeds, against 0.025-0.064 with the default 2000
(`benchmarks/results/trust_variants/`, "training_seed_and_steps"). The right length depends on
the table, so it is measured: the training tasks are dealt into folds, a run on all but one
fold is scored on that fold every so often, and the step count with the best score over all
folds is kept. The prior is then trained on every training task for that many steps
(`meta_train` with `outer_steps` replaced), so no task is lost to validation.

The score is the zero-shot regret: for each held-out task, the normalised regret of the row
where the network predicts the lowest value among that task's rows. It is what the prior gives
BO before any observation. The few-shot error after 5 points, tried first on one held-out
split of lcbench, kept falling to 1800 steps there while BO preferred fewer; the rank
correlation of the network with the rows' values kept rising on both YAHPO tables.
"""

from __future__ import annotations

import dataclasses

import torch
from tqdm.auto import tqdm

from metaprior.config import ReptileConfig
from metaprior.errors import ConfigError, TaskFamilyError
from metaprior.prior import MetaPrior
from metaprior.tasks.table import TableFamily

N_FOLDS = 5
N_CHECKS = 20  # candidate stopping points, evenly spaced over the run


def zero_shot_regrets(prior: MetaPrior, family: TableFamily, tasks: torch.Tensor) -> torch.Tensor:
    """`t`: for each of the `t` tasks (indices into `family`'s table), the regret of the row
    where `prior`'s network is lowest, over the range of the task's rows (0 where they are
    equal)."""
    regrets = []
    for task in tasks.tolist():
        rows = slice(int(family.offsets[task]), int(family.offsets[task] + family.counts[task]))
        X, y = family.X[rows], family.Y[rows].double()
        with torch.no_grad():
            pick = prior.net(prior.to_unit(X)).argmin()
        span = float(y.max() - y.min())
        regrets.append(float(y[pick] - y.min()) / span if span > 0 else 0.0)
    return torch.tensor(regrets, dtype=torch.float64)


def cross_validate_outer_steps(family: TableFamily, config: ReptileConfig | None = None,
                               seed: int = 0, n_folds: int = N_FOLDS, device=None,
                               progress: bool = True) -> dict:
    """Choose how many outer steps (at most `config.outer_steps`) to meta-train on a table.

    Each of `n_folds` folds of the training tasks is held out in turn; a run on the others
    with `config` (its meta-batch shrunk to their number where needed) is scored every
    `outer_steps / N_CHECKS` steps by its zero-shot regrets on the held-out tasks. Costs
    `n_folds` training runs.

    Args:
        family: a table of at least 2 training tasks.
        config: the training config (default `ReptileConfig()`).
        seed: seeds the folds and the runs.
        n_folds: folds (at most one per task).

    Returns:
        A dict with `outer_steps` (the step count with the lowest mean zero-shot regret over
        every held-out task, scaled so that each task of the full table is adapted to as often
        as in the folds' runs), `folds`, `best_fold_step` and `curve` (`[step, mean regret]`
        pairs). Train with `dataclasses.replace(config, outer_steps=result["outer_steps"])`.

    Raises:
        TaskFamilyError: `family` is not a table, or has fewer than 2 training tasks.
        ConfigError: `n_folds < 2`.

    Example:
        >>> cv = cross_validate_outer_steps(table, cfg, seed=0)
        >>> prior = meta_train(table, dataclasses.replace(cfg, outer_steps=cv["outer_steps"]))
    """
    from metaprior.meta.reptile import ReptileTrainer, check_family  # reptile is the trainer

    cfg = config if config is not None else ReptileConfig()
    if not isinstance(family, TableFamily):
        raise TaskFamilyError(f"cross-validation needs a table family, whose training tasks are "
                              f"fixed (got {type(family).__name__})")
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 2:
        raise ConfigError(f"n_folds must be an integer >= 2 (got {n_folds!r})")
    check_family(family, cfg)
    every = max(1, cfg.outer_steps // N_CHECKS)
    checks = sorted({*range(every, cfg.outer_steps + 1, every), cfg.outer_steps})
    folds = family.validation_folds(n_folds, seed)
    regrets, visits = [], []  # per fold: checks x its held-out tasks; adaptations per task
    with tqdm(total=cfg.outer_steps * len(folds), desc=f"cross-validate {family.name}",
              leave=False, disable=not progress, mininterval=2.0) as bar:
        for training, held in folds:
            fold_cfg = dataclasses.replace(cfg, tasks_per_step=min(cfg.tasks_per_step,
                                                                    training.n_train_tasks()))
            visits.append(fold_cfg.tasks_per_step / training.n_train_tasks())
            trainer = ReptileTrainer(training, fold_cfg, seed, device)
            fold_regrets = []
            for step in checks:
                while trainer.step < step:
                    trainer.outer_step()
                    bar.update(1)
                fold_regrets.append(zero_shot_regrets(trainer.snapshot(), family, held))
            regrets.append(torch.stack(fold_regrets))
    curve = torch.cat(regrets, dim=-1).mean(-1)
    best = int(curve.argmin())
    # Overfitting goes with how often each task has been adapted to; the full table spreads
    # the same steps over more tasks, so it gets the steps that give its tasks as many visits.
    full_visits = cfg.tasks_per_step / family.n_train_tasks()
    steps = round(checks[best] * (sum(visits) / len(visits)) / full_visits)
    return {"outer_steps": max(1, min(cfg.outer_steps, steps)), "folds": len(folds),
            "best_fold_step": checks[best],
            "curve": [[step, round(float(r), 6)] for step, r in zip(checks, curve, strict=True)]}
