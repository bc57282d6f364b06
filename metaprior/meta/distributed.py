"""torch.distributed glue: under torchrun each rank adapts a shard of every meta-batch.

Every rank draws the whole meta-batch from the same per-step random stream and keeps its own
slice, so N ranks x B/N tasks reproduce the one-process run with B tasks up to the order of the
floating-point sum in the all-reduce.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_if_launched(device: torch.device) -> bool:
    """Join the process group when torchrun set the environment; True when distributed."""
    if not dist.is_available():
        return False
    if dist.is_initialized():
        return dist.get_world_size() > 1
    if env_world_size() <= 1 or "MASTER_ADDR" not in os.environ:
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return True


def rank_and_size() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard(n_tasks: int, rank: int, world: int) -> slice:
    """The contiguous slice of a meta-batch's tasks that `rank` adapts."""
    per = -(-n_tasks // world)
    return slice(min(rank * per, n_tasks), min((rank + 1) * per, n_tasks))


def all_reduce_sum(tensors: list[torch.Tensor]) -> None:
    """In-place sum over ranks of a list of tensors (one flat buffer, one collective)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    flat = torch.cat([t.flatten() for t in tensors])
    dist.all_reduce(flat)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
