"""The prior file: safetensors with a JSON header, a format version and a checksum.

Loading only parses JSON and raw tensor bytes (never pickle), so a hostile file cannot run code.
Every way a file can be wrong becomes a `PriorFileError` that names the file.

The checksum (scheme "2") covers every tensor's name, dtype, shape and bytes and every metadata
field, the JSON header included. Files written before the scheme existed carry no
`checksum_scheme` and a checksum of the tensors alone; they are verified that way.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import struct
import time
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

from metaprior.errors import ConfigError, PriorFileError

FORMAT_NAME = "metaprior"
# 2: the checksum covers the header (scheme 2), which holds the shift prior and the search
# space. Version-1 files still load; a reader of version 1 refuses version 2 with "upgrade"
# instead of reporting a checksum mismatch.
FORMAT_VERSION = 2
MAX_HEADER_BYTES = 10_000_000
CHECKSUM_SCHEME = "2"
MAX_JSON_DEPTH = 32  # deeper than any header we write; bounds the recursion of every reader
# A temporary file left by a killed writer: removed by the next save when its writer is gone,
# or in any case once this old (a writer on another host, a reused pid).
STALE_TMP_SECONDS = 3600.0


def checksum(tensors: dict[str, Tensor]) -> str:
    """The tensors-only checksum of files written before `CHECKSUM_SCHEME` existed."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def _update(h, text: str) -> None:
    # Length-prefixed, so that no two different sequences of fields hash the same bytes.
    data = text.encode()
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)


def full_checksum(tensors: dict[str, Tensor], meta: dict[str, str]) -> str:
    """Scheme 2: every tensor (name, dtype, shape, bytes) and every metadata field but the
    checksum itself."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous().cpu()
        _update(h, name)
        _update(h, f"{t.dtype}{list(t.shape)}")
        data = t.numpy().tobytes()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    for key in sorted(meta):
        if key != "checksum":
            _update(h, key)
            _update(h, meta[key])
    return h.hexdigest()


# ---- atomic writes ---------------------------------------------------------------------
def _tmp_prefix(path: Path) -> str:
    return f".{path.name}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # it exists (someone else's), or we cannot tell: keep its file
    return True


def remove_stale_tmp_files(path: Path) -> list[Path]:
    """Delete the temporary files that killed writers of `path` left; returns them.

    A writer names its file `.NAME.PID.RANDOM.tmp`. One is stale when that process is gone,
    or when it is older than `STALE_TMP_SECONDS` (also the rule for files of the old naming).
    A live writer's file is never touched, so concurrent saves stay safe.
    """
    removed = []
    prefix = _tmp_prefix(path)
    now = time.time()
    try:
        candidates = [p for p in path.parent.iterdir()
                      if p.name.startswith(prefix) and p.name.endswith(".tmp")]
    except OSError:
        return removed
    for tmp in candidates:
        middle = tmp.name[len(prefix):-len(".tmp")].split(".")
        try:
            age = now - tmp.lstat().st_mtime
        except OSError:
            continue
        pid = int(middle[0]) if len(middle) == 2 and middle[0].isdigit() else None
        writer_gone = pid is not None and pid != os.getpid() and not _pid_alive(pid)
        if writer_gone or age > STALE_TMP_SECONDS:
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    return removed


def _create_tmp(path: Path) -> tuple[int, Path]:
    """A new temporary file beside `path`, opened for writing.

    Created with mode 0o666 so that the umask decides its permissions, as for any file the
    user creates (`tempfile.mkstemp` would make it 0600: unreadable in a shared store).
    """
    while True:
        tmp = path.parent / f"{_tmp_prefix(path)}{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                           0o666), tmp
        except FileExistsError:
            continue


def fsync_directory(directory: Path) -> None:
    """Make a rename inside `directory` durable (the directory entry is data too)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # platforms that cannot open a directory (Windows) cannot fsync it either
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename itself has happened
    finally:
        os.close(fd)


def check_writable_file(path, what: str = "output") -> Path:
    """Fail now, not after hours of work, if `path` cannot be written as a file.

    Creates missing parent folders and probes them with a temporary file.

    Args:
        path: where a file will be written later.
        what: how error messages name it ("--out", "checkpoint").

    Returns:
        `path` as a `Path`.

    Raises:
        ConfigError: `path` is a folder, or a parent of it is a file.
        OSError: the folder cannot be written (permission denied, read-only filesystem).
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {str(path)!r} is a directory; give a file path")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"{what} {str(path)!r}: {str(parent)!r} is a file, not a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_tmp(path)
    os.close(fd)
    tmp.unlink(missing_ok=True)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so that a reader sees either the old file or the whole new one,
    also after a crash or power loss (the file and its directory are fsynced)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp_files(path)
    fd, tmp = _create_tmp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


# ---- the file ----------------------------------------------------------------------------
def write_prior_file(path, tensors: dict[str, Tensor], header: dict) -> None:
    """Save tensors and a JSON-able header atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "checksum_scheme": CHECKSUM_SCHEME,
        "header": json.dumps(header, sort_keys=True),
    }
    meta["checksum"] = full_checksum(tensors, meta)
    atomic_write_bytes(path, st_save(tensors, metadata=meta))


