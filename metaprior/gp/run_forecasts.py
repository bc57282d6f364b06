"""Each observation as the trusted model's GPs forecast it before it was made.

The trusted model weighs its GPs by their prequential log score (Dawid 1984): each point's log
predictive density under the GP as it stood before the point was made, fitted to the points
before it only. Honest in everything the GP fits: its hyperparameters, its standardisation and
the network's adaptation. (Rescoring every point with the GP fitted to all of them is not: on
Branin tasks the uninformed GP, standardised by five design points' tiny spread, then out-scored
the prior's GPs and the trust dipped at the step after the design.)

In a BO run the GPs fitted to the points before the newest one are the previous step's, so a
step forecasts one new point. Fitted GPs and their forecasts are kept in small caches keyed by
their data; a prefix of the data not in them (a model built from scratch, a restarted service)
is fitted anew by the caller's `fit_prefix`.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable

import torch
from botorch.models.model import Model
from botorch.posteriors.fully_bayesian import GaussianMixturePosterior
from torch import Tensor

from metaprior.prior import MetaPrior

# Fitted GPs of this many data prefixes are kept (a run needs the previous step's only; a few
# runs interleaved in one process, as the service's studies are, each need theirs).
MODEL_CACHE_SIZE = 32
FORECAST_CACHE_SIZE = 65536
_models: OrderedDict[bytes, dict[str, Model]] = OrderedDict()
_forecasts: OrderedDict[bytes, dict[str, tuple[float, float]]] = OrderedDict()
# The service's studies run in threads and share the caches.
_lock = threading.Lock()


def _cached(cache: OrderedDict, key: bytes):
    """The entry of `key` (marked as just used), or None."""
    with _lock:
        value = cache.get(key)
        if value is not None:
            cache.move_to_end(key)
        return value


def _store(cache: OrderedDict, key: bytes, value, size: int) -> None:
    """Keep `value` under `key`, dropping the least recently used entries beyond `size`."""
    with _lock:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > size:
            cache.popitem(last=False)


def context_key(prior: MetaPrior, **settings) -> bytes:
    """A digest of the prior's weights and shift prior and of the settings that shape the GPs
    (seed, bounds, adaptation steps, ...): what two models must share to share forecasts."""
    digest = hashlib.sha1(repr(None if prior.shift_prior is None
                               else prior.shift_prior.to_dict()).encode())
    for p in prior.params:
        digest.update(p.detach().cpu().contiguous().numpy().tobytes())
    for name in sorted(settings):
        value = settings[name]
        value = value.cpu().contiguous().numpy().tobytes() if isinstance(value, Tensor) else value
        digest.update(f"{name}={value!r}".encode())
    return digest.digest()


def data_key(context: bytes, X: Tensor, Y: Tensor) -> bytes:
    """A digest of `context` and the data (`n x d`, `n x 1`, in the order made)."""
    digest = hashlib.sha1(context)
    digest.update(str(tuple(X.shape)).encode())
    for t in (X, Y):
        digest.update(t.detach().to("cpu", torch.float64).contiguous().numpy().tobytes())
    return digest.digest()


def remember(context: bytes, X: Tensor, Y: Tensor, components: dict[str, Model]) -> None:
    """Keep the GPs fitted to `(X, Y)`: the next step forecasts its new point with them."""
    _store(_models, data_key(context, X, Y), components, MODEL_CACHE_SIZE)


def predictive(model: Model, x: Tensor) -> tuple[float, float]:
    """Mean and variance (observation noise included, original units) of `model` at one point
    `x` (`d`); an ensemble's members moment-matched into one Gaussian, as the trusted model
    mixes them."""
    with torch.no_grad():
        posterior = model.posterior(x.unsqueeze(0), observation_noise=True)
        if isinstance(posterior, GaussianMixturePosterior):
            mean, variance = posterior.mixture_mean, posterior.mixture_variance
        else:
            mean, variance = posterior.mean, posterior.variance
    return float(mean.reshape(-1)[0]), float(variance.reshape(-1)[0])


def run_forecasts(context: bytes, X: Tensor, Y: Tensor, first: int, names: tuple[str, ...],
                  fit_prefix: Callable[[int], dict[str, Model]]) -> dict[str, tuple[Tensor, Tensor]]:
    """Points `first..n-1`, each as forecast by the GPs fitted to the points before it.

    Args:
        context: `context_key` of the models.
        X: `n x d` inputs, original units, in the order made; Y: `n x 1` observations.
        first: the first point forecast (at least 1).
        names: the GPs forecast (keys of the components).
        fit_prefix: `k -> components` fitted to the first `k` points, for a prefix whose GPs
            are not cached (or lack one of `names`).

    Returns:
        For each name, `(errors, variances)`: two `n - first` tensors, `y - forecast mean` and
        the forecast's variance, in original units.
    """
    n = X.shape[0]
    errors = {name: torch.zeros(max(0, n - first), dtype=torch.float64) for name in names}
    variances = {name: torch.ones(max(0, n - first), dtype=torch.float64) for name in names}
    for k in range(first, n):
        key = data_key(context, X[:k + 1], Y[:k + 1])
        forecast = _cached(_forecasts, key)
        if forecast is None or any(name not in forecast for name in names):
            components = _cached(_models, data_key(context, X[:k], Y[:k]))
            if components is None or any(components.get(name) is None for name in names):
                components = fit_prefix(k)
                remember(context, X[:k], Y[:k], components)
            forecast = {name: predictive(gp, X[k]) for name, gp in components.items()
                        if gp is not None}
            _store(_forecasts, key, forecast, FORECAST_CACHE_SIZE)
        for name in names:
            mean, variance = forecast[name]
            errors[name][k - first] = float(Y[k, 0]) - mean
            variances[name][k - first] = variance
    return {name: (errors[name], variances[name]) for name in names}
