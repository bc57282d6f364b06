"""`ShiftEnsembleModel`: an ensemble of GPs over posterior samples of the task's shift,
mixed like BoTorch's fully Bayesian models."""

from __future__ import annotations

import pytest
import torch
from botorch.acquisition import (
    LogExpectedImprovement,
    UpperConfidenceBound,
    qLogNoisyExpectedImprovement,
)
from botorch.fit import fit_gpytorch_mll
from botorch.optim import optimize_acqf
from botorch.posteriors.fully_bayesian import GaussianMixturePosterior
from botorch.sampling import SobolQMCNormalSampler
from botorch.utils.transforms import is_ensemble
from gpytorch.mlls import ExactMarginalLogLikelihood
from helpers import branin_prior

import metaprior as mp
from metaprior.errors import ConfigError
from metaprior.gp import ShiftEnsembleModel
from metaprior.gp.shift_model import N_MEMBERS
from metaprior.shift import ShiftPrior
from metaprior.tasks import Branin
from metaprior.tasks.family import make_generator


def data(n: int, seed: int = 0):
    task = Branin().held_out_tasks(1, seed=seed)[0]
    lo, hi = task.bounds
    X = lo + torch.rand(n, 2, generator=make_generator(seed, "obs", n),
                        dtype=torch.float64) * (hi - lo)
    return X, task.fn(X).unsqueeze(-1)


@pytest.fixture(scope="module")
def model():
    X, Y = data(5)
    m = ShiftEnsembleModel(X, Y, branin_prior())
    fit_gpytorch_mll(ExactMarginalLogLikelihood(m.likelihood, m))
    return X, Y, m


def test_is_an_ensemble_with_a_mixture_posterior(model):
    X, _, m = model
    assert is_ensemble(m)
    post = m.posterior(torch.tensor([[0.0, 5.0], [3.0, 2.0], [9.0, 14.0]], dtype=torch.float64))
    assert isinstance(post, GaussianMixturePosterior)
    assert post.mean.shape == (N_MEMBERS, 3, 1)  # one Gaussian per member
    assert post.mixture_mean.shape == (3, 1)
    assert (post.mixture_variance > 0).all()
    assert m.train_inputs[0].shape == (N_MEMBERS, X.shape[0], 2)


def test_each_member_mean_is_its_shifted_network(model):
    X, Y, _ = model
    m = ShiftEnsembleModel(X, Y, branin_prior())
    m.likelihood.noise = torch.full_like(m.likelihood.noise, 1e10)  # data pull vanishes
    Xt = torch.tensor([[0.0, 5.0], [3.0, 2.0]], dtype=torch.float64)
    members = m.posterior(Xt).mean[..., 0]  # K x 2
    ens = m.network
    U = branin_prior().to_unit(Xt)
    expected = torch.stack([
        (ens.a[k] * branin_prior().net(U - ens.t[k]) + ens.b[k])
        * branin_prior().y_std + branin_prior().y_mean for k in range(ens.n_members)])
    torch.testing.assert_close(members, expected, rtol=1e-6, atol=1e-6 * expected.abs().max())


def test_fit_keeps_the_meta_learned_residual_scale(model):
    X, Y, m = model
    sp = ShiftPrior.of(branin_prior())
    expected = (sp.resid_sd * branin_prior().y_std / m.outcome_transform.stdvs.reshape(-1)) ** 2
    torch.testing.assert_close(m.covar_module.outputscale, expected)
    assert not m.covar_module.raw_outputscale.requires_grad
    rmse = (m.posterior(X).mixture_mean - Y).square().mean().sqrt()
    assert rmse < 0.1 * Y.std()


def test_analytic_and_mc_acquisitions_optimise(model):
    X, Y, m = model
    bounds = Branin().bounds
    for acqf in (LogExpectedImprovement(m, best_f=Y.min(), maximize=False),
                 UpperConfidenceBound(m, beta=2.0, maximize=False),
                 qLogNoisyExpectedImprovement(
                     m, X_baseline=X, sampler=SobolQMCNormalSampler(torch.Size([16]), seed=0))):
        for q in ((1, 4) if isinstance(acqf, qLogNoisyExpectedImprovement) else (1,)):
            cand, value = optimize_acqf(acqf, bounds=bounds, q=q, num_restarts=2,
                                        raw_samples=16, options={"maxiter": 20, "seed": 0})
            assert cand.shape == (q, 2)
            assert ((cand >= bounds[0]) & (cand <= bounds[1])).all()
            assert torch.isfinite(value).all()


