"""Ax integration (optional extra `ax`): a `GenerationStrategy` that runs `MetaPriorModel`.

The strategy has two nodes:

1. "ZeroShot": the first trial is the prior's zero-shot minimiser (`prior_minimizer` over the
   experiment's box); further trials requested before any data arrives are scrambled Sobol
   (every one of them with `zero_shot=False`).
   It hands over once `n_init` trials exist and at least one has completed with finite data.
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

Scope: one objective and no outcome constraints, every parameter a float `RangeParameter`
with `linear` scaling, named and ordered as the prior's inputs (`x0`, ..., `x{d-1}` unless
`input_names` says otherwise; `configure_experiment(parameters=[...])` order). The first trial
refuses any other experiment with a message that names what differs. A trial that reports NaN
is skipped (Ax drops non-finite observations) with a warning, and the model takes over only
once a trial has reported a finite value.
"""

from __future__ import annotations

import math
import warnings
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

from metaprior.errors import ConfigError, InputDataError, InputDataWarning
from metaprior.gp.model import MODES, MetaPriorModel
from metaprior.prior import MetaPrior
from metaprior.space import box_from_unit
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
                         input_names: list[str] | None = None,
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
        check_parameter_names(list(training_data.feature_names), prior_input_names(prior, input_names))
        if Y.shape[-1] != 1:
            raise ConfigError(f"metaprior's Ax model handles one objective and no outcome "
                              f"constraints; the data hold {Y.shape[-1]} outcomes "
                              f"{training_data.outcome_names}")
        inputs: dict[str, Any] = {"train_X": X, "train_Y": Y, "prior": prior, "mode": mode,
                                  "adapt_steps": adapt_steps}
        if training_data.Yvar is not None:
            inputs["train_Yvar"] = training_data.Yvar
        return inputs


def prior_input_names(prior: MetaPrior, input_names: list[str] | None = None) -> list[str]:
    """The names of the prior's inputs, in its order: `input_names` if given, else its space's
    (once priors carry one), else `x0`, ..., `x{d-1}`."""
    if input_names is None:
        space = getattr(prior, "space", None)
        input_names = getattr(space, "names", None)
    if input_names is None:
        return [f"x{j}" for j in range(prior.dim)]
    names = [str(n) for n in input_names]
    if len(names) != prior.dim or len(set(names)) != len(names):
        raise ConfigError(f"input_names must be {prior.dim} distinct names, one per input of the "
                          f"prior (got {list(input_names)})")
    return names


def check_parameter_names(names: list[str], expected: list[str]) -> None:
    """The experiment's parameter names must be the prior's input names in the prior's order;
    else the prior would be applied to swapped or unrelated axes (`InputDataError`)."""
    if names == expected:
        return
    if sorted(names) == sorted(expected):
        raise InputDataError(
            f"the experiment's parameters {names} are the prior's inputs in another order; the "
            f"prior expects {expected}: configure the experiment's parameters in that order")
    raise InputDataError(
        f"the experiment's parameters {names} do not match the prior's inputs {expected}; name "
        f"them so (in that order), or pass input_names=[...] to generation_strategy if the "
        f"prior's inputs had other names")


def check_objective(experiment: Experiment) -> str:
    """The name of the experiment's one objective metric; `ConfigError` for several objectives
    or outcome constraints, which the single-output model cannot represent."""
    config = experiment.optimization_config
    if config is None:
        raise ConfigError("the experiment has no objective: call configure_optimization first")
    metrics = sorted(config.metric_names)
    if config.is_moo_problem or len(metrics) != 1:
        raise ConfigError(f"metaprior's Ax model handles one objective and no outcome "
                          f"constraints; the experiment's optimization config uses metrics "
                          f"{metrics}")
    return metrics[0]


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


def trials_with_finite_data(experiment: Experiment) -> tuple[set[int], set[int]]:
    """Indices of the trials whose objective data are all finite, and of those with a NaN or inf
    value (other metrics, which the model never sees, do not count)."""
    df = experiment.lookup_data().df
    config = experiment.optimization_config
    if config is not None and not df.empty:
        df = df[df["metric_name"].isin(config.metric_names)]
    if df.empty:
        return set(), set()
    finite = df["mean"].map(lambda v: v is not None and math.isfinite(float(v)))
    bad = set(df.loc[~finite, "trial_index"].astype(int))
    return set(df["trial_index"].astype(int)) - bad, bad


class MinTrialsWithFiniteData(MinTrials):
    """`MinTrials` that counts only completed trials whose reported values are all finite.

    Ax drops non-finite observations before fitting, so a NaN trial leaves no data, and a model
    node reached with no finite data at all fails inside Ax (an `IndexError`).
    """

    def num_contributing_to_threshold(self, experiment: Experiment,
                                      trials_from_node: set[int]) -> int:
        completed = {i for i, t in experiment.trials.items() if t.status == TrialStatus.COMPLETED}
        return len(completed & trials_with_finite_data(experiment)[0])


