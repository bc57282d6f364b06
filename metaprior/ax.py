"""Ax integration (optional extra `ax`): a `GenerationStrategy` that runs `MetaPriorModel`.

The strategy has two nodes:

1. "ZeroShot": the first trial is the prior's zero-shot minimiser (`prior_minimizer` over the
   experiment's box); further trials requested before any data arrives are scrambled Sobol.
   It hands over once `n_init` trials exist and at least one has completed with data.
2. "MetaPrior": modular BoTorch (`Generators.BOTORCH_MODULAR`) with `AxMetaPriorModel`
   and Ax's default acquisition (qLogNEI for one objective).

Why the transforms differ from Ax's defaults: the network was trained on the family's
original units, mapped to the unit cube with the *prior's* bounds, and on raw (minimised)
outputs. Ax's default BoTorch node log-/logit-transforms X, and winsorises, bilog-transforms
and standardises Y before the model sees them. Here the adapter applies no transform, so the
model receives X in original units and Y exactly as reported; `MetaPriorModel` then builds its
own `Normalize` (prior bounds) and `Standardize`, into whose space it maps the network mean.
Ax expresses minimisation through objective weights, never by negating Y, so a prior trained
on minimisation problems models a minimised metric as it is.

Scope: one objective, every parameter a float `RangeParameter`, in the prior's input order
(`configure_experiment(parameters=[...])` order) and `linear` scaling.
"""

from __future__ import annotations

from typing import Any

import torch
from ax.adapter.registry import Generators
from ax.core.data import Data
from ax.core.experiment import Experiment
from ax.core.parameter import ParameterType, RangeParameter
from ax.core.trial_status import TrialStatus
from ax.core.types import TParameterization
from ax.generation_strategy.external_generation_node import ExternalGenerationNode
from ax.generation_strategy.generation_node import GenerationNode
from ax.generation_strategy.generation_strategy import GenerationStrategy
from ax.generation_strategy.generator_spec import GeneratorSpec
from ax.generation_strategy.transition_criterion import MinTrials
from ax.generators.torch.botorch_modular.surrogate import ModelConfig, SurrogateSpec
from botorch.models.transforms.outcome import Standardize
from botorch.utils.datasets import SupervisedDataset
from torch.quasirandom import SobolEngine

from metaprior.errors import ConfigError, InputDataError
from metaprior.gp.model import MODES, MetaPriorModel
from metaprior.prior import MetaPrior
from metaprior.tasks.family import stream_seed
from metaprior.zero_shot import prior_minimizer

# Ax hands the model its own `Standardize`, which mode "shift"'s batch of GPs cannot use.
AX_MODES = tuple(m for m in MODES if m != "shift")

ZERO_SHOT_NODE = "ZeroShot"
MODEL_NODE = "MetaPrior"


class AxMetaPriorModel(MetaPriorModel):
    """`MetaPriorModel` with the input constructor Ax's modular BoTorch calls.

    Ax calls `construct_inputs(training_data, **model_options, **search_space_kwargs)`; the
    inherited `SingleTaskGP.construct_inputs` would drop `prior` and `mode`.
    """

    @classmethod
    def construct_inputs(cls, training_data: SupervisedDataset, *, prior: MetaPrior,
                         mode: str = "mean", adapt_steps: int | None = None,
                         **kwargs: Any) -> dict[str, Any]:
        """Model kwargs from an Ax dataset: `X` is `n x d` (original units), `Y` is `n x 1`."""
        unsupported = sorted(k for k, v in kwargs.items() if v)
        if unsupported:
            raise ConfigError(
                f"metaprior's Ax model supports float range parameters only; the search space "
                f"asks for {unsupported}"
            )
        X, Y = training_data.X, training_data.Y
        if X.shape[-1] != prior.dim:
            raise InputDataError(
                f"the experiment has {X.shape[-1]} parameters {training_data.feature_names}, "
                f"the prior was trained on {prior.dim}"
            )
        inputs: dict[str, Any] = {"train_X": X, "train_Y": Y, "prior": prior, "mode": mode,
                                  "adapt_steps": adapt_steps}
        if training_data.Yvar is not None:
            inputs["train_Yvar"] = training_data.Yvar
        return inputs


def range_box(experiment: Experiment, dim: int) -> tuple[list[str], torch.Tensor]:
    """Names and `2 x d` bounds of the experiment's parameters; they must be float ranges."""
    params = list(experiment.search_space.parameters.values())
    bad = [p.name for p in params if not isinstance(p, RangeParameter)
           or p.parameter_type != ParameterType.FLOAT or p.log_scale or p.logit_scale]
    if bad:
        raise ConfigError(f"parameters {bad} are not linear float ranges; a metaprior "
                          "prior models float range parameters only")
    if len(params) != dim:
        raise InputDataError(f"the experiment has {len(params)} parameters "
                             f"{[p.name for p in params]}, the prior was trained on {dim}")
    bounds = torch.tensor([[p.lower for p in params], [p.upper for p in params]],
                          dtype=torch.float64)
    return [p.name for p in params], bounds


def handover_criteria(n_init: int) -> list[MinTrials]:
    """Leave the first node after `n_init` trials, once at least one has completed with data."""
    return [
        MinTrials(threshold=n_init, transition_to=MODEL_NODE, use_all_trials_in_exp=True,
                  not_in_statuses=[TrialStatus.FAILED, TrialStatus.ABANDONED]),
        MinTrials(threshold=1, transition_to=MODEL_NODE, use_all_trials_in_exp=True,
                  only_in_statuses=[TrialStatus.COMPLETED], count_only_trials_with_data=True),
    ]


