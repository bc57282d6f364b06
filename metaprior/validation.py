"""Checks on user-supplied tensors, shared by the prior, the GP model and the optimiser."""

from __future__ import annotations

import numbers
import warnings

import torch
from torch import Tensor

from metaprior.errors import AdaptationWarning, ConfigError, InputDataError, OutOfBoundsWarning

# Observations whose mean (or spread) lies further than this many family-level stds from the
# family's output scale are not a task of the family as the prior knows it. Measured on a Branin
# prior (tests/test_bad_inputs.py): mode "mean"'s posterior still passes through its training
# points with the task shifted by 54 family stds and misses them by ~900 at 89 (by ~5,900 at
# 180, a shift of 1e4), while the family's own tasks sit within about 5 stds of its mean. 30
# stays well below the measured break and far above any task of the family.
FAR_FROM_FAMILY_STDS = 30.0
# Points further than this many box widths from the bounds are refused. Every kernel correlation
# with the box is already 0 there, so such a point informs nothing, and from about 1e154 widths
# the GPs' squared distances overflow and their posteriors turn NaN (found by
# tests/test_properties.py); a point that far is a units or typing mistake.
MAX_BOX_WIDTHS = 1e6
# GPs square their outputs (variances, the likelihood); from about 1.3e154 the squares overflow
# float64 and every posterior turns NaN (found by tests/test_properties.py), so larger outputs
# are refused with a request to rescale them.
MAX_OUTPUT_MAGNITUDE = 1e150


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def as_tensor(value, name: str) -> Tensor:
    """`value` as a real tensor (integers and bools become float64); else `InputDataError`.

    Strings, None, objects and complex numbers are refused with the value in the message
    rather than left to torch's own errors (or to a silent drop of an imaginary part).
    """
    try:
        tensor = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError, OverflowError) as e:
        raise InputDataError(f"{name} must be real numbers (got {_short(value)}: {e})") from None
    if tensor.is_complex():
        raise InputDataError(f"{name} must be real numbers, not complex (got {_short(value)})")
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.float64)
    return tensor


