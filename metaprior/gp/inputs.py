"""The checks every GP model of metaprior makes on its prior and training data, in one place."""

from __future__ import annotations

from torch import Tensor

from metaprior.errors import ConfigError, InputDataError
from metaprior.prior import MetaPrior
from metaprior.validation import (
    check_float64,
    check_magnitude,
    check_within_reach,
    check_X,
    check_Y,
)


def check_training_data(model: str, prior: MetaPrior, train_X, train_Y,
                        train_Yvar: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """`(train_X, train_Y)` as `n x d` and `n x 1` float64 tensors, or a typed error.

    Args:
        model: the model's class name, for the messages.
        prior: must be a `MetaPrior` of dimension d.
        train_X: `n x d` inputs in the prior's original units, n >= 1, finite, float64, and
            within reach of the prior's box.
        train_Y: `n x 1` (or `n`) finite float64 observations of sane magnitude.
        train_Yvar: optional noise variances, float64 too.
    """
    if not isinstance(prior, MetaPrior):
        raise ConfigError(f"prior must be a MetaPrior (got {type(prior).__name__})")
    train_X = check_X(train_X, prior.dim, "train_X", allow_batch=False)
    train_Y = check_Y(train_Y, train_X.shape[0], "train_Y")
    if train_X.shape[0] < 1:
        raise InputDataError(f"{model} needs at least one observation; with none, use "
                             "prior.predict (the zero-shot prior)")
    check_float64(model, train_X, train_Y, train_Yvar)
    check_within_reach(train_X, prior.bounds, "train_X")
    check_magnitude(train_Y, "train_Y")
    return train_X, train_Y
