"""The README's benchmark section is exactly what the committed protocol CSVs give."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import protocol_report

ROOT = Path(__file__).resolve().parents[2]
FOLDER = "benchmarks/results/v2"  # as the report names it in the section's first line
PROTOCOL = "v2"  # the protocol that folder ran


@pytest.mark.skipif(not (ROOT / FOLDER / "help.csv").exists(),
                    reason=f"no committed protocol run in {FOLDER}")
def test_regenerating_the_readme_section_from_the_committed_csvs_changes_nothing(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert protocol_report.main([FOLDER, "--protocol", PROTOCOL, "--readme", "README.md",
                                 "--check"]) == 0
