"""metaprior: meta-learned neural-network priors for Bayesian optimisation.

Reptile (Nichol, Achiam & Schulman 2018) meta-trains a small network on a task family; BoTorch
uses the adapted network as a GP's mean, deep-kernel feature map, or both (Plug 2021,
arXiv 2101.00729).
"""

from metaprior import errors, tasks
from metaprior.config import ReptileConfig
from metaprior.gp.model import MetaPriorModel
from metaprior.gp.shift_model import ShiftEnsembleModel
from metaprior.gp.trusted import TrustedPriorModel
from metaprior.meta.evaluate import evaluate_few_shot
from metaprior.meta.reptile import meta_train
from metaprior.optim import Optimizer, OptimizeResult, minimize
from metaprior.prior import MetaPrior
from metaprior.shift import ShiftPrior, attach_shift_prior, estimate_shift_prior, infer_shift
from metaprior.space import Categorical, Float, Int, SearchSpace

__version__ = "0.1.0"

__all__ = [
    "Categorical",
    "Float",
    "Int",
    "MetaPrior",
    "MetaPriorModel",
    "OptimizeResult",
    "Optimizer",
    "ReptileConfig",
    "SearchSpace",
    "ShiftEnsembleModel",
    "ShiftPrior",
    "TrustedPriorModel",
    "attach_shift_prior",
    "errors",
    "estimate_shift_prior",
    "evaluate_few_shot",
    "infer_shift",
    "meta_train",
    "minimize",
    "tasks",
]
