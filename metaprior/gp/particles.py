"""The posterior over task shifts as an ensemble of GPs (mode "shift").

Each particle `k` of `ShiftParticles` is a task hypothesis `f_k(u) = a_k net(u - t_k) + b_k`.
`ShiftEnsembleModel` is a batch of GPs, member `k` with mean `f_k`, whose posterior is
their equally weighted mixture (BoTorch's `GaussianMixturePosterior`, as for its fully Bayesian
models): acquisition functions average over the hypotheses, so early points go where the
plausible tasks' minima are and where they disagree, and later ones refine the one left.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from metaprior.gp.network import FrozenNetwork
from metaprior.nets import forward
from metaprior.prior import MetaPrior
from metaprior.shift import ShiftParticles


class ShiftEnsemble(nn.Module):
    """The ensemble members' mean functions, in the family's original output units.

    Args:
        prior: the (unadapted) prior whose network is shifted; its weights are copied.
        particles: posterior samples of `(t, a, b)`.
    """

    def __init__(self, prior: MetaPrior, particles: ShiftParticles):
        super().__init__()
        self.base = FrozenNetwork(prior)
        self.register_buffer("t", particles.t.detach().clone().to(torch.float64))
        self.register_buffer("a", particles.a.detach().clone().to(torch.float64))
        self.register_buffer("b", particles.b.detach().clone().to(torch.float64))

    @property
    def n_members(self) -> int:
        return self.t.shape[0]

    def forward(self, U: Tensor) -> Tensor:
        """Member `k`'s function on slice `k`: `... x K x n x d` unit-cube inputs -> `... x K x n`
        in original units (the ensemble's batch dimension is the third from last)."""
        K, d = self.t.shape
        z = forward(self.base.weights, U - self.t.view(K, 1, d))
        return self.base.output_scale.unnormalize(self.a.view(K, 1) * z + self.b.view(K, 1))


def thin(particles: ShiftParticles, k: int) -> ShiftParticles:
    """`k` of the (exchangeable) particles, evenly spaced; all of them if there are fewer."""
    n = particles.t.shape[0]
    idx = torch.linspace(0, n - 1, min(k, n)).round().long()
    return ShiftParticles(t=particles.t[idx], a=particles.a[idx], b=particles.b[idx])
