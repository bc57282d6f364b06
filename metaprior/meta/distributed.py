"""torch.distributed glue: under torchrun each rank adapts a shard of every meta-batch.

Every rank draws the whole meta-batch from the same per-step random stream and keeps its own
slice, so N ranks x B/N tasks reproduce the one-process run with B tasks up to the order of the
floating-point sum in the all-reduce. Only rank 0 writes files (checkpoints, priors, logs).

Launch with `torchrun --nproc_per_node=N ...` (see docs/scale.md); without torchrun's
environment every function here is a no-op for one process.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from metaprior.errors import ConfigError


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_active() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def local_device(device: torch.device) -> torch.device:
    """Under torchrun, a bare `cuda` means this rank's GPU: `cuda:LOCAL_RANK`.

    An explicit index (`cuda:1`) is kept, so a user who pins devices gets what they asked for.
    """
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def init_if_launched(device: torch.device) -> bool:
    """Join the process group when torchrun set the environment; True when distributed.

    gloo serves CPU tensors and nccl CUDA tensors; the caller's `device` picks between them.
    """
    if not dist.is_available():
        return False
    if dist.is_initialized():
        return dist.get_world_size() > 1
    if env_world_size() <= 1 or "MASTER_ADDR" not in os.environ:
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local_device(device))
    dist.init_process_group(backend=backend)
    return True


def rank_and_size() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """True on rank 0 (and in a plain one-process run): the one rank that writes files.

    Before the process group exists it reads torchrun's RANK, so a CLI can decide early.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def shard(n_tasks: int, rank: int, world: int) -> slice:
    """The contiguous slice of a meta-batch's tasks that `rank` adapts.

    Slices are ceil(B / world) long, so with world > B the last ranks get empty slices (they
    still join every all-reduce, contributing zeros).
    """
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"rank {rank} is not in a world of size {world}")
    per = -(-n_tasks // world)
    return slice(min(rank * per, n_tasks), min((rank + 1) * per, n_tasks))


def all_reduce_sum(tensors: list[torch.Tensor]) -> None:
    """In-place sum over ranks of a list of tensors (one flat buffer, one collective)."""
    if not is_active():
        return
    flat = torch.cat([t.flatten() for t in tensors])
    dist.all_reduce(flat)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()


def broadcast_object(obj, src: int = 0):
    """`obj` as rank `src` holds it, on every rank (pickled; for small state such as a
    checkpoint dict read by rank 0 only, so that ranks without the file stay in step)."""
    if not is_active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def check_same(value: int, what: str) -> None:
    """Raise `ConfigError` when ranks disagree on an integer (e.g. the resumed step).

    A rank that silently started from another step would train a different model with no error.
    """
    if not is_active():
        return
    device = torch.device("cuda", torch.cuda.current_device()) \
        if dist.get_backend() == "nccl" else torch.device("cpu")
    lo = torch.tensor([int(value)], device=device)
    hi = lo.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    if int(lo) != int(hi):
        raise ConfigError(
            f"ranks disagree on {what}: this rank (rank {dist.get_rank()}) has {value}, the "
            f"ranks span {int(lo)}..{int(hi)}; is the checkpoint on a filesystem every node sees?"
        )


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    """Leave the process group (end of a torchrun script); harmless when not distributed."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
