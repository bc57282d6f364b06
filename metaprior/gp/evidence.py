"""Fitting a GP and scoring it by held-out predictions, in the data's own units.

The trusted model weighs an informed GP against an uninformed one by how well each predicted
the observations it had not seen: each point from the points before it (prequential, the chain
rule of the marginal likelihood) or from all the others (leave-one-out). Not by the marginal
likelihood of the fitted models, because the informed GP's network was adapted to the very
points it would be scored on: its marginal likelihood counts them twice, and on Branin tasks
unlike the family it kept trusting a prior that had merely memorised them.
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
from linear_operator.utils.errors import NotPSDError
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
    except (ModelFittingError, ValueError, torch.linalg.LinAlgError, NotPSDError) as e:
        # ValueError: gpytorch refuses a hyperparameter pushed onto its prior's support boundary
        # (one observation far from the family). A GP with its prior hyperparameters is still
        # usable. (Not every RuntimeError: out of memory must surface.)
        warnings.warn(f"GP fit failed ({type(e).__name__}: {e}); using unfitted "
                      "hyperparameters", stacklevel=3)
        return False


def loo_predictions(covariance: Tensor, residuals: Tensor) -> tuple[Tensor, Tensor]:
    """Leave-one-out errors and variances of a GP whose mean may differ per held-out point.

    For a GP with training covariance `K` (noise included) and residuals `r = y - m(X)`, the
    prediction of point i from the others misses `y_i` by `[K^-1 r]_i / [K^-1]_ii` with
    variance `1 / [K^-1]_ii` (Rasmussen & Williams 2006, eq. 5.12); a mean fitted without
    point i enters through its own residual vector.

    Args:
        covariance: `n x n` training covariance with noise, `K`.
        residuals: `n x n`; row i is `y - m_i(X)` with `m_i` the mean that never saw point i
            (all rows equal for a fixed mean).

    Returns:
        The `n` errors `y_i - mu_i` and the `n` predictive variances.
    """
    L = torch.linalg.cholesky(covariance)
    precision = torch.cholesky_inverse(L)
    p_ii = precision.diagonal()
    error = (residuals @ precision).diagonal() / p_ii  # [K^-1 r_i]_i / [K^-1]_ii, K symmetric
    return error, 1.0 / p_ii


def prequential_predictions(covariance: Tensor, residuals: Tensor) -> tuple[Tensor, Tensor]:
    """One-step-ahead errors and variances: point k predicted from points 0..k-1 only.

    With `K = L L^T`, the innovations `L^-1 r` are independent standard normals, and point k's
    one-step-ahead prediction misses by `L_kk [L^-1 r]_k` with variance `L_kk^2`; their log
    densities sum to the marginal likelihood. A mean fitted to points 0..k-1 enters through its
    own residual vector.

    Args:
        covariance: `n x n` training covariance with noise, `K`, points in the order made.
        residuals: `n x n`; row k is `y - m_k(X)` with `m_k` the mean fitted to points before k.

    Returns:
        The `n` errors and the `n` predictive variances.
    """
    L = torch.linalg.cholesky(covariance)
    innovations = torch.linalg.solve_triangular(L, residuals.T, upper=False)  # column k: r_k
    scale = L.diagonal()
    return scale * innovations.diagonal(), scale.square()


def training_marginal(model: SingleTaskGP) -> tuple[Tensor, Tensor]:
    """The prior mean (`batch x n`) and covariance (`batch x n x n`, noise included) of
    `model`'s training targets, in its (outcome-transformed) units, with the fitted
    hyperparameters."""
    was_training = model.training
    model.train()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (X,) = model.train_inputs
            marginal = model.likelihood(model(X), [X])
            mean, covariance = marginal.mean, marginal.covariance_matrix
    finally:
        model.train(was_training)
    n = covariance.shape[-1]
    # The same jitter gpytorch adds: clustered BO points make K nearly singular.
    jitter = 1e-8 * covariance.diagonal(dim1=-2, dim2=-1).mean() * torch.eye(n).to(covariance)
    return mean, covariance + jitter


def training_covariance(model: SingleTaskGP) -> Tensor:
    """`n x n` prior covariance of `model`'s training targets, noise included, in its
    (outcome-transformed) units, with the fitted hyperparameters (`training_marginal`)."""
    return training_marginal(model)[1]


def outcome_scale(model: SingleTaskGP) -> tuple[float, float]:
    """`(mean, std)` of `model`'s outcome standardisation ((0, 1) without one)."""
    tf = getattr(model, "outcome_transform", None)
    if isinstance(tf, Standardize):
        return float(tf.means.reshape(-1)[0]), float(tf.stdvs.reshape(-1)[0])
    return 0.0, 1.0


def held_out_score(model: SingleTaskGP, Y: Tensor, means: Tensor, scheme: str = "prequential",
                   skip: int = 0, mean_variance: Tensor | None = None) -> float:
    """Sum of held-out log densities of `Y` under `model`, in original units.

    "prequential": each point predicted from the points before it (the chain rule of the
    marginal likelihood, so early misses keep counting); "loo": each from all the others.

    The predictive variances are first inflated by one common factor, the mean squared
    standardised error where that exceeds 1: a model that predicts well but claims too little
    variance (the informed GP's hyperparameters are fitted to the residuals of a network that
    has seen every point) then loses by the log of its error, not by its square.

    Args:
        model: a fitted single-output GP on `n` points.
        Y: `n` observations, original units.
        means: `n x n` original-unit prior means; row i never saw point i (nor, prequential,
            any later point).
        scheme: "prequential" or "loo".
        skip: prequential: leave the first `skip` points unscored.
        mean_variance: `n` original-unit variances of the held-out means at their own point
            (an ensemble's spread), added to the predictive variances; None: the means are
            certain.

    An ensemble's batch of GPs (`ShiftEnsembleModel`) is scored with its members' average
    training covariance: they share the data and differ only in their means and fitted
    hyperparameters.
    """
    _, scale = outcome_scale(model)
    residuals = (Y.unsqueeze(0) - means) / scale
    predictions = prequential_predictions if scheme == "prequential" else loo_predictions
    try:
        with torch.no_grad():
            covariance = training_covariance(model)
            covariance = covariance.reshape(-1, *covariance.shape[-2:]).mean(0)
            error, variance = predictions(covariance, residuals)
    except torch.linalg.LinAlgError:
        return -math.inf
    if mean_variance is not None:
        variance = variance + mean_variance / scale**2
    if scheme == "prequential":
        error, variance = error[skip:], variance[skip:]
    return log_score(error, variance) - error.shape[0] * math.log(scale)


def log_score(error: Tensor, variance: Tensor) -> float:
    """Sum of the Gaussian log densities of forecasts that missed by `error` (`m`) with
    variances `variance` (`m`), after inflating the variances by one common factor, the mean
    squared standardised error where that exceeds 1: a model that predicts well but claims too
    little variance then loses by the log of its error, not by its square. 0 for `m = 0`;
    -inf where a density is not finite."""
    if error.shape[0] == 0:
        return 0.0
    variance = variance * (error.square() / variance).mean().clamp(min=1.0)
    density = -0.5 * torch.log(2 * math.pi * variance) - 0.5 * error.square() / variance
    value = float(density.sum())
    return value if math.isfinite(value) else -math.inf
