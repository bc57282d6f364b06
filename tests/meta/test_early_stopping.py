"""Cross-validated meta-training length on a table (`cross_validate_outer_steps`)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

import metaprior as mp
from metaprior.errors import ConfigError, TaskFamilyError
from metaprior.meta.early_stopping import N_CHECKS, zero_shot_regrets
from metaprior.tasks import Forrester, TableFamily
from tests.helpers import random_prior, small_config


def shifted_bowls(n_tasks: int = 10, rows: int = 20, seed: int = 0) -> TableFamily:
    """1-D runs of `(x - c_i)^2` with a task-specific centre, two tasks held out as tests."""
    rng = np.random.default_rng(seed)
    frames = []
    for i, centre in enumerate(rng.uniform(-1, 1, n_tasks)):
        x = rng.uniform(-2, 2, rows)
        frames.append(pd.DataFrame({"task": f"t{i}", "x": x, "y": (x - centre) ** 2}))
    return TableFamily.from_dataframe(pd.concat(frames), task="task", inputs=["x"], output="y",
                                      test_tasks=["t0", "t1"])


def test_folds_partition_the_training_tasks():
    family = shifted_bowls()
    train = set(family.split_index["train"].tolist())
    folds = family.validation_folds(3, seed=0)
    held = [set(tasks.tolist()) for _, tasks in folds]
    assert len(folds) == 3 and set().union(*held) == train
    assert sum(len(h) for h in held) == len(train)  # disjoint
    for (training, _), out in zip(folds, held, strict=True):
        assert set(training.split_index["train"].tolist()) == train - out
        assert training.tasks("test") == family.tasks("test")  # the test tasks stay out
    again = family.validation_folds(3, seed=0)
    other = family.validation_folds(3, seed=1)
    assert [t.tolist() for _, t in again] == [t.tolist() for _, t in folds]
    assert [t.tolist() for _, t in other] != [t.tolist() for _, t in folds]
    # More folds than tasks: one task per fold.
    assert len(family.validation_folds(50, seed=0)) == len(train)


def test_folds_refuse_too_few_tasks_or_folds():
    family = shifted_bowls(n_tasks=3)  # one training task left
    with pytest.raises(TaskFamilyError, match="2 training tasks"):
        family.validation_folds(2, seed=0)
    with pytest.raises(TaskFamilyError, match="folds"):
        shifted_bowls().validation_folds(1, seed=0)


def test_zero_shot_regret_reads_the_networks_pick():
    """A task whose values are the network's own predictions is solved by its argmin (0); the
    negated task is the worst pick there is (1)."""
    prior = random_prior(1)
    x = np.linspace(0, 1, 30)
    with torch.no_grad():
        f = prior.predict(torch.tensor(x).unsqueeze(-1)).reshape(-1).numpy()
    df = pd.DataFrame({"task": ["same"] * 30 + ["negated"] * 30 + ["other"] * 30,
                       "x": np.tile(x, 3), "y": np.concatenate([f, -f, x])})
    table = TableFamily.from_dataframe(df, task="task", inputs=["x"], output="y",
                                       bounds=[[0.0], [1.0]], test_tasks=["same", "negated"])
    tested = table.split_index["test"]
    regrets = dict(zip(table.tasks("test"), zero_shot_regrets(prior, table, tested).tolist(),
                       strict=True))
    assert regrets == {"negated": 1.0, "same": 0.0}


def test_cross_validation_chooses_a_step_count_and_trains():
    family = shifted_bowls()
    cfg = small_config(outer_steps=40, tasks_per_step=4, points_per_task=10, grid_points=False)
    cv = mp.cross_validate_outer_steps(family, cfg, seed=0, n_folds=2, progress=False)
    assert cv["folds"] == 2 and len(cv["curve"]) == N_CHECKS
    steps = [step for step, _ in cv["curve"]]
    assert steps[-1] == cfg.outer_steps and cv["best_fold_step"] in steps
    best = min(cv["curve"], key=lambda point: point[1])
    assert cv["best_fold_step"] == best[0]
    # 4 of the 4 tasks in a fold's run, 4 of 8 in the full table: the full run takes twice the
    # steps for as many adaptations per task (but never more than asked for).
    assert cv["outer_steps"] == min(cfg.outer_steps, 2 * cv["best_fold_step"])
    assert all(0.0 <= regret <= 1.0 for _, regret in cv["curve"])
    assert mp.cross_validate_outer_steps(family, cfg, seed=0, n_folds=2, progress=False) == cv
    prior = mp.meta_train(family, dataclasses.replace(cfg, outer_steps=cv["outer_steps"]),
                          seed=0, progress=False)
    assert prior.stats["outer_steps_done"] == cv["outer_steps"]


def test_cross_validation_refuses_what_it_cannot_do():
    cfg = small_config(outer_steps=10, tasks_per_step=2)
    with pytest.raises(TaskFamilyError, match="table"):
        mp.cross_validate_outer_steps(Forrester(), cfg)
    for folds in (1, True, 2.0):
        with pytest.raises(ConfigError, match="n_folds"):
            mp.cross_validate_outer_steps(shifted_bowls(), cfg, n_folds=folds)
    with pytest.raises(TaskFamilyError, match="tasks_per_step"):
        mp.cross_validate_outer_steps(shifted_bowls(), small_config(tasks_per_step=32))
