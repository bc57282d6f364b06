"""Code versions: rows of commits that differ only in the README and the results are one."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.provenance import code_hash, code_versions, provenance
from benchmarks.run import MixedCommitsError, check_one_commit


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
    assert code_hash(code, repo) == code_hash(results, repo) != code_hash(changed, repo)
    # a file beside the results folder is code: only benchmarks/results/ itself is not
    beside = commit(repo, {"benchmarks/results.py": "b = 1\n"}, "code beside the results")
    assert code_hash(beside, repo) != code_hash(changed, repo)
    assert code_hash("0000000", repo) == "unknown"  # not in the repository


def test_rows_are_grouped_by_code_and_old_rows_by_commit():
    rows = pd.DataFrame({"commit": ["a1", "b2", "c3", "d4", "e5"],
                         "code": ["x", "x", "y", "unknown", None]})
    assert code_versions(rows) == {"d4": ["d4"], "e5": ["e5"], "x": ["a1", "b2"], "y": ["c3"]}
    assert code_versions(rows.drop(columns="code")) == {c: [c] for c in rows.commit}


def test_appending_is_refused_only_for_other_code(tmp_path):
    rows = pd.DataFrame({"commit": ["a1", "b2"], "code": ["x", "x"]})
    check_one_commit(rows, tmp_path / "runs.csv", {"commit": "c3", "code": "x"}, False)
    with pytest.raises(MixedCommitsError, match="a1"):
        check_one_commit(rows, tmp_path / "runs.csv", {"commit": "c3", "code": "y"}, False)
    unknown = rows.assign(code="unknown")  # without git only the commit vouches
    with pytest.raises(MixedCommitsError, match="b2"):
        check_one_commit(unknown, tmp_path / "runs.csv", {"commit": "a1", "code": "unknown"},
                         False)


def test_this_process_rows_carry_the_code_of_head():
    origin = provenance()
    assert origin["code"].split("+")[0] in (code_hash(), "unknown")
    assert origin["code"].endswith("+dirty") == origin["commit"].endswith("+dirty")
