"""Tasks unlike a family, in the family's own box: does a prior of the family do harm there?

A prior is a hypothesis that a new task resembles its family. `mismatched_tasks` builds tasks
where it does not, to check that BO with the prior falls back to uninformed BO's behaviour
(`Optimizer.prior_trust` falls) instead of chasing the prior's minimum; the benchmark's harm
block and `metaprior demo` run on them.

Three kinds of mismatch, cycled over the tasks (task i has kind `KINDS[i % 3]`):
- "other": another landscape in the same box, a random smooth function (random Fourier
  features of a squared-exponential GP, lengthscale 0.2 of the box) with the output mean and
  spread of a held-out task of the family, so that the scale alone does not give it away;
- "negated": a held-out task of the family, negated (its minima become maxima);
- "far": a held-out task translated by half the box in every dimension (random signs), five
  times the family's largest translation.

A task's y* (`Task.y_min`) is the best of dense random points polished by L-BFGS-B, and y_max
the dense maximum, so that normalised regret is defined as on the family's own tasks.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from scipy.optimize import minimize as scipy_minimize
from torch import Tensor

from metaprior.errors import OutOfBoundsWarning, TaskFamilyError
from metaprior.space import box_from_unit, box_to_unit
from metaprior.tasks.family import Task, TaskFamily, make_generator

KINDS = ("other", "negated", "far")
DENSE = 8192  # random points that locate y* and y_max
POLISH = 4  # best dense points polished by L-BFGS-B
FEATURES = 256  # random Fourier features of the "other" landscapes
LENGTHSCALE = 0.2  # of the "other" landscapes, in unit-cube units
FAR = 0.5  # translation of the "far" tasks, as a fraction of the box


def random_landscape(dim: int, generator: torch.Generator):
    """A smooth random function on the unit cube: `u` (`n x d`) -> `n`, mean 0, std about 1."""
    omega = torch.randn(FEATURES, dim, generator=generator, dtype=torch.float64) / LENGTHSCALE
    phase = 2 * math.pi * torch.rand(FEATURES, generator=generator, dtype=torch.float64)
    weight = torch.randn(FEATURES, generator=generator, dtype=torch.float64)
    scale = math.sqrt(2.0 / FEATURES)

    def fn(U: Tensor) -> Tensor:
        return scale * torch.cos(U @ omega.T + phase) @ weight

    return fn


def _range(fn, bounds: Tensor, generator: torch.Generator) -> tuple[float, float]:
    """(y*, y_max) of `fn` over `bounds`: dense points, the best polished by L-BFGS-B.

    The polish uses autograd gradients where `fn` is written in torch, and finite differences
    where it is not (a YAHPO surrogate runs in onnxruntime, outside autograd).
    """
    U = torch.rand(DENSE, bounds.shape[-1], generator=generator, dtype=torch.float64)
    with torch.no_grad():
        values = fn(box_from_unit(U, bounds))
    best = float(values.min())

    def value_and_grad(u: np.ndarray) -> tuple[float, np.ndarray]:
        ut = torch.tensor(u, dtype=torch.float64, requires_grad=True)
        value = fn(box_from_unit(ut, bounds).unsqueeze(0))[0]
        (grad,) = torch.autograd.grad(value, ut)
        return float(value.detach()), grad.numpy()

    def value_only(u: np.ndarray) -> float:
        with torch.no_grad():
            return float(fn(box_from_unit(torch.tensor(u, dtype=torch.float64),
                                          bounds).unsqueeze(0))[0])

    starts = U[values.argsort()[:POLISH]]
    try:
        value_and_grad(starts[0].numpy())
        objective, jac = value_and_grad, True
    except RuntimeError:  # no autograd path through `fn`
        objective, jac = value_only, None
    for start in starts:
        res = scipy_minimize(objective, start.numpy(), jac=jac, method="L-BFGS-B",
                             bounds=[(0.0, 1.0)] * bounds.shape[-1])
        best = min(best, float(res.fun))
    return best, float(values.max())


def _mismatch(kind: str, base: Task, bounds: Tensor, generator: torch.Generator):
    """The function of one harm task of `kind`, built from held-out task `base`."""
    width = bounds[1] - bounds[0]
    if kind == "negated":
        return lambda X: -base(X)
    if kind == "far":
        signs = torch.randint(0, 2, (bounds.shape[-1],), generator=generator) * 2 - 1
        shift = FAR * width * signs.to(torch.float64)

        def far(X: Tensor) -> Tensor:
            # A table family's surrogate clamps points outside its box (with a warning per
            # call): translated far, the task sees the surrogate's edge, which is the point.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OutOfBoundsWarning)
                return base(X - shift.to(X))

        return far
    landscape = random_landscape(bounds.shape[-1], generator)
    U = torch.rand(DENSE, bounds.shape[-1], generator=generator, dtype=torch.float64)
    with torch.no_grad():
        ref = base(box_from_unit(U, bounds))
    mean, std = float(ref.mean()), float(ref.std())
    return lambda X: mean + std * landscape(box_to_unit(X, bounds))


def mismatched_tasks(family: TaskFamily, n_tasks: int, seed: int = 0) -> list[Task]:
    """`n_tasks` evaluable tasks unlike `family`, in its box (see the module docstring), built
    from the family's held-out tasks of `seed`; the same arguments give the same tasks."""
    if n_tasks < 1:
        raise TaskFamilyError(f"n_tasks must be >= 1 (got {n_tasks})")
    bases = family.held_out_tasks(n_tasks, seed=seed)
    bounds = family.bounds
    tasks = []
    for i, base in enumerate(bases):
        kind = KINDS[i % len(KINDS)]
        # "harm" in the stream and the names: the benchmark's committed runs (resumed and
        # reproduced by task name) were made with them, so they must not change.
        g = make_generator(seed, "harm", family.name, i)
        fn = _mismatch(kind, base, bounds, g)
        y_min, y_max = _range(fn, bounds, g)
        tasks.append(Task(name=f"{family.name}-harm-{kind}-{seed}-{i}", fn=fn,
                          bounds=bounds.clone(), y_min=y_min, y_max=y_max))
    return tasks
