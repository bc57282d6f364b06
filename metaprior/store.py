"""A folder of named priors: `<store>/<name>.prior`.

The default store is `$METAPRIOR_STORE`, else `~/.cache/metaprior/priors` (`Path.home()`, so
it resolves on every platform).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from metaprior.errors import ConfigError, PriorFileError
from metaprior.prior import MetaPrior

ENV_VAR = "METAPRIOR_STORE"
SUFFIX = ".prior"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def default_store() -> Path:
    """`$METAPRIOR_STORE`, else `~/.cache/metaprior/priors`."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "metaprior" / "priors"


def resolve_store(store=None) -> Path:
    return Path(store).expanduser() if store is not None else default_store()


def prior_path(name: str, store=None) -> Path:
    """Where the prior called `name` lives in `store`."""
    if not isinstance(name, str) or not NAME_RE.match(name) or name.endswith(SUFFIX):
        raise ConfigError(f"prior name must be letters, digits, '.', '_' or '-' and not end "
                          f"in {SUFFIX!r} (got {name!r})")
    return resolve_store(store) / f"{name}{SUFFIX}"


def save(prior: MetaPrior, name: str, store=None) -> Path:
    """Save `prior` as `name` in `store` (atomic, replaces an old one); returns the path."""
    path = prior_path(name, store)
    prior.save(path)
    return path


def load(name: str, store=None, device=None) -> MetaPrior:
    """The prior saved as `name`; `PriorFileError` when it is absent or invalid."""
    return MetaPrior.load(prior_path(name, store), device=device)


@dataclass
class StoreEntry:
    """One file of a store. `error` is set (and the prior fields are None) for a bad file."""

    name: str
    path: Path
    size: int
    mtime: datetime
    family: str | None = None
    dim: int | None = None
    steps: int | None = None
    error: str | None = None


def entries(store=None) -> list[StoreEntry]:
    """Every `*.prior` file of `store`, sorted by name; an absent store is empty.

    A file that cannot be read (corrupt, a dangling link, no permission) is listed with its
    `error`: one bad file must not hide the others.

    Raises:
        ConfigError: `store` exists but is not a folder.
    """
    root = resolve_store(store)
    if not root.exists():
        return []
    if not root.is_dir():
        raise ConfigError(f"store {str(root)!r} is not a directory")
    return [entry_of(path) for path in sorted(root.glob(f"*{SUFFIX}"))]


def entry_of(path: Path) -> StoreEntry:
    try:
        st = path.stat()
    except OSError as e:  # a dangling symlink: describe the link itself
        st, error = path.lstat(), f"{path}: unreadable ({e.strerror or e})"
    else:
        error = None
    entry = StoreEntry(name=path.name[: -len(SUFFIX)], path=path, size=st.st_size,
                       mtime=datetime.fromtimestamp(st.st_mtime), error=error)
    if error is not None:
        return entry
    try:
        prior = MetaPrior.load(path)
    except (PriorFileError, OSError) as e:  # list it anyway: the user should see the broken file
        entry.error = str(e)
    else:
        entry.family, entry.dim = prior.family, prior.dim
        entry.steps = prior.stats.get("outer_steps_done")
    return entry
