"""BoTorch integration: the trusted default model, the adapted network as GP mean, deep-kernel
features or both, and the task-translation ensemble."""

from metaprior.gp.kernels import NetworkFeatureKernel, feature_kernel
from metaprior.gp.means import NetworkMean
from metaprior.gp.model import MODES, MetaPriorModel
from metaprior.gp.network import FrozenNetwork
from metaprior.gp.shift_model import ShiftEnsembleModel
from metaprior.gp.transforms import RESIDUAL_FLOOR, FloorStandardize
from metaprior.gp.trusted import TrustedPriorModel

__all__ = [
    "MODES",
    "RESIDUAL_FLOOR",
    "FloorStandardize",
    "FrozenNetwork",
    "MetaPriorModel",
    "NetworkFeatureKernel",
    "NetworkMean",
    "ShiftEnsembleModel",
    "TrustedPriorModel",
    "feature_kernel",
]
