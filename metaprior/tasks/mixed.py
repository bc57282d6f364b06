"""A built-in family over a typed space: a training run's validation loss, in four parameter types.

`MixedTraining` mimics tuning one model on many datasets. Its space has a log-scale learning
rate, a linear dropout, an integer layer count and a categorical optimizer. Every task shares the
family's structure (SGD wants a larger learning rate than Adam, RMSprop a smaller one) and
differs in where its optimum lies and which optimizer suits it:

    loss(u) = s * [ 3 (u_lr - t_lr - δ_opt)^2 + 2 (u_drop - t_drop)^2 + 1.5 (u_layers - t_layers)^2
                    + 0.15 (1 - cos(4π (u_lr - t_lr - δ_opt))) + c_opt ] + 1

with `u` the encoded coordinates (unit cube, layers on the grid of its 8 levels), δ fixed by the
family and `t`, `c`, `s` drawn per task. The optimum is known in closed form, so regret is exact.
The family's inputs are the space's encoded unit cube; its points are always valid (integers on
their grid, one-hot blocks exact).
"""

from __future__ import annotations

import torch
from torch import Tensor

from metaprior.space import Categorical, Float, Int, SearchSpace
from metaprior.tasks.synthetic import FunctionFamily, _uniform
from metaprior.typed_acquisition import project_model_points

MIXED_SPACE = SearchSpace([
    Float("learning_rate", 1e-4, 1e-1, log=True),
    Float("dropout", 0.0, 0.5),
    Int("layers", 1, 8),
    Categorical("optimizer", ["adam", "sgd", "rmsprop"]),
])
# Where each optimizer's best learning rate lies relative to the task's, in encoded units.
_LR_OFFSET = (0.0, 0.2, -0.1)
_LAYER_LEVELS = 7  # layers 1..8: 7 steps of the encoded grid


def _loss(U: Tensor, p: Tensor) -> Tensor:
    """`... x n x 6` encoded points, `... x 7` params `[t_lr, t_drop, t_layers, c_adam, c_sgd,
    c_rmsprop, s]` -> `... x n` losses."""
    p = p.unsqueeze(-2)
    U = project_model_points(MIXED_SPACE, U)
    one_hot = U[..., 3:6]
    delta = (one_hot * torch.tensor(_LR_OFFSET, dtype=U.dtype, device=U.device)).sum(-1)
    offset = (one_hot * p[..., 3:6]).sum(-1)
    lr_gap = U[..., 0] - p[..., 0] - delta
    bowl = (3 * lr_gap**2 + 2 * (U[..., 1] - p[..., 1]) ** 2 + 1.5 * (U[..., 2] - p[..., 2]) ** 2
            + 0.15 * (1 - torch.cos(4 * torch.pi * lr_gap)))
    return p[..., 6] * (bowl + offset) + 1.0


def _optimum(p: Tensor) -> Tensor:
    """`B x 7` params -> `B` minima: the best optimizer's offset plus the nearest layer level's
    penalty (the learning rate and dropout optima lie inside the box for every task; layers
    1..8 sit at multiples of 1/7 of the encoded axis)."""
    nearest = torch.round(p[:, 2] * _LAYER_LEVELS) / _LAYER_LEVELS
    layer_penalty = 1.5 * (nearest - p[:, 2]) ** 2
    return p[:, 6] * (p[:, 3:6].min(-1).values + layer_penalty) + 1.0


class MixedTraining(FunctionFamily):
    """Validation loss of one model across datasets, over `MIXED_SPACE` (typed, 6 encoded columns).

    Task parameters: the best learning rate `t_lr ~ U[0.25, 0.65]` (encoded, for Adam), dropout
    `t_drop ~ U[0.1, 0.9]`, layers `t_layers ~ U[0.1, 0.9]`, per-optimizer offsets
    `c ~ U[0, 0.4]^3` and a scale `s ~ U[0.8, 1.2]`.
    """

    def __init__(self):
        super().__init__(
            fn=_loss, bounds=MIXED_SPACE.model_bounds,
            sample_params=lambda n, g: _uniform(n, g, [0.25, 0.1, 0.1, 0.0, 0.0, 0.0, 0.8],
                                                [0.65, 0.9, 0.9, 0.4, 0.4, 0.4, 1.2]),
            name="mixed", optimum=_optimum,
        )

    @property
    def space(self) -> SearchSpace:
        return MIXED_SPACE

    def uniform_points(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        """Points drawn uniformly per parameter (a level of the optimizer uniformly), `shape x 6`."""
        return project_model_points(MIXED_SPACE, super().uniform_points(shape, generator))
