"""The harm block's tasks and the warm-start ablation of the benchmark."""

from __future__ import annotations

import pytest
import torch
from gp_helpers import forrester_prior

from benchmarks.harm import KINDS, harm_tasks, random_landscape
from benchmarks.methods import WarmStartBO
from benchmarks.run import COLUMNS, block_tasks
from metaprior.errors import TaskFamilyError
from metaprior.optim import default_n_init
from metaprior.tasks import Branin, Forrester
from metaprior.zero_shot import prior_minimizer


def test_harm_tasks_cycle_kinds_and_are_reproducible():
    fam = Branin()
    tasks = harm_tasks(fam, 4)
    assert [t.name.split("-")[2] for t in tasks] == [*KINDS, KINDS[0]]
    again = harm_tasks(fam, 4)
    X = fam.uniform_points((16,), torch.Generator().manual_seed(0))
    for a, b in zip(tasks, again, strict=True):
        torch.testing.assert_close(a(X), b(X))
        assert a.y_min == b.y_min and a.y_min < a.y_max
        assert float(a(X).min()) >= a.y_min - 1e-9  # y* is below every point


def test_harm_tasks_are_unlike_the_family():
    fam = Branin()
    base = fam.held_out_tasks(3, seed=0)
    harm = harm_tasks(fam, 3)
    X = fam.uniform_points((256,), torch.Generator().manual_seed(1))
    torch.testing.assert_close(harm[1](X), -base[1](X))  # negated
    for i in (0, 2):  # another landscape; a far translation
        corr = torch.corrcoef(torch.stack([harm[i](X), base[i](X)]))[0, 1]
        assert abs(float(corr)) < 0.9
    assert block_tasks(fam, "help", 2)[0].name == base[0].name
    with pytest.raises(TaskFamilyError):
        harm_tasks(fam, 0)


def test_random_landscape_is_smooth_and_standardised():
    fn = random_landscape(2, torch.Generator().manual_seed(0))
    U = torch.rand(4096, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = fn(U)
    assert 0.5 < float(y.std()) < 1.5
    step = fn(U + 1e-3) - y
    assert float(step.abs().max()) < 0.2


def test_warm_start_ablation_starts_at_the_zero_shot_point_then_plain_bo():
    task = Forrester().held_out_tasks(1, seed=0)[0]
    prior = forrester_prior()
    opt = WarmStartBO(task.bounds, prior, seed=0, num_restarts=2, raw_samples=32)
    for _ in range(default_n_init(1) + 1):
        X = opt.ask()
        opt.tell(X, task(X))
    torch.testing.assert_close(opt.train_X[0], prior_minimizer(prior, task.bounds, seed=0))
    assert opt.history["source"].tolist() == ["prior", "sobol", "bo"]
    assert opt.prior is None and opt.prior_trust == 0.0
    assert {"block", "prior_trust", "commit"} <= set(COLUMNS)
