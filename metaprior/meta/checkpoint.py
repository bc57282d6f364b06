"""Training checkpoints: weights, outer-optimiser state and progress, written atomically.

`torch.load(weights_only=True)` reads them, which unpickles only tensors and plain containers.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from metaprior.errors import CheckpointError
from metaprior.priorfile import atomic_write_bytes


def save_checkpoint(path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path, expect: dict) -> dict | None:
    """The checkpoint at `path`, or None if there is none. `expect` must match its run keys."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") from None
    for key, value in expect.items():
        if state.get(key) != value:
            raise CheckpointError(
                f"{path}: checkpoint {key}={state.get(key)!r} does not match this run's {value!r}"
            )
    return state
