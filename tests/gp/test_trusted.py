"""`TrustedPriorModel`: trust from leave-one-out scores, fallback, posterior contract."""

from __future__ import annotations

import math

import pytest
import torch
from botorch.acquisition import (
    LogExpectedImprovement,
    UpperConfidenceBound,
    qLogNoisyExpectedImprovement,
)
from botorch.models import SingleTaskGP
from botorch.optim import optimize_acqf
from botorch.sampling import SobolQMCNormalSampler
from helpers import branin_points, branin_prior, help_task, random_prior

from metaprior.errors import ConfigError, InputDataError
from metaprior.gp.evidence import loo_predictions, prequential_predictions
from metaprior.gp.model import MetaPriorModel
from metaprior.gp.transforms import RESIDUAL_FLOOR, residual_scale
from metaprior.gp.trusted import (
    MIN_POINTS,
    OCCAM_WINDOW,
    PRIOR_DESIGN_POINTS,
    SHIFT_RESIDUAL_PRIOR,
    TrustedPriorModel,
    mixture_moments,
    shift_gp,
    trust_from_evidence,
    weights_from_evidence,
)
from metaprior.optim import Optimizer
from metaprior.tasks import Branin
from metaprior.tasks.mismatch import mismatched_tasks


def random_gp_problem(seed: int, n: int = 5):
    """A random SPD covariance `n x n`, observations `n` and per-point means `n x n`."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, n, generator=g, dtype=torch.float64)
    K = A @ A.T + 0.5 * torch.eye(n, dtype=torch.float64)
    y = torch.randn(n, generator=g, dtype=torch.float64)
    return K, y, torch.randn(n, n, generator=g, dtype=torch.float64)


def test_loo_predictions_match_refitting_without_each_point():
    K, y, means = random_gp_problem(seed=0)  # row i of means: the mean without point i
    error, variance = loo_predictions(K, y.unsqueeze(0) - means)
    for i in range(5):
        keep = [j for j in range(5) if j != i]
        r = (y - means[i])[keep]
        k = K[i, keep]
        Kinv = torch.linalg.inv(K[keep][:, keep])
        torch.testing.assert_close(error[i], y[i] - (means[i, i] + k @ Kinv @ r))
        torch.testing.assert_close(variance[i], K[i, i] - k @ Kinv @ k)


def test_trust_from_evidence():
    assert trust_from_evidence(0.0, 0.0, 0.8) == pytest.approx(0.8)
    assert trust_from_evidence(10.0, 0.0) > 0.99
    assert trust_from_evidence(-10.0, 0.0) < 0.01
    assert trust_from_evidence(-1e6, 0.0) == 0.0 and trust_from_evidence(1e6, 0.0) == 1.0
    assert trust_from_evidence(-math.inf, -math.inf, 0.3) == 0.3


@pytest.mark.quality
@pytest.mark.parametrize("scheme", ["prequential", "loo"])
def test_trust_is_high_on_a_task_of_the_family_and_low_on_another_landscape(scheme):
    prior, task = branin_prior(), help_task()
    other = mismatched_tasks(Branin(), 1)[0]  # a random landscape in Branin's box
    assert "other" in other.name
    X = branin_points(8)
    helped = TrustedPriorModel(X, task(X).unsqueeze(-1), prior, scheme=scheme)
    harmed = TrustedPriorModel(X, other(X).reshape(-1, 1), prior, scheme=scheme)
    assert helped.prior_trust > 0.8
    assert harmed.prior_trust < 0.2
    assert set(harmed.component_weights) == {"informed", "shift", "uninformed"}


@pytest.mark.quality
def test_two_gp_trust_is_low_on_the_negated_task():
    """Without the shift ensemble the negation disagrees with the prior. (With it, the shift
    posterior may explain a negated family member by an output scale near -1, far outside the
    shift prior, and then predicts it well: the negation is not always a mismatch for it.)"""
    prior, task = branin_prior(), help_task()
    X = branin_points(8)
    y = task(X).unsqueeze(-1)
    assert TrustedPriorModel(X, y, prior, with_shift=False).prior_trust > 0.8
    # From the prior probability of 0.8 to below even odds (honest scores: 0.31).
    assert TrustedPriorModel(X, -y, prior, with_shift=False).prior_trust < 0.5


@pytest.mark.quality
def test_negated_task_posterior_follows_the_data_not_the_network():
    prior, task = branin_prior(), help_task()
    X = branin_points(10)
    y = -task(X).unsqueeze(-1)
    model = TrustedPriorModel(X, y, prior)
    plain = SingleTaskGP(X, y, input_transform=model.uninformed.input_transform)
    plain.load_state_dict(model.uninformed.state_dict())
    Xtest = branin_points(64, seed=1)
    with torch.no_grad():
        mean = model.posterior(Xtest).mean[:, 0]
        network = prior.predict(Xtest)[:, 0]
        truth = -task(Xtest)
    # closer to the negated task than to the network's landscape
    assert (mean - truth).abs().median() < 0.5 * (network - truth).abs().median()


@pytest.mark.quality
def test_informed_scale_follows_the_networks_errors_not_the_datas_spread():
    prior, task = branin_prior(), help_task()
    X = branin_points(10)
    y = task(X).unsqueeze(-1)
    model = TrustedPriorModel(X, y, prior)
    scale = float(model.informed.outcome_transform.stdvs)
    held_out = model._held_out_means.diagonal()
    typical_error = float((y[2:, 0] - held_out[2:]).abs().median())
    # Sobol points span Branin's range (spread ~ 50); the network misses by a few units.
    assert scale < 0.5 * float(y.std())
    assert scale > typical_error


def test_scored_shift_scale_starts_from_its_own_prior_guess_and_follows_its_forecast_errors():
    prior, task = branin_prior(), help_task()
    X = branin_points(8)
    y = task(X).unsqueeze(-1)
    model, forecasts = shift_gp(X, y, prior, "scored", "prequential", seed=0)
    errors = (y[:, 0] - forecasts[0].diagonal())[MIN_POINTS - 1:]
    expected = min(residual_scale(errors, SHIFT_RESIDUAL_PRIOR * prior.y_std),
                   max(float(y.std()), SHIFT_RESIDUAL_PRIOR * prior.y_std))
    # One scale for every member of the ensemble (its batch of GPs).
    stdvs = model.outcome_transform.stdvs.reshape(-1)
    assert stdvs.numel() > 1
    torch.testing.assert_close(stdvs, torch.full_like(stdvs, expected))
    # Below MIN_POINTS no error is scored: the scale is the prior guess, half the informed GP's.
    few, _ = shift_gp(X[:2], y[:2], prior, "scored", "prequential", seed=0)
    assert few.outcome_transform.floor == pytest.approx(SHIFT_RESIDUAL_PRIOR * prior.y_std)
    assert SHIFT_RESIDUAL_PRIOR < RESIDUAL_FLOOR


def raw_noise_sd(gp) -> float:
    """The largest of a GP's fitted noise standard deviations, in the observations' units."""
    stdv = gp.outcome_transform.stdvs.reshape(-1)
    return float((gp.likelihood.noise.detach().reshape(-1) * stdv.square()).sqrt().max())


def test_informed_gps_interpolate_noiseless_points_and_keep_the_noise_of_replicates():
    prior, task = branin_prior(), help_task()
    X = branin_points(8)
    y = task(X).unsqueeze(-1)
    model = TrustedPriorModel(X, y, prior, with_shift=True)
    # BoTorch's noise floor (1e-4 standardised) would leave these above 1e-2 standard units.
    for gp in (model.informed, model.shift):
        assert float(gp.likelihood.noise.detach().max()) < 1e-4
    # The uninformed GP stays uninformed BO's, floor included.
    assert float(model.uninformed.likelihood.noise.detach()) >= 1e-4
    # Each point observed twice, 1 apart: no kernel interpolates both, so the noise is inferred.
    model = TrustedPriorModel(torch.cat([X, X]), torch.cat([y + 0.5, y - 0.5]), prior,
                              with_shift=True)
    for gp in (model.informed, model.shift):
        assert 0.2 < raw_noise_sd(gp) < 2.0


def test_posterior_is_the_moment_matched_mixture():
    prior, task = branin_prior(), help_task()
    X = branin_points(6)
    model = TrustedPriorModel(X, task(X).unsqueeze(-1), prior, with_shift=False)
    model.component_weights = {"informed": 0.3, "uninformed": 0.7}
    Xtest = branin_points(4, seed=2)
    with torch.no_grad():
        p1 = model.informed.posterior(Xtest)
        p0 = model.uninformed.posterior(Xtest)
        post = model.posterior(Xtest)
    m1, m0 = p1.mean[:, 0], p0.mean[:, 0]
    torch.testing.assert_close(post.mean[:, 0], 0.3 * m1 + 0.7 * m0)
    want_var = 0.3 * p1.variance[:, 0] + 0.7 * p0.variance[:, 0] + 0.21 * (m1 - m0) ** 2
    torch.testing.assert_close(post.variance[:, 0], want_var)
    model.component_weights = {"informed": 1.0, "uninformed": 0.0}
    with torch.no_grad():
        torch.testing.assert_close(model.posterior(Xtest).mean, p1.mean)


def test_every_acquisition_function_runs_and_conditioning_keeps_the_weight():
    prior, task = branin_prior(), help_task()
    X = branin_points(5)
    Y = task(X).unsqueeze(-1)
    model = TrustedPriorModel(X, Y, prior, with_shift=False)
    # Exercise the mixture, not one component.
    model.component_weights = {"informed": 0.5, "uninformed": 0.5}
    bounds = Branin().bounds
    for acqf in (LogExpectedImprovement(model, best_f=Y.max()),
                 UpperConfidenceBound(model, beta=2.0),
                 qLogNoisyExpectedImprovement(model, X_baseline=X)):
        for q in (1, 3) if isinstance(acqf, qLogNoisyExpectedImprovement) else (1,):
            cand, _ = optimize_acqf(acqf, bounds=bounds, q=q, num_restarts=2, raw_samples=16)
            assert cand.shape == (q, 2) and torch.isfinite(cand).all()
    batched = model.posterior(branin_points(6).view(2, 3, 2))
    assert batched.mean.shape == (2, 3, 1)
    cond = model.condition_on_observations(branin_points(2, seed=3), torch.zeros(2, 1,
                                                                                 dtype=X.dtype))
    assert cond.component_weights == model.component_weights
    assert cond.prior_trust == model.prior_trust
    fantasy = model.fantasize(branin_points(1, seed=4),
                              SobolQMCNormalSampler(torch.Size([4])))
    assert fantasy.posterior(branin_points(3, seed=5)).mean.shape == (4, 3, 1)


def test_one_point_keeps_the_prior_probability():
    prior, task = branin_prior(), help_task()
    X = branin_points(1)
    model = TrustedPriorModel(X, task(X).unsqueeze(-1), prior, prior_probability=0.6,
                              with_shift=False)
    assert model.prior_trust == pytest.approx(0.6)


def test_the_first_points_follow_the_shift_ensemble_alone():
    prior, task = branin_prior(), help_task()
    X = branin_points(PRIOR_DESIGN_POINTS)
    Y = task(X).unsqueeze(-1)
    design = TrustedPriorModel(X[:-1], Y[:-1], prior)  # the default: the prior has a shift prior
    assert design.component_weights == {"informed": 0.0, "shift": 1.0, "uninformed": 0.0}
    # The trust is then the probability that the task's embedding is the family's.
    assert design.prior_trust == design.family_probability > 0.9
    assert design.shift_score is None
    Xtest = branin_points(4, seed=2)
    with torch.no_grad():
        members = design.shift.posterior(Xtest)
        torch.testing.assert_close(design.posterior(Xtest).mean, members.mixture_mean)
    # Its residual is the meta-learned one during the design, the scored ensemble's after it.
    assert design.shift.covar_module.raw_outputscale.requires_grad is False
    scored = TrustedPriorModel(X, Y, prior)
    assert math.isfinite(scored.shift_score)
    assert not hasattr(scored.shift.covar_module, "raw_outputscale")
    assert sum(scored.component_weights.values()) == pytest.approx(1.0)
    assert TrustedPriorModel(X[:-1], Y[:-1], prior, with_shift=False).shift is None
    # For a batch (or with points pending) the design is skipped: the mixture at the prior
    # probabilities until the scores start.
    batch = TrustedPriorModel(X[:2], Y[:2], prior, prior_design=False)
    assert batch.component_weights == pytest.approx({"informed": 0.4, "shift": 0.4,
                                                      "uninformed": 0.2})
    assert batch.shift_score == 0.0
    assert batch.prior_trust == pytest.approx(0.8 * batch.family_probability)


def test_the_optimizer_keeps_the_design_for_one_point_at_a_time():
    prior, task = branin_prior(), help_task()
    opt = Optimizer(task.bounds, prior=prior, seed=0, num_restarts=2, raw_samples=16)
    for n in (1, 1, 2):  # the zero-shot point, one design point, then a batch of two
        X = opt.ask(n)
        opt.tell(X, task(X))
        if opt.model is not None:
            shift = opt.model.component_weights["shift"]
            assert shift == (1.0 if n == 1 else pytest.approx(0.4))
    # The design's trust is the family probability alone; the batch's model is at the prior
    # probabilities (0.8 for the prior's GPs), times the family probability.
    design, *batch = opt.history["prior_trust"].tolist()[1:]
    assert design > 0.9
    assert batch == [pytest.approx(0.8 * opt.model.family_probability)] * 2


def test_bad_input_is_refused():
    prior = branin_prior()
    X = branin_points(3)
    Y = torch.ones(3, 1, dtype=torch.float64)
    with pytest.raises(InputDataError, match="float64"):
        TrustedPriorModel(X.float(), Y.float(), prior)
    with pytest.raises(InputDataError, match="at least one"):
        TrustedPriorModel(X[:0], Y[:0], prior)
    for bad in (0.0, 1.0, 1.5, "0.8"):
        with pytest.raises(ConfigError, match="prior_probability"):
            TrustedPriorModel(X, Y, prior, prior_probability=bad)
    for bad in (1, "yes", 0.0):
        with pytest.raises(ConfigError, match="with_shift"):
            TrustedPriorModel(X, Y, prior, with_shift=bad)
    with pytest.raises(ConfigError, match="MetaPrior"):
        TrustedPriorModel(X, Y, "branin.prior")
    with pytest.raises(ConfigError, match="kfold"):
        TrustedPriorModel(X, Y, prior, scheme="kfold")
    with pytest.raises(InputDataError, match="NaN"):
        TrustedPriorModel(X, torch.tensor([[1.0], [math.nan], [2.0]], dtype=torch.float64), prior)


def test_held_out_predictions_never_saw_their_point():
    prior, task = branin_prior(), help_task()
    X = branin_points(4)
    y = task(X).unsqueeze(-1)
    loo = prior.held_out_predictions(X, y, scheme="loo", seed=0)
    assert loo.shape == (4, 4)
    # copy 0 adapted to points 1..3: the same as adapting to those points alone, up to the
    # minibatch order, so its predictions there are close to a direct adaptation's
    direct = prior.adapt(X[1:], y[1:], seed=0).predict(X)[:, 0]
    assert (loo[0] - direct).abs().max() < 0.2 * prior.y_std
    pre = prior.held_out_predictions(X, y, scheme="prequential", seed=0)
    torch.testing.assert_close(pre[0], prior.predict(X)[:, 0], rtol=1e-5, atol=1e-5)  # saw none
    torch.testing.assert_close(pre[2], prior.adapt(X[:2], y[:2], seed=0).predict(X)[:, 0],
                               atol=0.2 * prior.y_std, rtol=0)
    with pytest.raises(InputDataError):
        prior.held_out_predictions(X[:0], y[:0])
    with pytest.raises(ConfigError, match="scheme"):
        prior.held_out_predictions(X, y, scheme="kfold")


def test_prequential_predictions_match_conditioning_on_the_past():
    K, y, means = random_gp_problem(seed=1)  # row k of means: the mean before point k
    error, variance = prequential_predictions(K, y.unsqueeze(0) - means)
    for k in range(5):
        r = (y - means[k])[:k]
        kk = K[k, :k]
        Kinv = torch.linalg.inv(K[:k, :k]) if k else torch.zeros(0, 0, dtype=torch.float64)
        mu = means[k, k] + kk @ Kinv @ r
        torch.testing.assert_close(error[k], y[k] - mu)
        torch.testing.assert_close(variance[k], K[k, k] - kk @ Kinv @ kk)


@pytest.mark.quality
def test_weighted_mode_fits_a_low_weight_on_a_negated_task():
    prior, task = branin_prior(), help_task()
    X = branin_points(10)
    from botorch.fit import fit_gpytorch_mll
    from gpytorch.mlls import ExactMarginalLogLikelihood

    trusts = {}
    for sign in (1, -1):
        model = MetaPriorModel(X, sign * task(X).unsqueeze(-1), prior, mode="weighted")
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        trusts[sign] = model.prior_trust
    assert trusts[1] > 0.5 > trusts[-1]


@pytest.mark.parametrize("trust", [0.5, 1.0, 0.0])
def test_conditioning_pins_the_new_point_at_every_weight(trust):
    """`condition_on_observations` takes original units (each GP normalises them once), and
    works when a rounded weight let `posterior` skip one of the GPs."""
    prior, task = branin_prior(), help_task()
    X = branin_points(6)
    model = TrustedPriorModel(X, task(X).unsqueeze(-1), prior)
    model.component_weights = {"informed": trust, "shift": 0.0, "uninformed": 1 - trust}
    x_new = torch.tensor([[2.0, 7.0]], dtype=torch.float64)
    model.posterior(x_new)
    cond = model.condition_on_observations(x_new, torch.tensor([[30.0]], dtype=torch.float64))
    for gp in (cond.informed, cond.uninformed):
        mean = gp.posterior(x_new).mean.item()
        assert abs(mean - 30.0) < 3.0, (trust, mean)
    fantasy = model.fantasize(x_new, SobolQMCNormalSampler(torch.Size([2])))
    assert torch.isfinite(fantasy.posterior(branin_points(3, seed=5)).mean).all()


def test_bounds_of_another_dimension_are_refused():
    prior = branin_prior()
    X = branin_points(3)
    with pytest.raises(ConfigError, match="3 dimensions"):
        TrustedPriorModel(X, torch.ones(3, 1, dtype=torch.float64), prior,
                          bounds=torch.tensor([[0.0] * 3, [1.0] * 3]))
    model = TrustedPriorModel(X, torch.ones(3, 1, dtype=torch.float64) + X[:, :1], prior)
    with pytest.raises(InputDataError, match="shape"):
        model.posterior(X[0])


def test_a_fit_starts_from_the_hyperparameters_it_is_given():
    prior = branin_prior()
    X = branin_points(8)
    Y = Branin().held_out_tasks(1)[0](X).unsqueeze(-1)
    first = TrustedPriorModel(X[:7], Y[:7], prior)
    starts = first.fitted_hyperparameters()
    assert first.shift_state == "scored" and set(starts) == {"informed", "uninformed", "shift"}
    assert set(starts["informed"]) == {"likelihood.noise_covar.raw_noise",
                                       "covar_module.raw_lengthscale"}
    assert not first.warm_started
    # Fitting stops where it starts when it starts at its own optimum for the same data.
    again = TrustedPriorModel(X[:7], Y[:7], prior, fit_starts=starts)
    assert again.warm_started
    for name, fitted in again.fitted_hyperparameters().items():
        for key, value in fitted.items():
            torch.testing.assert_close(value, starts[name][key], rtol=1e-3, atol=1e-3)
    # A start moves the fit: from a lengthscale far from the optimum, fitting stops elsewhere.
    far = {**starts["uninformed"], "covar_module.raw_lengthscale":
           starts["uninformed"]["covar_module.raw_lengthscale"] + 3.0}
    moved = TrustedPriorModel(X[:7], Y[:7], prior, fit_starts={"uninformed": far})
    assert not torch.equal(moved.fitted_hyperparameters()["uninformed"]["covar_module.raw_lengthscale"],
                           first.fitted_hyperparameters()["uninformed"]["covar_module.raw_lengthscale"])
    with pytest.raises(ConfigError, match="raw_outputscale"):
        TrustedPriorModel(X, Y, prior, fit_starts={"informed": {
            **starts["informed"], "covar_module.raw_outputscale": torch.zeros(1, dtype=torch.float64)}})
    with pytest.raises(ConfigError, match="'kernel'"):
        TrustedPriorModel(X, Y, prior, fit_starts={"kernel": {}})


def test_weights_from_evidence_is_the_logistic_for_two_models():
    for informed, uninformed in ((0.0, 0.0), (3.0, -1.0), (-5.0, 2.0)):
        w, rest = weights_from_evidence([informed, uninformed], [0.8, 0.2])
        assert w == pytest.approx(trust_from_evidence(informed, uninformed, 0.8))
        assert w + rest == pytest.approx(1.0)
    assert weights_from_evidence([-math.inf] * 3, [0.4, 0.4, 0.2]) == [0.4, 0.4, 0.2]
    assert weights_from_evidence([-math.inf, 0.0, 0.0], [0.4, 0.4, 0.2])[0] == 0.0


def test_mixture_moments_of_three_models():
    g = torch.Generator().manual_seed(0)
    weights = [0.5, 0.3, 0.2]
    means = [torch.randn(2, 3, generator=g, dtype=torch.float64) for _ in weights]
    covariances = []
    for _ in weights:
        A = torch.randn(2, 3, 3, generator=g, dtype=torch.float64)
        covariances.append(A @ A.transpose(-1, -2))
    mean, covariance = mixture_moments(weights, means, covariances)
    want_mean = sum(w * m for w, m in zip(weights, means, strict=True))
    want = sum(w * (S + (m - want_mean).unsqueeze(-1) * (m - want_mean).unsqueeze(-2))
               for w, m, S in zip(weights, means, covariances, strict=True))
    torch.testing.assert_close(mean, want_mean)
    torch.testing.assert_close(covariance, want)


def test_with_shift_weighs_three_models_and_runs_every_acquisition_function():
    prior, task = branin_prior(), help_task()
    X = branin_points(6)
    Y = task(X).unsqueeze(-1)
    model = TrustedPriorModel(X, Y, prior, with_shift=True)
    weights = model.component_weights
    assert set(weights) == {"informed", "shift", "uninformed"}
    assert sum(weights.values()) == pytest.approx(1.0)
    assert 0 < model.family_probability <= 1
    assert model.prior_trust == pytest.approx((weights["informed"] + weights["shift"])
                                              * model.family_probability)
    assert math.isfinite(model.shift_score)
    model.component_weights = {"informed": 0.3, "shift": 0.5, "uninformed": 0.2}
    bounds = Branin().bounds
    for acqf in (LogExpectedImprovement(model, best_f=Y.max()),
                 qLogNoisyExpectedImprovement(model, X_baseline=X)):
        cand, _ = optimize_acqf(acqf, bounds=bounds, q=1, num_restarts=2, raw_samples=16)
        assert cand.shape == (1, 2) and torch.isfinite(cand).all()
    fantasy = model.fantasize(branin_points(1, seed=4), SobolQMCNormalSampler(torch.Size([4])))
    assert fantasy.posterior(branin_points(3, seed=5)).mean.shape == (4, 3, 1)
    assert (fantasy.shift_score, fantasy.component_weights) == (model.shift_score,
                                                                model.component_weights)
    # The ensemble alone kept: still one Gaussian per point (its members moment-matched).
    model.component_weights = {"informed": 0.0, "shift": 1.0, "uninformed": 0.0}
    with torch.no_grad():
        alone = model.posterior(branin_points(4, seed=2))
        members = model.shift.posterior(branin_points(4, seed=2))
    assert alone.mean.shape == (4, 1)
    torch.testing.assert_close(alone.mean, members.mixture_mean)


def test_with_shift_needs_a_shift_prior():
    prior = random_prior(2)
    X = torch.rand(4, 2, dtype=torch.float64)
    with pytest.raises(ConfigError, match="shift prior"):
        TrustedPriorModel(X, X.sum(-1, keepdim=True), prior, with_shift=True)


def test_a_shift_ensemble_out_of_occams_window_is_retired_for_the_rest_of_the_run():
    prior, task = branin_prior(), help_task()
    X = branin_points(PRIOR_DESIGN_POINTS + 1)
    Y = task(X).unsqueeze(-1)
    model = TrustedPriorModel(X, Y, prior)
    model.component_weights = {"informed": 0.6, "shift": 0.9 * OCCAM_WINDOW * 0.6,
                               "uninformed": 0.4 - 0.54 * OCCAM_WINDOW}
    assert model.left_occams_window
    model.component_weights = {"informed": 0.6, "shift": 1.1 * OCCAM_WINDOW * 0.6,
                               "uninformed": 0.4 - 0.66 * OCCAM_WINDOW}
    assert not model.left_occams_window
    retired = TrustedPriorModel(X, Y, prior, shift_retired=True)
    assert retired.shift is None and retired.left_occams_window
    assert retired.component_weights["shift"] == 0.0
    # Its trust still asks whether the task's embedding is the family's (from a smaller shift
    # posterior of its own), and the two GPs keep their prior probabilities (0.4 and 0.2 of the
    # three-GP model's).
    assert 0 < retired.family_probability <= 1
    informed, uninformed = retired.scores
    odds = math.exp(informed - uninformed) * 0.4 / 0.2
    assert retired.component_weights["informed"] == pytest.approx(odds / (1 + odds))
    assert retired.prior_trust == pytest.approx(odds / (1 + odds) * retired.family_probability)
    # The optimizer retires it once a step's model has left the window.
    opt = Optimizer(task.bounds, prior=prior, seed=0, num_restarts=2, raw_samples=16)
    opt.tell(X, Y)
    opt.ask()
    assert opt.model.shift is not None
    opt.model.component_weights = {"informed": 1.0, "shift": 0.0, "uninformed": 0.0}
    x = opt.ask()
    assert opt.model.shift is None and opt.model.component_weights["shift"] == 0.0
    opt.tell(x, task(x))
    opt.ask()
    assert opt.model.shift is None
