"""`benchmarks.noisy_tasks`: noisy evaluations, scored by the noiseless regret of the pick."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmarks.context import build_context, held_out, load_context
from benchmarks.noisy_tasks import run_noisy, summary


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_a_noisy_run_is_scored_by_the_clean_value_of_its_best_observed_point(tmp_path, noise):
    build_context("forrester", tmp_path, ["metaprior"], quick=True, progress=False)
    task = held_out(load_context("forrester", str(tmp_path)).family, 1)[0]
    span = task.y_max - task.y_min
    rows = run_noisy("forrester", 0, 1, "bo", budget=5, noise=noise, cache=str(tmp_path),
                     yahpo_dir=None)
    gaps = [abs(row["y"] - row["f"]) / span for row in rows]
    if noise == 0:
        assert gaps == [0.0] * 5
    else:
        assert all(0 < gap < 10 * noise for gap in gaps)
    for it in range(1, 6):
        pick = min(rows[:it], key=lambda row: row["y"])
        assert rows[it - 1]["regret"] == pytest.approx(max(pick["f"] - task.y_min, 0) / span)
    frame = summary(pd.DataFrame(rows))
    assert list(frame.index) == ["bo"]
    assert frame.loc["bo", "median @5"] == pytest.approx(rows[-1]["regret"])
