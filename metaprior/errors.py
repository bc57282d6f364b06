"""Typed errors and warnings of metaprior.

Every error message names the offending value, so a user can fix the call without a debugger.
"""

from __future__ import annotations


class MetaPriorError(Exception):
    """Base class of every error raised by metaprior."""


class InputDataError(MetaPriorError, ValueError):
    """Observations or query points with a wrong shape, non-finite values or wrong dimension."""


class ConfigError(MetaPriorError, ValueError):
    """An invalid `ReptileConfig` field or an invalid argument of a public function."""


class TaskFamilyError(MetaPriorError, ValueError):
    """A task family that cannot be meta-trained on: bad bounds, empty or one-point tasks."""


class PriorFileError(MetaPriorError):
    """A file that is not a valid metaprior prior (truncated, corrupt, newer format, not safetensors)."""


class CheckpointError(MetaPriorError):
    """A training checkpoint that does not match the run that tries to resume from it."""


class TrainingDivergedError(MetaPriorError, ArithmeticError):
    """Meta-training produced NaN or inf weights (learning rates too large); nothing was saved."""


class OutOfBoundsWarning(UserWarning):
    """Points outside the search bounds were given; they are used (or clamped) as stated."""


class AdaptationWarning(UserWarning):
    """Adapting the network to observations went non-finite; the meta-init was kept instead."""


class InputDataWarning(UserWarning):
    """Some of the data given were skipped or used in part (e.g. a trial that reported NaN)."""
