"""Where a benchmark row came from: the commit, its code, the library versions and the machine.

Every row of a benchmark CSV carries these strings, so a table can say what produced it and the
report can refuse to mix rows of different code: `code` hashes the commit's tracked files
outside `NOT_CODE`, so commits that differ only in the README and the results share it.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import pandas as pd

from benchmarks.machine import cpu_description

# The libraries whose versions change the numbers (the model, the GP, the acquisition).
VERSIONED = ("metaprior", "torch", "botorch", "gpytorch", "numpy", "scipy")
# Tracked paths that the benchmark writes and that do not change its numbers.
NOT_CODE = ("README.md", "benchmarks/results")


# Read as text: a short commit of digits and one "e" ("989e222") would otherwise be a float.
PROVENANCE_DTYPES = {"commit": str, "code": str, "versions": str, "machine": str}


def read_rows(source, **kwargs) -> pd.DataFrame:
    """A benchmark CSV (a path or a buffer) with its provenance columns as text."""
    return pd.read_csv(source, dtype=PROVENANCE_DTYPES, **kwargs)


def git_commit() -> str:
    """The repository's short commit, with "+dirty" when tracked files other than `NOT_CODE`
    have uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                             capture_output=True, check=True).stdout.strip()
        # The report rewrites the README and the results; neither changes a number.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", *(f":(exclude){p}" for p in NOT_CODE)],
                               cwd=root, text=True, capture_output=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def code_hash(commit: str = "HEAD", root: Path | None = None) -> str:
    """A short hash of `commit`'s code: sha256 of `git ls-tree -r` (mode, blob and path of
    every tracked file) outside `NOT_CODE`, so commits that differ only in the README and the
    results have the same hash; "unknown" where git cannot tell. `root`: the repository
    (default: this one)."""
    root = Path(__file__).resolve().parent.parent if root is None else root
    try:
        tree = subprocess.run(["git", "ls-tree", "-r", commit], cwd=root, text=True,
                              capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    code = [line for line in tree.splitlines()
            if not any(path == p or path.startswith(p + "/")
                       for path in [line.split("\t", 1)[1]] for p in NOT_CODE)]
    return hashlib.sha256("\n".join(code).encode()).hexdigest()[:12]


def row_codes(rows: pd.DataFrame) -> pd.Series:
    """Each row's code version: its `code` column (`code_hash`), or its commit where the row
    has none (written before the column existed) or git could not tell ("unknown"): then the
    commit alone vouches for the code."""
    code = rows["code"] if "code" in rows else pd.Series(pd.NA, index=rows.index)
    return code.mask(code.astype(str).str.startswith("unknown")).fillna(rows["commit"]).astype(str)


def code_versions(rows: pd.DataFrame) -> dict[str, list[str]]:
    """The commits of `rows` grouped by `row_codes`: code -> sorted commits."""
    groups = rows.assign(code=row_codes(rows)).groupby("code")["commit"].unique()
    return {c: sorted(map(str, commits)) for c, commits in sorted(groups.items())}


def library_versions() -> str:
    """e.g. "python 3.11.9; metaprior 0.4.0; torch 2.13.0; ..."."""
    parts = [f"python {platform.python_version()}"]
    for name in VERSIONED:
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name} absent")
    return "; ".join(parts)


def machine_description() -> str:
    """The CPU model with its vector extensions and the number of cores, e.g.
    "Intel(R) Xeon(R) ... (avx2, fma, avx512f); 2 cores"."""
    return f"{cpu_description()}; {os.cpu_count()} cores"


def provenance() -> dict[str, str]:
    """The `commit`, `code`, `versions` and `machine` columns of this process's rows."""
    commit = git_commit()
    dirty = "+dirty" if commit.endswith("+dirty") else ""
    return {"commit": commit, "code": code_hash() + dirty, "versions": library_versions(),
            "machine": machine_description()}
