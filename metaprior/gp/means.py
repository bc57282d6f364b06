"""The adapted network as a GPyTorch mean, in the GP's standardised output space."""

from __future__ import annotations

import torch
from gpytorch.means import Mean
from gpytorch.priors import NormalPrior
from torch import Tensor

from metaprior.gp.network import FrozenNetwork


class NetworkMean(Mean):
    """`m(x) = (net(x) - offset) / scale`.

    The GP sees `Normalize`d inputs (the unit cube of the prior's bounds, which is the network's
    own input space) and outcome-transformed targets. `offset` and `scale` are the outcome
    transform's mean and std (0 and 1 without one), so the mean lands exactly in that space.

    Args:
        network: the frozen, adapted network.
        offset: the outcome transform's mean (original units).
        scale: the outcome transform's standard deviation.
    """

    def __init__(self, network: FrozenNetwork, offset: float = 0.0, scale: float = 1.0):
        super().__init__()
        self.network = network
        self.register_buffer("offset", torch.tensor(float(offset), dtype=torch.float64))
        self.register_buffer("scale", torch.tensor(float(scale), dtype=torch.float64))

    def set_output_map(self, offset: Tensor | float, scale: Tensor | float) -> None:
        """The outcome transform's statistics: scalars, or `batch x 1 x 1` for a batched GP."""
        offset, scale = torch.as_tensor(offset), torch.as_tensor(scale)
        shape = offset.shape[:-2] + (1,) if offset.dim() > 2 else ()
        self.offset = offset.reshape(shape).to(self.offset)
        self.scale = scale.reshape(shape).to(self.scale)

    def forward(self, x: Tensor) -> Tensor:
        """`... x n x d` unit-cube inputs -> `... x n` means."""
        return (self.network(x) - self.offset) / self.scale


class WeightedNetworkMean(NetworkMean):
    """`m(x) = c + a (net(x) - offset) / scale`, with the prior weight `a` a GP hyperparameter.

    `a` has a `Normal(1, 0.5)` prior (the network is believed as it is) and is fitted with the
    kernel by marginal likelihood: where the data disagree with the network it shrinks towards
    0 (or below: a negated task), and the GP falls back to a constant mean `c`.
    """

    def __init__(self, network: FrozenNetwork, offset: float = 0.0, scale: float = 1.0):
        super().__init__(network, offset, scale)
        self.register_parameter("weight", torch.nn.Parameter(torch.ones((), dtype=torch.float64)))
        self.register_parameter("constant",
                                torch.nn.Parameter(torch.zeros((), dtype=torch.float64)))
        self.register_prior("weight_prior", NormalPrior(1.0, 0.5), "weight")

    def forward(self, x: Tensor) -> Tensor:
        """`... x n x d` unit-cube inputs -> `... x n` means."""
        return self.constant + self.weight * super().forward(x)
