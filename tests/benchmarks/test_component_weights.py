"""`benchmarks.component_weights`: each GP's weight in the default's runs, per block."""

from __future__ import annotations

import pytest

from benchmarks.component_weights import run
from benchmarks.context import build_context


def test_each_run_reports_weights_that_sum_to_one_and_the_trust_they_imply(tmp_path):
    build_context("forrester", tmp_path, ["metaprior"], quick=True, progress=False)
    df = run(["forrester"], harm_tasks=1, help_tasks=1, budget=7, cache=str(tmp_path),
             yahpo_dir=None)
    assert list(df.block) == ["harm", "help"]
    assert "harm" in df.task.iloc[0] and "harm" not in df.task.iloc[1]
    for _, row in df.iterrows():
        weights = [row["informed"], row["shift"], row["uninformed"]]
        assert all(0.0 <= w <= 1.0 for w in weights)
        assert sum(weights) == pytest.approx(1.0)
        assert 0.0 <= row["family_probability"] <= 1.0
        assert row["prior_trust"] == pytest.approx(min(1.0, row["informed"] + row["shift"])
                                                   * row["family_probability"])
