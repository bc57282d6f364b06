"""Bad input found by the reliability probe: outputs far from the family's scale, asked points
told back rounded, and raw torch/BoTorch errors in place of typed ones."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from helpers import branin_prior, forrester_prior

from metaprior.errors import AdaptationWarning, ConfigError, InputDataError
from metaprior.gp.evidence import fit_gp
from metaprior.gp.model import MetaPriorModel
from metaprior.gp.shift_model import ShiftEnsembleModel
from metaprior.gp.trusted import TrustedPriorModel
from metaprior.optim import Optimizer, minimize
from metaprior.tasks import Branin, Forrester
from metaprior.validation import FAR_FROM_FAMILY_STDS

FAST = {"num_restarts": 2, "raw_samples": 32}
OFFSET = 1e4  # about 180 family stds of the Branin prior


def branin_data(n: int = 8, seed: int = 0):
    """`n` random points of a held-out Branin task: `n x 2` inputs, `n x 1` outputs."""
    task = Branin().held_out_tasks(1, seed=seed)[0]
    g = torch.Generator().manual_seed(seed)
    lo, hi = task.bounds
    X = lo + torch.rand(n, 2, generator=g, dtype=torch.float64) * (hi - lo)
    return task, X, task(X).unsqueeze(-1)


def max_miss(model, X, Y) -> float:
    """Largest gap between the posterior mean at the training points and their values."""
    with torch.no_grad():
        posterior = model.posterior(X)
    mean = getattr(posterior, "mixture_mean", posterior.mean)
    return float((mean - Y).abs().max())


# ---- 1. observations far from the family's output scale ----------------------------------------

@pytest.mark.parametrize("change", [lambda y: y + 1e12, lambda y: y + OFFSET, lambda y: y - OFFSET,
                                    lambda y: y * 1e3])
def test_adapt_warns_when_observations_sit_far_from_the_family(change):
    prior = branin_prior()
    _, X, Y = branin_data()
    with pytest.warns(AdaptationWarning, match="do not look like a task of the prior's family"):
        prior.adapt(X, change(Y))


def test_adapt_does_not_warn_within_the_family_scale():
    prior = branin_prior()
    _, X, Y = branin_data()
    with warnings.catch_warnings():
        warnings.simplefilter("error", AdaptationWarning)
        prior.adapt(X, Y)
        prior.adapt(X, Y + 10 * prior.y_std)


def test_the_threshold_lies_below_where_mode_mean_breaks():
    """Shifted by 20 family stds (below the threshold) mode "mean" still passes through its
    training points; at 180 (a shift of 1e4) it misses them by thousands."""
    prior = branin_prior()
    assert FAR_FROM_FAMILY_STDS > 20
    _, X, Y = branin_data()
    near = MetaPriorModel(X, Y + 20 * prior.y_std, prior, mode="mean")
    fit_gp(near)
    assert max_miss(near, X, Y + 20 * prior.y_std) < 0.05 * prior.y_std
    with pytest.warns(AdaptationWarning):
        far = MetaPriorModel(X, Y + OFFSET, prior, mode="mean")
    fit_gp(far)
    assert max_miss(far, X, Y + OFFSET) > 10 * prior.y_std


@pytest.mark.parametrize("mode", ["mean", "weighted", "kernel", "both", "shift"])
def test_fixed_modes_warn_far_from_the_family(mode):
    prior = branin_prior()
    _, X, Y = branin_data(4)
    with pytest.warns(AdaptationWarning, match="family stds"):
        if mode == "shift":
            ShiftEnsembleModel(X, Y + OFFSET, prior, n_members=2)
        else:
            MetaPriorModel(X, Y + OFFSET, prior, mode=mode)


@pytest.mark.quality
def test_trusted_model_falls_back_far_from_the_family():
    prior = branin_prior()
    _, X, Y = branin_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AdaptationWarning)
        model = TrustedPriorModel(X, Y + OFFSET, prior)
    assert model.prior_trust < 1e-6
    assert max_miss(model, X, Y + OFFSET) < 0.05 * prior.y_std  # mode "mean" alone: ~5,900


@pytest.mark.quality
def test_default_minimize_far_from_the_family_does_as_well_as_uninformed_bo():
    prior = branin_prior()
    task = Branin().held_out_tasks(1, seed=0)[0]

    def shifted(X):
        return task(X) + OFFSET

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AdaptationWarning)
        trusted = minimize(shifted, task.bounds, budget=12, prior=prior, seed=0, **FAST)
    uninformed = minimize(shifted, task.bounds, budget=12, prior=None, seed=0, **FAST)
    scale = task.y_max - task.y_min
    regret = (trusted.fun - OFFSET - task.y_min) / scale
    regret_uninformed = (uninformed.fun - OFFSET - task.y_min) / scale
    # Measured on three held-out tasks at 10-15 evaluations: 0.2-2.3x uninformed BO's regret
    # (mode "mean" alone stalls at 2.7 against 0.23 at 15); 3x leaves room for other seeds.
    assert regret <= max(3 * regret_uninformed, 0.01)
    opt = trusted.optimizer
    # The adapted network, as a mean, misses by thousands and leaves the average. The shift
    # ensemble may keep weight: its output offset explains a family member moved in output,
    # and it earns weight as far as its honest forecasts do (on this task 0.52 at 12
    # evaluations). The trust still falls: an offset of 1e4 is no family member's.
    assert opt.model.component_weights["informed"] < 1e-6
    assert opt.model.family_probability < 0.01
    assert opt.prior_trust < 0.5
    # The last model saw every point but the last: its posterior follows them, while the
    # prior's GP misses by thousands.
    n_fit = opt.model.uninformed.train_targets.shape[-1]
    X, Y = opt.train_X[:n_fit], opt.train_Y[:n_fit]
    assert max_miss(opt.model, X, Y) < 0.1 * float(Y.max() - Y.min())
    assert max_miss(opt.model.informed, X, Y) > 10 * prior.y_std


# ---- 2. an asked point told back after rounding -------------------------------------------------

@pytest.mark.parametrize("round_trip", [
    lambda X: X.round(decimals=3),
    lambda X: X.float(),
    lambda X: torch.tensor(json.loads(json.dumps(np.float32(X.numpy()).tolist()))),
])
def test_an_asked_point_told_back_rounded_is_the_ask(round_trip):
    task = Branin().held_out_tasks(1, seed=0)[0]
    opt = Optimizer(task.bounds, prior=branin_prior(), seed=0, **FAST)
    X = opt.ask()
    x = round_trip(X)
    assert not torch.equal(x.double(), X)
    opt.tell(x, task(x.double()))
    assert opt.history["asked"].tolist() == [True]
    assert opt.history["source"].tolist() == ["prior"]
    assert opt.pending.shape == (0, 2)
    torch.testing.assert_close(opt.train_X, x.double())  # the point as evaluated is kept


def test_a_batch_told_back_rounded_and_reordered_matches_each_ask():
    task = Forrester().held_out_tasks(1, seed=0)[0]
    opt = Optimizer(task.bounds, prior=None, seed=0, n_init=3, **FAST)
    X = opt.ask(3)
    x = X.round(decimals=3).flip(0)
    opt.tell(x, task(x))
    assert opt.history["asked"].tolist() == [True] * 3
    assert opt.pending.shape == (0, 1)


def test_a_point_beyond_the_tolerance_is_external_and_the_ask_stays_pending():
    task = Forrester().held_out_tasks(1, seed=0)[0]
    opt = Optimizer(task.bounds, prior=None, seed=0, **FAST)
    X = opt.ask()
    width = float(task.bounds[1, 0] - task.bounds[0, 0])
    x = X + (0.01 * width if float(X) < 0.5 else -0.01 * width)
    opt.tell(x, task(x))
    assert opt.history["asked"].tolist() == [False]
    torch.testing.assert_close(opt.pending, X)


# ---- 8. raw torch / BoTorch errors --------------------------------------------------------------

def test_models_refuse_float32_naming_float64():
    prior = branin_prior()
    _, X, Y = branin_data(4)
    with pytest.raises(InputDataError, match="float64"):
        MetaPriorModel(X.float(), Y.float(), prior)
    with pytest.raises(InputDataError, match="float64"):
        MetaPriorModel(X, Y.float(), prior, mode="weighted")
    with pytest.raises(InputDataError, match="float64"):
        ShiftEnsembleModel(X.float(), Y.float(), prior)


@pytest.mark.parametrize("steps", [-3, 2.9, "4", True])
def test_adapt_steps_must_be_a_non_negative_integer(steps):
    prior = branin_prior()
    _, X, Y = branin_data(4)
    with pytest.raises(ConfigError, match=rf"steps must be an integer >= 0 \(got {steps!r}\)"):
        prior.adapt(X, Y, steps=steps)
    with pytest.raises(ConfigError, match="steps must be an integer"):
        prior.held_out_predictions(X, Y, steps=steps)


def test_adapt_takes_numpy_integer_steps():
    prior = branin_prior()
    _, X, Y = branin_data(4)
    a, b = prior.adapt(X, Y, steps=np.int64(3)), prior.adapt(X, Y, steps=3)
    assert all(torch.equal(p, q) for p, q in zip(a.params, b.params, strict=True))


@pytest.mark.parametrize("kwargs, match", [
    ({"n_init": 2.7}, r"n_init must be an integer >= 1 \(got 2\.7\)"),
    ({"num_restarts": 0}, r"num_restarts must be an integer >= 1 \(got 0\)"),
    ({"raw_samples": 0}, r"raw_samples must be an integer >= 1 \(got 0\)"),
    ({"num_restarts": 8, "raw_samples": 4}, r"raw_samples \(4\) must be >= num_restarts \(8\)"),
    ({"adapt_steps": -1}, r"adapt_steps must be an integer >= 0"),
    ({"seed": "0"}, r"seed must be an integer"),
    ({"trust_region": "0.2"}, r"trust_region must be in \(0, 1\] or None \(got '0.2'\)"),
])
def test_optimizer_settings_are_checked(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Optimizer(Forrester().bounds, prior=None, **kwargs)


def test_ask_takes_a_numpy_integer():
    opt = Optimizer(Forrester().bounds, prior=forrester_prior(), seed=0, **FAST)
    assert opt.ask(np.int64(2)).shape == (2, 1)
    with pytest.raises(ConfigError, match=r"n must be an integer >= 1 \(got 2\.0\)"):
        opt.ask(2.0)


@pytest.mark.parametrize("y, match", [
    (["1.0"], r"y must be real numbers \(got \['1\.0'\]"),
    ([1.0 + 2.0j], r"y must be real numbers, not complex \(got \[\(1\+2j\)\]\)"),
    (torch.tensor([1.0 + 0.0j]), "not complex"),
    (None, r"y must be real numbers \(got None"),
])
def test_tell_refuses_y_that_is_not_real_numbers(y, match):
    opt = Optimizer(Forrester().bounds, prior=None, seed=0)
    with pytest.raises(InputDataError, match=match):
        opt.tell(torch.tensor([[0.5]]), y)
    with pytest.raises(InputDataError, match="X must be real numbers"):
        opt.tell([["0.5"]], [1.0])
    assert opt.train_X.shape == (0, 1)


def test_minimize_names_batch_size():
    with pytest.raises(ConfigError, match=r"batch_size must be an integer >= 1 \(got 0\)"):
        minimize(lambda X: X.sum(-1), Forrester().bounds, budget=3, batch_size=0)


@pytest.mark.parametrize("kind", ["mean", "trusted", "shift"])
def test_posterior_refuses_nan_and_wrong_dimension(kind):
    prior = branin_prior()
    _, X, Y = branin_data(4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "trusted":
            model = TrustedPriorModel(X, Y, prior)
        elif kind == "shift":
            model = ShiftEnsembleModel(X, Y, prior, n_members=2)
        else:
            model = MetaPriorModel(X, Y, prior, mode=kind)
    bad = X[:2].clone()
    bad[1, 0] = float("nan")
    with pytest.raises(InputDataError, match=r"NaN or inf, first at index \[1, 0\]: nan"):
        model.posterior(bad)
    with pytest.raises(InputDataError, match="2 columns"):
        model.posterior(X[:, :1])
    assert torch.isfinite(model.posterior(X[:2]).mean).all()


# ---- found by tests/test_properties.py: values that overflow inside the GP ----------------------

def test_points_absurdly_far_outside_the_bounds_are_refused():
    prior = branin_prior()
    _, X, Y = branin_data(3)
    far = X.clone()
    far[1, 1] = 1e160  # a NaN posterior (Cholesky of NaN) before
    with pytest.raises(InputDataError, match=r"box widths outside the bounds.*1e\+160"):
        MetaPriorModel(far, Y, prior)
    opt = Optimizer(Branin().bounds, prior=None, seed=0)
    with pytest.raises(InputDataError, match="box widths outside the bounds"):
        opt.tell(far, Y)
    assert opt.train_X.shape == (0, 2)
    model = MetaPriorModel(X, Y, prior)
    with pytest.raises(InputDataError, match="box widths outside the bounds"):
        model.posterior(far)
    # Merely outside (here 10 widths) is allowed, with a warning.
    with pytest.warns(Warning, match="outside the bounds"):
        opt.tell(X[:1] + 10 * (Branin().bounds[1] - Branin().bounds[0]), Y[:1])


def test_outputs_whose_squares_overflow_are_refused():
    prior = branin_prior()
    _, X, Y = branin_data(3)
    huge = Y.clone()
    huge[2, 0] = -1e155  # every posterior NaN, Optimizer.ask a LinAlgError, before
    with pytest.raises(InputDataError, match=r"magnitude above 1e\+150: -1e\+155 at position 2"):
        MetaPriorModel(X, huge, prior)
    with pytest.raises(InputDataError, match="magnitude above"):
        ShiftEnsembleModel(X, huge, prior)
    opt = Optimizer(Branin().bounds, prior=None, seed=0)
    with pytest.raises(InputDataError, match="rescale the outputs"):
        opt.tell(X, huge)
    assert opt.train_Y.shape == (0, 1)


def test_one_observation_far_from_the_family_still_gives_a_model():
    prior = branin_prior()
    _, X, Y = branin_data(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = TrustedPriorModel(X, Y + 1e5, prior)  # the default model after the first tell
    assert torch.isfinite(model.posterior(X).mean).all()
