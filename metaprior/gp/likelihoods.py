"""The likelihood of the trusted model's informed GPs: noise inferred under a wide prior.

BoTorch's `SingleTaskGP` infers its noise with a log-normal prior around 1e-4..1e-2 (in
standardised units) and a floor of 1e-4. For a GP around a good prior, whose standardised unit
is the network's typical miss, that noise is what limits the refinement of a minimum: on a
held-out Sinusoid task the informed GP's fitted noise standard deviation was 2e-3 of the task's
range, while the points BO was choosing between differed by 1e-5, so it could not tell them
apart and sampled around the minimum at random. A prior spread over eight decades lets the
marginal likelihood decide: noiseless observations are interpolated, and observations that
disagree where the residual kernel cannot explain it keep their noise.
"""

from __future__ import annotations

import math

import torch
from gpytorch.constraints import GreaterThan
from gpytorch.likelihoods import GaussianLikelihood
from gpytorch.priors import LogNormalPrior

# Median of the noise variance's log-normal prior, in standardised units, and its spread in
# log space: +-2 standard deviations cover 3e-9 to 3e-2. A prior at 1e-6 with spread 2 refined
# as well on held-out tasks (screens in `benchmarks/results/trust_variants/README.md`).
NOISE_PRIOR_MEDIAN = 1e-5
NOISE_PRIOR_SPREAD = 4.0
# Floor of the noise variance: far below any noise the prior expects, above float64's reach in
# a Cholesky factor of clustered points (gpytorch adds jitter where it must).
NOISE_FLOOR = 1e-8


def wide_noise_likelihood(batch_shape: torch.Size | None = None) -> GaussianLikelihood:
    """A Gaussian likelihood whose noise variance has `NOISE_PRIOR_MEDIAN`'s wide prior.

    Args:
        batch_shape: the GP's batch shape (an ensemble's members); None: no batch.
    """
    return GaussianLikelihood(
        noise_prior=LogNormalPrior(math.log(NOISE_PRIOR_MEDIAN), NOISE_PRIOR_SPREAD),
        noise_constraint=GreaterThan(NOISE_FLOOR),
        batch_shape=torch.Size() if batch_shape is None else batch_shape)
