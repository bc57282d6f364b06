"""A memory budget for meta-training: derive `chunk_size` from megabytes.

The inner loop holds, for every task of a chunk, a few copies of the network's weights (the
adapted weights, the candidate step, the gradient, Adam's moments) and the activations of the
full-data loss before adaptation. Only the sampled meta-batch itself (inputs, outputs and sort
keys of all B tasks) is not chunked. The estimate below counts those tensors and
multiplies by a safety factor `OVERHEAD`. Measured with benchmarks/scale.py (extra peak RSS of
fresh processes, float32 on CPU, Branin, default config), the peak was 0.55-0.95 x the
estimate: e.g. B=10,000 unchunked 757 MiB measured for 1,239 estimated, chunk_size=1000
83-140 MiB for 152.
"""

from __future__ import annotations

import os

import torch

from metaprior.adaptation import n_epochs
from metaprior.config import ReptileConfig
from metaprior.errors import ConfigError
from metaprior.nets import layer_sizes

OVERHEAD = 1.5  # safety factor over the counted bytes (see module docstring)
WEIGHT_COPIES = {"sgd": 5, "adam": 7}  # phi, candidate, grads, where-output, delta (+ moments)


def n_weights_of(dim: int, hidden: tuple[int, ...]) -> int:
    sizes = layer_sizes(dim, hidden)
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def bytes_per_task(cfg: ReptileConfig, dim: int, dtype_bytes: int = 4) -> int:
    """Estimated peak bytes one task adds to a chunk of the inner loop."""
    weights = WEIGHT_COPIES[cfg.inner_optimizer] * n_weights_of(dim, cfg.hidden)
    # Per point: its inputs, every layer's activation and the signal propagated back through it.
    per_point = dim + 2 * sum(cfg.hidden) + 4
    return int(OVERHEAD * dtype_bytes * (weights + cfg.points_per_task * per_point))


def unchunked_bytes(cfg: ReptileConfig, dim: int) -> int:
    """Bytes of the whole meta-batch that every rank samples each step (float64 points, keys)."""
    n = cfg.points_per_task
    epochs = n_epochs(cfg.inner_steps, n, cfg.inner_batch_size)
    per_task = n * (dim + 1) * 8 * 2 + epochs * n * 4 + n
    return cfg.tasks_per_step * per_task


def chunk_size_for_memory(cfg: ReptileConfig, dim: int, max_memory_mb: float,
                          world_size: int = 1, dtype_bytes: int = 4) -> int:
    """The largest chunk size whose estimated peak fits in `max_memory_mb` (per process).

    Args:
        cfg: the run's config (its `chunk_size` is ignored).
        dim: the family's input dimension.
        max_memory_mb: budget for meta-training's own tensors, in MiB, per process.
        world_size: ranks sharing each meta-batch (a rank adapts only its shard).
        dtype_bytes: 4 for float32 weights.

    Returns:
        A chunk size in `1 .. ceil(tasks_per_step / world_size)`.

    Raises:
        ConfigError: the budget is not a positive number, or does not even hold the sampled
            meta-batch plus one task.
    """
    if isinstance(max_memory_mb, bool) or not isinstance(max_memory_mb, (int, float)) \
            or not max_memory_mb > 0:
        raise ConfigError(f"max_memory_mb must be a positive number (got {max_memory_mb!r})")
    budget = max_memory_mb * 2**20 - unchunked_bytes(cfg, dim)
    per_task = bytes_per_task(cfg, dim, dtype_bytes)
    if budget < per_task:
        need = (unchunked_bytes(cfg, dim) + per_task) / 2**20
        raise ConfigError(
            f"max_memory_mb={max_memory_mb} is below the ~{need:.1f} MiB that one step of "
            f"tasks_per_step={cfg.tasks_per_step} needs; raise it or lower tasks_per_step"
        )
    shard = -(-cfg.tasks_per_step // max(1, int(world_size)))
    return max(1, min(shard, int(budget // per_task)))


def total_memory_bytes(device: torch.device) -> int | None:
    """The device's memory (a GPU's, or the host's RAM for "cpu"); None when unknown."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    if device.type == "cpu":
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):  # not a POSIX system
            return None
    return None


def check_fits_memory(cfg: ReptileConfig, dim: int, chunk: int, device: torch.device) -> None:
    """Refuse, before any allocation, a run whose step cannot fit in the device's memory.

    Only runs that need more than the whole memory even without the `OVERHEAD` margin are
    refused: an estimate must never stop a run that would have fitted.

    Raises:
        ConfigError: naming the network, the chunk and both sizes.
    """
    total = total_memory_bytes(device)
    if total is None:
        return
    per_task = bytes_per_task(cfg, dim)
    need = unchunked_bytes(cfg, dim) + chunk * per_task
    if need / OVERHEAD <= total:
        return
    gib = 2**30
    advice = ("use fewer or narrower hidden layers" if per_task / OVERHEAD > total
              else "set a smaller chunk_size or max_memory_mb, or fewer tasks_per_step")
    raise ConfigError(
        f"hidden={cfg.hidden} with chunks of {chunk} tasks needs about {need / gib:.3g} GiB per "
        f"step, more than the {total / gib:.3g} GiB of {device}; {advice}"
    )
