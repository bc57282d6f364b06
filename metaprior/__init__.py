"""metaprior: meta-learned neural-network priors for Bayesian optimisation.

Reptile (Nichol, Achiam & Schulman 2018) meta-trains a small network on a task family; BoTorch
uses the adapted network as a GP's mean, deep-kernel feature map, or both (Plug 2021,
arXiv 2101.00729).
"""

import importlib

# Public names and the submodules that define them. They load on first use (PEP 562), so that
# `import metaprior` is instant and `python -m metaprior` can catch a Ctrl-C during the heavy
# imports (torch, botorch) instead of dying with a traceback.
_EXPORTS = {
    "errors": "metaprior.errors",
    "tasks": "metaprior.tasks",
    "ReptileConfig": "metaprior.config",
    "MetaPriorModel": "metaprior.gp.model",
    "ShiftEnsembleModel": "metaprior.gp.shift_model",
    "TrustedPriorModel": "metaprior.gp.trusted",
    "evaluate_few_shot": "metaprior.meta.evaluate",
    "cross_validate_outer_steps": "metaprior.meta.early_stopping",
    "meta_train": "metaprior.meta.reptile",
    "Optimizer": "metaprior.optim",
    "OptimizeResult": "metaprior.optim",
    "minimize": "metaprior.optim",
    "MetaPrior": "metaprior.prior",
    "ShiftPrior": "metaprior.shift",
    "attach_shift_prior": "metaprior.shift",
    "estimate_shift_prior": "metaprior.shift",
    "infer_shift": "metaprior.shift",
    "Categorical": "metaprior.space",
    "Float": "metaprior.space",
    "Int": "metaprior.space",
    "SearchSpace": "metaprior.space",
    "service": "metaprior.service",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'metaprior' has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name])
    value = module if module.__name__ == f"metaprior.{name}" else getattr(module, name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


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
    "cross_validate_outer_steps",
    "errors",
    "estimate_shift_prior",
    "evaluate_few_shot",
    "infer_shift",
    "meta_train",
    "minimize",
    "service",
    "tasks",
]
