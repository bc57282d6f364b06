"""The prior file: safetensors with a JSON header, a format version and a checksum.

Loading only parses JSON and raw tensor bytes (never pickle), so a hostile file cannot run code.
Every way a file can be wrong becomes a `PriorFileError` that names the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

from metaprior.errors import PriorFileError

FORMAT_NAME = "metaprior"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 10_000_000


def checksum(tensors: dict[str, Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so that a reader sees either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_prior_file(path, tensors: dict[str, Tensor], header: dict) -> None:
    """Save tensors and a JSON-able header atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "checksum": checksum(tensors),
        "header": json.dumps(header, sort_keys=True),
    }
    atomic_write_bytes(path, st_save(tensors, metadata=meta))


def read_prior_file(path) -> tuple[dict[str, Tensor], dict]:
    """Load and verify a prior file; any defect raises `PriorFileError`."""
    path = Path(path)
    if not path.is_file():
        raise PriorFileError(f"{path}: no such prior file")
    data = path.read_bytes()
    if len(data) < 8:
        raise PriorFileError(f"{path}: truncated ({len(data)} bytes), not a prior file")
    (n_header,) = struct.unpack("<Q", data[:8])
    if n_header > min(MAX_HEADER_BYTES, len(data) - 8) or data[8:9] != b"{":
        raise PriorFileError(
            f"{path}: not a safetensors prior file (bad header length {n_header} for a "
            f"{len(data)}-byte file; a pickle or another format renamed?)"
        )
    try:
        raw = json.loads(data[8:8 + n_header])
        meta = raw.get("__metadata__") or {}
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
        raise PriorFileError(f"{path}: corrupt safetensors header ({e})") from None
    if meta.get("format") != FORMAT_NAME:
        raise PriorFileError(f"{path}: safetensors file without a metaprior header "
                             f"(format={meta.get('format')!r})")
    try:
        version = int(meta.get("format_version", "-1"))
    except ValueError:
        raise PriorFileError(f"{path}: bad format_version {meta.get('format_version')!r}") from None
    if version > FORMAT_VERSION:
        raise PriorFileError(
            f"{path}: format version {version} is newer than this metaprior reads "
            f"({FORMAT_VERSION}); upgrade metaprior"
        )
    if version < 1:
        raise PriorFileError(f"{path}: bad format version {version}")
    try:
        tensors = st_load(data)
    except Exception as e:  # safetensors raises its own error types for truncated data
        raise PriorFileError(f"{path}: corrupt or truncated tensor data ({e})") from None
    if checksum(tensors) != meta.get("checksum"):
        raise PriorFileError(f"{path}: checksum mismatch, the tensor data is corrupt")
    try:
        header = json.loads(meta["header"])
    except (KeyError, json.JSONDecodeError) as e:
        raise PriorFileError(f"{path}: corrupt metaprior header ({e})") from None
    return tensors, header


def as_float_tensor(values, name: str) -> Tensor:
    t = torch.as_tensor(values, dtype=torch.float64)
    if not torch.isfinite(t).all():
        raise PriorFileError(f"non-finite {name} in prior file: {t.tolist()}")
    return t
