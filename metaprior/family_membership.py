"""Does a new task belong to the prior's family? The probability that `prior_trust` reports.

The trusted model averages GPs by how well each forecast the data, and a GP built on the
network can forecast well on a task the family never produced: the shift ensemble explains a
negated family member by an output scale near -1, and one moved half the box away by a
translation far outside the family's. Following it there lowers the regret, but a user who asks
whether the past applies deserves a no. So the trust also asks where the task's embedding
`(t, a, b)` (translation, output scale and offset; `metaprior.shift`) lies.

Two hypotheses for where a task's embedding comes from: the family's own tasks, the shift
prior `N(mu, S)` (with `a ~ N(1, scale_sd^2)` and `b ~ N(0, offset_sd^2)`), or a population of
tasks `WIDER` times as spread in every direction, `N(mu, WIDER^2 S)`. At an embedding `theta`
whose squared Mahalanobis distance under the shift prior is `m2`, in `D = d + 2` dimensions,
their log density ratio is `D log WIDER - m2 (1 - 1 / WIDER^2) / 2`, and with prior probability
`p` of the family the probability that `theta` is the family's is a logistic of it. The
posterior over `theta` is the shift posterior's particles, so `family_probability` is that
probability averaged over them. (A particle's `a` and `b` are their posterior means given its
`t`, which integrate out in closed form, so the average slightly understates the posterior's
spread in them.)

Measured on 10 Sobol points of each held-out task (8 per family) and of 9 tasks unlike each
family (another landscape, negated, moved half the box): on Branin, Forrester and Hartmann-3 the
particles' median `m2` was 0.2-11 on their own tasks and 76-7000 on the others (`D` = 3-5, so
even odds at `m2` near 14-23). The real HPO families' (lcbench, rbv2_rpart) embeddings are
spread beyond a Gaussian's, and there the two sets overlap (`m2` 4-29 against 7-185): the
probability separates little, and the trust is the GPs' weight.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from metaprior.shift import ShiftParticles
from metaprior.shift_prior import ShiftPrior

# The alternative population's spread, as a multiple of the family's in every direction of
# the embedding: an order of magnitude wider (a task moved or rescaled ten times as far as the
# family's tasks are).
WIDER = 10.0


def embedding_distance2(shift_prior: ShiftPrior, particles: ShiftParticles) -> Tensor:
    """Squared Mahalanobis distance of each particle's `(t, a, b)` from the shift prior's
    centre `(mean, 1, 0)` under its covariance: `P` (one per particle)."""
    like = {"dtype": torch.float64, "device": particles.t.device}
    mean = torch.tensor(shift_prior.mean, **like)
    chol = torch.linalg.cholesky(torch.tensor(shift_prior.cov, **like))
    z = torch.linalg.solve_triangular(chol, (particles.t.to(**like) - mean).T, upper=False)
    return (z.square().sum(0)  # d x P before the sum
            + ((particles.a.to(**like) - 1) / shift_prior.scale_sd) ** 2
            + (particles.b.to(**like) / shift_prior.offset_sd) ** 2)


def family_probability(shift_prior: ShiftPrior, particles: ShiftParticles,
                       prior_probability: float) -> float:
    """Posterior probability, in [0, 1], that the task's embedding is one of the family's
    rather than of a population `WIDER` times as spread, averaged over the shift posterior's
    particles (`P` of them).

    Args:
        shift_prior: the family's `ShiftPrior`.
        particles: the shift posterior's `ShiftParticles` on the task's data.
        prior_probability: prior probability that the task belongs to the family, in (0, 1).
    """
    dims = shift_prior.dim + 2
    m2 = embedding_distance2(shift_prior, particles)
    log_ratio = dims * math.log(WIDER) - 0.5 * m2 * (1 - WIDER**-2)
    logit = log_ratio + math.log(prior_probability) - math.log1p(-prior_probability)
    return float(torch.sigmoid(logit).mean())
