"""The task-family abstraction: many related minimisation problems over one box.

A family hands out *training* tasks (for meta-training) and *held-out* tasks (for evaluation and
benchmarks) from disjoint sources: separate random streams for parametric families, a fixed task
split for tables.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from metaprior.errors import TaskFamilyError
from metaprior.space import SearchSpace, box_from_unit

SPLITS = ("train", "test")


def validate_bounds(bounds: Tensor | list, name: str = "bounds") -> Tensor:
    """Return `bounds` as a float64 `2 x d` tensor, or raise `TaskFamilyError`."""
    b = torch.as_tensor(bounds, dtype=torch.float64)
    if b.ndim != 2 or b.shape[0] != 2 or b.shape[1] < 1:
        raise TaskFamilyError(f"{name} must have shape 2 x d (got {tuple(b.shape)})")
    if not torch.isfinite(b).all():
        raise TaskFamilyError(f"{name} must be finite (got {b.tolist()})")
    bad = (b[0] >= b[1]).nonzero().flatten().tolist()
    if bad:
        raise TaskFamilyError(
            f"{name} need lower < upper in every dimension; dimensions {bad} have "
            f"lower={b[0, bad].tolist()} >= upper={b[1, bad].tolist()}"
        )
    return b


def stream_seed(seed: int, *labels: object) -> int:
    """A 63-bit seed derived from `seed` and labels: independent, reproducible random streams."""
    text = "/".join([str(int(seed)), *map(str, labels)]).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


def make_generator(seed: int, *labels: object, device: torch.device | str | None = None):
    """A `torch.Generator` on `device` seeded with `stream_seed(seed, *labels)`."""
    g = torch.Generator(device=device or "cpu")
    g.manual_seed(stream_seed(seed, *labels))
    return g


@dataclass
class TaskBatch:
    """Points of B tasks, padded to a common size.

    Attributes:
        X: `B x n x d` inputs in the family's original units.
        Y: `B x n` outputs.
        mask: `B x n` bool, True where a point is real (False for padding).
        task_ids: B identifiers of the tasks (parameters' row index or table task name).
    """

    X: Tensor
    Y: Tensor
    mask: Tensor
    task_ids: list


@dataclass
class Task:
    """One evaluable held-out minimisation task.

    Attributes:
        name: an identifier, unique within its family.
        fn: maps `n x d` inputs (original units, float64) to `n` outputs.
        bounds: `2 x d` box.
        y_min: the task's minimum (known, or from dense sampling), for normalised regret.
        y_max: the task's maximum over the box (from dense sampling).
    """

    name: str
    fn: Callable[[Tensor], Tensor]
    bounds: Tensor
    y_min: float
    y_max: float

    def __call__(self, X: Tensor) -> Tensor:
        return self.fn(X)


class TaskFamily(ABC):
    """A family of related minimisation problems over one box `bounds` (`2 x d`)."""

    def __init__(self, bounds: Tensor | list, name: str):
        self.bounds = validate_bounds(bounds)
        self.name = str(name)

    @property
    def dim(self) -> int:
        return self.bounds.shape[-1]

    @property
    def space(self) -> SearchSpace:
        """The family's raw parameters and their map to the network's inputs (`bounds`).

        A box family's space is the unnamed floats `x0..x{d-1}` of its bounds; `TableFamily`
        keeps its columns' names, or the space it was built with.
        """
        return SearchSpace.from_bounds(self.bounds)

    @abstractmethod
    def sample(
        self, n_tasks: int, n_points: int, generator: torch.Generator, split: str = "train",
        grid: bool = False,
    ) -> TaskBatch:
        """Draw `n_tasks` tasks of `split` with `n_points` points each, in one batched call."""

    @abstractmethod
    def held_out_tasks(self, n_tasks: int, seed: int = 0) -> list[Task]:
        """Evaluable test tasks, disjoint from every training task."""

    def n_train_tasks(self) -> int | None:
        """Number of distinct training tasks, or None when the family is unbounded."""
        return None

    def check_split(self, split: str) -> None:
        if split not in SPLITS:
            raise TaskFamilyError(f"split must be one of {SPLITS} (got {split!r})")

    def uniform_points(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        """Uniform points in the box, shape `shape x d`."""
        u = torch.rand(*shape, self.dim, generator=generator, dtype=torch.float64,
                       device=generator.device)
        return box_from_unit(u, self.bounds)

    def grid_points(self, n_tasks: int, n_points: int) -> Tensor:
        """An evenly spaced grid (1-D families only), shared by all tasks: `B x n x 1`."""
        if self.dim != 1:
            raise TaskFamilyError(f"grid sampling needs a 1-D family (got dim={self.dim})")
        lo, hi = self.bounds[:, 0].tolist()
        x = torch.linspace(lo, hi, n_points, dtype=torch.float64)
        return x.view(1, n_points, 1).expand(n_tasks, n_points, 1).clone()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"
