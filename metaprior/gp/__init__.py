"""BoTorch integration: the adapted network as GP mean, deep-kernel features, or both."""

from metaprior.gp.kernels import NetworkFeatureKernel, feature_kernel
from metaprior.gp.means import NetworkMean
from metaprior.gp.model import MODES, MetaPriorModel
from metaprior.gp.network import FrozenNetwork
from metaprior.gp.transforms import RESIDUAL_FLOOR, FloorStandardize

__all__ = [
    "MODES",
    "RESIDUAL_FLOOR",
    "FloorStandardize",
    "FrozenNetwork",
    "MetaPriorModel",
    "NetworkFeatureKernel",
    "NetworkMean",
    "feature_kernel",
]
