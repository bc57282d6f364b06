"""Ax integration (optional extra `ax`): a `GenerationStrategy` that runs metaprior's `Optimizer`.

The strategy has two nodes:

1. "ZeroShot": the first trial is the prior's zero-shot minimiser (`prior_minimizer` over the
   space's model coordinates, decoded to valid raw values); further trials requested before any
   data arrives are scrambled Sobol points (every one of them with `zero_shot=False`).
   It hands over once `n_init` trials exist and at least one has completed with finite data.
2. "MetaPrior": each candidate is `Optimizer.ask()` of an `Optimizer` rebuilt from the
   experiment: its completed trials told in trial order, its pending ones marked pending. The
   model is the Optimizer's (default `TrustedPriorModel`, whose informed GP standardises outputs
   by the network's held-out error, `residual_scale`), the acquisition qLogNEI, maximised over
   valid points only.

Why metaprior, not Ax, generates the candidates: the network was trained on the space's model
coordinates (`SearchSpace.to_model`: log10 where asked, one-hot for categoricals), which the
space alone computes. Ax's own transforms (Log, IntToFloat, OneHot) would be a second encoder,
and its BoTorch node would optimise a relaxation and round afterwards, so its acquisition would
never see the rounding. The Optimizer already projects onto valid points, enumerates the
categorical levels, uses the trusted model and its output scale, so Ax users get what
`Optimizer` users get. Ax parameters are translated once, into a `SearchSpace`
(`experiment_space`):

- `RangeParameter` float -> `Float` (`log_scale` -> `log=True`); int -> `Int` (likewise);
- `ChoiceParameter` -> `Categorical` of its values. Ordered choices are treated as unordered
  (one-hot: the order is not used), and the levels may come in any order;
- `FixedParameter` -> a one-level `Categorical` (a constant column).

Logit-scaled ranges, derived and hierarchical parameters, and parameter constraints are refused
with `ConfigError`: the space cannot express them.

The experiment's space must equal the prior's (`SearchSpace.difference` names the first
parameter that differs), with one exception kept from when only boxes existed: a prior of
linear floats takes an experiment of linear floats over another box (as `Optimizer` takes a
bounds tensor); outside the prior's box its network extrapolates.

Scope: one objective, minimised (the priors are trained on minimisation problems; Ax's
`objective="-loss"`), no outcome constraints. Parameters are named and ordered as the prior's
space (`input_names` renames the prior's). The first trial refuses any other experiment with a
message that names what differs. A trial that reports NaN is skipped (Ax drops non-finite
observations) with a warning. Standard errors reported to Ax are not used: the GPs infer the
noise.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pandas as pd
import torch
from ax.core.data import Data
from ax.core.experiment import Experiment
from ax.core.parameter import ChoiceParameter, FixedParameter, ParameterType, RangeParameter
from ax.core.trial_status import TrialStatus
from ax.core.types import TParameterization
from ax.generation_strategy.external_generation_node import ExternalGenerationNode
from ax.generation_strategy.generation_strategy import GenerationStrategy
from ax.generation_strategy.transition_criterion import MinTrials
from torch import Tensor
from torch.quasirandom import SobolEngine

from metaprior.acquisition import DEFAULT_NUM_RESTARTS, DEFAULT_RAW_SAMPLES
from metaprior.errors import ConfigError, InputDataError, InputDataWarning
from metaprior.optim import MODES, Optimizer
from metaprior.prior import MetaPrior
from metaprior.space import Categorical, Float, Int, Parameter, SearchSpace, box_from_unit
from metaprior.tasks.family import stream_seed
from metaprior.zero_shot import prior_minimizer

ZERO_SHOT_NODE = "ZeroShot"
MODEL_NODE = "MetaPrior"


# ---- The experiment's parameters as a SearchSpace
def prior_input_names(prior: MetaPrior, input_names: list[str] | None = None) -> list[str]:
    """The names of the prior's inputs, in its order: `input_names` if given, else its space's."""
    if input_names is None:
        return list(prior.space.names)
    names = [str(n) for n in input_names]
    if len(names) != prior.space.dim or len(set(names)) != len(names):
        raise ConfigError(f"input_names must be {prior.space.dim} distinct names, one per "
                          f"parameter of the prior's space (got {list(input_names)})")
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


def same_levels(param: Categorical, values: list) -> bool:
    """Whether `values` are exactly `param`'s levels, in any order (compared as the space
    compares them: True is not 1, 1 is 1.0)."""
    if len(values) != param.width:
        return False
    try:
        param.encode_column(np.array(values, dtype=object))
    except InputDataError:
        return False
    return True


def parameter_from_ax(p, name: str, like: Parameter | None = None) -> Parameter:
    """One Ax parameter as a metaprior parameter called `name`.

    A choice whose values are `like`'s levels in another order takes `like`'s order: levels are
    matched by value, so only the order of the one-hot columns, which is the prior's, matters.
    """
    if isinstance(p, RangeParameter):
        if p.logit_scale:
            raise ConfigError(f"parameter {p.name!r} is logit-scaled; a metaprior space has "
                              f"linear and log scales only")
        kind = Int if p.parameter_type == ParameterType.INT else Float
        return kind(name, p.lower, p.upper, log=bool(p.log_scale))
    if isinstance(p, ChoiceParameter):
        if p.is_hierarchical:
            raise ConfigError(f"parameter {p.name!r} has dependent parameters; a metaprior space "
                              f"sets every parameter on every point and cannot express them")
        values = list(p.values)
        if isinstance(like, Categorical) and same_levels(like, values):
            values = list(like.choices)
        return Categorical(name, values)
    if isinstance(p, FixedParameter):
        return Categorical(name, [p.value])
    raise ConfigError(f"parameter {p.name!r} is a {type(p).__name__}, which a metaprior space "
                      f"cannot express (supported: float and int ranges, choices, fixed values)")


def experiment_space(experiment: Experiment, prior: MetaPrior,
                     input_names: list[str] | None = None) -> SearchSpace:
    """The experiment's parameters as a `SearchSpace` in the prior's names, checked against the
    prior's space.

    Returns:
        `prior.space` itself, or for a prior of linear floats possibly another box of linear
        floats (the experiment's bounds).

    Raises:
        InputDataError: another number of parameters, other names or another order.
        ConfigError: parameters that a space cannot express, or a space that differs from the
            prior's (the message names the first parameter that differs, by the experiment's
            name).
    """
    search_space = experiment.search_space
    if search_space.parameter_constraints:
        raise ConfigError(f"the experiment has parameter constraints "
                          f"{[str(c) for c in search_space.parameter_constraints]}, which a "
                          f"metaprior space cannot express")
    params = list(search_space.parameters.values())
    names = [p.name for p in params]
    expected = prior_input_names(prior, input_names)
    if len(params) != len(expected):
        raise InputDataError(f"the experiment has {len(params)} parameters {names}, the prior "
                             f"was trained on {len(expected)}")
    check_parameter_names(names, expected)
    prior_params = prior.space.parameters
    here = SearchSpace([parameter_from_ax(p, p.name, like=q)
                        for p, q in zip(params, prior_params, strict=True)])
    renamed_prior = SearchSpace([dataclasses.replace(q, name=n)
                                 for q, n in zip(prior_params, names, strict=True)])
    diff = here.difference(renamed_prior)
    if diff is not None and not (here.is_box and renamed_prior.is_box):
        raise ConfigError(f"the experiment's search space differs from the space of prior "
                          f"{prior.family!r} ('here' is the experiment's): {diff}")
    if diff is None:
        return prior.space
    return SearchSpace([dataclasses.replace(p, name=q.name)
                        for p, q in zip(here.parameters, prior_params, strict=True)])


def ax_parameterization(space: SearchSpace, row: pd.Series, ax_names: list[str]
                        ) -> TParameterization:
    """A row of raw values (the prior's names) -> Ax's `{name: value}` with plain Python values
    (Ax checks an int parameter's value is an `int`, not a NumPy integer)."""
    return {a: (v.item() if isinstance(v, np.generic) else v)
            for a, v in zip(ax_names, row[space.names].tolist(), strict=True)}


def prior_records(parameterizations: list[TParameterization], ax_names: list[str],
                  space: SearchSpace) -> list[dict]:
    """Ax parameterizations -> dicts of the same raw values under the prior's names."""
    return [{n: params[a] for a, n in zip(ax_names, space.names, strict=True)}
            for params in parameterizations]


# ---- The objective and its data
def check_objective(experiment: Experiment) -> str:
    """The name of the experiment's one objective metric, which must be minimised;
    `ConfigError` for several objectives, outcome constraints or a maximised metric."""
    config = experiment.optimization_config
    if config is None:
        raise ConfigError("the experiment has no objective: call configure_optimization first")
    metrics = sorted(config.metric_names)
    if config.is_moo_problem or len(metrics) != 1:
        raise ConfigError(f"metaprior's Ax nodes handle one objective and no outcome "
                          f"constraints; the experiment's optimization config uses metrics "
                          f"{metrics}")
    if not config.objective.minimize:
        raise ConfigError(f"the objective maximises {metrics[0]!r}; metaprior's priors model "
                          f"minimisation problems: configure objective='-{metrics[0]}' and "
                          f"report a value to minimise")
    return metrics[0]


def objective_rows(experiment: Experiment, data: Data) -> pd.DataFrame:
    """The objective's rows of `data` (columns trial_index, arm_name, mean, ...)."""
    df = data.df
    config = experiment.optimization_config
    if config is not None and not df.empty:
        df = df[df["metric_name"].isin(config.metric_names)]
    return df


def finite_mask(df: pd.DataFrame) -> pd.Series:
    return df["mean"].map(lambda v: v is not None and math.isfinite(float(v))).astype(bool)


def trials_with_finite_data(experiment: Experiment) -> tuple[set[int], set[int]]:
    """Indices of the trials whose objective data are all finite, and of those with a NaN or inf
    value (other metrics, which the model never sees, do not count)."""
    df = objective_rows(experiment, experiment.lookup_data())
    if df.empty:
        return set(), set()
    bad = set(df.loc[~finite_mask(df), "trial_index"].astype(int))
    return set(df["trial_index"].astype(int)) - bad, bad


def completed_observations(experiment: Experiment, data: Data
                           ) -> tuple[list[TParameterization], list[float]]:
    """The arms of completed trials with a finite objective value, in trial order (the trusted
    model scores the prior on each point as predicted from the earlier ones), and the values."""
    df = objective_rows(experiment, data)
    if df.empty:
        return [], []
    completed = [i for i, t in experiment.trials.items() if t.status == TrialStatus.COMPLETED]
    df = df[finite_mask(df) & df["trial_index"].isin(completed)]
    df = df.sort_values(["trial_index", "arm_name"], kind="stable")
    arms = experiment.arms_by_name
    return ([arms[a].parameters for a in df["arm_name"]], [float(v) for v in df["mean"]])


class MinTrialsWithFiniteData(MinTrials):
    """`MinTrials` that counts only completed trials whose reported values are all finite.

    Ax drops non-finite observations, so a NaN trial leaves no data, and the model needs at
    least one observation.
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


# ---- The nodes
class PriorNode(ExternalGenerationNode):
    """What both nodes share: before each generation the experiment is checked (one minimised
    objective, the prior's space) and trials that reported NaN are warned about once.

    Args:
        name: the node's name.
        prior: the `MetaPrior`.
        seed: seeds the node's candidates.
        input_names: the names the experiment's parameters must have (default: the prior's).
        transition_criteria: when to leave the node (None: never).
        should_deduplicate: whether Ax regenerates a candidate that repeats an earlier arm
            (which only helps a node whose next draw differs).
    """

    def __init__(self, name: str, prior: MetaPrior, seed: int = 0,
                 input_names: list[str] | None = None, transition_criteria=None,
                 should_deduplicate: bool = True):
        super().__init__(name=name, transition_criteria=transition_criteria,
                         should_deduplicate=should_deduplicate)
        self.prior, self.seed = prior, int(seed)
        self.input_names = prior_input_names(prior, input_names)
        self.warned_nan: set[int] = set()
        self.space: SearchSpace = prior.space
        self.ax_names: list[str] = list(self.input_names)
        self.ax_experiment: Experiment | None = None
        self.ax_data: Data | None = None

    def update_generator_state(self, experiment: Experiment, data: Data) -> None:
        metric = check_objective(experiment)
        self.space = experiment_space(experiment, self.prior, self.input_names)
        self.ax_names = list(experiment.search_space.parameters)
        self.ax_experiment, self.ax_data = experiment, data
        bad = sorted(trials_with_finite_data(experiment)[1] - self.warned_nan)
        if bad:
            warnings.warn(f"trials {bad} reported NaN or inf for {metric!r}; Ax skips those "
                          f"values, and the model takes over once a trial reports a finite one",
                          InputDataWarning, stacklevel=2)
            self.warned_nan.update(bad)

    def parameterization(self, X: Tensor) -> TParameterization:
        """One point of the model coordinates (`D`) -> the Ax parameterization of the valid
        point it decodes to."""
        return ax_parameterization(self.space, self.space.from_model(X).iloc[0], self.ax_names)


class ZeroShotNode(PriorNode):
    """First trial at the prior's zero-shot minimiser; Sobol for any more before data.

    Args:
        prior: the `MetaPrior`.
        n_init: trials generated here before handing over (at least one must complete).
        seed: seeds the zero-shot screen and the Sobol sequence.
        input_names: the prior's input names (default: its space's).
        zero_shot: the first trial at the zero-shot minimiser (else every trial here is Sobol).
    """

    def __init__(self, prior: MetaPrior, n_init: int = 1, seed: int = 0,
                 input_names: list[str] | None = None, zero_shot: bool = True):
        super().__init__(ZERO_SHOT_NODE, prior, seed, input_names, handover_criteria(n_init))
        self.zero_shot = bool(zero_shot)
        self.sobol = SobolEngine(prior.dim, scramble=True,
                                 seed=stream_seed(self.seed, "ax-sobol") % 2**31)

    def get_next_candidate(self, pending_parameters: list[TParameterization]
                           ) -> TParameterization:
        bounds = self.space.model_bounds
        if self.zero_shot and not self.ax_experiment.trials and not pending_parameters:
            x = prior_minimizer(self.prior, bounds, seed=self.seed)
        else:  # the zero-shot point is taken: spread the rest of the initial design
            x = box_from_unit(self.sobol.draw(1, dtype=torch.float64)[0], bounds)
        return self.parameterization(x)


class MetaPriorNode(PriorNode):
    """Candidates from `Optimizer.ask()`, the Optimizer rebuilt from the experiment each time.

    Args:
        prior: the `MetaPrior`.
        seed, mode, num_restarts, raw_samples, adapt_steps: the `Optimizer`'s.
        input_names: the prior's input names (default: its space's).

    Attributes:
        optimizer: the Optimizer of the latest candidate (its `model`, `prior_trust`).
    """

    def __init__(self, prior: MetaPrior, seed: int = 0, input_names: list[str] | None = None,
                 **optimizer_options):
        # The Optimizer is deterministic given the experiment, so Ax's regeneration of a
        # repeated arm would repeat it five times and fail; on a space of few valid points a
        # repeat is the acquisition's choice (and an evaluation of the noise), so it is kept.
        super().__init__(MODEL_NODE, prior, seed, input_names, should_deduplicate=False)
        self.optimizer_options = optimizer_options
        self.optimizer: Optimizer | None = None

    def new_optimizer(self) -> Optimizer:
        """An Optimizer over the experiment's space, told the completed trials. A box goes in
        as a bounds tensor, which may differ from the prior's box (see the module doc)."""
        space = self.space
        opt = Optimizer(space.bounds if space.is_box else space, self.prior, seed=self.seed,
                        **self.optimizer_options)
        params, values = completed_observations(self.ax_experiment, self.ax_data)
        if params:
            opt.tell(self.optimizer_input(opt, params), values)
        return opt

    def optimizer_input(self, opt: Optimizer, params: list[TParameterization]):
        """Ax parameterizations -> what `opt` takes: raw records, or a box's `n x d` tensor."""
        records = prior_records(params, self.ax_names, self.space)
        return records if opt.space is not None else self.space.to_model(records)

    def get_next_candidate(self, pending_parameters: list[TParameterization]
                           ) -> TParameterization:
        # Rebuilt for each candidate: Ax's pending list holds the experiment's running trials
        # and the candidates of this batch so far, and the Optimizer's must be exactly that.
        opt = self.new_optimizer()
        if pending_parameters:
            opt.add_pending(self.optimizer_input(opt, pending_parameters))
        X = opt.ask()
        self.optimizer = opt
        if isinstance(X, pd.DataFrame):
            return ax_parameterization(self.space, X.iloc[0], self.ax_names)
        return self.parameterization(X[0])


