"""Outcome standardisation whose scale cannot collapse below a fraction of the family's spread."""

from __future__ import annotations

import torch
from botorch.models.transforms.outcome import Standardize
from torch import Tensor

# Floor of the standardising scale, as a fraction of the family-level output std. The adapted
# network's held-out error is typically 0.1-0.5 of that std (few-shot MSE 0.02-0.3), so the GP's
# residual should not be assumed smaller; sqrt(0.1) ~ 0.3.
RESIDUAL_FLOOR = 0.3


class FloorStandardize(Standardize):
    """`Standardize` (one outcome) with `std = max(std of the data, floor)`.

    BO's points cluster near the incumbent, so the data's spread shrinks to a sliver of the
    function's range; with plain `Standardize` the residual kernel's unit variance shrinks with
    it, the GP trusts the network everywhere, and BO stops exploring directions the data never
    varied (measured on Hartmann-3: median regret after 10 evaluations 0.066 with plain
    `Standardize`, 0.0034 with the floor). With one point the scale is the floor, not 1.

    Args:
        floor: the smallest scale, in the outcome's units.
        batch_shape: batch shape of the outcomes (a batched GP's).
    """

    def __init__(self, floor: float, batch_shape: torch.Size = torch.Size()):  # noqa: B008
        super().__init__(m=1, batch_shape=batch_shape)
        self.floor = float(floor)

    def forward(self, Y: Tensor, Yvar: Tensor | None = None,
                X: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """`n x 1` outcomes to standardised outcomes (training mode updates the statistics)."""
        if self.training:
            self._validate_training_inputs(Y=Y, Yvar=Yvar)
            spread = Y.std(dim=-2, keepdim=True) if Y.shape[-2] > 1 else torch.zeros_like(Y[..., :1, :])
            self.means = Y.mean(dim=-2, keepdim=True)
            self.stdvs = spread.clamp(min=self.floor)
            self._stdvs_sq = self.stdvs.pow(2)
            self._is_trained = torch.tensor(True)
        Yvar_tf = None if Yvar is None else Yvar / self._stdvs_sq
        return (Y - self.means) / self.stdvs, Yvar_tf
