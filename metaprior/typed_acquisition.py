"""The acquisition over a typed `SearchSpace`: projection onto valid points, enumerated levels.

`Optimizer` works in a space's model coordinates (the encoded unit cube). Every point it
proposes is projected onto the space (integers rounded in raw space, one-hot blocks set to
their arg-max level), and the acquisition only ever scores projected points.
"""

from __future__ import annotations

import math

import pandas as pd
import torch
from botorch.acquisition.acquisition import AcquisitionFunction
from torch import Tensor

from metaprior.errors import InputDataError
from metaprior.space import Categorical, Int, SearchSpace, from_unit, to_unit

# Categorical combinations up to this many are each optimised with its levels fixed
# (`optimize_acqf_mixed`); beyond it, the acquisition is optimised over the relaxed one-hot block
# and sees its arg-max projection.
MAX_ENUMERATED_LEVELS = 64
def project_model_points(space: SearchSpace, X: Tensor) -> Tensor:
    """`... x D` model coordinates -> the nearest valid points of `space`, differentiably.

    Integers are rounded in raw space (log ones too) and each one-hot block becomes its arg-max
    level (the first on ties, as `SearchSpace.decode`); floats are kept. The value is the
    projected point, the gradient that of the identity (a straight-through estimator), so a
    gradient-based optimiser can still move across levels while the acquisition only ever
    scores valid points.
    """
    if space.is_box:
        return X
    parts, start = [], 0
    for p in space.parameters:
        block = X[..., start:start + p.width].clamp(0.0, 1.0)
        if isinstance(p, Categorical):
            block = torch.nn.functional.one_hot(block.argmax(-1), p.width).to(X)
        elif isinstance(p, Int):
            block = _round_int(p, block)
        parts.append(block)
        start += p.width
    projected = torch.cat(parts, dim=-1)
    return X + (projected - X).detach()


def _round_int(p: Int, u: Tensor) -> Tensor:
    """Encoded values of an `Int` -> the encoded values of their raw roundings (the space's map,
    on tensors)."""
    low, high = p.linear_range
    linear = from_unit(u, low, high)
    raw = torch.round(10.0 ** linear if p.log else linear).clamp(p.lower, p.upper)
    return to_unit(torch.log10(raw) if p.log else raw, low, high)


class ProjectedAcquisition(AcquisitionFunction):
    """An acquisition function evaluated at the projections of its points onto a typed space.

    Args:
        acqf: the acquisition over the model coordinates (e.g. qLogNEI).
        space: the `SearchSpace`; points `b x q x D` are projected with `project_model_points`.
    """

    def __init__(self, acqf: AcquisitionFunction, space: SearchSpace):
        super().__init__(acqf.model)
        self.acqf = acqf
        self.space = space

    @property
    def X_pending(self) -> Tensor | None:
        return self.acqf.X_pending

    def set_X_pending(self, X_pending: Tensor | None = None) -> None:
        self.acqf.set_X_pending(X_pending)

    def forward(self, X: Tensor) -> Tensor:
        return self.acqf(project_model_points(self.space, X))


def one_hot_combinations(space: SearchSpace) -> list[dict[int, float]] | None:
    """Every combination of categorical levels as fixed features `{column: 0.0 or 1.0}`, or None
    when the space has no categoricals or more than `MAX_ENUMERATED_LEVELS` combinations."""
    blocks, start = [], 0
    for p in space.parameters:
        if isinstance(p, Categorical):
            blocks.append((start, p.width))
        start += p.width
    if not blocks or math.prod(w for _, w in blocks) > MAX_ENUMERATED_LEVELS:
        return None
    combos: list[dict[int, float]] = [{}]
    for begin, width in blocks:
        combos = [{**c, **{begin + j: float(j == level) for j in range(width)}}
                  for c in combos for level in range(width)]
    return combos


def trial_records(space: SearchSpace, trials) -> list[dict]:
    """Told raw values -> one dict per point holding exactly the space's parameters.

    Args:
        space: the study's space.
        trials: a DataFrame (columns beyond the parameters are ignored), a list of dicts
            (likewise), or one dict or Series (one point).

    Returns:
        A list of `{name: raw value}` dicts, in row order.
    """
    if isinstance(trials, pd.Series):
        trials = trials.to_dict()
    if isinstance(trials, dict):
        trials = [trials]
    if isinstance(trials, pd.DataFrame):
        missing = [n for n in space.names if n not in trials.columns]
        if missing:
            raise InputDataError(f"trials lack the column(s) {missing} (the space's parameters: "
                                 f"{space.names}; got columns {list(trials.columns)})")
        return trials[space.names].to_dict("records")
    if not isinstance(trials, (list, tuple)):
        raise InputDataError(f"with a search space, tell takes a DataFrame, a list of dicts or a "
                             f"dict of raw values (got {type(trials).__name__})")
    records = []
    for i, row in enumerate(trials):
        if not isinstance(row, dict):
            raise InputDataError(f"trial {i} is a {type(row).__name__}, not a dict: {row!r:.200}")
        missing = [n for n in space.names if n not in row]
        if missing:
            raise InputDataError(f"trial {i} lacks {missing} (the space's parameters: {space.names})")
        records.append({n: row[n] for n in space.names})
    return records
