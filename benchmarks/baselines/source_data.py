"""Source data for the transfer-BO baselines, and helpers the baselines share.

Every baseline works in the unit cube `[0, 1]^d`, in float64, and *minimises*. Source data is a
list of `(X_i, Y_i)` pairs, one per training task: `X_i` is `n_i x d` in the unit cube and `Y_i`
is `n_i x 1`. The benchmark harness maps points to the family's original bounds.
"""

from __future__ import annotations

import torch
from botorch.models.model import Model
from torch import Tensor

from metaprior.acquisition import propose
from metaprior.errors import ConfigError, InputDataError
from metaprior.space import box_to_unit
from metaprior.tasks.family import TaskFamily, make_generator, stream_seed
from metaprior.validation import check_X, check_Y, warn_out_of_bounds

SourceData = list[tuple[Tensor, Tensor]]


def source_data_from_family(family: TaskFamily, n_tasks: int, n_points: int,
                            seed: int) -> SourceData:
    """Evaluations on `n_tasks` training-split tasks of `family`, mapped to the unit cube.

    Args:
        family: the task family; only its "train" split is drawn from.
        n_tasks: number of source tasks.
        n_points: points per task (padding, for table families, is dropped).
        seed: seed of the stream `make_generator(seed, "source-data", family.name)`.

    Returns:
        A list of `n_tasks` pairs `(X: n_i x d in [0, 1]^d, Y: n_i x 1)`, float64.
    """
    if int(n_tasks) < 1 or int(n_points) < 1:
        raise ConfigError(f"n_tasks and n_points must be >= 1 (got {n_tasks}, {n_points})")
    batch = family.sample(int(n_tasks), int(n_points),
                          make_generator(seed, "source-data", family.name), "train")
    U = box_to_unit(batch.X, family.bounds).to(torch.float64)
    out = []
    for i in range(U.shape[0]):
        m = batch.mask[i]
        out.append((U[i][m].clone(), batch.Y[i][m].to(torch.float64).unsqueeze(-1).clone()))
    return out


def check_source_data(source_data, dim: int) -> SourceData:
    """Validate source data: a non-empty list of `(n_i x dim, n_i x 1)` pairs with `n_i >= 2`.

    Returns float64 copies, with `Y` as `n_i x 1`. Raises `InputDataError` naming the bad task.
    """
    if int(dim) < 1:
        raise ConfigError(f"dim must be >= 1 (got {dim})")
    if source_data is None or len(source_data) == 0:
        raise InputDataError(f"source_data must hold at least one task (got {source_data!r})")
    out = []
    for i, pair in enumerate(source_data):
        if len(pair) != 2:
            raise InputDataError(f"source task {i} must be an (X, Y) pair (got {len(pair)} items)")
        X = check_X(pair[0], dim, name=f"source X[{i}]", allow_batch=False).to(torch.float64)
        Y = check_Y(pair[1], X.shape[0], name=f"source Y[{i}]").to(torch.float64)
        if X.shape[0] < 2:
            raise InputDataError(f"source task {i} needs >= 2 points (got {X.shape[0]})")
        out.append((X.clone(), Y.clone()))
    return out


def standardize(Y: Tensor) -> tuple[Tensor, float, float]:
    """`(Y - mean) / std` for `n x 1` Y; std falls back to 1 for fewer than 2 or constant values."""
    if Y.shape[0] == 0:
        return Y.clone(), 0.0, 1.0
    mean = float(Y.mean())
    std = float(Y.std()) if Y.shape[0] > 1 else 1.0
    if not std > 1e-12:
        std = 1.0
    return (Y - mean) / std, mean, std


def check_observations(X, y, dim: int) -> tuple[Tensor, Tensor]:
    """Validate a `tell`: X `q x dim` (unit cube, a warning outside), y `q` or `q x 1`.

    Returns float64 `(X: q x dim, y: q x 1)`; raises `InputDataError` on a wrong shape or NaN.
    """
    X = check_X(X, dim, name="X", allow_batch=False).to(torch.float64)
    y = torch.as_tensor(y)
    q = X.shape[0]
    if y.ndim not in (1, 2) or y.shape[0] != q or (y.ndim == 2 and y.shape[1] != 1):
        raise InputDataError(f"y must have shape {q} or {q} x 1 for {q} points "
                             f"(got {tuple(y.shape)})")
    y = check_Y(y, X.shape[0], name="y").to(torch.float64)
    unit = torch.tensor([[0.0] * dim, [1.0] * dim], dtype=torch.float64)
    warn_out_of_bounds(X, unit, name="X", stacklevel=4)
    return X, y


def propose_in_unit_cube(model: Model, X_baseline: Tensor, num_restarts: int, raw_samples: int,
                         seed: int, *labels: object) -> Tensor:
    """Argmax over the unit cube of the acquisition every method shares
    (`metaprior.acquisition`: qLogNEI, minimising), reproducibly seeded.

    Args:
        model: a single-output botorch model with a joint posterior over the q points.
        X_baseline: `n x dim` points of noisy EI's baseline (the observed ones).
        seed, labels: the acquisition's seed is `stream_seed(seed, *labels) % 2**31`.

    Returns:
        `1 x dim` candidate in `[0, 1]^dim`.
    """
    dim = X_baseline.shape[-1]
    bounds = torch.stack([torch.zeros(dim), torch.ones(dim)]).to(torch.float64)
    cand = propose(model, X_baseline, bounds, 1, stream_seed(seed, *labels) % 2**31,
                   num_restarts=num_restarts, raw_samples=raw_samples)
    return cand.clamp(0.0, 1.0).reshape(1, dim)
