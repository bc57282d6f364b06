"""Training checkpoints: weights, outer-optimiser state and progress, written atomically.

`torch.load(weights_only=True)` reads them, which unpickles only tensors and plain containers.
A run holds `CheckpointLock` on its checkpoint, so two runs never write one file in turn.
"""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import torch

from metaprior.errors import CheckpointError
from metaprior.priorfile import atomic_write_bytes

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are not protected from each other
    fcntl = None

_ABSENT = "<absent>"


def save_checkpoint(path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def describe_mismatch(key: str, stored, wanted) -> str:
    """What differs between a checkpoint's run key and this run's, naming the fields of a dict
    (a whole config printed is unreadable)."""
    if isinstance(stored, dict) and isinstance(wanted, dict):
        fields = sorted(k for k in set(stored) | set(wanted)
                        if stored.get(k, _ABSENT) != wanted.get(k, _ABSENT))
        parts = [f"{k}={stored.get(k, _ABSENT)!r} where this run has {wanted.get(k, _ABSENT)!r}"
                 for k in fields]
        return f"checkpoint {key} has " + ", ".join(parts)
    return f"checkpoint {key}={stored!r} does not match this run's {wanted!r}"


def load_checkpoint(path, expect: dict) -> dict | None:
    """The checkpoint at `path`, or None if there is none. `expect` must match its run keys."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a metaprior checkpoint (a {type(state).__name__})")
    for key, value in expect.items():
        if state.get(key) != value:
            raise CheckpointError(
                f"{path}: {describe_mismatch(key, state.get(key), value)}; resume with the "
                f"checkpoint's settings, or delete it to start afresh"
            )
    return state


class CheckpointLock:
    """An exclusive lock on a checkpoint for the length of one run.

    It is `flock` on `CHECKPOINT.lock`, which the kernel releases when the process dies, so a
    killed run never leaves a stale lock. The file holds the owner's pid for the message.

    Args:
        checkpoint: the checkpoint path to protect.
    """

    def __init__(self, checkpoint):
        self.checkpoint = Path(checkpoint)
        self.path = Path(f"{checkpoint}.lock")
        self.fd: int | None = None

    def acquire(self) -> CheckpointLock:
        """Take the lock, or raise `CheckpointError` naming the run that holds it."""
        if fcntl is None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
                os.close(fd)
                if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                    raise
                raise CheckpointError(
                    f"{self.checkpoint}: another run (pid {holder}) is training with this "
                    f"checkpoint; wait for it to finish, or give this run another --out or "
                    f"--checkpoint"
                ) from None
            # A releasing owner unlinks the file; a lock on the unlinked inode guards nothing.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # still held: nobody else owns this inode's lock
        except OSError:
            pass  # a lock file that stays is harmless: the next run locks it again
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> CheckpointLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
