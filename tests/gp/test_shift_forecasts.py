"""`shift_held_out_forecasts`: each point forecast by the shift posterior of the points it may
see."""

from __future__ import annotations

import copy

import torch
from helpers import branin_prior

from metaprior.gp import shift_forecasts
from metaprior.gp.shift_forecasts import shift_held_out_forecasts
from metaprior.tasks import Branin
from metaprior.tasks.family import make_generator


def data(n: int):
    task = Branin().held_out_tasks(1, seed=0)[0]
    lo, hi = task.bounds
    X = lo + torch.rand(n, 2, generator=make_generator(0, "forecast", n),
                        dtype=torch.float64) * (hi - lo)
    return X, task.fn(X).unsqueeze(-1)


def test_prequential_row_is_the_forecast_of_the_prefix_alone():
    prior = branin_prior()
    X, Y = data(6)
    means, spread = shift_held_out_forecasts(prior, X, Y, skip=2)
    assert means.shape == (6, 6) and spread.shape == (6,)
    torch.testing.assert_close(means[:2], Y[:, 0].expand(2, 6))  # not forecast: never scored
    # Row 4 depends on points 0..3 only: changing later observations leaves it alone.
    Y_later = Y.clone()
    Y_later[4:] += 100.0
    shift_forecasts._cache.clear()
    moved, _ = shift_held_out_forecasts(prior, X, Y_later, skip=2)
    torch.testing.assert_close(moved[4, :5], means[4, :5])
    assert (spread[2:] > 0).all()


def test_forecasts_are_cached_and_the_cache_gives_the_same_values():
    prior = branin_prior()
    X, Y = data(5)
    shift_forecasts._cache.clear()
    first = shift_held_out_forecasts(prior, X, Y, skip=2, seed=3)
    assert len(shift_forecasts._cache) == 3  # prefixes of 2, 3 and 4 points
    again = shift_held_out_forecasts(prior, X, Y, skip=2, seed=3)
    assert len(shift_forecasts._cache) == 3
    shift_forecasts._cache.clear()
    fresh = shift_held_out_forecasts(prior, X, Y, skip=2, seed=3)
    for a, b, c in zip(first, again, fresh, strict=True):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a, c)


def test_loo_forecasts_every_point_without_it():
    prior = branin_prior()
    X, Y = data(5)
    means, spread = shift_held_out_forecasts(prior, X, Y, scheme="loo")
    assert torch.isfinite(means).all() and (spread > 0).all()
    assert not torch.equal(means.diagonal(), Y[:, 0])


def test_another_prior_never_reads_this_priors_forecasts():
    prior = branin_prior()
    other = copy.copy(prior)
    other.params = [p + 0.1 for p in prior.params]
    X, Y = data(4)
    shift_forecasts._cache.clear()
    mine, _ = shift_held_out_forecasts(prior, X, Y, skip=2)
    theirs, _ = shift_held_out_forecasts(other, X, Y, skip=2)
    assert len(shift_forecasts._cache) == 4
    assert not torch.equal(mine[2:], theirs[2:])
