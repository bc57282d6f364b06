"""`ReptileConfig`: every knob of meta-training and test-time adaptation, validated."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from metaprior.errors import ConfigError

INNER_OPTIMIZERS = ("sgd", "adam")
OUTER_OPTIMIZERS = ("sgd", "adam", "nesterov")
OUTER_MOMENTUM = 0.9  # of outer_optimizer="nesterov"


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
        positive_ints = ("outer_steps", "tasks_per_step", "points_per_task", "inner_steps",
                         "inner_batch_size", "adapt_steps", "checkpoint_every")
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"ReptileConfig.{name} must be a positive integer (got {value!r})")
        for name in ("inner_lr", "outer_lr", "max_grad_norm"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0 or value != value:
                raise ConfigError(f"ReptileConfig.{name} must be a positive number (got {value!r})")
        hidden = tuple(self.hidden) if not isinstance(self.hidden, int) else (self.hidden,)
        if not hidden or any(not isinstance(h, int) or h < 1 for h in hidden):
            raise ConfigError(f"ReptileConfig.hidden must be positive widths (got {self.hidden!r})")
        object.__setattr__(self, "hidden", hidden)
        if self.inner_optimizer not in INNER_OPTIMIZERS:
            raise ConfigError(
                f"ReptileConfig.inner_optimizer must be one of {INNER_OPTIMIZERS} "
                f"(got {self.inner_optimizer!r})"
            )
        if self.outer_optimizer not in OUTER_OPTIMIZERS:
            raise ConfigError(
                f"ReptileConfig.outer_optimizer must be one of {OUTER_OPTIMIZERS} "
                f"(got {self.outer_optimizer!r})"
            )
        if self.chunk_size is not None and (not isinstance(self.chunk_size, int)
                                            or self.chunk_size < 1):
            raise ConfigError(f"ReptileConfig.chunk_size must be None or >= 1 "
                              f"(got {self.chunk_size!r})")
        if self.max_memory_mb is not None and (isinstance(self.max_memory_mb, bool)
                                               or not isinstance(self.max_memory_mb, (int, float))
                                               or not self.max_memory_mb > 0):
            raise ConfigError(f"ReptileConfig.max_memory_mb must be None or a positive number "
                              f"(got {self.max_memory_mb!r})")

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
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown ReptileConfig fields {unknown}")
        d = dict(d)
        if "hidden" in d:
            d["hidden"] = tuple(d["hidden"])
        return cls(**d)
