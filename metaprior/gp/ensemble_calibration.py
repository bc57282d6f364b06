"""The shift ensemble's predictive variance, recalibrated by its own leave-one-out errors.

The trusted model's scored shift ensemble (`ShiftEnsembleModel`) sets its residual's scale from
a prior guess and the shift posterior's forecasts of each point from the points before it. Those
forecasts were made from fewer points than the ensemble now has, so early in a run they
overstate its error: after 5 random points the default's 50% interval held a median 0.80, 0.72
and 0.77 of held-out Branin, Hartmann-3 and lcbench points (`benchmarks.calibration`, 8 tasks
each), where 0.5 is calibrated. The ensemble's own leave-one-out errors measure the posterior as
it stands; one common factor on its variance, the mean squared standardised error, makes them
calibrated on average. They are optimistic (each member's mean, the shift posterior, has seen
the point), so the factor is shrunk towards 1 by a pseudo-observation, and the GPs' weights are
still set by the honest prequential scores, not by it.

In 2 or more dimensions the optimism is large after a few points: after 5 random points the
mean squared z-score was 0.006-0.05 on Hartmann-3, rbv2_rpart, Branin and lcbench (held-out
test points: 0.5-1.2), so the factor there is about the pseudo-observation's share, 1 / (n + 1).
That shrinkage is what narrowed the intervals after 5 points; after 10 it narrows them too much
on Hartmann-3 and Hartmann-6. An honest leave-one-out (the shift posterior re-inferred without
the point) tracks the test points in median but costs n inferences per step, and per task
still misses by several times (`benchmarks/results/trust_variants/`, "loo_honesty").
"""

from __future__ import annotations

import math

import torch
from botorch.models import SingleTaskGP

from metaprior.gp.evidence import loo_predictions, training_marginal

# The factor's prior guess, 1 (the variance as fitted), is worth this many points. Measured
# with `benchmarks.calibration` (8 tasks of each of the 8 standard families, after 5 and 10
# points): with 1, 8 of the 16 family-and-size cells had both intervals inside the issue's
# ranges (6 without the factor).
PSEUDO_COUNT = 1.0


def loo_standardised_errors(ensemble: SingleTaskGP) -> torch.Tensor:
    """Squared leave-one-out errors of an ensemble's training points over their variances, the
    members' predictions moment-matched into one Gaussian (as the trusted model mixes them):
    `n`.

    Each member is a GP with its own mean (`batch x n` training targets, members along the
    batch; `loo_predictions` per member), with its mean held fixed.
    """
    mean, covariance = training_marginal(ensemble)
    targets = ensemble.train_targets
    mean, covariance = mean.reshape(-1, mean.shape[-1]), covariance.reshape(-1, *covariance.shape[-2:])
    targets = targets.reshape(-1, targets.shape[-1])
    n = targets.shape[-1]
    predictions, variances = [], []
    for member in range(covariance.shape[0]):
        residuals = (targets[member] - mean[member]).expand(n, n)
        error, variance = loo_predictions(covariance[member], residuals)
        predictions.append(targets[member] - error)
        variances.append(variance)
    predictions, variances = torch.stack(predictions), torch.stack(variances)  # members x n
    centre = predictions.mean(0)
    spread = variances.mean(0) + predictions.var(0, correction=0)
    return (targets[0] - centre).square() / spread


def variance_factor(ensemble: SingleTaskGP, pseudo_count: float = PSEUDO_COUNT) -> float:
    """The factor on the ensemble's predictive variance that makes its leave-one-out errors
    calibrated: `(c + sum z_i^2) / (c + n)`, the mean squared standardised error shrunk
    towards 1 by `c` pseudo-observations. 1 where the errors cannot be computed."""
    try:
        with torch.no_grad():
            z2 = loo_standardised_errors(ensemble)
    except torch.linalg.LinAlgError:
        return 1.0
    factor = (pseudo_count + float(z2.sum())) / (pseudo_count + z2.numel())
    return factor if math.isfinite(factor) and factor > 0 else 1.0