def check_int(value, name: str, minimum: int = 0, error: type[Exception] = ConfigError) -> int:
    """`value` as an int `>= minimum`; any integer type (numpy's too), never a bool or a float
    (a float would be truncated silently)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise error(f"{name} must be an integer >= {minimum} (got {value!r})")
    return int(value)


def check_X(X, dim: int, name: str = "X", allow_batch: bool = True) -> Tensor:
    """`X` as a float tensor of shape `... x n x dim`, finite; else `InputDataError`."""
    X = as_tensor(X, name)
    if X.ndim < 2 or (not allow_batch and X.ndim != 2):
        shape = "n x d" if not allow_batch else "... x n x d"
        raise InputDataError(f"{name} must have shape {shape} (got {tuple(X.shape)})")
    if X.shape[-1] != dim:
        raise InputDataError(f"Expected {name} to have {dim} columns (got {X.shape[-1]})")
    if not torch.isfinite(X).all():
        bad = (~torch.isfinite(X)).nonzero()[0].tolist()
        raise InputDataError(f"{name} has NaN or inf, first at index {bad}: {X[tuple(bad)]}")
    return X


def check_float64(model: str, *tensors: Tensor) -> None:
    """GP code runs in double precision: refuse other dtypes (`InputDataError`) rather than
    leave BoTorch to fail on a dtype mismatch deep inside a fit."""
    dtypes = [t.dtype for t in tensors if t is not None]
    if any(dt != torch.float64 for dt in dtypes):
        raise InputDataError(f"{model} needs float64 data (got {', '.join(map(str, dtypes))}); GP "
                             f"code runs in double precision: pass X.double(), Y.double()")


def check_within_reach(X: Tensor, bounds: Tensor, name: str = "X") -> None:
    """Refuse (`InputDataError`) points further than `MAX_BOX_WIDTHS` box widths from `bounds`.

    Points outside the box only warn (`warn_out_of_bounds`); this catches the absurd ones."""
    b = bounds.to(dtype=torch.float64, device=X.device)
    width = b[1] - b[0]
    reach = torch.maximum(b[0] - X, X - b[1]).to(torch.float64) / width
    if X.numel() and float(reach.max()) > MAX_BOX_WIDTHS:
        i = int(reach.amax(-1).flatten().argmax())
        row = X.reshape(-1, X.shape[-1])[i].tolist()
        raise InputDataError(
            f"{name} has a point {float(reach.max()):.3g} box widths outside the bounds "
            f"{b.tolist()}: {row}; beyond {MAX_BOX_WIDTHS:.0e} widths a point is a units or "
            f"typing mistake, not an experiment")


def check_magnitude(Y: Tensor, name: str = "Y") -> None:
    """Refuse (`InputDataError`) outputs beyond `MAX_OUTPUT_MAGNITUDE` in absolute value."""
    if Y.numel() and float(Y.abs().max()) > MAX_OUTPUT_MAGNITUDE:
        i = int(Y.abs().flatten().argmax())
        raise InputDataError(
            f"{name} has a value of magnitude above {MAX_OUTPUT_MAGNITUDE:.0e}: "
            f"{Y.flatten()[i].item()} at position {i}; its square overflows float64 inside the GP: "
            f"rescale the outputs")


def check_query(X: Tensor, dim: int, name: str = "X", bounds: Tensor | None = None) -> None:
    """A model's query points: a tensor `... x q x dim`, finite (a NaN would come back as a NaN
    posterior, silently) and, given `bounds`, within reach of them; else `InputDataError`."""
    if not isinstance(X, Tensor):
        raise InputDataError(f"{name} must be a tensor ... x q x {dim} (got {type(X).__name__})")
    if X.ndim < 2:
        raise InputDataError(f"{name} must have shape ... x q x {dim} (got {tuple(X.shape)})")
    if X.shape[-1] != dim:
        raise InputDataError(f"Expected {name} to have {dim} columns (got shape {tuple(X.shape)})")
    finite = torch.isfinite(X)
    if not finite.all():
        bad = (~finite).nonzero()[0].tolist()
        raise InputDataError(f"{name} has NaN or inf, first at index {bad}: {X[tuple(bad)].item()}")
    if bounds is not None:
        check_within_reach(X, bounds, name)


def check_Y(Y, n: int, name: str = "Y") -> Tensor:
    """`Y` as an `n x 1` float tensor, finite; accepts `n` too."""
    Y = as_tensor(Y, name)
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


def far_from_family(Y: Tensor, y_mean: float, y_std: float) -> str | None:
    """Why observations `Y` (`n x 1`, original units) lie outside the family's output scale
    (their mean or spread beyond `FAR_FROM_FAMILY_STDS` family stds), or None if they do not."""
    if Y.numel() == 0:
        return None
    Y = Y.detach().to(torch.float64)
    mean = float(Y.mean())
    shift = abs(mean - y_mean) / y_std
    if shift > FAR_FROM_FAMILY_STDS:
        return (f"their mean {mean:.6g} lies {shift:.3g} family stds from the family's output mean "
                f"{y_mean:.6g} (std {y_std:.6g})")
    spread = float(Y.std()) / y_std if Y.numel() > 1 else 0.0
    if spread > FAR_FROM_FAMILY_STDS:
        return (f"their std {float(Y.std()):.6g} is {spread:.3g} times the family's output std "
                f"{y_std:.6g}")
    return None


def warn_far_from_family(Y: Tensor, y_mean: float, y_std: float, stacklevel: int = 3) -> bool:
    """Warn (`AdaptationWarning`) when observations sit far from the family's output scale
    (`far_from_family`): another offset or other units than the family's, which a network that
    predicts the family's values cannot fit. True if it warned."""
    reason = far_from_family(Y, y_mean, y_std)
    if reason is None:
        return False
    warnings.warn(
        f"the observations do not look like a task of the prior's family: {reason}. The "
        f"prior's predictions are unreliable on them (fixed modes follow it anyway; "
        f"TrustedPriorModel and Optimizer's default mode fall back to uninformed BO).",
        AdaptationWarning, stacklevel=stacklevel,
    )
    return True
