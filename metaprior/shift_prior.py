"""`ShiftPrior`: the meta-learned prior of a task's translation, a typed field of `MetaPrior`.

`metaprior.shift` estimates it from a family and samples the posterior it implies; it lives
here, below `metaprior.prior`, so that a prior file can carry it in its header.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass

import torch

from metaprior.errors import ConfigError

# Where prior files written before the shift prior became a field kept it: in `stats`.
LEGACY_STATS_KEY = "shift_prior"


@dataclass(frozen=True)
class ShiftPrior:
    """Meta-learned prior of the task embedding, in unit-cube inputs and normalised outputs.

    Attributes:
        mean: `d` mean shift of the training tasks.
        cov: `d x d` covariance of their shifts.
        resid_sd: typical RMS residual of a locally fitted shifted network near a task's
            minimum (normalised outputs).
        scale_sd: spread of the output scale `a` around 1.
        offset_sd: spread of the output offset `b` around 0.
        n_tasks: training tasks it was estimated from.
    """

    mean: list[float]
    cov: list[list[float]]
    resid_sd: float
    scale_sd: float
    offset_sd: float
    n_tasks: int

    def __post_init__(self):
        d = len(self.mean)
        if d < 1 or not all(math.isfinite(v) for v in self.mean):
            raise ConfigError(f"shift prior mean must be finite, length >= 1 (got {self.mean})")
        cov = torch.as_tensor(self.cov, dtype=torch.float64)
        if cov.shape != (d, d) or not torch.isfinite(cov).all():
            raise ConfigError(f"shift prior cov must be a finite {d} x {d} matrix (got {self.cov})")
        if torch.linalg.cholesky_ex(cov).info != 0:
            raise ConfigError(f"shift prior cov must be positive definite (got {self.cov})")
        for name in ("resid_sd", "scale_sd", "offset_sd"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"shift prior {name} must be positive and finite (got {value})")

    @property
    def dim(self) -> int:
        return len(self.mean)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ShiftPrior:
        fields = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(d, dict) or set(d) != fields:
            got = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise ConfigError(f"a shift prior needs exactly the fields {sorted(fields)} "
                              f"(got {got})")
        return cls(**d)

    @classmethod
    def of(cls, prior) -> ShiftPrior:
        """The shift prior stored with `prior` (a `MetaPrior`); `ConfigError` if it has none."""
        if prior.shift_prior is None:
            raise ConfigError(
                "this prior has no shift prior: run metaprior.attach_shift_prior(prior, family) "
                "(meta_train does it for priors it trains)"
            )
        return prior.shift_prior
