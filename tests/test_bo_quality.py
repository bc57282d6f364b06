"""End to end: a meta-learned prior beats uninformed BO on held-out Branin tasks.

Calibration (4 tasks x 2 seeds, budget 5, `num_restarts=2, raw_samples=32`): median normalised
regret about 0.003 with the prior (mode "mean") against 0.03-0.06 for uninformed BO, a 10-20x gap;
the test asks for 2x, and an absolute 0.02 for the prior.
"""

from __future__ import annotations

import statistics

import pytest
from helpers import branin_prior

from metaprior.optim import minimize
from metaprior.tasks import Branin

BUDGET = 5
N_TASKS = 4
SEEDS = (0, 1)
FAST = {"num_restarts": 2, "raw_samples": 32}
pytestmark = pytest.mark.quality  # every test here asserts BO's quality (see pyproject.toml)


def median_regret(prior, mode: str = "mean") -> float:
    regrets = []
    for task in Branin().held_out_tasks(N_TASKS, seed=0):
        for seed in SEEDS:
            res = minimize(task.fn, task.bounds, budget=BUDGET, prior=prior, seed=seed,
                           mode=mode, **FAST)
            regrets.append((res.fun - task.y_min) / (task.y_max - task.y_min))
    assert all(r >= -1e-9 for r in regrets), regrets  # y_min really is the minimum
    return statistics.median(regrets)


@pytest.fixture(scope="module")
def regrets():
    return {"prior": median_regret(branin_prior()), "uninformed": median_regret(None),
            "shift": median_regret(branin_prior(), mode="shift"),
            "trusted": median_regret(branin_prior(), mode="trusted")}


def test_prior_beats_uninformed_bo_at_five_evaluations(regrets):
    assert regrets["prior"] <= 0.5 * regrets["uninformed"], regrets


def test_the_trusted_default_keeps_the_head_start(regrets):
    # On tasks of the family the default trusts the prior and keeps mode "mean"'s lead.
    assert regrets["trusted"] <= 0.5 * regrets["uninformed"], regrets


def test_prior_is_near_the_optimum_at_five_evaluations(regrets):
    assert regrets["prior"] < 0.02, regrets


def test_shift_mode_beats_uninformed_bo_at_five_evaluations(regrets):
    # This small test prior (400 outer steps) gives mode "shift" about 0.012 here, 2.7x better
    # than uninformed BO (0.033); the committed check's full prior gives it 6.2e-5
    # (benchmarks/results/bo_quality_branin_shift.csv).
    # (0.75x, not the mean mode's 0.5x: with this small prior the gap is 2.7x, and the bar
    # keeps a 2x margin against float differences that could change a run's path.)
    assert regrets["shift"] <= 0.75 * regrets["uninformed"], regrets
