"""Parametric task families, batched over tasks: `fn(X: ... x n x d, params: ... x p) -> ... x n`.

`FunctionFamily` takes a user's function; the built-ins follow the seed (Logistic), MAML
(Sinusoid) and MetaBO (random translations and scalings of Forrester, Branin and Hartmann).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from metaprior.errors import TaskFamilyError
from metaprior.space import box_from_unit
from metaprior.tasks.family import Task, TaskBatch, TaskFamily, make_generator

Fn = Callable[[Tensor, Tensor], Tensor]
SampleParams = Callable[[int, torch.Generator], Tensor]

# Points per dimension used to estimate a held-out task's range (y_max, and y_min when unknown).
DENSE_POINTS = 4096


class FunctionFamily(TaskFamily):
    """A family given by a batched function and a parameter sampler.

    Args:
        fn: `fn(X, params)` with X `... x n x d` (original units) and params `... x p`, returning
            `... x n`. It must broadcast over the leading (task) dimensions.
        bounds: `2 x d` box.
        sample_params: `sample_params(n_tasks, generator) -> n_tasks x p`.
        name: a short name.
        optimum: optional `optimum(params: B x p) -> B` with each task's known minimum value.

    Example:
        >>> fam = FunctionFamily(lambda X, p: ((X - p.unsqueeze(-2)) ** 2).sum(-1),
        ...                      torch.tensor([[-1.0], [1.0]]),
        ...                      lambda n, g: torch.rand(n, 1, generator=g) - 0.5, name="shifted")
    """

    def __init__(self, fn: Fn, bounds, sample_params: SampleParams, name: str = "custom",
                 optimum: Callable[[Tensor], Tensor] | None = None):
        super().__init__(bounds, name)
        self.fn = fn
        self.sample_params = sample_params
        self.optimum = optimum

    def draw_params(self, n_tasks: int, generator: torch.Generator) -> Tensor:
        """`n_tasks x p` parameters (float64), validated."""
        if int(n_tasks) < 1:
            raise TaskFamilyError(f"n_tasks must be >= 1 (got {n_tasks})")
        params = torch.as_tensor(self.sample_params(int(n_tasks), generator), dtype=torch.float64)
        if params.ndim == 1:
            params = params.unsqueeze(-1)
        if params.shape[0] != n_tasks:
            raise TaskFamilyError(
                f"sample_params({n_tasks}, g) returned {params.shape[0]} rows, expected {n_tasks}"
            )
        return params

    def evaluate(self, X: Tensor, params: Tensor) -> Tensor:
        """Batched evaluation: X `B x n x d`, params `B x p` -> `B x n`."""
        Y = self.fn(X, params.to(X))
        if not isinstance(Y, Tensor) or Y.shape != X.shape[:-1]:
            got = tuple(Y.shape) if isinstance(Y, Tensor) else type(Y).__name__
            raise TaskFamilyError(
                f"{self.name}: fn returned shape {got}, expected {tuple(X.shape[:-1])}"
            )
        finite = torch.isfinite(Y)
        if not bool(finite.all()):
            task, point = (~finite).nonzero()[0].tolist()[:2] if Y.ndim >= 2 else (0, 0)
            raise TaskFamilyError(
                f"{self.name}: fn returned {int(torch.isnan(Y).sum())} NaN and "
                f"{int(torch.isinf(Y).sum())} inf values; first {Y[task, point].item()} at "
                f"x={X[task, point].tolist()} with params={params[task].tolist()}; a family's "
                f"outputs must be finite"
            )
        return Y

    def sample(self, n_tasks, n_points, generator, split="train", grid=False) -> TaskBatch:
        self.check_split(split)
        if int(n_points) < 1:
            raise TaskFamilyError(f"n_points must be >= 1 (got {n_points})")
        params = self.draw_params(n_tasks, generator)
        if grid:
            X = self.grid_points(n_tasks, n_points)
        else:
            X = self.uniform_points((n_tasks, n_points), generator)
        Y = self.evaluate(X, params.to(X.device))
        mask = torch.ones(Y.shape, dtype=torch.bool, device=Y.device)
        return TaskBatch(X, Y, mask, list(range(n_tasks)))

    def held_out_tasks(self, n_tasks: int, seed: int = 0) -> list[Task]:
        """Test tasks from a random stream that meta-training never draws from."""
        params = self.draw_params(n_tasks, make_generator(seed, "held-out", self.name))
        dense = self.uniform_points((1, DENSE_POINTS), make_generator(seed, "dense", self.name))
        dense = dense.expand(n_tasks, -1, -1)
        Yd = self.evaluate(dense, params)
        y_min = Yd.min(-1).values
        if self.optimum is not None:
            y_min = torch.minimum(y_min, self.optimum(params).to(y_min))
        y_max = Yd.max(-1).values
        tasks = []
        for i in range(n_tasks):
            p = params[i]
            tasks.append(Task(
                name=f"{self.name}-{seed}-{i}",
                fn=lambda X, p=p: self.fn(X.unsqueeze(0), p.unsqueeze(0)).squeeze(0),
                bounds=self.bounds.clone(), y_min=float(y_min[i]), y_max=float(y_max[i]),
            ))
        return tasks


def _uniform(n: int, g: torch.Generator, low: list[float], high: list[float]) -> Tensor:
    box = torch.tensor([low, high], dtype=torch.float64)
    return box_from_unit(torch.rand(n, len(low), generator=g, dtype=torch.float64), box)


class Logistic(FunctionFamily):
    """The seed's family: `L / (1 + exp(-k (x - x0)))`, L, k ~ U[1, 10], x0 ~ U[-1, 1], x in [-4, 4].

    As a minimisation problem its optimum is always at the lower boundary: a sanity check.
    """

    def __init__(self):
        super().__init__(
            fn=lambda X, p: p[..., :1] / (1 + torch.exp(-p[..., 1:2] * (X[..., 0] - p[..., 2:3]))),
            bounds=[[-4.0], [4.0]],
            sample_params=lambda n, g: _uniform(n, g, [1, 1, -1], [10, 10, 1]),
            name="logistic",
            optimum=lambda p: p[:, 0] / (1 + torch.exp(-p[:, 1] * (-4.0 - p[:, 2]))),
        )


class Sinusoid(FunctionFamily):
    """MAML's family: `A sin(x - phase)`, A ~ U[0.1, 5], phase ~ U[0, pi], x in [-5, 5]."""

    def __init__(self):
        super().__init__(
            fn=lambda X, p: p[..., :1] * torch.sin(X[..., 0] - p[..., 1:2]),
            bounds=[[-5.0], [5.0]],
            sample_params=lambda n, g: _uniform(n, g, [0.1, 0.0], [5.0, math.pi]),
            name="sinusoid",
            optimum=lambda p: -p[:, 0],
        )


