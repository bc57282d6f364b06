"""Typed search spaces: named float, integer and categorical parameters, and the one encoder.

The space is the one place that maps raw values (a learning rate of 0.003, an optimizer "adam") to
the unit cube that the network and the GP see, and back. A `Float` maps linearly, or its log10
linearly, to [0, 1]; an `Int` likewise, rounded in raw space when decoded; a `Categorical` with k
levels is k one-hot columns, decoded by arg-max.

Decisions:
- A categorical with one level is allowed: a constant column that is always 1. It keeps a fixed
  setting (a ConfigSpace `Constant`, a fidelity held at its maximum) in the data and checks it.
- ConfigSpace `Constant` becomes such a one-level `Categorical`. `OrdinalHyperparameter` becomes
  a `Categorical` of its sequence (one-hot: the order is not used). Categorical weights are
  dropped (they shape sampling, not the domain). Conditions and forbidden clauses are refused,
  since every point encodes every parameter and there is no notion of an inactive one.
- Numeric values outside a parameter's range raise `InputDataError`; only float round-off (within
  1e-9 of the range's width, in encoded units) is clamped.
- The affine map between a range and [0, 1] is written once (`to_unit`, `from_unit`, and
  `box_to_unit`, `box_from_unit` for a `2 x d` box): the parameters, the network's inputs
  (`SearchSpace.model_to_unit`), Sobol designs and the benchmarks' adapters all call it, so
  every caller gets the same operations in the same order and so the same bits.

Example:
    >>> space = SearchSpace([Float("lr", 1e-4, 1e-1, log=True), Int("layers", 1, 5),
    ...                      Categorical("opt", ["adam", "sgd"])])
    >>> space.encode({"lr": 1e-2, "layers": 3, "opt": "sgd"}).tolist()
    [[0.6666666666666666, 0.5, 0.0, 1.0]]
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from metaprior.errors import ConfigError, InputDataError

FORMAT_VERSION = 1
# Float round-off (a CSV that printed 0.1 as 0.10000000000000002) is clamped, not refused.
_ROUND_OFF = 1e-9
_PREVIEW = 6  # levels shown in messages and reprs


# ---- The one affine map between a range and the unit interval
def to_unit(x: Any, lower: Any, upper: Any) -> Any:
    """`(x - lower) / (upper - lower)`: values of [lower, upper] -> [0, 1], elementwise.

    Args:
        x: floats, a NumPy array or a tensor, e.g. `... x n x d` points.
        lower, upper: the range's ends, broadcasting against `x` (floats, or the `d` rows of a
            `2 x d` box).

    Example:
        >>> to_unit(torch.tensor([-5.0, 2.5]), -5.0, 10.0).tolist()
        [0.0, 0.5]
    """
    return (x - lower) / (upper - lower)


def from_unit(u: Any, lower: Any, upper: Any) -> Any:
    """`lower + u * (upper - lower)`: [0, 1] -> [lower, upper], elementwise (`to_unit`'s inverse).

    Args:
        u: floats, a NumPy array or a tensor, e.g. `... x n x d` points of the unit cube.
        lower, upper: the range's ends, broadcasting against `u`.
    """
    return lower + u * (upper - lower)


def box_to_unit(X: Tensor, bounds: Tensor) -> Tensor:
    """`... x n x d` points of the `2 x d` box `bounds` -> the unit cube (`to_unit` per column).

    `bounds` is cast to `X`'s dtype and device first.

    Example:
        >>> box_to_unit(torch.tensor([[2.5, 7.5]]), torch.tensor([[-5.0, 0.0], [10.0, 15.0]])).tolist()
        [[0.5, 0.5]]
    """
    lower, upper = bounds.to(X)
    return to_unit(X, lower, upper)


def box_from_unit(U: Tensor, bounds: Tensor) -> Tensor:
    """`... x n x d` points of the unit cube -> the `2 x d` box `bounds` (`from_unit` per column).

    `bounds` is cast to `U`'s dtype and device first.
    """
    lower, upper = bounds.to(U)
    return from_unit(U, lower, upper)


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"A parameter name must be a non-empty string (got {name!r})")


def _is_number(value: Any) -> bool:
    # bools are Integral in Python; a True among numbers is almost always a mistake.
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _refuse_first(param: Any, mask: Any, col: np.ndarray, why: str) -> None:
    """Raise `InputDataError` naming the parameter, the first row where `mask` holds, and its value."""
    bad = np.flatnonzero(mask)
    if bad.size:
        value = col[bad[0]]
        value = value.item() if isinstance(value, np.generic) else value
        raise InputDataError(f"{type(param).__name__} {param.name!r}: row {bad[0]} holds {value!r}, {why}")


def _preview(items: Iterable[Any], show: Any = repr) -> str:
    items = list(items)
    shown = ", ".join(show(x) for x in items[:_PREVIEW])
    return f"[{shown}, ... ({len(items)} in all)]" if len(items) > _PREVIEW else f"[{shown}]"


@dataclass(frozen=True, repr=False)
class _Range:
    """A numeric parameter over [lower, upper]: the shared half of `Float` and `Int`."""

    name: str
    lower: float
    upper: float
    log: bool = False

    width = 1  # encoded columns
    _tolerance = 0.0  # how far outside [0, 1] an encoded value may fall and be clamped
    _whole = False

    def __post_init__(self) -> None:
        _check_name(self.name)
        kind = type(self).__name__
        if not isinstance(self.log, (bool, np.bool_)):
            raise ConfigError(f"{kind} {self.name!r}: log must be True or False (got {self.log!r})")
        lower, upper = self._bound("lower", self.lower), self._bound("upper", self.upper)
        if lower >= upper:
            raise ConfigError(f"{kind} {self.name!r}: lower must be below upper (got lower={lower!r}, "
                              f"upper={upper!r})")
        if self.log and lower <= 0:
            raise ConfigError(f"{kind} {self.name!r}: log=True needs lower > 0 (got lower={lower!r})")
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)
        object.__setattr__(self, "log", bool(self.log))

    def _bound(self, field: str, value: Any) -> float:
        if not _is_number(value) or not math.isfinite(value):
            raise ConfigError(f"{type(self).__name__} {self.name!r}: {field} must be a finite number "
                              f"(got {value!r})")
        return float(value)

    @property
    def linear_range(self) -> tuple[float, float]:
        """The ends of the range that maps linearly to [0, 1]: (log10 lower, log10 upper) on a log
        scale, else (lower, upper)."""
        if self.log:
            return math.log10(self.lower), math.log10(self.upper)
        return self.lower, self.upper

    def _to_unit(self, x: np.ndarray) -> np.ndarray:
        return to_unit(np.log10(x) if self.log else x, *self.linear_range)

    def _from_unit(self, u: np.ndarray) -> np.ndarray:
        linear = from_unit(np.clip(u, 0.0, 1.0), *self.linear_range)
        x = 10.0 ** linear if self.log else linear
        return np.clip(x, self.lower, self.upper)  # 10 ** log10(b) may miss b by one ulp

    def encode_column(self, col: np.ndarray) -> np.ndarray:
        """Raw values (a length-n array) -> an `n x 1` array in [0, 1]; refuses what is out of range."""
        if col.dtype.kind not in "iuf":
            _refuse_first(self, [not _is_number(v) for v in col], col, "not a number")
        x = np.asarray(col, dtype=np.float64)
        _refuse_first(self, ~np.isfinite(x), col, "not a finite number (missing values are refused)")
        if self._whole:
            _refuse_first(self, x != np.round(x), col, "not a whole number")
        if self.log:
            _refuse_first(self, x <= 0, col, "not positive, and the parameter is on a log scale")
        u = self._to_unit(x)
        out = (u < -self._tolerance) | (u > 1 + self._tolerance)
        _refuse_first(self, out, col, f"outside its range [{self.lower!r}, {self.upper!r}]")
        return np.clip(u, 0.0, 1.0)[:, None]

    def to_dict(self) -> dict[str, Any]:
        return {"type": self._TYPE, "name": self.name, "lower": self.lower, "upper": self.upper,
                "log": self.log}

    def __repr__(self) -> str:
        log = ", log=True" if self.log else ""
        return f"{type(self).__name__}({self.name!r}, {self.lower!r}, {self.upper!r}{log})"


@dataclass(frozen=True, repr=False)
class Float(_Range):
    """A real parameter on [lower, upper], encoded linearly (or its log10 linearly) to [0, 1].

    Args:
        name: The parameter's name (a column of the data).
        lower: The smallest value, a finite number below `upper` (above 0 if `log`).
        upper: The largest value.
        log: Whether to encode log10 of the value (for rates and scales spanning decades).

    Example:
        >>> Float("learning_rate", 1e-5, 1e-1, log=True)
        Float('learning_rate', 1e-05, 0.1, log=True)
    """

    _TYPE = "float"
    _tolerance = _ROUND_OFF

    def decode_column(self, block: np.ndarray) -> np.ndarray:
        """An `n x 1` block of the unit cube -> n raw floats (clamped to the range)."""
        return self._from_unit(block[:, 0])


@dataclass(frozen=True, repr=False)
class Int(_Range):
    """An integer parameter on [lower, upper], encoded like a `Float` and rounded when decoded.

    Args:
        name: The parameter's name.
        lower: The smallest value, an integer below `upper` (at least 1 if `log`).
        upper: The largest value, an integer.
        log: Whether to encode log10 of the value.

    Example:
        >>> Int("units", 16, 1024, log=True).decode_column(np.array([[0.5]]))
        array([128])
    """

    lower: int
    upper: int
    _TYPE = "int"
    _whole = True

    def _bound(self, field: str, value: Any) -> int:
        whole = _is_number(value) and math.isfinite(value) and float(value).is_integer()
        if not whole:
            raise ConfigError(f"Int {self.name!r}: {field} must be an integer (got {value!r})")
        return int(value)

    def decode_column(self, block: np.ndarray) -> np.ndarray:
        """An `n x 1` block of the unit cube -> n integers, rounded in raw space and clipped."""
        return np.clip(np.rint(self._from_unit(block[:, 0])), self.lower, self.upper).astype(np.int64)


def _level(name: str, value: Any) -> str | bool | int | float:
    """A categorical level as a plain Python str, bool, int or float (NumPy scalars unwrapped)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (str, bool)) or (_is_number(value) and math.isfinite(value)):
        return value
    raise ConfigError(f"Categorical {name!r}: choices must be strings, finite numbers or bools "
                      f"(got {value!r} of type {type(value).__name__})")


