"""`MetaPriorModel` as a BoTorch model: exact mean mapping, fitting, acquisition functions,
batched posteriors, conditioning, fantasies, dtypes, ownership of the network, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch
from botorch.acquisition import (
    LogExpectedImprovement,
    UpperConfidenceBound,
    qLogNoisyExpectedImprovement,
)
from botorch.fit import fit_gpytorch_mll
from botorch.optim import optimize_acqf
from botorch.sampling import SobolQMCNormalSampler
from gpytorch.mlls import ExactMarginalLogLikelihood
from helpers import branin_prior, forrester_prior

from metaprior.errors import ConfigError, InputDataError
from metaprior.gp import MODES as ALL_MODES
from metaprior.gp import FrozenNetwork, MetaPriorModel, NetworkFeatureKernel, NetworkMean
from metaprior.gp.transforms import RESIDUAL_FLOOR, FloorStandardize
from metaprior.tasks import Branin, Forrester
from metaprior.tasks.family import make_generator

# Mode "shift" is an ensemble with a mixture posterior: tests/gp/test_shift_model.py.
MODES = tuple(m for m in ALL_MODES if m != "shift")


def data(family, n: int, seed: int = 0):
    """`n` observations of the first held-out task: `n x d` and `n x 1` float64."""
    task = family.held_out_tasks(1, seed=seed)[0]
    lo, hi = task.bounds
    X = lo + torch.rand(n, family.dim, generator=make_generator(seed, "obs", n),
                        dtype=torch.float64) * (hi - lo)
    return X, task.fn(X).unsqueeze(-1)


def fitted(X, Y, prior, mode) -> MetaPriorModel:
    model = MetaPriorModel(X, Y, prior, mode=mode)
    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    return model


@pytest.fixture(scope="module")
def branin_models():
    X, Y = data(Branin(), 6)
    return X, Y, {mode: fitted(X, Y, branin_prior(), mode) for mode in MODES}


# ---- exact mapping of the network into the GP's output space ------------------------------
@pytest.mark.parametrize("n", [1, 5])
@pytest.mark.parametrize("mode", ["mean", "both"])
def test_posterior_mean_equals_adapted_prior_without_gp_residual(n, mode):
    X, Y = data(Forrester(), n)
    model = MetaPriorModel(X, Y, forrester_prior(), mode=mode)
    if n == 1:  # one observation: the scale is the floor, a fraction of the family's spread
        floor = RESIDUAL_FLOOR * forrester_prior().y_std
        torch.testing.assert_close(model.outcome_transform.stdvs,
                                   torch.full((1, 1), floor, dtype=torch.float64))
    # an enormous noise makes the data's pull (K + s I)^-1 (y - m) vanish: posterior = prior mean
    model.likelihood.noise = 1e10
    Xt = torch.linspace(0, 1, 33, dtype=torch.float64).unsqueeze(-1)
    post = model.posterior(Xt).mean
    expected = model.adapted_prior.predict(Xt)
    torch.testing.assert_close(post, expected, rtol=1e-6, atol=1e-6 * expected.abs().max())


def test_adapted_prior_has_learned_from_the_data():
    # the mapping test above would pass trivially if the model used the unadapted prior
    X, Y = data(Forrester(), 5)
    model = MetaPriorModel(X, Y, forrester_prior(), mode="mean")
    before = (forrester_prior().predict(X) - Y).square().mean()
    after = (model.adapted_prior.predict(X) - Y).square().mean()
    assert after < before
    assert model.adapted_prior.n_adapted == 5


# ---- fitting and acquisition --------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_fit_in_every_mode_gives_float64_finite_model(branin_models, mode):
    X, Y, models = branin_models
    model = models[mode]
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if not t.is_floating_point():  # flags such as Standardize's `_is_trained`
            continue
        assert t.dtype == torch.float64, name
        # constraint bounds may be inf; weights, output map and hyperparameters may not
        assert "constraint" in name or torch.isfinite(t).all(), name
    post = model.posterior(X)
    assert post.mean.dtype == torch.float64
    # the fitted GP explains its own training data far better than the data's spread
    rmse = (post.mean - Y).square().mean().sqrt()
    assert rmse < 0.5 * Y.std()


@pytest.mark.parametrize("mode", MODES)
def test_network_weights_are_not_fitted(mode):
    X, Y = data(Branin(), 6)
    model = MetaPriorModel(X, Y, branin_prior(), mode=mode)
    before = [w.clone() for w in model.network.weights]
    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    for b, a in zip(before, model.network.weights, strict=True):
        assert torch.equal(b, a)
    names = [n for n, _ in model.named_parameters()]
    # (mode "weighted" fits `mean_module.weight`, the network's weight in the mean, not its own)
    assert not any(n.split(".")[-1].startswith("w") and n != "mean_module.weight"
                   or "network" in n for n in names), names


@pytest.mark.parametrize("mode", MODES)
def test_analytic_acquisitions_optimise(branin_models, mode):
    X, Y, models = branin_models
    model, bounds = models[mode], Branin().bounds
    for acqf in (LogExpectedImprovement(model, best_f=Y.min(), maximize=False),
                 UpperConfidenceBound(model, beta=2.0, maximize=False)):
        cand, value = optimize_acqf(acqf, bounds=bounds, q=1, num_restarts=2, raw_samples=16,
                                    options={"maxiter": 20, "seed": 0})
        assert cand.shape == (1, 2)
        assert ((cand >= bounds[0]) & (cand <= bounds[1])).all()
        assert torch.isfinite(value).all()


@pytest.mark.parametrize("q", [1, 4])
@pytest.mark.parametrize("mode", MODES)
def test_qlognei_optimises_batches(branin_models, mode, q):
    X, Y, models = branin_models
    torch.manual_seed(0)
    acqf = qLogNoisyExpectedImprovement(models[mode], X_baseline=X,
                                        sampler=SobolQMCNormalSampler(torch.Size([32]), seed=0))
    lo, hi = Branin().bounds
    cand, value = optimize_acqf(acqf, bounds=Branin().bounds, q=q, num_restarts=2,
                                raw_samples=16, options={"maxiter": 20, "seed": 0})
    assert cand.shape == (q, 2)
    assert torch.isfinite(value).all()
    assert ((cand >= lo) & (cand <= hi)).all()
    if q > 1:
        # Joint optimisation may put two of the q points on the same corner; greedy sequential
        # selection conditions on the pending points, so its points must differ.
        # (More starts than above: with 2 starts from 16 samples two greedy picks could land
        # on the same box corner, where the acquisition's gradient is cut off.)
        seq, _ = optimize_acqf(acqf, bounds=Branin().bounds, q=q, num_restarts=4,
                               raw_samples=64, sequential=True, options={"maxiter": 20, "seed": 0})
        assert torch.cdist(seq, seq)[~torch.eye(q, dtype=torch.bool)].min() > 1e-6


# ---- posterior, conditioning, fantasies ---------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_batched_posterior_matches_unbatched(branin_models, mode):
    _, _, models = branin_models
    model = models[mode]
    lo, hi = Branin().bounds
    Xb = lo + torch.rand(3, 4, 2, generator=torch.Generator().manual_seed(0),
                         dtype=torch.float64) * (hi - lo)
    post = model.posterior(Xb)
    assert post.mean.shape == (3, 4, 1)
    assert post.variance.shape == (3, 4, 1)
    assert post.mvn.covariance_matrix.shape == (3, 4, 4)
    single = model.posterior(Xb[2])
    torch.testing.assert_close(post.mean[2], single.mean)
    torch.testing.assert_close(post.variance[2], single.variance)


@pytest.mark.parametrize("mode", MODES)
def test_condition_on_observations_pins_the_new_point(branin_models, mode):
    X, Y, models = branin_models
    model = models[mode]
    x_new = torch.tensor([[2.0, 7.0]], dtype=torch.float64)
    y_new = torch.tensor([[3.0]], dtype=torch.float64)
    model.posterior(x_new)  # builds the prediction cache that conditioning extends
    before = model.posterior(x_new)
    cond = model.condition_on_observations(x_new, y_new)
    after = cond.posterior(x_new)
    assert after.variance.item() < before.variance.item()
    assert abs(after.mean.item() - 3.0) < abs(before.mean.item() - 3.0)
    assert cond.train_inputs[0].shape[-2] == X.shape[0] + 1


@pytest.mark.parametrize("mode", MODES)
def test_fantasize_gives_one_model_per_sample(branin_models, mode):
    X, _, models = branin_models
    model = models[mode]
    x_f = torch.tensor([[0.0, 5.0], [5.0, 10.0]], dtype=torch.float64)
    fm = model.fantasize(x_f, sampler=SobolQMCNormalSampler(torch.Size([4]), seed=0))
    n = X.shape[0]
    assert fm.train_inputs[0].shape == (4, n + 2, 2)
    targets = fm.train_targets  # in the standardised space, one row per fantasy
    assert targets.shape == (4, n + 2)
    torch.testing.assert_close(targets[:, :n], targets[:1, :n].expand(4, -1))
    assert targets[:, n:].std(0).min() > 1e-3  # fantasies are samples, with noise: they differ
    Xt = torch.tensor([[1.0, 1.0], [-2.0, 12.0], [8.0, 3.0]], dtype=torch.float64)
    post = fm.posterior(Xt)
    assert post.mean.shape == (4, 3, 1)
    assert torch.isfinite(post.mean).all() and (post.variance > 0).all()


# ---- ownership of the network --------------------------------------------------------------
def test_model_copies_the_network_and_leaves_the_prior_alone():
    prior = forrester_prior()
    params = [p.clone() for p in prior.params]
    X, Y = data(Forrester(), 4)
    a = MetaPriorModel(X, Y, prior, mode="both")
    b = MetaPriorModel(X, Y, prior, mode="both")
    fit_gpytorch_mll(ExactMarginalLogLikelihood(a.likelihood, a))
    a.to(torch.float32)  # what SingleTaskGP and users do in place must not reach the prior
    for p, q in zip(prior.params, params, strict=True):
        assert p.dtype == q.dtype == torch.float32
        assert torch.equal(p, q)
    assert a.network is not b.network
    ptrs_a = {t.data_ptr() for t in a.network.buffers()}
    ptrs_b = {t.data_ptr() for t in b.network.buffers()}
    ptrs_prior = {p.data_ptr() for p in prior.params}
    assert not ptrs_a & ptrs_b and not ptrs_b & ptrs_prior
    assert all(t.dtype == torch.float64 for t in b.network.buffers())


def test_mode_both_shares_one_network_between_mean_and_kernel():
    X, Y = data(Forrester(), 3)
    model = MetaPriorModel(X, Y, forrester_prior(), mode="both")
    assert isinstance(model.mean_module, NetworkMean)
    nets = [m for m in model.modules() if isinstance(m, FrozenNetwork)]
    assert len({id(n) for n in nets}) == 1


def test_mode_kernel_uses_constant_mean_and_network_features():
    X, Y = data(Forrester(), 3)
    model = MetaPriorModel(X, Y, forrester_prior(), mode="kernel")
    assert not isinstance(model.mean_module, NetworkMean)
    assert isinstance(model.network, FrozenNetwork)
    # the deep kernel may be combined with other terms (an input-space residual): find it
    assert any(isinstance(k, NetworkFeatureKernel) for k in model.covar_module.modules())


# ---- bad input -----------------------------------------------------------------------------
def test_wrong_input_dimension_is_rejected():
    X, Y = data(Branin(), 4)
    with pytest.raises(InputDataError, match="3"):
        MetaPriorModel(torch.cat([X, X[:, :1]], -1), Y, branin_prior())
    with pytest.raises(InputDataError, match=r"\(4,\)"):
        MetaPriorModel(X[:, 0], Y, forrester_prior())


def test_nan_in_y_is_rejected():
    X, Y = data(Forrester(), 4)
    Y[2, 0] = math.nan
    with pytest.raises(InputDataError, match="nan"):
        MetaPriorModel(X, Y, forrester_prior())


def test_y_of_wrong_length_is_rejected():
    X, Y = data(Forrester(), 4)
    with pytest.raises(InputDataError, match=r"\(3, 1\)"):
        MetaPriorModel(X, Y[:3], forrester_prior())


def test_bad_mode_is_rejected():
    X, Y = data(Forrester(), 4)
    with pytest.raises(ConfigError, match="'meen'"):
        MetaPriorModel(X, Y, forrester_prior(), mode="meen")


def test_prior_of_wrong_type_is_rejected():
    X, Y = data(Forrester(), 4)
    with pytest.raises(ConfigError, match="dict"):
        MetaPriorModel(X, Y, {"params": []})
    with pytest.raises(ConfigError, match="NoneType"):
        MetaPriorModel(X, Y, None)


def test_no_observations_is_rejected():
    X, Y = data(Forrester(), 0)
    with pytest.raises(InputDataError, match="at least one"):
        MetaPriorModel(X, Y, forrester_prior())


def test_floor_standardize_keeps_the_scale_above_the_floor():
    tf = FloorStandardize(floor=2.0)
    clustered = torch.tensor([[1.0], [1.1], [0.9]], dtype=torch.float64)
    Z, _ = tf(clustered)
    assert tf.stdvs.item() == 2.0  # the data's std (0.1) would collapse the residual's scale
    torch.testing.assert_close(Z, (clustered - 1.0) / 2.0)
    spread = torch.tensor([[0.0], [10.0], [20.0]], dtype=torch.float64)
    tf.train()
    tf(spread)
    torch.testing.assert_close(tf.stdvs, spread.std(dim=-2, keepdim=True))
    tf.eval()
    Y, _ = tf.untransform(torch.zeros(2, 1, dtype=torch.float64))
    torch.testing.assert_close(Y, torch.full((2, 1), 10.0, dtype=torch.float64))
