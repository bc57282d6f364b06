"""Outcome standardisation for GPs around the network mean, and the scale it standardises by."""

from __future__ import annotations

import copy
import math

import torch
from botorch.models.transforms.outcome import Standardize
from torch import Tensor

from metaprior.errors import ConfigError

# Floor of the standardising scale, as a fraction of the family-level output std. The adapted
# network's held-out error is typically 0.1-0.5 of that std (few-shot MSE 0.02-0.3), so the GP's
# residual should not be assumed smaller; sqrt(0.1) ~ 0.3.
RESIDUAL_FLOOR = 0.3
# Weight of that prior guess, in observations, when held-out errors refine it (`residual_scale`).
# Chosen in a one-off comparison (4 held-out tasks of each standard family, seed 0, 15
# evaluations; the script is not in the repository, benchmark v2 measured the result): 3
# kept Hartmann-3 exploring (median regret at 10 evaluations 0.0051; 0.037 with no prior guess,
# the residual scale then collapsing onto the clustered points' tiny errors).
RESIDUAL_PSEUDO_COUNT = 3.0
# Normal-consistency constant of the median absolute deviation.
MAD_TO_STD = 1.4826


class FloorStandardize(Standardize):
    """`Standardize` (one outcome) with `std = clamp(std of the data, floor, ceiling)`.

    BO's points cluster near the incumbent, so the data's spread shrinks to a sliver of the
    function's range; with plain `Standardize` the residual kernel's unit variance shrinks with
    it, the GP trusts the network everywhere, and BO stops exploring directions the data never
    varied (measured on Hartmann-3: median regret after 10 evaluations 0.066 with plain
    `Standardize`, 0.0034 with the floor). With one point the scale is the floor, not 1.

    Args:
        floor: the smallest scale, in the outcome's units.
        ceiling: the largest scale (`floor == ceiling` fixes the scale, as `residual_scale`'s
            caller does).
        batch_shape: batch shape of the outcomes (a batched GP's).
    """

    def __init__(self, floor: float, batch_shape: torch.Size = torch.Size(),  # noqa: B008
                 ceiling: float = math.inf):
        if not 0 < floor <= ceiling:
            raise ConfigError(f"FloorStandardize needs 0 < floor <= ceiling (got floor={floor!r}, "
                              f"ceiling={ceiling!r})")
        super().__init__(m=1, batch_shape=batch_shape)
        self.floor = float(floor)
        self.ceiling = float(ceiling)

    def forward(self, Y: Tensor, Yvar: Tensor | None = None,
                X: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """`n x 1` outcomes to standardised outcomes (training mode updates the statistics)."""
        if self.training:
            self._validate_training_inputs(Y=Y, Yvar=Yvar)
            spread = Y.std(dim=-2, keepdim=True) if Y.shape[-2] > 1 else torch.zeros_like(Y[..., :1, :])
            self.means = Y.mean(dim=-2, keepdim=True)
            self.stdvs = spread.clamp(min=self.floor, max=self.ceiling)
            self._stdvs_sq = self.stdvs.pow(2)
            self._is_trained = torch.tensor(True)
        Yvar_tf = None if Yvar is None else Yvar / self._stdvs_sq
        return (Y - self.means) / self.stdvs, Yvar_tf

    def subset_output(self, idcs: list[int]) -> FloorStandardize:
        """A copy (one outcome: the only subset is that outcome, `[0]` or `[-1]`).

        `Standardize`'s own version rebuilds the transform with its constructor's arguments,
        which are not this class's.
        """
        if len(idcs) != 1 or idcs[0] not in (0, -1):
            raise ConfigError(f"FloorStandardize has one outcome; cannot subset it to {idcs!r}")
        return copy.deepcopy(self)


def residual_scale(errors: Tensor, prior_scale: float,
                   pseudo_count: float = RESIDUAL_PSEUDO_COUNT) -> float:
    """The network's typical error on points it has not seen: the prior guess `prior_scale`,
    refined by held-out errors.

    `sqrt((c s0^2 + m s^2) / (c + m))` for `m` errors with robust scale `s` (1.4826 times the
    median absolute error; for an even `m`, torch's median, the lower of the two middle values,
    which at small `m` sits somewhat below the consistent estimate; the benchmark measured it
    so) and pseudo-count `c`: the conjugate update of a variance whose
    prior is worth `c` observations. The median, not the mean square, because a minimiser's
    first points include far corners where the network misses by a lot that matters little
    (a Branin task: errors 2.6, 2.6 and 250 around a minimum of 0.4); with the data's spread as
    the GP's scale, such a point made the residual variance 20-50x the errors near the
    optimum, and BO kept exploring (median regret on held-out Branin tasks stuck at 0.007 from
    evaluation 3 to 10; 3.6e-5 at 10 with this scale).

    Args:
        errors: `m` held-out errors, observation minus the prediction of a network that never
            saw it, original units.
        prior_scale: `s0`, the scale before any error is seen, original units.
        pseudo_count: `c`, the prior's weight in observations.

    Returns:
        The scale, original units.
    """
    m = errors.numel()
    if m == 0:
        return float(prior_scale)
    robust = MAD_TO_STD * float(errors.abs().median())
    return math.sqrt((pseudo_count * prior_scale**2 + m * robust**2) / (pseudo_count + m))
