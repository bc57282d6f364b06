"""The source data's training tasks as callables, where the family can evaluate them.

`source_data_from_family` draws its tasks with `family.sample` from the stream
`make_generator(seed, "source-data", family.name)`. Drawing from that stream again gives the same
tasks: a table family's task names, a parametric family's parameters (`FunctionFamily.sample`
draws them first). The portfolio baseline evaluates its candidates on them exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from benchmarks.baselines.source_data import SourceData
from metaprior.errors import TaskFamilyError
from metaprior.space import box_from_unit
from metaprior.tasks.family import TaskFamily, make_generator
from metaprior.tasks.synthetic import FunctionFamily
from metaprior.tasks.yahpo import YahpoFamily
from metaprior.tasks.yahpo_typed import YahpoTypedFamily

# A unit-cube objective: `n x d` points in [0, 1]^d -> `n` values.
Objective = Callable[[Tensor], Tensor]


def training_objectives(family: TaskFamily, n_tasks: int, n_points: int,
                        seed: int) -> list[Objective] | None:
    """The tasks of `source_data_from_family(family, n_tasks, n_points, seed)`, as callables.

    Returns:
        `n_tasks` unit-cube objectives, in the source data's order; None when the family's
        training tasks cannot be evaluated at new points (a plain table).
    """
    stream = make_generator(seed, "source-data", family.name)
    bounds = family.bounds
    if isinstance(family, FunctionFamily):
        params = family.draw_params(int(n_tasks), stream)
        return [lambda U, p=p: family.evaluate(box_from_unit(U, bounds).unsqueeze(0),
                                               p.unsqueeze(0)).squeeze(0)
                for p in params]
    if isinstance(family, YahpoFamily):
        evaluate = family.surrogate.objective
    elif isinstance(family, YahpoTypedFamily):
        evaluate = family.evaluate
    else:
        return None
    names = family.sample(int(n_tasks), int(n_points), stream, "train").task_ids
    return [lambda U, name=name: evaluate(name, box_from_unit(U, bounds)) for name in names]


def check_reproduces(objectives: list[Objective], source_data: SourceData,
                     rtol: float = 1e-5) -> None:
    """Raise `TaskFamilyError` unless objective i gives source task i's values at its points.

    Guards the pairing of tasks and objectives (a family that changed how `sample` draws would
    silently pair the wrong ones). `rtol` is relative to each task's range of values: the YAHPO
    surrogates run in float32.
    """
    if len(objectives) != len(source_data):
        raise TaskFamilyError(f"{len(objectives)} objectives for {len(source_data)} source tasks")
    for i, (f, (X, Y)) in enumerate(zip(objectives, source_data, strict=True)):
        y = Y.squeeze(-1)
        err = float((f(X).to(y) - y).abs().max())
        scale = float(y.max() - y.min()) or 1.0
        if not err <= rtol * scale:
            raise TaskFamilyError(
                f"training objective {i} does not reproduce source task {i}: largest difference "
                f"{err:.3g} on values spanning {scale:.3g}")


def evaluated_losses(objectives: list[Objective], candidates: Tensor) -> Tensor:
    """`M x k` table: entry `[j, c]` is objective j at candidate c (`candidates`: `k x d`)."""
    return torch.stack([f(candidates).to(torch.float64).reshape(-1) for f in objectives])
