"""The benchmark's blocks of tasks and its warm-start ablation."""

from __future__ import annotations

import torch
from helpers import branin_prior, forrester_prior

from benchmarks.methods import TwoGPOptimizer, WarmStartBO
from benchmarks.run import ALL_FAMILIES, COLUMNS, block_tasks
from metaprior.gp.trusted import PRIOR_DESIGN_POINTS, TrustedPriorModel
from metaprior.optim import Optimizer, default_n_init
from metaprior.tasks import Branin, Forrester, mismatched_tasks
from metaprior.zero_shot import prior_minimizer


def test_the_standard_protocol_runs_the_eight_families_of_the_design():
    # Derived from the registry: a new built-in family must not join the protocol unnoticed.
    assert ALL_FAMILIES == ("logistic", "sinusoid", "forrester", "branin", "hartmann3",
                            "hartmann6", "lcbench", "rbv2_rpart")


def test_blocks_are_the_held_out_tasks_and_the_mismatched_ones():
    fam = Branin()
    assert [t.name for t in block_tasks(fam, "help", 2)] == [
        t.name for t in fam.held_out_tasks(2, seed=0)]
    assert [t.name for t in block_tasks(fam, "harm", 2)] == [
        t.name for t in mismatched_tasks(fam, 2)]


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
    assert {"block", "prior_trust", "commit", "versions", "machine"} <= set(COLUMNS)


def test_the_default_weighs_three_gps_and_the_ablation_two():
    task = Branin().held_out_tasks(1, seed=0)[0]
    prior = branin_prior()
    models = {}
    for cls in (TwoGPOptimizer, Optimizer):
        opt = cls(task.bounds, prior=prior, seed=0, num_restarts=2, raw_samples=32)
        for _ in range(PRIOR_DESIGN_POINTS + 1):
            X = opt.ask()
            opt.tell(X, task(X))
        assert isinstance(opt.model, TrustedPriorModel)
        models[cls] = opt.model
    assert set(models[Optimizer].component_weights) == {"informed", "shift", "uninformed"}
    assert models[TwoGPOptimizer].shift is None and models[TwoGPOptimizer].shift_score is None
