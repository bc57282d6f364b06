"""Code versions: rows of commits that differ only in the README and the results are one."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from benchmarks.provenance import code_versions, same_code


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    """Write `files` (path -> text) into `repo`, commit them, return the short commit."""
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "add", "-A"], check=True, capture_output=True)
    subprocess.run([*git, "commit", "-q", "-m", message], check=True, capture_output=True)
    return subprocess.run([*git, "rev-parse", "--short", "HEAD"], check=True, text=True,
                          capture_output=True).stdout.strip()


@pytest.fixture()
def history(tmp_path):
    """Three commits: `code`, `results` (README and results changed only), `changed` (code)."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, capture_output=True)
    code = commit(tmp_path, {"metaprior/model.py": "a = 1\n", "README.md": "v1\n"}, "code")
    results = commit(tmp_path, {"README.md": "v2\n", "benchmarks/results/v3/help.csv": "x\n"},
                     "results")
    changed = commit(tmp_path, {"metaprior/model.py": "a = 2\n"}, "code changed")
    return tmp_path, code, results, changed


def test_commits_that_differ_only_in_readme_and_results_share_their_code(history):
    repo, code, results, changed = history
    assert same_code(code, results, repo)
    assert not same_code(results, changed, repo)
    assert not same_code(code, changed, repo)
    groups = code_versions([changed, results, code, code], repo)
    assert sorted(map(sorted, groups)) == sorted([sorted([code, results]), [changed]])


def test_dirty_and_unknown_commits_are_only_themselves(history):
    repo, code, _, _ = history
    assert not same_code(code, code + "+dirty", repo)
    assert not same_code(code, "0000000", repo)  # not in the repository: git fails
    assert not same_code("unknown", code, repo)
    assert same_code(code + "+dirty", code + "+dirty", repo)
