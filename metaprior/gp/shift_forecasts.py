"""Each observation as the shift posterior forecast it before it was made (or without it).

The trusted model scores each of its GPs by how well it predicted points it had not seen. For
the shift ensemble (`ShiftEnsembleModel`) the part that must not see the point is the posterior
over the task's shift: point k is forecast by the particles `infer_shift` draws from the points
before it (prequential) or from all the others (leave-one-out). The residual kernel's few
hyperparameters are fitted on all points, as they are for the other GPs' scores.

A BO run asks for the same prefixes again at every step, so forecasts are kept in a bounded
cache keyed by the data and seed: in a run each step then infers the shift once more, not `n`
times.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import torch
from torch import Tensor

from metaprior.gp.particles import ShiftEnsemble, thin
from metaprior.prior import MetaPrior
from metaprior.shift import infer_shift

# Forecast particles: fewer than the ensemble's posterior uses (`infer_shift`'s defaults), since
# only the forecast's mean and spread at the data are needed, and `n` of them are made.
FORECAST_PARTICLES = 64
FORECAST_PROPOSALS = 1024
FORECAST_MH_STEPS = 10
FORECAST_MEMBERS = 16
CACHE_SIZE = 4096
_cache: OrderedDict[bytes, tuple[Tensor, Tensor]] = OrderedDict()


def _fingerprint(prior: MetaPrior) -> bytes:
    """The prior's weights and shift prior, hashed: an object's `id` can be reused by another
    prior once the first is freed."""
    digest = hashlib.sha1(repr(prior.shift_prior.to_dict()).encode())
    for p in prior.params:
        digest.update(p.detach().cpu().contiguous().numpy().tobytes())
    return digest.digest()


def _key(prior_key: bytes, seen: tuple[Tensor, Tensor], at: Tensor, seed: int) -> bytes:
    digest = hashlib.sha1(prior_key)
    digest.update(str((seed, tuple(seen[0].shape), tuple(at.shape))).encode())
    for t in (*seen, at):
        digest.update(t.contiguous().numpy().tobytes())
    return digest.digest()


def _forecast(prior: MetaPrior, prior_key: bytes, U_seen: Tensor, z_seen: Tensor, U_at: Tensor,
              seed: int) -> tuple[Tensor, Tensor]:
    """Mean and variance (original units) at `U_at` (`m x d`, unit cube) of the shift posterior
    given `(U_seen, z_seen)` (unit cube, normalised outputs)."""
    key = _key(prior_key, (U_seen, z_seen), U_at, seed)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    particles = infer_shift(prior, U_seen, z_seen, n_particles=FORECAST_PARTICLES,
                            n_proposals=FORECAST_PROPOSALS, mh_steps=FORECAST_MH_STEPS,
                            seed=seed)
    ensemble = ShiftEnsemble(prior, thin(particles, FORECAST_MEMBERS))
    with torch.no_grad():
        members = ensemble(U_at.unsqueeze(0).expand(ensemble.n_members, -1, -1))  # K x m
    result = members.mean(0), members.var(0, correction=0)
    _cache[key] = result
    if len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)
    return result


def shift_held_out_forecasts(prior: MetaPrior, X: Tensor, Y: Tensor, scheme: str = "prequential",
                             skip: int = 0, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Each observation as forecast by the shift posterior of the points it may see.

    Args:
        prior: a `MetaPrior` with a shift prior.
        X: `n x d` inputs, original units, in the order made.
        Y: `n x 1` observations.
        scheme: "prequential" (row k from points 0..k-1) or "loo" (row k from all but k).
        skip: prequential: rows below `skip` are not forecast (they are not scored).
        seed: seeds the shift sampler.

    Returns:
        `means`, `n x n` in original units: row k is the forecast made without point k, at
        every point (prequential: at points 0..k, the only ones point k's one-step-ahead
        prediction uses; the rest of the row, and the rows below `skip`, hold the observations
        themselves), and `spread`, `n`: the variance of row k's particles at point k.
    """
    n = X.shape[0]
    U = prior.to_unit(X).to(torch.float64)
    z = prior.normalize_y(Y[:, 0]).to(torch.float64)
    means = Y[:, 0].unsqueeze(0).expand(n, n).clone()
    spread = torch.zeros(n, dtype=torch.float64)
    prior_key = _fingerprint(prior)
    for k in range(skip if scheme == "prequential" else 0, n):
        if scheme == "prequential":
            mean, variance = _forecast(prior, prior_key, U[:k], z[:k], U[:k + 1], seed)
            means[k, :k + 1] = mean
        else:
            keep = torch.arange(n) != k
            mean, variance = _forecast(prior, prior_key, U[keep], z[keep], U, seed)
            means[k] = mean
        spread[k] = variance[k]
    return means, spread