def generation_strategy(prior: MetaPrior, mode: str = "trusted", n_init: int = 1,
                        zero_shot: bool = True, seed: int = 0,
                        adapt_steps: int | None = None,
                        input_names: list[str] | None = None,
                        num_restarts: int = DEFAULT_NUM_RESTARTS,
                        raw_samples: int = DEFAULT_RAW_SAMPLES) -> GenerationStrategy:
    """An Ax `GenerationStrategy` that starts from `prior` and continues as `metaprior.Optimizer`.

    Args:
        prior: a `MetaPrior` trained on the family of the experiment's objective; the
            experiment's parameters must form its space (see the module doc for how Ax
            parameters map to a `SearchSpace`).
        mode: the Optimizer's mode: "trusted" (default, `TrustedPriorModel`), "mean",
            "weighted", "kernel", "both" or "shift".
        n_init: trials before the model takes over (default 1: the zero-shot point alone).
        zero_shot: first trial at the prior's zero-shot minimiser (else `n_init` Sobol trials).
        seed: seeds the initial design, the model and the acquisition optimiser.
        adapt_steps: adaptation steps of the network (default: the prior's).
        input_names: the names of the prior's parameters in its order, which the experiment's
            parameters must match (default: the prior's space's names).
        num_restarts, raw_samples: the acquisition optimiser's settings (`Optimizer`'s).

    Example:
        >>> client = Client()
        >>> client.configure_experiment(parameters=[
        ...     RangeParameterConfig("learning_rate", (1e-4, 1e-1), "float", scaling="log"),
        ...     RangeParameterConfig("layers", (1, 8), "int"),
        ...     ChoiceParameterConfig("optimizer", ["adam", "sgd"], "str")])
        >>> client.configure_optimization(objective="-loss")
        >>> client.set_generation_strategy(generation_strategy(prior))
    """
    if not isinstance(prior, MetaPrior):
        raise ConfigError(f"prior must be a MetaPrior (got {type(prior).__name__})")
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {MODES} (got {mode!r})")
    if isinstance(n_init, bool) or not isinstance(n_init, int) or n_init < 1:
        raise ConfigError(f"n_init must be a positive integer (got {n_init!r})")
    options = dict(mode=mode, adapt_steps=adapt_steps, num_restarts=num_restarts,
                   raw_samples=raw_samples)
    # The Optimizer checks its options now, not at the first model trial.
    Optimizer(prior.space.model_bounds, prior, seed=seed, **options)
    input_names = prior_input_names(prior, input_names)
    # Both starts run in ZeroShotNode, so that the experiment is checked before its first trial.
    init = ZeroShotNode(prior, n_init=n_init, seed=seed, input_names=input_names,
                        zero_shot=zero_shot)
    bo = MetaPriorNode(prior, seed=seed, input_names=input_names, **options)
    return GenerationStrategy(name=f"metaprior:{prior.family}:{mode}", nodes=[init, bo])


def fitted_model(strategy: GenerationStrategy):
    """The model of the strategy's latest candidate (None before the model node ran): by
    default a `TrustedPriorModel`, else the mode's `MetaPriorModel` or `ShiftEnsembleModel`."""
    node = strategy._curr  # Ax exposes no public accessor for the current node
    optimizer = getattr(node, "optimizer", None)
    return None if optimizer is None else optimizer.model
