"""Fitting a GP and scoring it by leave-one-out predictions, in the data's own units.

The trusted model weighs an informed GP against an uninformed one by how well each predicts
every observation from the others. Leave-one-out, not the marginal likelihood, because the
informed GP's network was adapted to the very points it would be scored on: its marginal
likelihood counts them twice and keeps trusting a prior that has merely memorised them.
"""

from __future__ import annotations

import math
import warnings

import torch
from botorch.exceptions import ModelFittingError
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from gpytorch.mlls import ExactMarginalLogLikelihood
from torch import Tensor


def fit_gp(model: SingleTaskGP) -> bool:
    """Fit `model`'s hyperparameters by marginal likelihood; False (with a warning) if it failed.

    On failure the model keeps its prior hyperparameters, which is still a usable GP.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        return True
    except ModelFittingError as e:
        warnings.warn(f"GP fit failed ({e}); using unfitted hyperparameters", stacklevel=3)
        return False


def loo_log_density(covariance: Tensor, residuals: Tensor) -> Tensor:
    """Leave-one-out log predictive densities of a GP whose mean may differ per held-out point.

    For a GP with training covariance `K` (noise included) and residuals `r = y - m(X)`, the
    prediction of point i from the others has mean `y_i - [K^-1 r]_i / [K^-1]_ii` and variance
    `1 / [K^-1]_ii` (Rasmussen & Williams 2006, eq. 5.12); a mean fitted without point i
    enters through its own residual vector.

    Args:
        covariance: `n x n` training covariance with noise, `K`.
        residuals: `n x n`; row i is `y - m_i(X)` with `m_i` the mean that never saw point i
            (all rows equal for a fixed mean).

    Returns:
        The `n` log densities.
    """
    L = torch.linalg.cholesky(covariance)
    precision = torch.cholesky_inverse(L)
    error = (residuals @ precision).diagonal()  # [K^-1 r_i]_i, K symmetric
    p_ii = precision.diagonal()
    return -0.5 * math.log(2 * math.pi) + 0.5 * torch.log(p_ii) - 0.5 * error.square() / p_ii


def training_covariance(model: SingleTaskGP) -> Tensor:
    """`n x n` prior covariance of `model`'s training targets, noise included, in its
    (outcome-transformed) units, with the fitted hyperparameters."""
    was_training = model.training
    model.train()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (X,) = model.train_inputs
            marginal = model.likelihood(model(X), [X])
            covariance = marginal.covariance_matrix
    finally:
        model.train(was_training)
    n = covariance.shape[-1]
    # The same jitter gpytorch adds: clustered BO points make K nearly singular.
    return covariance + 1e-8 * covariance.diagonal().mean() * torch.eye(n).to(covariance)


def outcome_scale(model: SingleTaskGP) -> tuple[float, float]:
    """`(mean, std)` of `model`'s outcome standardisation ((0, 1) without one)."""
    tf = getattr(model, "outcome_transform", None)
    if isinstance(tf, Standardize):
        return float(tf.means.reshape(-1)[0]), float(tf.stdvs.reshape(-1)[0])
    return 0.0, 1.0


def loo_score(model: SingleTaskGP, Y: Tensor, means: Tensor) -> float:
    """Sum of leave-one-out log densities of `Y` under `model`, in original units.

    Args:
        model: a fitted single-output GP on `n` points.
        Y: `n` observations, original units.
        means: `n x n` original-unit prior means; row i never saw point i.
    """
    offset, scale = outcome_scale(model)
    residuals = (Y.unsqueeze(0) - means) / scale
    try:
        with torch.no_grad():
            density = loo_log_density(training_covariance(model), residuals)
    except torch.linalg.LinAlgError:
        return -math.inf
    value = float(density.sum()) - Y.shape[0] * math.log(scale)
    return value if math.isfinite(value) else -math.inf
