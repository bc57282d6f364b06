"""Paired statistics of the benchmark report, on frames whose answers are known by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from benchmarks import stats


def frame(curves: dict[str, np.ndarray]) -> pd.DataFrame:
    """Long-format rows from `runs x iterations` regret matrices, one per method."""
    rows = []
    for method, m in curves.items():
        for r, curve in enumerate(m):
            for it, regret in enumerate(curve, start=1):
                rows.append({"task": f"t{r // 2}", "seed": r % 2, "method": method,
                             "iteration": it, "regret": float(regret)})
    return pd.DataFrame(rows)


def test_signed_rank_counts_wins_losses_ties_and_tests_only_untied_pairs():
    bo = np.array([[1.0, 0.5], [1.0, 0.4], [1.0, 0.3], [1.0, 0.2], [1.0, 0.1], [1.0, 0.0]])
    better = bo * np.array([[1.0, 0.1]])  # lower wherever bo > 0; tied on the last run
    df = frame({"bo": bo, "metaprior": better})
    t = stats.signed_rank(df, "metaprior", "bo", 2)
    assert (t["wins"], t["losses"], t["ties"]) == (5, 0, 1)
    assert t["p"] == pytest.approx(0.0625)  # exact two-sided test, 5 of 5 untied pairs
    tied = stats.signed_rank(df, "metaprior", "bo", 1)
    assert (tied["wins"], tied["losses"], tied["ties"]) == (0, 0, 6) and math.isnan(tied["p"])
    worse = stats.signed_rank(df, "bo", "metaprior", 2)
    assert (worse["wins"], worse["losses"]) == (0, 5)


def test_evaluations_to_match_reads_the_median_curve_and_brackets_it():
    its = np.arange(1, 11)
    bo = np.tile(1.0 / its, (8, 1))  # median 0.1 at 10 evaluations
    fast = np.tile(np.where(its >= 4, 0.05, 1.0), (8, 1))  # below 0.1 from 4 on, every run
    df = frame({"bo": bo, "metaprior": fast})
    est, lo, hi = stats.evaluations_to_match(df, "metaprior", "bo", 10, n_boot=200)
    assert (est, lo, hi) == (4.0, 4.0, 4.0)  # identical runs: no spread to resample
    never = frame({"bo": bo, "metaprior": np.ones((8, 10))})
    assert stats.evaluations_to_match(never, "metaprior", "bo", 10, n_boot=50)[0] == math.inf


def test_bootstrap_interval_widens_with_runs_that_disagree():
    rng = np.random.default_rng(0)
    its = np.arange(1, 31)
    bo = np.tile(1.0 / its, (16, 1))
    reach = rng.integers(3, 20, 16)  # each run drops below the target at its own evaluation
    mixed = np.where(its[None, :] >= reach[:, None], 0.01, 1.0)
    df = frame({"bo": bo, "metaprior": mixed})
    est, lo, hi = stats.evaluations_to_match(df, "metaprior", "bo", 30, n_boot=500, seed=1)
    assert lo < est < hi or (lo <= est <= hi and lo < hi)
    # the median of 16 values of 0.01 or 1 is 0.01 once 9 runs have dropped
    assert est == float(np.sort(reach)[8])
    again = stats.evaluations_to_match(df, "metaprior", "bo", 30, n_boot=500, seed=1)
    assert again == (est, lo, hi)


def test_mean_log10_floors_zero_regret():
    assert stats.mean_log10(np.array([0.0, 1e-3])) == pytest.approx((-9 - 3) / 2)
    assert math.isnan(stats.mean_log10(np.array([])))
