"""Where a benchmark row came from: the commit, the library versions and the machine.

Every row of a benchmark CSV carries these three strings, so a table can say what produced it
and the report can refuse to mix rows of different commits.
"""

from __future__ import annotations

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
PROVENANCE_DTYPES = {"commit": str, "versions": str, "machine": str}


def read_rows(source, **kwargs) -> pd.DataFrame:
    """A benchmark CSV (a path or a buffer) with its provenance columns as text."""
    return pd.read_csv(source, dtype=PROVENANCE_DTYPES, **kwargs)


def _code_paths() -> list[str]:
    """Git pathspecs of the code: the whole tree but `NOT_CODE`."""
    return [".", *(f":(exclude){p}" for p in NOT_CODE)]


def git_commit() -> str:
    """The repository's short commit, with "+dirty" when tracked files other than `NOT_CODE`
    have uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                             capture_output=True, check=True).stdout.strip()
        # The report rewrites the README and the results; neither changes a number.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                *_code_paths()],
                               cwd=root, text=True, capture_output=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def same_code(first: str, second: str, root: Path | None = None) -> bool:
    """Whether rows of two commits come from the same code: the commits' trees are equal
    outside `NOT_CODE` (`git diff` is empty there). A commit with uncommitted changes
    ("+dirty"), or one that this clone does not hold, is the same only as itself. `root`: the
    repository (default: this one)."""
    if first == second:
        return True
    if any(c.endswith("+dirty") or c == "unknown" for c in (first, second)):
        return False
    root = Path(__file__).resolve().parent.parent if root is None else root
    try:
        diff = subprocess.run(["git", "diff", "--quiet", first, second, "--", *_code_paths()],
                              cwd=root, capture_output=True)
    except OSError:
        return False
    return diff.returncode == 0  # 1: they differ; 128: a commit git does not know


def code_versions(commits: list[str], root: Path | None = None) -> list[list[str]]:
    """`commits` grouped by `same_code` (in repository `root`), each group and the groups in
    sorted order."""
    groups: list[list[str]] = []
    for commit in sorted(set(commits)):
        group = next((g for g in groups if same_code(g[0], commit, root)), None)
        if group is None:
            groups.append([commit])
        else:
            group.append(commit)
    return groups


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
    """The `commit`, `versions` and `machine` columns of this process's rows."""
    return {"commit": git_commit(), "versions": library_versions(),
            "machine": machine_description()}
