"""Methods over a typed search space behind the benchmark's tensor ask/tell.

A typed family's tasks take the space's model coordinates (`space.model_bounds`, the encoded
unit cube). `Optimizer` over a `SearchSpace` speaks raw values (DataFrames), as a user meets it;
the baselines work in the cube. `SpaceAdapter` turns either into `ask() -> 1 x D` model
coordinates and `tell(X, y)`, and projects the baselines' points onto the space, so that every
method evaluates valid configurations only.
"""

from __future__ import annotations

import pandas as pd
from torch import Tensor

from metaprior.space import SearchSpace
from metaprior.typed_acquisition import project_model_points


class SpaceAdapter:
    """Runs `inner` (an `Optimizer` over `space`, or a method over its model box) on `space`.

    Args:
        inner: the method; its `ask` returns a DataFrame of raw values or `q x D` model points.
        space: the family's typed space.
    """

    def __init__(self, inner, space: SearchSpace):
        self.inner, self.space = inner, space

    def ask(self) -> Tensor:
        """`q x D` valid model coordinates."""
        proposal = self.inner.ask()
        if isinstance(proposal, pd.DataFrame):
            return self.space.to_model(proposal)
        return project_model_points(self.space, proposal).detach()

    def tell(self, X: Tensor, y: Tensor) -> None:
        """`q x D` model coordinates (as asked) and their `q` values."""
        if getattr(self.inner, "space", None) is self.space:
            self.inner.tell(self.space.from_model(X), y.reshape(-1).tolist())
        else:
            self.inner.tell(X, y)

    @property
    def prior_trust(self) -> float:
        return getattr(self.inner, "prior_trust", float("nan"))
