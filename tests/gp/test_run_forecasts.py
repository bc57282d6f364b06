"""`run_forecasts`: each point scored as the GPs forecast it before it was made."""

from __future__ import annotations

import torch
from helpers import branin_prior
from torch.quasirandom import SobolEngine

from metaprior.gp.run_forecasts import context_key, predictive, run_forecasts
from metaprior.gp.trusted import FIRST_FORECAST, TrustedPriorModel, fit_components
from metaprior.tasks import Branin

NAMES = ("informed", "uninformed", "shift")


def branin_data(n: int):
    family = Branin()
    lo, hi = family.bounds
    X = lo + SobolEngine(2, scramble=True, seed=3).draw(n, dtype=torch.float64) * (hi - lo)
    return family, X, family.held_out_tasks(1, seed=0)[0](X).reshape(-1, 1)


def test_a_forecast_never_depends_on_the_point_it_forecasts_nor_on_later_ones():
    prior = branin_prior()
    family, X, Y = branin_data(8)
    context = context_key(prior, test="honesty")
    prefixes = []

    def fit_prefix(k):
        prefixes.append(k)
        return fit_components(X[:k], Y[:k], prior, family.bounds, True, None, 0)

    first = run_forecasts(context, X, Y, FIRST_FORECAST, NAMES, fit_prefix)
    assert prefixes == list(range(FIRST_FORECAST, 8))
    moved = Y.clone()
    moved[-1] += 50.0
    prefixes.clear()
    second = run_forecasts(context, X, moved, FIRST_FORECAST, NAMES, fit_prefix)
    assert prefixes == []  # every prefix's GPs were kept
    for name in NAMES:
        (e1, v1), (e2, v2) = first[name], second[name]
        torch.testing.assert_close(e1[:-1], e2[:-1])
        torch.testing.assert_close(v1, v2)
        assert float(e2[-1] - e1[-1]) == 50.0


def test_the_forecast_of_a_point_is_the_previous_models_prediction_of_it():
    prior = branin_prior()
    family, X, Y = branin_data(7)
    before = TrustedPriorModel(X[:6], Y[:6], prior, bounds=family.bounds)
    after = TrustedPriorModel(X, Y, prior, bounds=family.bounds)
    context = context_key(prior, seed=0, adapt_steps=None, bounds=family.bounds, with_shift=True)

    def refuse(k):
        raise AssertionError(f"prefix {k} was fitted again")

    forecasts = run_forecasts(context, X, Y, 6, NAMES, refuse)
    for name, gp in before.components.items():
        mean, variance = predictive(gp, X[6])
        error, var = forecasts[name]
        assert float(error[0]) == float(Y[6, 0]) - mean and float(var[0]) == variance
    assert 0.0 <= after.prior_trust <= 1.0