def json_depth(value) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def parse_json(text, path: Path, what: str):
    """`json.loads` whose every failure (a deeply nested document included) is a
    `PriorFileError`."""
    try:
        value = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise PriorFileError(f"{path}: corrupt {what} ({type(e).__name__}: {e})") from None
    if json_depth(value) > MAX_JSON_DEPTH:
        raise PriorFileError(f"{path}: {what} nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def verify_checksum(tensors: dict[str, Tensor], meta: dict[str, str], path: Path) -> None:
    scheme = meta.get("checksum_scheme")
    if scheme is None:
        expected = checksum(tensors)  # a file written before the header was covered
    elif scheme == CHECKSUM_SCHEME:
        expected = full_checksum(tensors, meta)
    else:
        raise PriorFileError(f"{path}: unknown checksum scheme {scheme!r}; upgrade metaprior")
    if expected != meta.get("checksum"):
        covered = "tensor data" if scheme is None else "file's tensors or header"
        raise PriorFileError(f"{path}: checksum mismatch, the {covered} is corrupt")


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
    raw = parse_json(data[8:8 + n_header], path, "safetensors header")
    if not isinstance(raw, dict):
        raise PriorFileError(f"{path}: corrupt safetensors header (a {type(raw).__name__})")
    meta = raw.get("__metadata__") or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise PriorFileError(f"{path}: corrupt safetensors header (metadata is not strings)")
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
    verify_checksum(tensors, meta, path)
    if "header" not in meta:
        raise PriorFileError(f"{path}: corrupt metaprior header (no 'header' field)")
    header = parse_json(meta["header"], path, "metaprior header")
    if not isinstance(header, dict):
        raise PriorFileError(f"{path}: corrupt metaprior header (a {type(header).__name__}, "
                             f"not an object)")
    return tensors, header


def _is_real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_box(v) -> bool:
    return (isinstance(v, list) and len(v) == 2 and all(isinstance(r, list) for r in v)
            and len(v[0]) == len(v[1]) >= 1 and all(_is_real(x) for r in v for x in r))


# Header field -> (required, check, what the check demands). Files of every version hold the
# required fields; the others appeared later.
HEADER_FIELDS = {
    "family": (True, lambda v: isinstance(v, str), "a string"),
    "bounds": (True, _is_box, "a finite 2 x d list of numbers"),
    "y_mean": (True, _is_real, "a finite number"),
    "y_std": (True, lambda v: _is_real(v) and v > 0, "a finite positive number"),
    "config": (True, lambda v: isinstance(v, dict), "an object"),
    "dim": (False, lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
            "a positive integer"),
    "stats": (False, lambda v: v is None or isinstance(v, dict), "an object"),
    "n_adapted": (False, lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                  "a non-negative integer"),
    "shift_prior": (False, lambda v: v is None or isinstance(v, dict), "null or an object"),
    "space": (False, lambda v: v is None or isinstance(v, dict), "null or an object"),
    "format_version": (False, lambda v: isinstance(v, int) and not isinstance(v, bool),
                       "an integer"),
}


def check_header(header: dict, path) -> None:
    """Every field of a prior's JSON header has the type and range it must; else
    `PriorFileError` naming the field and its value."""
    for name, (required, ok, demand) in HEADER_FIELDS.items():
        if name not in header:
            if required:
                raise PriorFileError(f"{path}: header has no {name!r} field")
            continue
        if not ok(header[name]):
            raise PriorFileError(f"{path}: header field {name} must be {demand} "
                                 f"(got {header[name]!r:.200})")
    if "dim" in header and header["dim"] != len(header["bounds"][0]):
        raise PriorFileError(f"{path}: header dim={header['dim']} but bounds have "
                             f"{len(header['bounds'][0])} columns")


def check_tensor_names(tensors: dict[str, Tensor], path) -> list[Tensor]:
    """The weights `param.000, param.001, ...`, in order, as floating-point tensors."""
    expected = [f"param.{i:03d}" for i in range(len(tensors))]
    if set(tensors) != set(expected):
        raise PriorFileError(f"{path}: tensors must be named {expected[:2]}... in sequence "
                             f"(got {sorted(tensors)[:8]})")
    bad = [n for n in expected if not tensors[n].is_floating_point()]
    if bad:
        raise PriorFileError(f"{path}: tensors {bad} are not floating point "
                             f"({[str(tensors[n].dtype) for n in bad]})")
    return [tensors[n] for n in expected]


def as_float_tensor(values, name: str) -> Tensor:
    t = torch.as_tensor(values, dtype=torch.float64)
    if not torch.isfinite(t).all():
        raise PriorFileError(f"non-finite {name} in prior file: {t.tolist()}")
    return t
