"""`family_probability`: where a task's embedding lies against the family's shift prior."""

import math

import pytest
import torch

from metaprior.family_membership import WIDER, embedding_distance2, family_probability
from metaprior.shift import ShiftParticles
from metaprior.shift_prior import ShiftPrior

PRIOR = ShiftPrior(mean=[0.1, -0.2], cov=[[0.01, 0.0], [0.0, 0.04]], resid_sd=0.01,
                   scale_sd=0.1, offset_sd=0.2, n_tasks=16)


def particles(t, a, b) -> ShiftParticles:
    t = torch.as_tensor(t, dtype=torch.float64).reshape(-1, 2)
    n = t.shape[0]
    return ShiftParticles(t=t, a=torch.full((n,), float(a), dtype=torch.float64),
                          b=torch.full((n,), float(b), dtype=torch.float64))


def test_distance_is_the_mahalanobis_distance_of_t_a_and_b():
    at_centre = particles([0.1, -0.2], 1.0, 0.0)
    assert embedding_distance2(PRIOR, at_centre).item() == pytest.approx(0.0)
    # one sd in t's second coordinate, two in a, half of one in b
    moved = particles([0.1, 0.0], 1.2, 0.1)
    assert embedding_distance2(PRIOR, moved).item() == pytest.approx(1 + 4 + 0.25)


def test_probability_is_the_logistic_of_the_density_ratio():
    moved = particles([0.1, 0.0], 1.2, 0.1)  # m2 = 5.25 in D = 4 dimensions
    log_ratio = 4 * math.log(WIDER) - 0.5 * 5.25 * (1 - WIDER**-2)
    want = 1 / (1 + math.exp(-(log_ratio + math.log(0.8 / 0.2))))
    assert family_probability(PRIOR, moved, 0.8) == pytest.approx(want)


def test_a_family_member_is_trusted_and_a_negated_or_far_task_is_not():
    assert family_probability(PRIOR, particles([0.1, -0.2], 1.0, 0.0), 0.8) > 0.99
    negated = particles([0.1, -0.2], -1.0, -0.5)  # output scale -1: 20 sds from a's mean
    assert family_probability(PRIOR, negated, 0.8) < 1e-6
    far = particles([0.6, 0.3], 1.0, 0.0)  # half the box away: 5 and 2.5 sds
    assert family_probability(PRIOR, far, 0.8) < 0.01
    # A lower prior probability lowers it.
    assert (family_probability(PRIOR, particles([0.3, -0.2], 1.0, 0.0), 0.5)
            < family_probability(PRIOR, particles([0.3, -0.2], 1.0, 0.0), 0.8))


def test_probability_averages_over_the_particles():
    mixed = particles([[0.1, -0.2], [0.1, -0.2], [0.1, -0.2], [0.9, 0.9]], 1.0, 0.0)
    assert family_probability(PRIOR, mixed, 0.8) == pytest.approx(0.75, abs=1e-3)
