"""A held-out task's y*: the minimum of a cheap objective (a surrogate) found by search.

Regret is measured against a task's `y_min`. The best of random points is a weak `y_min`: BO soon
passes it, then a clamped regret reads 0 and stops measuring. A coordinate search from the best
random points is cheap on a surrogate and far stronger. Both YAHPO families use it: the typed
one over its typed space, the box one over `SearchSpace.from_bounds` (unnamed floats).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from metaprior.space import Categorical, SearchSpace
from metaprior.typed_acquisition import project_model_points

# Coordinate-search sweeps, and grid points per numeric parameter per sweep.
SWEEPS = 3
FLOAT_GRID = 129
# A refining sweep's grid points, and how much finer each refining sweep is than the last: the
# first spans two global grid steps either side (in steps 8 times finer than the global grid).
LOCAL_GRID = 33
ZOOM = 8
# Best random points the search starts from (default): a few, so that one basin does not decide.
N_STARTS = 8

Objective = Callable[[Tensor], Tensor]


def surrogate_minimum(objective: Objective, space: SearchSpace, starts: Tensor,
                      refine: int = 0) -> float:
    """The lowest value a coordinate search finds from each of `starts` (`k x D` encoded points).

    Args:
        objective: maps `n x D` encoded points of `space` (valid: already projected) to `n`
            values; minimised.
        space: the search space; encoded coordinates are its unit cube (a box space from
            `SearchSpace.from_bounds` has unit-cube coordinates too, and no projection).
        starts: `k x D` encoded points to start from.
        refine: sweeps after the `SWEEPS` global ones, each on a local grid `ZOOM` times finer
            than the last around the current point (0: none).

    Each sweep sets one parameter at a time to its best value with the others fixed: every level
    of a categorical, and a grid of `FLOAT_GRID` encoded values of a float or an integer (whose
    projection rounds the grid to its integers). A refining sweep replaces a numeric parameter's
    grid by `LOCAL_GRID` values around its current one: an optimum between two global grid
    values is found to a precision that a global grid would need thousands of points for. The
    start itself is not evaluated, so combine the result with the random sample's minimum
    (`search_minimum`).
    """
    # None: a global sweep; a float: a refining sweep's half-width in encoded units.
    widths = [None] * SWEEPS + [2.0 / (FLOAT_GRID - 1) / ZOOM ** k for k in range(int(refine))]
    best = float("inf")
    for x in starts:
        x = x.clone()
        for width in widths:
            x, found = _sweep(objective, space, x, width)
            best = min(best, found)
    return best


def _sweep(objective: Objective, space: SearchSpace, x: Tensor,
           width: float | None) -> tuple[Tensor, float]:
    """One pass over the parameters from `x` (`D`): the point it ends at, and the best value."""
    best, start = float("inf"), 0
    for p in space.parameters:
        if isinstance(p, Categorical):
            block = torch.eye(p.width, dtype=x.dtype)
        elif width is None:
            block = torch.linspace(0, 1, FLOAT_GRID, dtype=x.dtype).unsqueeze(-1)
        else:
            c = float(x[start])
            block = torch.linspace(max(c - width, 0.0), min(c + width, 1.0), LOCAL_GRID,
                                   dtype=x.dtype).unsqueeze(-1)
        candidates = x.repeat(block.shape[0], 1)
        candidates[:, start:start + p.width] = block
        candidates = project_model_points(space, candidates)
        y = objective(candidates)
        x = candidates[int(y.argmin())]
        best = min(best, float(y.min()))
        start += p.width
    return x, best


def search_minimum(objective: Objective, space: SearchSpace, U: Tensor, y: Tensor,
                   n_starts: int = N_STARTS, refine: int = 0) -> float:
    """y*: the lower of the best random point and a coordinate search from the `n_starts` best.

    Args:
        objective, space, refine: as in `surrogate_minimum`.
        U: `n x D` random encoded points, already evaluated.
        y: `n` values of `objective` at `U`.
        n_starts: how many of the best random points the search starts from.

    Returns:
        A value `<= y.min()`: never above any of the random points.
    """
    found = surrogate_minimum(objective, space, U[y.argsort()[:n_starts]], refine)
    return min(found, float(y.min()))