class TranslatedScaledFamily(FunctionFamily):
    """MetaBO-style variants of a base function `f0`: `s * f0(x - t * (upper - lower))`.

    t ~ U[-shift, shift]^d in unit-cube units and s ~ U[0.9, 1.1]. The base optimum stays inside
    the box because the base functions' optima lie at least `shift` away from the boundary (for
    Branin, one of its three optima does). Params are `[t_1..t_d, s]`.
    """

    def __init__(self, base: Callable[[Tensor], Tensor], bounds, base_min: float, name: str,
                 shift: float = 0.1, scale: tuple[float, float] = (0.9, 1.1)):
        bounds_t = torch.as_tensor(bounds, dtype=torch.float64)
        d = bounds_t.shape[-1]
        width = bounds_t[1] - bounds_t[0]

        def fn(X: Tensor, p: Tensor) -> Tensor:
            t = p[..., :d].unsqueeze(-2) * width.to(X)
            return p[..., d:d + 1] * base(X - t)

        super().__init__(
            fn=fn, bounds=bounds_t,
            sample_params=lambda n, g: _uniform(n, g, [-shift] * d + [scale[0]],
                                                [shift] * d + [scale[1]]),
            name=name, optimum=lambda p: p[:, d] * base_min,
        )


def forrester(X: Tensor) -> Tensor:
    x = X[..., 0]
    return (6 * x - 2) ** 2 * torch.sin(12 * x - 4)


def branin(X: Tensor) -> Tensor:
    x1, x2 = X[..., 0], X[..., 1]
    b, c = 5.1 / (4 * math.pi**2), 5 / math.pi
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * torch.cos(x1) + 10


_HARTMANN_ALPHA = [1.0, 1.2, 3.0, 3.2]
_HARTMANN = {
    3: (
        [[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]],
        [[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]],
        -3.86278,
    ),
    6: (
        [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
         [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]],
        [[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
         [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]],
        -3.32237,
    ),
}


def hartmann(X: Tensor, dim: int) -> Tensor:
    A, P, _ = _HARTMANN[dim]
    A = torch.tensor(A, dtype=X.dtype, device=X.device)
    P = torch.tensor(P, dtype=X.dtype, device=X.device) * 1e-4
    alpha = torch.tensor(_HARTMANN_ALPHA, dtype=X.dtype, device=X.device)
    inner = (A * (X.unsqueeze(-2) - P) ** 2).sum(-1)  # ... x n x 4
    return -(alpha * torch.exp(-inner)).sum(-1)


class Forrester(TranslatedScaledFamily):
    """Forrester et al. (2008) on [0, 1], randomly translated and scaled."""

    def __init__(self):
        super().__init__(forrester, [[0.0], [1.0]], -6.020740, "forrester")


class Branin(TranslatedScaledFamily):
    """Branin on [-5, 10] x [0, 15], randomly translated and scaled (MetaBO)."""

    def __init__(self):
        super().__init__(branin, [[-5.0, 0.0], [10.0, 15.0]], 0.397887, "branin")


class Hartmann(TranslatedScaledFamily):
    """Hartmann-3 or Hartmann-6 on the unit cube, randomly translated and scaled (MetaBO)."""

    def __init__(self, dim: int = 3):
        if dim not in _HARTMANN:
            raise TaskFamilyError(f"Hartmann dim must be 3 or 6 (got {dim})")
        super().__init__(lambda X: hartmann(X, dim), [[0.0] * dim, [1.0] * dim],
                         _HARTMANN[dim][2], f"hartmann{dim}")
