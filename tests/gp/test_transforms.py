"""`FloorStandardize` bounds and `residual_scale`, the informed GP's scale."""

from __future__ import annotations

import math

import pytest
import torch

from metaprior.errors import ConfigError
from metaprior.gp.transforms import MAD_TO_STD, FloorStandardize, residual_scale


def test_residual_scale_is_the_prior_guess_without_errors():
    assert residual_scale(torch.empty(0, dtype=torch.float64), 2.0) == 2.0


def test_residual_scale_is_the_conjugate_update_of_the_robust_scale():
    errors = torch.tensor([1.0, -1.0, 1.0, 100.0], dtype=torch.float64)
    expected = math.sqrt((3 * 2.0**2 + 4 * MAD_TO_STD**2) / 7)
    assert residual_scale(errors, 2.0, pseudo_count=3) == pytest.approx(expected)


def test_one_far_miss_does_not_widen_the_residual_scale():
    near = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0], dtype=torch.float64)
    with_far_miss = torch.cat([near, torch.tensor([250.0], dtype=torch.float64)])
    assert residual_scale(with_far_miss, 2.0) < 1.2 * residual_scale(near, 2.0)


def test_many_small_errors_shrink_the_scale_below_the_prior_guess():
    errors = torch.full((40,), 0.01, dtype=torch.float64)
    assert residual_scale(errors, 2.0) < 0.6  # -> sqrt(3 / 43) * 2 = 0.53 as errors vanish


def test_floor_and_ceiling_bound_the_scale():
    Y = torch.tensor([[0.0], [10.0], [20.0]], dtype=torch.float64)  # spread 10
    assert float(FloorStandardize(2.0, ceiling=3.0)(Y)[0].std()) == pytest.approx(10 / 3)
    assert float(FloorStandardize(20.0)(Y)[0].std()) == pytest.approx(0.5)
    fixed = FloorStandardize(4.0, ceiling=4.0)
    fixed(Y)
    assert float(fixed.stdvs) == 4.0


def test_an_even_count_takes_the_lower_middle_error():
    # torch's median: the lower of the two middle values (documented in residual_scale)
    errors = torch.tensor([1.0, 3.0], dtype=torch.float64)
    expected = math.sqrt((3 * 2.0**2 + 2 * MAD_TO_STD**2) / 5)
    assert residual_scale(errors, 2.0) == pytest.approx(expected)


@pytest.mark.parametrize("floor, ceiling", [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_bounds_out_of_order_are_refused(floor, ceiling):
    with pytest.raises(ConfigError, match=repr(floor)):
        FloorStandardize(floor, ceiling=ceiling)


def test_subset_to_the_one_outcome_keeps_the_fitted_scale():
    Y = torch.tensor([[0.0], [10.0], [20.0]], dtype=torch.float64)
    tf = FloorStandardize(2.0, ceiling=3.0)
    tf(Y)
    tf.eval()
    sub = tf.subset_output([0])
    assert isinstance(sub, FloorStandardize) and not sub.training
    assert (sub.floor, sub.ceiling, float(sub.stdvs)) == (2.0, 3.0, 3.0)
    assert torch.equal(sub(Y)[0], tf(Y)[0])
    with pytest.raises(ConfigError, match=r"\[1\]"):
        tf.subset_output([1])
