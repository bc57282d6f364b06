"""The prior's zero-shot minimiser: where the meta-init network predicts the lowest value."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize as scipy_minimize
from torch import Tensor
from torch.quasirandom import SobolEngine

from metaprior.prior import MetaPrior
from metaprior.space import box_from_unit

N_RAW = 1024  # Sobol candidates scored before polishing
N_POLISH = 4  # best candidates polished by L-BFGS-B


def prior_minimizer(prior: MetaPrior, bounds: Tensor, seed: int = 0) -> Tensor:
    """`d` point in `bounds` minimising `prior.predict`: Sobol screening, then L-BFGS-B.

    Args:
        prior: the (possibly adapted) prior.
        bounds: `2 x d` box to search, in original units.
        seed: scrambles the Sobol screen.
    """
    bounds = bounds.to(torch.float64)
    U = SobolEngine(prior.dim, scramble=True, seed=seed).draw(N_RAW, dtype=torch.float64)
    with torch.no_grad():
        values = prior.net(prior.to_unit(box_from_unit(U, bounds)))
    starts = U[values.argsort()[:N_POLISH]]

    def objective(u: np.ndarray) -> tuple[float, np.ndarray]:
        ut = torch.tensor(u, dtype=torch.float64, requires_grad=True)
        value = prior.net(prior.to_unit(box_from_unit(ut, bounds)).unsqueeze(0))[0]
        (grad,) = torch.autograd.grad(value, ut)
        return float(value.detach()), grad.numpy()

    best_u, best_v = starts[0].numpy(), float("inf")
    for start in starts:
        res = scipy_minimize(objective, start.numpy(), jac=True, method="L-BFGS-B",
                             bounds=[(0.0, 1.0)] * prior.dim, options={"maxiter": 100})
        if res.fun < best_v:
            best_u, best_v = res.x, float(res.fun)
    return box_from_unit(torch.as_tensor(best_u, dtype=torch.float64).clamp(0, 1), bounds)