class ZeroShotNode(ExternalGenerationNode):
    """First trial at the prior's zero-shot minimiser; Sobol for any more before data.

    Args:
        prior: the `MetaPrior`.
        n_init: trials generated here before handing over (at least one must complete).
        seed: seeds the zero-shot screen and the Sobol sequence.
    """

    def __init__(self, prior: MetaPrior, n_init: int = 1, seed: int = 0):
        super().__init__(
            name=ZERO_SHOT_NODE,
            transition_criteria=handover_criteria(n_init),
        )
        self.prior, self.seed = prior, int(seed)
        self.names: list[str] = []
        self.bounds: torch.Tensor | None = None
        self.n_existing = 0
        self.sobol = SobolEngine(prior.dim, scramble=True,
                                 seed=stream_seed(self.seed, "ax-sobol") % 2**31)

    def update_generator_state(self, experiment: Experiment, data: Data) -> None:
        self.names, self.bounds = range_box(experiment, self.prior.dim)
        self.n_existing = len(experiment.trials)

    def get_next_candidate(self, pending_parameters: list[TParameterization]
                           ) -> TParameterization:
        lo, hi = self.bounds
        if self.n_existing == 0 and not pending_parameters:
            x = prior_minimizer(self.prior, self.bounds, seed=self.seed)
        else:  # the zero-shot point is taken: spread the rest of the initial design
            x = lo + self.sobol.draw(1, dtype=torch.float64)[0] * (hi - lo)
        return {name: float(v) for name, v in zip(self.names, x.tolist(), strict=True)}


def model_config(prior: MetaPrior, mode: str = "mean",
                 adapt_steps: int | None = None) -> ModelConfig:
    """The Ax `ModelConfig` for `AxMetaPriorModel`.

    No Ax input transform: the model builds `Normalize` with the prior's bounds. A
    `Standardize` outcome transform, into whose space the model maps the network mean.
    """
    return ModelConfig(
        botorch_model_class=AxMetaPriorModel,
        model_options={"prior": prior, "mode": mode, "adapt_steps": adapt_steps},
        input_transform_classes=None,
        outcome_transform_classes=[Standardize],
        outcome_transform_options={"Standardize": {"m": 1}},
        name=f"MetaPrior:{mode}",
    )


def generation_strategy(prior: MetaPrior, mode: str = "mean", n_init: int = 1,
                        zero_shot: bool = True, seed: int = 0,
                        adapt_steps: int | None = None,
                        torch_device: str | None = None) -> GenerationStrategy:
    """An Ax `GenerationStrategy` that starts from `prior` and models with `MetaPriorModel`.

    Args:
        prior: a `MetaPrior` trained on the family of the experiment's objective.
        mode: "mean", "kernel" or "both" (see `MetaPriorModel`).
        n_init: trials before the model takes over (default 1: the zero-shot point alone).
        zero_shot: first trial at the prior's zero-shot minimiser (else `n_init` Sobol trials).
        seed: seeds the initial design.
        adapt_steps: adaptation steps of the network (default: the prior's).
        torch_device: device of the BoTorch model, e.g. "cuda".

    Example:
        >>> client = Client()
        >>> client.configure_experiment(parameters=[RangeParameterConfig("x0", (-5, 10),
        ...                                                             "float"), ...])
        >>> client.configure_optimization(objective="-loss")
        >>> client.set_generation_strategy(generation_strategy(prior))
    """
    if not isinstance(prior, MetaPrior):
        raise ConfigError(f"prior must be a MetaPrior (got {type(prior).__name__})")
    if mode not in AX_MODES:
        raise ConfigError(f"mode must be one of {AX_MODES} through Ax (got {mode!r}); mode "
                          f"'shift' (an ensemble of GPs) works with metaprior.Optimizer")
    if isinstance(n_init, bool) or not isinstance(n_init, int) or n_init < 1:
        raise ConfigError(f"n_init must be a positive integer (got {n_init!r})")
    if zero_shot:
        init: GenerationNode = ZeroShotNode(prior, n_init=n_init, seed=seed)
    else:
        init = GenerationNode(
            name=ZERO_SHOT_NODE,
            generator_specs=[GeneratorSpec(generator_enum=Generators.SOBOL,
                                           generator_kwargs={"seed": seed})],
            transition_criteria=handover_criteria(n_init),
        )
    generator_kwargs: dict[str, Any] = {
        "surrogate_spec": SurrogateSpec(model_configs=[model_config(prior, mode, adapt_steps)]),
        # No adapter transforms: X stays in original units, Y as reported (see module doc).
        "transforms": [],
    }
    if torch_device is not None:
        generator_kwargs["torch_device"] = torch.device(torch_device)
    bo = GenerationNode(
        name=MODEL_NODE,
        generator_specs=[GeneratorSpec(generator_enum=Generators.BOTORCH_MODULAR,
                                       generator_kwargs=generator_kwargs)],
        should_deduplicate=True,
    )
    return GenerationStrategy(name=f"metaprior:{prior.family}:{mode}", nodes=[init, bo])


def fitted_model(strategy: GenerationStrategy):
    """The BoTorch model of the strategy's latest fit (None before the model node ran)."""
    node = strategy._curr  # Ax exposes no public accessor for the current node's adapter
    spec = getattr(node, "generator_spec_to_gen_from", None)
    adapter = getattr(spec, "_fitted_adapter", None) if spec is not None else None
    if adapter is None:
        return None
    return adapter.generator.surrogate.model