def test_batched_posterior_matches_unbatched(model):
    _, _, m = model
    lo, hi = Branin().bounds
    Xb = lo + torch.rand(3, 4, 2, generator=torch.Generator().manual_seed(0),
                         dtype=torch.float64) * (hi - lo)
    post = m.posterior(Xb)
    assert post.mixture_mean.shape == (3, 4, 1)
    torch.testing.assert_close(post.mixture_mean[2], m.posterior(Xb[2]).mixture_mean)


def test_optimizer_runs_in_mode_shift_reproducibly():
    task = Branin().held_out_tasks(1, seed=3)[0]
    runs = [mp.minimize(task.fn, task.bounds, budget=4, prior=branin_prior(), mode="shift",
                        seed=0, num_restarts=2, raw_samples=32) for _ in range(2)]
    assert list(runs[0].history["source"]) == ["prior", "bo", "bo", "bo"]
    torch.testing.assert_close(runs[0].optimizer.train_X, runs[1].optimizer.train_X)


def test_prior_without_shift_prior_is_refused():
    p = branin_prior()
    bare = mp.MetaPrior(p.params, p.bounds, p.y_mean, p.y_std, p.config)
    X, Y = data(3)
    with pytest.raises(ConfigError, match="shift prior"):
        ShiftEnsembleModel(X, Y, bare)


def test_condition_on_observations_adds_the_point_to_every_member(model):
    X, _, m = model
    x_new = torch.tensor([[2.0, 7.0]], dtype=torch.float64)
    before = m.posterior(x_new)
    cond = m.condition_on_observations(x_new, torch.tensor([[3.0]], dtype=torch.float64))
    after = cond.posterior(x_new)
    assert cond.train_inputs[0].shape == (N_MEMBERS, X.shape[0] + 1, 2)
    assert after.mixture_variance.item() < before.mixture_variance.item()
    assert abs(after.mixture_mean.item() - 3.0) < abs(before.mixture_mean.item() - 3.0)


def test_fantasize_gives_one_ensemble_per_sample(model):
    X, _, m = model
    fm = m.fantasize(torch.tensor([[0.0, 5.0], [5.0, 10.0]], dtype=torch.float64),
                     sampler=SobolQMCNormalSampler(torch.Size([4]), seed=0))
    assert fm.train_inputs[0].shape == (4, N_MEMBERS, X.shape[0] + 2, 2)
    post = fm.posterior(torch.tensor([[1.0, 1.0], [8.0, 3.0]], dtype=torch.float64))
    assert post.mixture_mean.shape == (4, 2, 1)
    assert torch.isfinite(post.mixture_mean).all() and (post.mixture_variance > 0).all()


def test_fantasize_keeps_each_batch_with_its_own_points(model):
    X, _, m = model
    lo, hi = Branin().bounds
    Xf = lo + torch.rand(3, 2, 2, generator=torch.Generator().manual_seed(1),
                         dtype=torch.float64) * (hi - lo)  # 3 batches of q=2 points
    fm = m.fantasize(Xf, sampler=SobolQMCNormalSampler(torch.Size([4]), seed=0))
    inputs = fm.train_inputs[0]
    assert inputs.shape == (4, 3, N_MEMBERS, X.shape[0] + 2, 2)
    normalized = m.input_transform(Xf)
    for j in range(3):  # every sample and member of batch j sees batch j's points
        torch.testing.assert_close(inputs[:, j, :, -2:], normalized[j].expand(4, N_MEMBERS, 2, 2))


@pytest.mark.parametrize("transform", ["standardize", "none"])
def test_other_outcome_transforms_work_and_keep_the_residual_fixed(transform):
    from botorch.models.transforms.outcome import Standardize

    X, Y = data(5)
    tf = Standardize(m=1) if transform == "standardize" else None
    m = ShiftEnsembleModel(X, Y, branin_prior(), outcome_transform=tf)
    fit_gpytorch_mll(ExactMarginalLogLikelihood(m.likelihood, m))
    assert not m.covar_module.raw_outputscale.requires_grad
    scale = m.outcome_transform.stdvs.reshape(-1) if tf is not None else 1.0
    expected = (ShiftPrior.of(branin_prior()).resid_sd * branin_prior().y_std / scale) ** 2
    torch.testing.assert_close(m.covar_module.outputscale,
                               torch.as_tensor(expected, dtype=torch.float64).expand(N_MEMBERS))
    assert (m.posterior(X).mixture_mean - Y).abs().max() < 0.2 * Y.std()


def test_bad_member_count_is_refused():
    X, Y = data(3)
    with pytest.raises(ConfigError, match="n_members"):
        ShiftEnsembleModel(X, Y, branin_prior(), n_members=0)
