"""Paired statistics of the benchmark: signed-rank tests and bootstrap intervals.

A family's help block gives each method one regret curve per run (held-out task x seed), and
the runs of two methods are paired: same task, same seed, same Sobol design. All functions take
a long-format frame with columns task, seed, method, iteration, regret.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

# log10 of a regret of exactly 0 (the optimum found to the surrogate's precision) is drawn
# at this floor, so the mean log10 regret stays finite.
REGRET_FLOOR = 1e-9


def run_matrix(df: pd.DataFrame, method: str) -> pd.DataFrame:
    """Regret of `method`: one row per run (task, seed), one column per iteration."""
    g = df[df.method == method]
    return g.pivot_table(index=["task", "seed"], columns="iteration", values="regret")


def paired_runs(df: pd.DataFrame, method: str, reference: str) -> tuple[np.ndarray, np.ndarray]:
    """Regret matrices (`runs x iterations`) of `method` and `reference` over their common runs,
    in the same row order."""
    a, b = run_matrix(df, method), run_matrix(df, reference)
    common = a.index.intersection(b.index)
    return a.loc[common].to_numpy(), b.loc[common].to_numpy()


def mean_log10(regret: pd.Series | np.ndarray) -> float:
    """Mean of log10(max(regret, REGRET_FLOOR))."""
    values = np.maximum(np.asarray(regret, dtype=float), REGRET_FLOOR)
    return float(np.log10(values).mean()) if values.size else math.nan


def signed_rank(df: pd.DataFrame, method: str, reference: str, iteration: int) -> dict:
    """Paired Wilcoxon signed-rank test of `method` against `reference` at `iteration`.

    Returns wins, losses and ties of `method` (lower regret wins) and the two-sided p-value
    over the untied pairs (nan when every pair is tied).
    """
    a, b = paired_runs(df, method, reference)
    col = iteration - 1
    if a.shape[0] == 0 or a.shape[1] <= col:
        return {"wins": 0, "losses": 0, "ties": 0, "p": math.nan}
    x, y = a[:, col], b[:, col]
    diff = x - y
    wins, losses = int((diff < 0).sum()), int((diff > 0).sum())
    p = math.nan
    if wins + losses:
        p = float(wilcoxon(x, y, zero_method="wilcox", alternative="two-sided").pvalue)
    return {"wins": wins, "losses": losses, "ties": int(diff.size - wins - losses), "p": p}


def evaluations_to_reach(curves: np.ndarray, target: float) -> float:
    """First evaluation (1-based) at which the median over runs of `curves` (`runs x its`) is
    at most `target`; inf if it never is."""
    median = np.median(curves, axis=0)
    hit = np.flatnonzero(median <= target)
    return float(hit[0] + 1) if hit.size else math.inf


def evaluations_to_match(df: pd.DataFrame, method: str, reference: str, at: int,
                         n_boot: int = 1000, level: float = 0.9,
                         seed: int = 0) -> tuple[float, float, float]:
    """Evaluations `method` needs to reach `reference`'s median regret at `at` evaluations,
    with a bootstrap interval.

    The runs are resampled in pairs (the same runs for both methods), and the target is
    recomputed on each resample. Returns (estimate, lower, upper); inf where never reached.
    """
    a, b = paired_runs(df, method, reference)
    if a.shape[0] == 0 or b.shape[1] < at:
        return math.nan, math.nan, math.nan
    estimate = evaluations_to_reach(a, float(np.median(b[:, at - 1])))
    rng = np.random.default_rng(seed)
    draws = np.empty(n_boot)
    for i in range(n_boot):
        idx = rng.integers(0, a.shape[0], a.shape[0])
        draws[i] = evaluations_to_reach(a[idx], float(np.median(b[idx, at - 1])))
    tail = (1 - level) / 2
    # order statistics, so the interval's ends are evaluation counts that occurred (or inf)
    lo = np.quantile(draws, tail, method="lower")
    hi = np.quantile(draws, 1 - tail, method="higher")
    return estimate, float(lo), float(hi)