def _key(value: Any) -> tuple[str, Any] | None:
    """A lookup key that keeps True apart from 1 and "1" apart from 1, but 1 equal to 1.0."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, str):
        return ("str", value)
    return ("num", value) if _is_number(value) else None


@dataclass(frozen=True, repr=False, eq=False)
class Categorical:
    """A parameter with unordered levels, encoded as one one-hot column per level.

    Levels are strings, finite numbers or bools and keep their types through `to_dict` and JSON.
    They are compared with their kinds: True is not 1 and "1" is not 1, but 1 equals 1.0. One level
    is allowed (a constant column).

    Args:
        name: The parameter's name.
        choices: The levels, in the order of their one-hot columns; non-empty, no duplicates.

    Example:
        >>> Categorical("optimizer", ["adam", "sgd"]).encode_column(np.array(["sgd"], dtype=object))
        array([[0., 1.]])
    """

    name: str
    choices: tuple[str | bool | int | float, ...]

    def __post_init__(self) -> None:
        _check_name(self.name)
        if isinstance(self.choices, (str, bytes, Mapping)) or not isinstance(self.choices, Iterable):
            raise ConfigError(f"Categorical {self.name!r}: choices must be a list of levels "
                              f"(got {self.choices!r})")
        levels = tuple(_level(self.name, c) for c in self.choices)
        if not levels:
            raise ConfigError(f"Categorical {self.name!r}: choices must not be empty (got [])")
        index: dict[tuple[str, Any], int] = {}
        for i, level in enumerate(levels):
            if (key := _key(level)) in index:
                raise ConfigError(f"Categorical {self.name!r}: duplicate choice {level!r} (at positions "
                                  f"{index[key]} and {i})")
            index[key] = i
        object.__setattr__(self, "choices", levels)
        object.__setattr__(self, "_index", index)

    @property
    def width(self) -> int:
        return len(self.choices)

    def _keys(self) -> tuple[Any, ...]:
        return tuple(_key(c) for c in self.choices)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Categorical):
            return NotImplemented
        return self.name == other.name and self._keys() == other._keys()

    def __hash__(self) -> int:
        return hash((self.name, self._keys()))

    def _code(self, value: Any) -> int:
        try:
            return self._index.get(_key(value), -1)
        except TypeError:  # unhashable, e.g. a list
            return -1

    def encode_column(self, col: np.ndarray) -> np.ndarray:
        """Raw levels (a length-n array) -> an `n x k` one-hot array; refuses unknown levels."""
        codes = np.array([self._code(v) for v in col], dtype=np.int64)
        if (codes < 0).any():
            value = col[np.flatnonzero(codes < 0)[0]]
            hint = next((f"; did you mean {c!r}? (levels keep their types)" for c in self.choices
                         if str(c) == str(value)), "")
            _refuse_first(self, codes < 0, col, f"not one of its {self.width} levels "
                          f"{_preview(self.choices)}{hint}")
        out = np.zeros((len(col), self.width))
        out[np.arange(len(col)), codes] = 1.0
        return out

    def decode_column(self, block: np.ndarray) -> list[Any]:
        """An `n x k` block -> n levels, each the arg-max of its row (the first one on ties)."""
        return [self.choices[j] for j in block.argmax(axis=1)]

    def to_dict(self) -> dict[str, Any]:
        return {"type": "categorical", "name": self.name, "choices": list(self.choices)}

    def __repr__(self) -> str:
        return f"Categorical({self.name!r}, {_preview(self.choices)})"


Parameter = Float | Int | Categorical
_TYPES: dict[str, type] = {"float": Float, "int": Int, "categorical": Categorical}


@dataclass(frozen=True, repr=False)
class SearchSpace:
    """Named, typed parameters and the one map between their raw values and the unit cube.

    Args:
        parameters: `Float`, `Int` and `Categorical` parameters with distinct names, in column
            order.

    Example:
        >>> space = SearchSpace([Float("lr", 1e-5, 1e-1, log=True), Categorical("opt", ["adam", "sgd"])])
        >>> space.names, space.dim, space.encoded_dim
        (['lr', 'opt'], 2, 3)
        >>> space.decode(torch.tensor([[0.5, 0.2, 0.9]])).to_dict("records")
        [{'lr': 0.001, 'opt': 'sgd'}]
    """

    parameters: tuple[Parameter, ...]

    def __post_init__(self) -> None:
        given = self.parameters
        if isinstance(given, (str, Mapping, _Range, Categorical)) or not isinstance(given, Iterable):
            raise ConfigError(f"SearchSpace takes a list of parameters (got {given!r})")
        params = tuple(given)
        if not params:
            raise ConfigError("SearchSpace needs at least one parameter (got none)")
        seen: set[str] = set()
        for i, p in enumerate(params):
            if not isinstance(p, (Float, Int, Categorical)):
                raise ConfigError(f"SearchSpace parameter {i} must be a Float, Int or Categorical "
                                  f"(got {p!r})")
            if p.name in seen:
                raise ConfigError(f"SearchSpace: duplicate parameter name {p.name!r}")
            seen.add(p.name)
        object.__setattr__(self, "parameters", params)

    # ---- Shape
    @property
    def names(self) -> list[str]:
        """The parameters' names, in order (the raw columns)."""
        return [p.name for p in self.parameters]

    @property
    def dim(self) -> int:
        """The number of parameters."""
        return len(self.parameters)

    @property
    def encoded_dim(self) -> int:
        """The number of encoded columns: one per numeric parameter, k per k-level categorical."""
        return sum(p.width for p in self.parameters)

    @property
    def encoded_names(self) -> list[str]:
        """A name per encoded column: the parameter's, or `name=level` for a one-hot column."""
        return [n for p in self.parameters
                for n in ([f"{p.name}={c}" for c in p.choices] if isinstance(p, Categorical) else [p.name])]

    def __iter__(self):
        return iter(self.parameters)

    def __len__(self) -> int:
        return self.dim

    def __getitem__(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(f"No parameter {name!r} in this space (its parameters: {self.names})")

    # ---- The encoder
    def encode(self, values: Any) -> Tensor:
        """Map raw values to the unit cube.

        Numeric values outside a parameter's range raise `InputDataError` (not clamped; float
        round-off within 1e-9 of the range is), as do non-positive values of a log parameter,
        non-whole values of an `Int`, unknown levels, missing values and missing or extra columns.

        Args:
            values: A pandas DataFrame with one column per parameter, a list of dicts (one per
                point), a dict (one point), or, for a space without categoricals, an `n x dim`
                tensor or array whose columns follow `names`.

        Returns:
            An `n x encoded_dim` float64 tensor in [0, 1].

        Example:
            >>> SearchSpace([Int("k", 0, 4)]).encode([{"k": 1}, {"k": 4}]).tolist()
            [[0.25], [1.0]]
        """
        columns, n = self._columns(values)
        blocks = [p.encode_column(columns[p.name]) for p in self.parameters]
        return torch.from_numpy(np.concatenate(blocks, axis=1).reshape(n, self.encoded_dim))

    def decode(self, U: Tensor) -> pd.DataFrame:
        """Map points of the unit cube back to raw values.

        Values outside [0, 1] are clamped; an `Int` is rounded in raw space; a one-hot block
        gives its arg-max level.

        Args:
            U: An `n x encoded_dim` tensor (a single point may be a tensor of `encoded_dim` values).

        Returns:
            A DataFrame with one row per point and one column per parameter: floats, integers
            (int64), and categorical levels with their types.

        Example:
            >>> SearchSpace([Int("k", 0, 4)]).decode(torch.tensor([[0.3], [1.2]]))["k"].tolist()
            [1, 4]
        """
        U = torch.as_tensor(U)
        if U.dim() == 1:
            U = U.unsqueeze(0)
        if U.dim() != 2 or U.shape[-1] != self.encoded_dim:
            raise InputDataError(f"decode expects an n x {self.encoded_dim} tensor (got shape "
                                 f"{tuple(U.shape)})")
        A = U.detach().to("cpu", torch.float64).numpy()
        if not np.isfinite(A).all():
            raise InputDataError(f"decode got non-finite values: {A[~np.isfinite(A)][:3].tolist()}")
        out, start = {}, 0
        for p in self.parameters:
            raw = p.decode_column(A[:, start:start + p.width])
            mixed = isinstance(p, Categorical) and len({type(c) for c in p.choices}) > 1
            out[p.name] = pd.Series(raw, dtype=object if mixed else None)
            start += p.width
        return pd.DataFrame(out, columns=self.names)

    def _columns(self, values: Any) -> tuple[dict[str, np.ndarray], int]:
        """Raw values of any accepted form -> (name -> length-n array, n)."""
        if isinstance(values, pd.DataFrame):
            if (dup := values.columns[values.columns.duplicated()]).size:
                raise InputDataError(f"Duplicate columns: {list(dup)}")
            self._check_keys(list(values.columns), "The data")
            return {n: values[n].to_numpy() for n in self.names}, len(values)
        if isinstance(values, pd.Series):
            values = values.to_dict()
        if isinstance(values, Mapping):
            for key, v in values.items():
                if isinstance(v, (list, tuple, np.ndarray, pd.Series, Tensor)):
                    raise InputDataError(f"A dict is one point, but {key!r} holds {v!r}; pass a DataFrame "
                                         "or a list of dicts for several points")
            values = [values]
        if isinstance(values, (Tensor, np.ndarray)):
            return self._array_columns(values)
        if not isinstance(values, (list, tuple)):
            raise InputDataError("encode takes a DataFrame, a list of dicts or a dict "
                                 f"(got {type(values).__name__})")
        columns = {n: np.empty(len(values), dtype=object) for n in self.names}
        for i, row in enumerate(values):
            if not isinstance(row, Mapping):
                raise InputDataError(f"Row {i} is a {type(row).__name__}, not a dict: {row!r}")
            self._check_keys(list(row), f"Row {i}")
            for n in self.names:
                columns[n][i] = row[n]
        return columns, len(values)

    def _array_columns(self, values: Tensor | np.ndarray) -> tuple[dict[str, np.ndarray], int]:
        if any(isinstance(p, Categorical) for p in self.parameters):
            raise InputDataError("A space with categorical parameters takes named values (a DataFrame, "
                                 f"a list of dicts or a dict), not a {type(values).__name__}")
        arr = values.detach().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values)
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise InputDataError(f"Expected an n x {self.dim} array of raw values in the order {self.names} "
                                 f"(got shape {tuple(arr.shape)})")
        return {n: arr[:, j] for j, n in enumerate(self.names)}, arr.shape[0]

    def _check_keys(self, keys: list[Any], where: str) -> None:
        missing = [n for n in self.names if n not in keys]
        extra = [k for k in keys if k not in self.names]
        problems = ([f"missing column(s) {', '.join(map(repr, missing))}"] if missing else []) + (
            [f"extra column(s) {', '.join(map(repr, extra))}"] if extra else [])
        if problems:
            raise InputDataError(f"{where}: {'; '.join(problems)} (the space's parameters: {self.names})")

    # ---- Boxes of unnamed floats
    @classmethod
    def from_bounds(cls, bounds: Tensor) -> SearchSpace:
        """A space of linear floats named x0..x{d-1} from a `2 x d` tensor of lower and upper bounds.

        Example:
            >>> SearchSpace.from_bounds(torch.tensor([[0.0, -1.0], [1.0, 1.0]])).names
            ['x0', 'x1']
        """
        b = torch.as_tensor(bounds)
        if b.dim() != 2 or b.shape[0] != 2 or b.shape[1] == 0:
            raise ConfigError(f"bounds must be a 2 x d tensor with d >= 1 (got shape {tuple(b.shape)})")
        return cls([Float(f"x{j}", lo, hi) for j, (lo, hi) in enumerate(b.T.tolist())])

    @property
    def bounds(self) -> Tensor:
        """The `2 x d` float64 box of a space of linear (not log) floats, in `names` order."""
        for p in self.parameters:
            if not isinstance(p, Float) or p.log:
                raise ConfigError(f"bounds is defined for a space of linear floats only, and {p!r} is not "
                                  "one; use encode and decode")
        return torch.tensor([[p.lower for p in self.parameters], [p.upper for p in self.parameters]],
                            dtype=torch.float64)

    # ---- The coordinates the network and the GP see
    @property
    def is_box(self) -> bool:
        """Whether every parameter is a linear (not log) `Float`: a plain box of unnamed-style floats."""
        return all(isinstance(p, Float) and not p.log for p in self.parameters)

    @property
    def model_bounds(self) -> Tensor:
        """The `2 x D` float64 box of the model's inputs (a prior's `bounds`).

        For a box (`is_box`) it is the raw box itself, so that a prior of a box family keeps its
        original-unit inputs (its network maps them to the unit cube as before); otherwise it is
        the unit cube of the `encoded_dim` encoded columns.
        """
        if self.is_box:
            return self.bounds
        return torch.stack([torch.zeros(self.encoded_dim, dtype=torch.float64),
                            torch.ones(self.encoded_dim, dtype=torch.float64)])

    def model_to_unit(self, X: Tensor) -> Tensor:
        """The model's `... x n x D` inputs -> the network's unit cube (`box_to_unit` over
        `model_bounds`; for an encoded space, whose model box is the unit cube, the identity)."""
        return box_to_unit(X, self.model_bounds)

    def to_model(self, values: Any) -> Tensor:
        """Raw values -> the model's `n x D` inputs: raw floats for a box, `encode` otherwise.

        Refuses what `encode` refuses (out of range, unknown levels, missing columns).
        """
        encoded = self.encode(values)
        if not self.is_box:
            return encoded
        columns, n = self._columns(values)  # the raw values, not a round trip through [0, 1]
        raw = np.stack([np.asarray(columns[p.name], dtype=np.float64) for p in self.parameters], axis=1)
        return torch.from_numpy(np.clip(raw, *self.bounds.numpy()).reshape(n, self.dim))

    def from_model(self, X: Tensor) -> pd.DataFrame:
        """The model's `n x D` inputs -> a DataFrame of raw values (`decode` for a non-box)."""
        if not self.is_box:
            return self.decode(X)
        X = torch.as_tensor(X, dtype=torch.float64)
        X = X.unsqueeze(0) if X.dim() == 1 else X
        if X.dim() != 2 or X.shape[-1] != self.dim:
            raise InputDataError(f"from_model expects an n x {self.dim} tensor (got shape {tuple(X.shape)})")
        lo, hi = self.bounds
        return pd.DataFrame(torch.clamp(X.detach().cpu(), lo, hi).numpy(), columns=self.names)

    # ---- JSON
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict `{"version": 1, "parameters": [...]}`; `from_dict` reads it back."""
        return {"version": FORMAT_VERSION, "parameters": [p.to_dict() for p in self.parameters]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SearchSpace:
        """The space of a `to_dict` dict (e.g. after `json.loads`); refuses unknown keys and versions.

        Example:
            >>> space = SearchSpace([Int("k", 0, 4)])
            >>> SearchSpace.from_dict(space.to_dict()) == space
            True
        """
        if not isinstance(d, Mapping):
            raise ConfigError(f"A space dict must be a dict (got {type(d).__name__})")
        version = d.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ConfigError(f"A space dict needs an integer 'version' >= 1 (got {version!r})")
        if version > FORMAT_VERSION:
            raise ConfigError(f"This space was written in format version {version}; this metaprior "
                              f"reads version {FORMAT_VERSION}: upgrade metaprior")
        if set(d) != {"version", "parameters"} or not isinstance(d["parameters"], list):
            raise ConfigError("A space dict has exactly the keys 'version' and 'parameters' (a list); "
                              f"got keys {sorted(map(str, d))}")
        return cls([_parameter_from_dict(i, p) for i, p in enumerate(d["parameters"])])

    # ---- Comparison
    def difference(self, other: SearchSpace) -> str | None:
        """None if `other` is the same space, else a sentence naming the first parameter that differs.

        Example:
            >>> SearchSpace([Int("k", 0, 4)]).difference(SearchSpace([Int("k", 0, 5)]))
            "parameter 'k': upper is 4 here, 5 in the other space"
        """
        if not isinstance(other, SearchSpace):
            raise TypeError(f"difference compares two SearchSpaces (got {type(other).__name__})")
        for i, (a, b) in enumerate(zip(self.parameters, other.parameters, strict=False)):
            if a.name != b.name:
                return f"parameter {i} is {a.name!r} here, {b.name!r} in the other space"
            if a != b:
                return f"parameter {a.name!r}: {_parameter_difference(a, b)}"
        if self.dim != other.dim:
            longer, where = (self, "missing from") if self.dim > other.dim else (other, "only in")
            name = longer.parameters[min(self.dim, other.dim)].name
            return (f"parameter {name!r} is {where} the other space ({self.dim} parameters here, "
                    f"{other.dim} there)")
        return None

    def __repr__(self) -> str:
        return "SearchSpace([\n" + "".join(f"    {p!r},\n" for p in self.parameters) + "])"

    # ---- ConfigSpace
    @classmethod
    def from_configspace(cls, cs_or_path: Any) -> SearchSpace:
        """The space of a ConfigSpace `ConfigurationSpace` or of its JSON file (e.g. YAHPO's).

        Uniform floats and integers (log or not) map to `Float` and `Int`; categoricals to
        `Categorical` (weights dropped); ordinals to `Categorical` of their sequence (one-hot, the
        order unused); a `Constant` to a one-level `Categorical`. Other kinds (normal, beta) and
        any condition or forbidden clause are refused with `ConfigError`: every encoded point sets
        every parameter, so inactive parameters and forbidden combinations cannot be expressed.
        Needs the optional extra `metaprior[spaces]` (ConfigSpace >= 1.0).

        Args:
            cs_or_path: A `ConfigSpace.ConfigurationSpace`, or a path to its JSON file.

        Returns:
            The space, its parameters in the ConfigurationSpace's order.
        """
        try:
            import ConfigSpace as CS
        except ImportError as err:
            raise ImportError("SearchSpace.from_configspace needs ConfigSpace: "
                              "pip install 'metaprior[spaces]'") from err
        cs = _read_configspace(CS, cs_or_path) if isinstance(cs_or_path, (str, os.PathLike)) else cs_or_path
        if not isinstance(cs, CS.ConfigurationSpace):
            raise ConfigError(f"from_configspace takes a ConfigurationSpace or a path to its JSON file "
                              f"(got {type(cs).__name__})")
        structure = [f"{len(items)} {what} ({_preview(items, str)})"
                     for what, items in (("condition(s)", list(cs.conditions)),
                                         ("forbidden clause(s)", list(cs.forbidden_clauses))) if items]
        if structure:
            raise ConfigError(f"The ConfigSpace has {' and '.join(structure)}; a SearchSpace sets every "
                              "parameter on every point and cannot express them. Remove them (e.g. one "
                              "space per branch, or drop the conditional parameters)")
        return cls([_from_hyperparameter(CS, hp) for hp in cs.values()])


def _parameter_from_dict(i: int, d: Any) -> Parameter:
    kind = d.get("type") if isinstance(d, Mapping) else None
    if kind not in _TYPES:
        raise ConfigError(f"Space parameter {i} needs a 'type' of {sorted(_TYPES)} (got {d!r})")
    cls = _TYPES[kind]
    allowed = {f.name for f in fields(cls)}
    required = {f.name for f in fields(cls) if f.default is MISSING}
    given = set(d) - {"type"}
    if given - allowed or required - given:
        raise ConfigError(f"Space parameter {i} ({kind}): unknown key(s) {sorted(given - allowed)}, "
                          f"missing key(s) {sorted(required - given)} (got {dict(d)!r})")
    return cls(**{k: d[k] for k in given})


def _parameter_difference(a: Parameter, b: Parameter) -> str:
    if type(a) is not type(b):
        return f"{a!r} here, {b!r} in the other space"
    if isinstance(a, Categorical):
        if a.width != b.width:
            return f"{a.width} levels here, {b.width} in the other space"
        j = next(j for j, (x, y) in enumerate(zip(a._keys(), b._keys(), strict=True)) if x != y)
        return f"level {j} is {a.choices[j]!r} here, {b.choices[j]!r} in the other space"
    field = next(f for f in ("lower", "upper", "log") if getattr(a, f) != getattr(b, f))
    return f"{field} is {getattr(a, field)!r} here, {getattr(b, field)!r} in the other space"


def _read_configspace(CS: Any, path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No ConfigSpace JSON file at {path}")
    with warnings.catch_warnings():
        # Files written by ConfigSpace < 1.0 (YAHPO's) name fields that 1.x reads but warns about.
        warnings.filterwarnings("ignore", category=UserWarning, module="ConfigSpace")
        try:
            return CS.ConfigurationSpace.from_json(path)
        except (ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"{path} is not a ConfigSpace JSON file: {err!r}") from err


def _from_hyperparameter(CS: Any, hp: Any) -> Parameter:
    if isinstance(hp, CS.Constant):
        return Categorical(hp.name, [hp.value])
    if isinstance(hp, CS.UniformFloatHyperparameter):
        return Float(hp.name, hp.lower, hp.upper, log=bool(hp.log))
    if isinstance(hp, CS.UniformIntegerHyperparameter):
        return Int(hp.name, hp.lower, hp.upper, log=bool(hp.log))
    if isinstance(hp, CS.CategoricalHyperparameter):
        return Categorical(hp.name, hp.choices)
    if isinstance(hp, CS.OrdinalHyperparameter):
        return Categorical(hp.name, hp.sequence)
    raise ConfigError(f"ConfigSpace parameter {hp.name!r} is a {type(hp).__name__}, which a SearchSpace "
                      "cannot express (supported: uniform float and integer, categorical, ordinal, "
                      "constant); use a uniform one over the same range")
