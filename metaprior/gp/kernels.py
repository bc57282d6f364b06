"""A deep kernel: a base kernel on the adapted network's last hidden features."""

from __future__ import annotations

import math

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


def feature_kernel(network: FrozenNetwork, nu: float = 2.5) -> ScaleKernel:
    """`ScaleKernel(Matern(nu))` on the network's features, one shared lengthscale.

    One lengthscale (not one per feature) keeps the hyperparameters few enough to fit on a
    handful of points; its log-normal prior grows with sqrt(h) like BoTorch's dimension-scaled
    default, because distances between h-dimensional feature vectors grow that way.
    """
    h = network.n_features
    matern = MaternKernel(nu=nu, lengthscale_prior=LogNormalPrior(math.sqrt(2) + 0.5 * math.log(h),
                                                                  math.sqrt(3)))
    return ScaleKernel(NetworkFeatureKernel(network, matern))
