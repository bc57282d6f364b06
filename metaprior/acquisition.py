"""The acquisition every GP-based method shares: qLogNEI for minimisation, and how it is maximised.

`Optimizer` proposes its BO points with it, and the benchmark's transfer-BO baselines (RGPE,
FSBO) use the same, so that a comparison of methods compares their models rather than their
acquisitions. Noisy EI needs no incumbent value: it integrates over the model's joint posterior
at the observed points (the baseline) and the candidates, so it also works for models whose
outputs are not on the observations' scale.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from botorch.acquisition import qLogNoisyExpectedImprovement
from botorch.acquisition.acquisition import AcquisitionFunction
from botorch.acquisition.objective import LinearMCObjective
from botorch.models.model import Model
from botorch.optim import optimize_acqf
from torch import Tensor

# `optimize_acqf`'s multi-start settings: L-BFGS restarts, chosen among the raw (Sobol) samples.
DEFAULT_NUM_RESTARTS = 8
DEFAULT_RAW_SAMPLES = 256
# L-BFGS iterations per restart.
MAXITER = 100


def noisy_expected_improvement(model: Model, X_baseline: Tensor,
                               X_pending: Tensor | None = None) -> qLogNoisyExpectedImprovement:
    """qLogNEI for *minimisation* of a single-output model.

    Args:
        model: a single-output botorch model (its posterior must be joint over the q points).
        X_baseline: `n x d` observed points (inferior ones are pruned).
        X_pending: `k x d` points asked but not yet observed, or None.

    Returns:
        The acquisition, built from the global torch RNG (its QMC sampler's seed): seed the RNG
        first for a reproducible value.
    """
    # botorch maximises; the objective's weight -1 turns that into minimising the outcome.
    objective = LinearMCObjective(torch.tensor([-1.0], dtype=torch.float64))
    return qLogNoisyExpectedImprovement(model, X_baseline=X_baseline, X_pending=X_pending,
                                        objective=objective, prune_baseline=True)


def acqf_settings(bounds: Tensor, q: int, seed: int, num_restarts: int = DEFAULT_NUM_RESTARTS,
                  raw_samples: int = DEFAULT_RAW_SAMPLES) -> dict:
    """Keyword arguments of `optimize_acqf` (and `optimize_acqf_mixed`).

    Args:
        bounds: `2 x d` box searched.
        q: points proposed jointly.
        seed: seeds the raw samples of the initial conditions (below 2**31).
    """
    return dict(bounds=bounds, q=q, num_restarts=num_restarts, raw_samples=raw_samples,
                options={"seed": seed, "maxiter": MAXITER})


def propose(model: Model, X_baseline: Tensor, bounds: Tensor, q: int, seed: int, *,
            X_pending: Tensor | None = None, num_restarts: int = DEFAULT_NUM_RESTARTS,
            raw_samples: int = DEFAULT_RAW_SAMPLES,
            maximize: Callable[[AcquisitionFunction, dict], Tensor] | None = None) -> Tensor:
    """The `q` points that maximise `noisy_expected_improvement`, reproducibly for a seed.

    Args:
        model, X_baseline, X_pending: as in `noisy_expected_improvement`.
        bounds: `2 x d` box searched; q: points proposed jointly.
        seed: seeds the acquisition's sampler and the optimiser (below 2**31). The global torch
            RNG is left as it was.
        maximize: `(acqf, acqf_settings) -> q x d` in place of `optimize_acqf` (the optimiser
            of a typed space).

    Returns:
        `q x d` points, detached.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        # linear_operator warns each time it adds jitter to a near-singular covariance,
        # which clustered BO points make routine; the result is still correct.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            acqf = noisy_expected_improvement(model, X_baseline, X_pending)
            settings = acqf_settings(bounds, q, seed, num_restarts, raw_samples)
            if maximize is None:
                X, _ = optimize_acqf(acqf, **settings)
            else:
                X = maximize(acqf, settings)
    return X.detach()
