"""The coordinate search behind the YAHPO families' y*, on objectives with a known minimum."""

from __future__ import annotations

import torch

from metaprior.space import Categorical, Float, Int, SearchSpace
from metaprior.tasks.surrogate_search import FLOAT_GRID, search_minimum, surrogate_minimum

# Off the global grid (multiples of 1 / (FLOAT_GRID - 1)) in both coordinates.
CENTRE = torch.tensor([0.3137, 0.77777], dtype=torch.float64)


def bowl(U: torch.Tensor) -> torch.Tensor:
    """`n x 2` unit-cube points -> `n` squared distances to `CENTRE`."""
    return (U - CENTRE).pow(2).sum(-1)


def test_refining_sweeps_find_a_minimum_between_grid_values():
    space = SearchSpace.from_bounds(torch.tensor([[-5.0, 0.0], [5.0, 2.0]]))
    start = torch.full((1, 2), 0.5, dtype=torch.float64)
    # Without refinement: the nearest grid values, exactly (the typed family's search).
    on_grid = (CENTRE * (FLOAT_GRID - 1)).round() / (FLOAT_GRID - 1)
    assert surrogate_minimum(bowl, space, start) == float(bowl(on_grid.unsqueeze(0)))
    assert surrogate_minimum(bowl, space, start) > 1e-6
    # Three refining sweeps, each 8 times finer: within ~1e-5 of the centre per coordinate.
    assert surrogate_minimum(bowl, space, start, refine=3) < 1e-9


def test_search_finds_the_level_and_integer_and_never_exceeds_the_random_best():
    space = SearchSpace([Float("x", 0.0, 1.0), Int("k", 1, 10),
                         Categorical("c", ["a", "b", "c"])])

    def objective(U: torch.Tensor) -> torch.Tensor:
        raw = space.decode(U)
        level = torch.tensor((raw["c"] == "b").to_numpy(), dtype=torch.float64)
        k = torch.tensor(raw["k"].to_numpy(), dtype=torch.float64)
        return (U[:, 0] - 0.25).pow(2) + (k - 7).pow(2) + 3.0 * (1 - level)

    g = torch.Generator().manual_seed(0)
    U = torch.rand(64, space.encoded_dim, generator=g, dtype=torch.float64)
    U = space.encode(space.decode(U))  # valid points: integers rounded, one-hot levels
    y = objective(U)
    found = search_minimum(objective, space, U, y, n_starts=2)
    assert found <= float(y.min())
    assert found < 1e-4  # x near 0.25 (on the grid to 1/256), k = 7, level "b"
