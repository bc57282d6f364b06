"""A frozen copy of a prior's network as an `nn.Module` of buffers.

Buffers (not parameters) keep the weights out of `fit_gpytorch_mll`: the marginal likelihood
fits only the GP's hyperparameters. Buffers still follow `.to()`, which `SingleTaskGP` calls in
place, so every model builds its own copy from the prior's tensors. The output scale is the
prior's own `OutputScale` (two floats, the one map back to original units), not a copy.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from metaprior.nets import forward
from metaprior.prior import MetaPrior


class FrozenNetwork(nn.Module):
    """The adapted network on unit-cube inputs, with the family's output scale.

    Args:
        prior: an (adapted) `MetaPrior`; its weights are copied.
    """

    def __init__(self, prior: MetaPrior):
        super().__init__()
        self.n_weights = len(prior.params)
        for i, p in enumerate(prior.params):
            self.register_buffer(f"w{i}", p.detach().clone().to(torch.float64))
        self.output_scale = prior.output_scale

    @property
    def weights(self) -> list[Tensor]:
        return [getattr(self, f"w{i}") for i in range(self.n_weights)]

    @property
    def n_features(self) -> int:
        return self.weights[-2].shape[-1]

    def forward(self, U: Tensor) -> Tensor:
        """Predictions in the family's original units: `... x n x d` -> `... x n`."""
        return self.output_scale.unnormalize(forward(self.weights, U))

    def features(self, U: Tensor) -> Tensor:
        """Last hidden layer: `... x n x d` -> `... x n x h`."""
        return forward(self.weights, U, features=True)
