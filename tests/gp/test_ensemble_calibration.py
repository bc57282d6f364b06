"""The scored shift ensemble's variance factor from its leave-one-out errors."""

from __future__ import annotations

import pytest
import torch
from helpers import branin_points, branin_prior, help_task

from metaprior.gp.ensemble_calibration import loo_standardised_errors, variance_factor
from metaprior.gp.evidence import fit_gp, loo_predictions, training_marginal
from metaprior.gp.shift_model import ShiftEnsembleModel
from metaprior.gp.transforms import FloorStandardize
from metaprior.gp.trusted import TrustedPriorModel, member_moments


def ensemble_with_scale(X, y, prior, scale: float) -> ShiftEnsembleModel:
    """A fitted ensemble whose residual has the fixed scale `scale` (original units)."""
    model = ShiftEnsembleModel(X, y, prior, meta_residual=False, wide_noise=True,
                               outcome_transform=FloorStandardize(scale, ceiling=scale))
    fit_gp(model)
    return model


def test_factor_widens_an_understated_residual_and_narrows_an_overstated_one():
    prior, task = branin_prior(), help_task()
    X = branin_points(8)
    y = task(X).unsqueeze(-1)
    too_narrow = variance_factor(ensemble_with_scale(X, y, prior, 1e-3 * prior.y_std))
    too_wide = variance_factor(ensemble_with_scale(X, y, prior, 10 * prior.y_std))
    assert too_narrow > 1.0
    assert too_wide < 0.5
    # The pseudo-point keeps the factor from collapsing onto a few small errors.
    assert too_wide > 1 / 9


def test_a_single_member_ensemble_uses_its_gps_closed_form_leave_one_out():
    prior, task = branin_prior(), help_task()
    X = branin_points(6)
    y = task(X).unsqueeze(-1)
    model = ShiftEnsembleModel(X, y, prior, n_members=1)
    fit_gp(model)
    mean, covariance = training_marginal(model)
    with torch.no_grad():
        targets = model.train_targets.reshape(-1)
        error, variance = loo_predictions(covariance.reshape(6, 6),
                                          (targets - mean.reshape(-1)).expand(6, 6))
        z2 = error.square() / variance
    torch.testing.assert_close(loo_standardised_errors(model), z2)
    assert variance_factor(model) == pytest.approx((1 + float(z2.sum())) / 7)


def test_trusted_model_scales_only_the_scored_ensembles_variance():
    prior, task = branin_prior(), help_task()
    X = branin_points(8)
    y = task(X).unsqueeze(-1)
    model = TrustedPriorModel(X, y, prior, with_shift=True)
    assert model.shift_state == "scored"
    # On a task of the family the forecasts of early points overstate the ensemble's error.
    assert model.shift_variance_factor == pytest.approx(variance_factor(model.shift))
    assert model.shift_variance_factor < 1.0
    X_test = branin_points(5, seed=3)
    model.component_weights = {"informed": 0.0, "shift": 1.0, "uninformed": 0.0}
    with torch.no_grad():
        trusted = model.posterior(X_test)
        members = model.shift.posterior(X_test)
    mean, covariance = member_moments(members.mean[..., 0], members.covariance_matrix)
    torch.testing.assert_close(trusted.mean[..., 0], mean)
    torch.testing.assert_close(trusted.variance[..., 0],
                               covariance.diagonal(dim1=-2, dim2=-1) * model.shift_variance_factor)
    # The design's ensemble has its meta-learned residual, and the two-GP model no ensemble.
    assert TrustedPriorModel(X[:3], y[:3], prior, with_shift=True).shift_variance_factor == 1.0
    assert TrustedPriorModel(X, y, prior, with_shift=False).shift_variance_factor == 1.0
