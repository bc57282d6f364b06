"""Checks on user-supplied tensors, shared by the prior, the GP model and the optimiser."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from metaprior.errors import InputDataError, OutOfBoundsWarning


def check_X(X, dim: int, name: str = "X", allow_batch: bool = True) -> Tensor:
    """`X` as a float tensor of shape `... x n x dim`, finite; else `InputDataError`."""
    X = torch.as_tensor(X)
    if not X.is_floating_point():
        X = X.to(torch.float64)
    if X.ndim < 2 or (not allow_batch and X.ndim != 2):
        shape = "n x d" if not allow_batch else "... x n x d"
        raise InputDataError(f"{name} must have shape {shape} (got {tuple(X.shape)})")
    if X.shape[-1] != dim:
        raise InputDataError(f"Expected {name} to have {dim} columns (got {X.shape[-1]})")
    if not torch.isfinite(X).all():
        bad = (~torch.isfinite(X)).nonzero()[0].tolist()
        raise InputDataError(f"{name} has NaN or inf, first at index {bad}: {X[tuple(bad)]}")
    return X


def check_Y(Y, n: int, name: str = "Y") -> Tensor:
    """`Y` as an `n x 1` float tensor, finite; accepts `n` too."""
    Y = torch.as_tensor(Y)
    if not Y.is_floating_point():
        Y = Y.to(torch.float64)
    if Y.ndim == 1:
        Y = Y.unsqueeze(-1)
    if Y.ndim != 2 or Y.shape[-1] != 1 or Y.shape[0] != n:
        raise InputDataError(f"{name} must have shape {n} x 1 (got {tuple(Y.shape)})")
    if not torch.isfinite(Y).all():
        i = int((~torch.isfinite(Y)).nonzero()[0, 0])
        raise InputDataError(f"{name} has NaN or inf at row {i}: {Y[i, 0].item()}")
    return Y


def warn_out_of_bounds(X: Tensor, bounds: Tensor, name: str = "X", stacklevel: int = 3) -> bool:
    """Warn (`OutOfBoundsWarning`) when points of `X` lie outside `bounds`; True if any did."""
    b = bounds.to(X)
    tol = 1e-9 * (b[1] - b[0])
    outside = ((X < b[0] - tol) | (X > b[1] + tol)).any(-1)
    if outside.any():
        i = int(outside.flatten().nonzero()[0])
        row = X.reshape(-1, X.shape[-1])[i].tolist()
        warnings.warn(
            f"{int(outside.sum())} point(s) of {name} lie outside the bounds "
            f"{b.tolist()}, e.g. {row}; they are used as given",
            OutOfBoundsWarning, stacklevel=stacklevel,
        )
        return True
    return False
