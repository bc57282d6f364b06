"""`ReptileConfig`: every knob of meta-training and test-time adaptation, validated."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

import numpy as np

from metaprior.errors import ConfigError

INNER_OPTIMIZERS = ("sgd", "adam")
OUTER_OPTIMIZERS = ("sgd", "adam", "nesterov")
OUTER_MOMENTUM = 0.9  # of outer_optimizer="nesterov"


# ---- parameter constraints -------------------------------------------------------------
# Each `check` returns the value normalised, or raises TypeError/ValueError. Booleans are not
# numbers and strings are not booleans, however truthy: `anneal="no"` would anneal.
def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


class PositiveInt:
    def check(self, value) -> int:
        if not _is_integer(value) or value < 1:
            raise ValueError
        return int(value)

    def describe(self) -> str:
        return "a positive integer"


class PositiveNumber:
    """A positive number; finite unless `allow_inf` (+inf as "no limit": a gradient clip
    switched off, which files written before rates had to be finite may hold)."""

    def __init__(self, allow_inf: bool = False):
        self.allow_inf = allow_inf

    def check(self, value) -> float:
        if not _is_real(value) or math.isnan(value) or not value > 0:
            raise ValueError
        if math.isinf(value) and not self.allow_inf:
            raise ValueError
        return float(value)

    def describe(self) -> str:
        return "a positive number (inf: no limit)" if self.allow_inf else "a positive finite number"


class Boolean:
    def check(self, value) -> bool:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError
        return bool(value)

    def describe(self) -> str:
        return "True or False"


class OneOf:
    def __init__(self, choices: tuple[str, ...]):
        self.choices = choices

    def check(self, value) -> str:
        if not isinstance(value, str) or value not in self.choices:
            raise ValueError
        return str(value)

    def describe(self) -> str:
        return f"one of {self.choices}"


class Widths:
    """Hidden-layer widths: positive integers; one integer means one layer."""

    def check(self, value) -> tuple[int, ...]:
        if _is_integer(value):
            value = (value,)
        if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
            raise TypeError
        widths = tuple(PositiveInt().check(v) for v in value)
        if not widths:
            raise ValueError
        return widths

    def describe(self) -> str:
        return "positive widths, e.g. (32, 32)"


class OrNone:
    def __init__(self, inner):
        self.inner = inner

    def check(self, value):
        return None if value is None else self.inner.check(value)

    def describe(self) -> str:
        return f"None or {self.inner.describe()}"


@dataclass(frozen=True)
class ReptileConfig:
    """Batched Reptile's settings. Change fields with `dataclasses.replace(cfg, ...)`.

    Attributes:
        outer_steps: meta-iterations.
        tasks_per_step: B, tasks adapted at once per meta-iteration.
        points_per_task: P, points drawn per task.
        inner_steps: k, minibatch steps per task in the inner loop.
        inner_batch_size: m, points per inner minibatch (epochs are implied: k / ceil(P / m)).
        inner_lr: alpha, the inner learning rate.
        outer_lr: epsilon, the outer learning rate (annealed linearly to 0 when `anneal`).
        hidden: hidden-layer widths of the tanh MLP.
        inner_optimizer: "sgd" or "adam" (Adam with beta1 = 0, as in the Reptile paper).
        outer_optimizer: "sgd" (the paper's epsilon step), "adam", or "nesterov" (SGD with
            Nesterov momentum 0.9) on the pseudo-gradient. With large B the averaged pseudo-
            gradient is accurate but the steps are few; momentum lets each travel further.
        anneal: anneal the outer learning rate linearly to 0.
        grid_points: draw each task's points on a fixed grid (1-D only), as the seed does.
        adapt_steps: inner steps when adapting to observations at test time.
        max_grad_norm: per-task gradient-norm clip in the inner loop (keeps 1-point fits finite).
        checkpoint_every: meta-iterations between checkpoints.
        chunk_size: tasks per vectorised chunk of the inner loop (bounds peak memory); None: all B.
        max_memory_mb: a per-process memory budget (MiB) for the inner loop; the chunk size is
            derived from it (`metaprior.meta.memory`), and the smaller of the two applies.
    """

    outer_steps: int = 2000
    tasks_per_step: int = 32
    points_per_task: int = 50
    inner_steps: int = 16
    inner_batch_size: int = 10
    inner_lr: float = 0.02
    outer_lr: float = 0.003
    hidden: tuple[int, ...] = (32, 32, 32)
    inner_optimizer: str = "sgd"
    outer_optimizer: str = "adam"
    anneal: bool = True
    grid_points: bool = False
    adapt_steps: int = 64
    max_grad_norm: float = 10.0
    checkpoint_every: int = 200
    chunk_size: int | None = None
    max_memory_mb: float | None = None

    def __post_init__(self):
        # One loop over the declared rules (scikit-learn's `_parameter_constraints` style);
        # each rule also normalises (numpy scalars to Python numbers, a width to a tuple).
        for name, constraint in PARAMETER_CONSTRAINTS.items():
            value = getattr(self, name)
            try:
                normalised = constraint.check(value)
            except (TypeError, ValueError):
                raise ConfigError(f"ReptileConfig.{name} must be {constraint.describe()} "
                                  f"(got {value!r})") from None
            object.__setattr__(self, name, normalised)

    @classmethod
    def seed(cls) -> ReptileConfig:
        """The defaults table of the seed (reptile-torch), named for what each value is.

        One task per step on a 100-point grid over [-4, 4]; 5 epochs x 10 minibatches of 10 points
        (50 SGD steps at 0.02); outer step 0.1 annealed; 10,000 iterations; 1-32-32-32-1 tanh MLP;
        evaluation with 32 steps.
        """
        return cls(outer_steps=10_000, tasks_per_step=1, points_per_task=100, inner_steps=50,
                   inner_batch_size=10, inner_lr=0.02, outer_lr=0.1, hidden=(32, 32, 32),
                   inner_optimizer="sgd", outer_optimizer="sgd", anneal=True, grid_points=True,
                   adapt_steps=32, checkpoint_every=1000)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ReptileConfig:
        if not isinstance(d, dict):
            raise ConfigError(f"a ReptileConfig is read from a dict (got {type(d).__name__})")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown ReptileConfig fields {unknown}")
        return cls(**d)  # the constraints turn a JSON list of widths into a tuple


# Field -> rule; `__post_init__` checks them all, and a test checks that every field has one.
PARAMETER_CONSTRAINTS = {
    "outer_steps": PositiveInt(),
    "tasks_per_step": PositiveInt(),
    "points_per_task": PositiveInt(),
    "inner_steps": PositiveInt(),
    "inner_batch_size": PositiveInt(),
    "inner_lr": PositiveNumber(),
    "outer_lr": PositiveNumber(),
    "hidden": Widths(),
    "inner_optimizer": OneOf(INNER_OPTIMIZERS),
    "outer_optimizer": OneOf(OUTER_OPTIMIZERS),
    "anneal": Boolean(),
    "grid_points": Boolean(),
    "adapt_steps": PositiveInt(),
    "max_grad_norm": PositiveNumber(allow_inf=True),
    "checkpoint_every": PositiveInt(),
    "chunk_size": OrNone(PositiveInt()),
    "max_memory_mb": OrNone(PositiveNumber()),
}