def handover_criteria(n_init: int) -> list[MinTrials]:
    """Leave the first node after `n_init` trials, once at least one has completed with finite
    data."""
    return [
        MinTrials(threshold=n_init, transition_to=MODEL_NODE, use_all_trials_in_exp=True,
                  not_in_statuses=[TrialStatus.FAILED, TrialStatus.ABANDONED]),
        MinTrialsWithFiniteData(threshold=1, transition_to=MODEL_NODE, use_all_trials_in_exp=True,
                                only_in_statuses=[TrialStatus.COMPLETED],
                                count_only_trials_with_data=True),
    ]


class ZeroShotNode(ExternalGenerationNode):
    """First trial at the prior's zero-shot minimiser; Sobol for any more before data.

    It also checks the experiment before the first trial (one objective, the prior's parameters
    in its order) and warns about trials that reported NaN.

    Args:
        prior: the `MetaPrior`.
        n_init: trials generated here before handing over (at least one must complete).
        seed: seeds the zero-shot screen and the Sobol sequence.
        input_names: the prior's input names (default: `prior_input_names(prior)`).
        zero_shot: the first trial at the zero-shot minimiser (else every trial here is Sobol).
    """

    def __init__(self, prior: MetaPrior, n_init: int = 1, seed: int = 0,
                 input_names: list[str] | None = None, zero_shot: bool = True):
        super().__init__(
            name=ZERO_SHOT_NODE,
            transition_criteria=handover_criteria(n_init),
        )
        self.prior, self.seed, self.zero_shot = prior, int(seed), bool(zero_shot)
        self.input_names = prior_input_names(prior, input_names)
        self.warned_nan: set[int] = set()
        self.names: list[str] = []
        self.bounds: torch.Tensor | None = None
        self.n_existing = 0
        self.sobol = SobolEngine(prior.dim, scramble=True,
                                 seed=stream_seed(self.seed, "ax-sobol") % 2**31)

    def update_generator_state(self, experiment: Experiment, data: Data) -> None:
        metric = check_objective(experiment)
        self.names, self.bounds = range_box(experiment, self.prior.dim)
        check_parameter_names(self.names, self.input_names)
        self.n_existing = len(experiment.trials)
        bad = sorted(trials_with_finite_data(experiment)[1] - self.warned_nan)
        if bad:
            warnings.warn(f"trials {bad} reported NaN or inf for {metric!r}; Ax skips those "
                          f"values, and the model takes over once a trial reports a finite one",
                          InputDataWarning, stacklevel=2)
            self.warned_nan.update(bad)

    def get_next_candidate(self, pending_parameters: list[TParameterization]
                           ) -> TParameterization:
        if self.zero_shot and self.n_existing == 0 and not pending_parameters:
            x = prior_minimizer(self.prior, self.bounds, seed=self.seed)
        else:  # the zero-shot point is taken: spread the rest of the initial design
            x = box_from_unit(self.sobol.draw(1, dtype=torch.float64)[0], self.bounds)
        return {name: float(v) for name, v in zip(self.names, x.tolist(), strict=True)}


def model_config(prior: MetaPrior, mode: str = "mean", adapt_steps: int | None = None,
                 input_names: list[str] | None = None) -> ModelConfig:
    """The Ax `ModelConfig` for `AxMetaPriorModel`.

    No Ax input transform: the model builds `Normalize` with the prior's bounds. A
    `Standardize` outcome transform, into whose space the model maps the network mean.
    """
    return ModelConfig(
        botorch_model_class=AxMetaPriorModel,
        model_options={"prior": prior, "mode": mode, "adapt_steps": adapt_steps,
                       "input_names": input_names},
        input_transform_classes=None,
        outcome_transform_classes=[Standardize],
        outcome_transform_options={"Standardize": {"m": 1}},
        name=f"MetaPrior:{mode}",
    )


def generation_strategy(prior: MetaPrior, mode: str = "mean", n_init: int = 1,
                        zero_shot: bool = True, seed: int = 0,
                        adapt_steps: int | None = None,
                        torch_device: str | None = None,
                        input_names: list[str] | None = None) -> GenerationStrategy:
    """An Ax `GenerationStrategy` that starts from `prior` and models with `MetaPriorModel`.

    Args:
        prior: a `MetaPrior` trained on the family of the experiment's objective.
        mode: "mean", "kernel" or "both" (see `MetaPriorModel`).
        n_init: trials before the model takes over (default 1: the zero-shot point alone).
        zero_shot: first trial at the prior's zero-shot minimiser (else `n_init` Sobol trials).
        seed: seeds the initial design.
        adapt_steps: adaptation steps of the network (default: the prior's).
        torch_device: device of the BoTorch model, e.g. "cuda".
        input_names: the names of the prior's inputs in its order, which the experiment's
            parameters must match (default: the prior's space's names, else `x0`, ...,
            `x{d-1}`).

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
    input_names = prior_input_names(prior, input_names)
    # Both starts run in ZeroShotNode, so that the experiment is checked before its first trial.
    init = ZeroShotNode(prior, n_init=n_init, seed=seed, input_names=input_names,
                        zero_shot=zero_shot)
    generator_kwargs: dict[str, Any] = {
        "surrogate_spec": SurrogateSpec(model_configs=[model_config(prior, mode, adapt_steps,
                                                                    input_names)]),
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
