"""`OutputScale`: the family-level output statistics, and the one map between original units and
the network's standardised outputs.

A prior's network predicts `z = (y - mean) / std`, with the mean and std of the family's
outputs over its training tasks (`meta_train` estimates them once). Everything that turns
observations into the network's targets or the network's outputs back into original units (the
prior, the GP's frozen network, the shift ensemble, meta-training) calls this map, so the
operations and their order, and therefore the bits, are the same everywhere.

Not this map: a GP's outcome transform (`FloorStandardize`, BoTorch's `Standardize`), which
standardises each fit's data with that fit's own statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from metaprior.errors import ConfigError


@dataclass(frozen=True)
class OutputScale:
    """The family's output mean and std, and the map to and from standardised outputs.

    Args:
        mean: the family-level output mean, a finite number (original units).
        std: the family-level output standard deviation, finite and positive.

    Example:
        >>> scale = OutputScale(10.0, 2.0)
        >>> scale.normalize(14.0), scale.unnormalize(2.0)
        (2.0, 14.0)
    """

    mean: float
    std: float

    def __post_init__(self) -> None:
        mean, std = float(self.mean), float(self.std)
        if not math.isfinite(mean):
            raise ConfigError(f"y_mean must be finite (got {self.mean!r})")
        if not (math.isfinite(std) and std > 0):
            raise ConfigError(f"y_std must be finite and positive (got {self.std!r})")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    def normalize(self, Y: Any) -> Any:
        """Original units -> standardised: `(Y - mean) / std`, elementwise (any shape)."""
        return (Y - self.mean) / self.std

    def unnormalize(self, Z: Any) -> Any:
        """Standardised -> original units: `Z * std + mean`, elementwise (any shape)."""
        return Z * self.std + self.mean
