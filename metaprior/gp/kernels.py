"""A deep kernel: a base kernel on the adapted network's last hidden features."""

from __future__ import annotations

import math

import torch
from gpytorch.kernels import Kernel, MaternKernel, ScaleKernel
from gpytorch.priors import LogNormalPrior
from torch import Tensor

from metaprior.gp.network import FrozenNetwork


class NetworkFeatureKernel(Kernel):
    """`k(x, x') = base(phi(x), phi(x'))` with `phi` the frozen network's features.

    Args:
        network: the frozen, adapted network (shared with a `NetworkMean` in mode "both").
        base_kernel: a stationary kernel on `h`-dimensional features.
    """

    def __init__(self, network: FrozenNetwork, base_kernel: Kernel, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.base_kernel = base_kernel

    @property
    def is_stationary(self) -> bool:
        return False

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False,
                last_dim_is_batch: bool = False, **params) -> Tensor:
        """`... x n x d`, `... x m x d` -> `... x n x m` (or `... x n` with `diag`)."""
        z1 = self.network.features(x1)
        z2 = z1 if x2 is x1 else self.network.features(x2)
        return self.base_kernel.forward(z1, z2, diag=diag, **params)


def residual_lengthscale_prior(dim: int) -> LogNormalPrior:
    """Log-normal prior with median `0.2 sqrt(dim)` and a narrow spread.

    The kernel models what the network gets wrong, which is local: near the observations the
    adapted network is right, far from them it may be confidently wrong. BoTorch's default prior
    (median about `5.8` at d = 2 on the unit cube) lets the marginal likelihood, fed points
    clustered around the network's minimum, pick a lengthscale so long that the posterior has no
    variance anywhere, and BO stalls on a spurious minimum. A short lengthscale keeps
    uncertainty away from the data. Distances grow like sqrt(dim), so the median does too.
    """
    return LogNormalPrior(math.log(0.2) + 0.5 * math.log(dim), 0.5)


def residual_kernel(dim: int, nu: float = 2.5, ard: bool = True,
                    batch_shape: torch.Size = torch.Size()) -> MaternKernel:  # noqa: B008
    """Matern kernel for the GP's residual around the network mean, on `dim` inputs."""
    return MaternKernel(nu=nu, ard_num_dims=dim if ard else None, batch_shape=batch_shape,
                        lengthscale_prior=residual_lengthscale_prior(dim))


def feature_kernel(network: FrozenNetwork, nu: float = 2.5) -> ScaleKernel:
    """`ScaleKernel(Matern(nu))` on the network's features, one shared lengthscale.

    One lengthscale (not one per feature) keeps the hyperparameters few enough to fit on a
    handful of points; its prior is `residual_lengthscale_prior(h)` for `h` features.
    """
    base = residual_kernel(network.n_features, nu=nu, ard=False)
    return ScaleKernel(NetworkFeatureKernel(network, base))
