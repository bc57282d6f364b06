"""`metaprior.acquisition`: the acquisition every GP-based method shares, and `Optimizer` on it."""

from __future__ import annotations

import pytest
import torch
from botorch.acquisition import qLogNoisyExpectedImprovement
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from gpytorch.mlls import ExactMarginalLogLikelihood

from metaprior.acquisition import (
    DEFAULT_NUM_RESTARTS,
    DEFAULT_RAW_SAMPLES,
    acqf_settings,
    noisy_expected_improvement,
    propose,
)
from metaprior.optim import Optimizer
from metaprior.tasks.family import stream_seed

UNIT = torch.tensor([[0.0], [1.0]], dtype=torch.float64)


def quadratic_gp(n: int = 8) -> tuple[SingleTaskGP, torch.Tensor]:
    """A GP fitted to `(x - 0.3)^2` at `n` evenly spaced points of [0, 1] (minimum at 0.3)."""
    X = torch.linspace(0, 1, n, dtype=torch.float64).unsqueeze(-1)
    gp = SingleTaskGP(X, (X - 0.3).pow(2))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
    return gp, X


def test_acquisition_minimises_and_prunes_the_baseline():
    gp, X = quadratic_gp()
    acqf = noisy_expected_improvement(gp, X)
    assert isinstance(acqf, qLogNoisyExpectedImprovement)
    assert acqf.objective.weights.tolist() == [-1.0]
    # Pruning keeps only baseline points that are the best in some posterior sample: the
    # observed points far from the minimum at 0.3 (x = 1, 6/7, ...) never are.
    assert acqf.X_baseline.shape[0] < X.shape[0]
    assert acqf.X_baseline.sub(0.3).abs().max() < 0.3
    # Lower predicted values score higher: the minimiser beats the maximiser of the quadratic.
    assert acqf(torch.tensor([[[0.3]]], dtype=torch.float64)) > acqf(
        torch.tensor([[[1.0]]], dtype=torch.float64))


def test_settings_and_defaults():
    s = acqf_settings(UNIT, 2, seed=5)
    assert s == dict(bounds=UNIT, q=2, num_restarts=DEFAULT_NUM_RESTARTS,
                     raw_samples=DEFAULT_RAW_SAMPLES, options={"seed": 5, "maxiter": 100})
    assert (DEFAULT_NUM_RESTARTS, DEFAULT_RAW_SAMPLES) == (8, 256)
    opt = Optimizer(UNIT)
    assert (opt.num_restarts, opt.raw_samples) == (DEFAULT_NUM_RESTARTS, DEFAULT_RAW_SAMPLES)


def test_propose_finds_the_minimum_reproducibly_and_keeps_the_global_rng():
    gp, X = quadratic_gp()
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a = propose(gp, X, UNIT, 1, seed=7, num_restarts=2, raw_samples=32)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = propose(gp, X, UNIT, 1, seed=7, num_restarts=2, raw_samples=32)
    assert torch.equal(a, b) and a.shape == (1, 1) and not a.requires_grad
    assert abs(a.item() - 0.3) < 0.1
    # A pending point at the minimum pushes the next proposal away from it.
    c = propose(gp, X, UNIT, 1, seed=7, X_pending=a, num_restarts=2, raw_samples=32)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("q", [1, 2])
def test_optimizer_bo_points_are_the_shared_acquisitions(q):
    """The Optimizer's BO step is `propose` on its model, its data and its step's seed."""
    opt = Optimizer(torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64), seed=4,
                    n_init=3, num_restarts=2, raw_samples=32)
    for _ in range(3):
        X = opt.ask()
        opt.tell(X, X.sub(0.3).pow(2).sum(-1))
    seed = stream_seed(4, "bo", 3) % 2**31  # the step's seed, before the ask adds pendings
    X = opt.ask(q)
    again = propose(opt.model, opt.train_X, opt.bounds, q, seed, num_restarts=2, raw_samples=32)
    assert torch.equal(X, again)
