"""Portfolio: zero-shot HPO without a model, from the training tasks' best configurations.

Written from the papers' idea (Feurer, Springenberg & Hutter 2015, "Initializing Bayesian
hyperparameter optimization via meta-learning"; Wistuba, Schilling & Schmidt-Thieme 2015,
"Learning hyperparameter optimization initializations"): the candidates are the best observed
configuration of each training task, ordered greedily so that each next one most improves the
portfolio's worst case averaged over the training tasks. A new task evaluates them in that
order, then (the portfolio exhausted) uniform random points.

The loss table. Greedy ordering needs every candidate's loss on every training task, and a
candidate is a point of another task. The benchmark evaluates it exactly where the family can
evaluate its training tasks (`training_tasks.training_objectives`: every registry family), as
the papers do with their meta-data tables. Otherwise `nearest_losses` estimates it by the loss of
task j's nearest observed point: model-free and deterministic, exact for a task's own candidate,
never outside the values task j really took, and with no fitted hyperparameters to choose. A GP
posterior mean would be smoother, but would make a baseline whose point is to need no model
depend on one (and on its fits).

Normalisation. Each task's losses are mapped to [0, 1] by the min and max of its observed values
and the candidates' losses on it, so that every task weighs the same whatever its scale.
"""

from __future__ import annotations

import torch
from torch import Tensor

from benchmarks.baselines.source_data import SourceData, check_observations, check_source_data
from metaprior.errors import InputDataError
from metaprior.tasks.family import make_generator


def best_configurations(source_data: SourceData) -> Tensor:
    """The candidates: row i is source task i's best observed point (the first, on ties).

    Args:
        source_data: validated pairs `(X_i: n_i x d, Y_i: n_i x 1)`.

    Returns:
        `M x d`, one row per source task.
    """
    return torch.stack([X[int(Y.squeeze(-1).argmin())] for X, Y in source_data])


def nearest_losses(source_data: SourceData, candidates: Tensor) -> Tensor:
    """Estimated losses: entry `[j, c]` is task j's value at its observed point nearest to
    candidate c (Euclidean in the unit cube; the first, on ties).

    Args:
        source_data: validated pairs `(X_j: n_j x d, Y_j: n_j x 1)`, M tasks.
        candidates: `k x d` points.

    Returns:
        `M x k`.
    """
    rows = []
    for X, Y in source_data:
        nearest = torch.cdist(candidates, X).argmin(-1)  # k
        rows.append(Y.squeeze(-1)[nearest])
    return torch.stack(rows)


def normalized_losses(source_data: SourceData, losses: Tensor) -> Tensor:
    """`M x k` losses mapped per task (row) to [0, 1] by the min and max of the task's observed
    values and its row; a constant task's row becomes 0 (it cannot tell candidates apart)."""
    out = torch.zeros_like(losses)
    for j, (_, Y) in enumerate(source_data):
        values = torch.cat([Y.squeeze(-1), losses[j]])
        lo, hi = values.min(), values.max()
        if hi > lo:
            out[j] = (losses[j] - lo) / (hi - lo)
    return out


def greedy_order(losses: Tensor) -> list[int]:
    """Candidates in greedy portfolio order.

    Args:
        losses: `M x k` normalised losses of k candidates on M tasks.

    Returns:
        Candidate indices: first the one with the lowest mean loss, then repeatedly the one that
        most lowers `mean_j min_{c in portfolio} losses[j, c]`, until all k are ordered. Ties
        (candidates that no longer lower it, say) go to the lower mean loss, then the lower index.
    """
    M, k = losses.shape
    mean = losses.mean(0)
    best_so_far = torch.full((M,), float("inf"), dtype=losses.dtype)  # empty portfolio
    order: list[int] = []
    remaining = list(range(k))
    while remaining:
        score = torch.minimum(best_so_far.unsqueeze(-1), losses[:, remaining]).mean(0)
        pick = min(range(len(remaining)),
                   key=lambda i: (float(score[i]), float(mean[remaining[i]]), remaining[i]))
        c = remaining.pop(pick)
        order.append(c)
        best_so_far = torch.minimum(best_so_far, losses[:, c])
    return order


class PortfolioOptimizer:
    """Ask/tell portfolio in the unit cube, minimising: the greedy portfolio, then random points.

    Args:
        source_data: list of M pairs `(X_i: n_i x dim in [0, 1]^dim, Y_i: n_i x 1)`.
        dim: input dimension.
        seed: seeds the random points after the portfolio (`make_generator(seed, "portfolio",
            i)` for the i-th ask, so a point depends on the seed and its position only).
        losses: optional `M x M` table, entry `[j, c]` the loss of source task c's best point on
            source task j (evaluated on the training tasks); None estimates it with
            `nearest_losses`.

    Attributes:
        portfolio: `P x dim` distinct candidates in the order they are asked (`P <= M`).
    """

    def __init__(self, source_data, dim: int, seed: int = 0, losses: Tensor | None = None):
        self.source = check_source_data(source_data, dim)
        self.dim, self.seed = int(dim), int(seed)
        candidates = best_configurations(self.source)
        M = len(self.source)
        if losses is None:
            losses = nearest_losses(self.source, candidates)
        else:
            losses = torch.as_tensor(losses, dtype=torch.float64)
            if losses.shape != (M, M):
                raise InputDataError(f"losses must have shape {M} x {M} for {M} source tasks "
                                     f"(got {tuple(losses.shape)})")
            if not torch.isfinite(losses).all():
                j, c = (~torch.isfinite(losses)).nonzero()[0].tolist()
                raise InputDataError(f"losses has NaN or inf at [{j}, {c}]: {losses[j, c].item()}")
        ordered = candidates[greedy_order(normalized_losses(self.source, losses))]
        # Two tasks can share a best configuration (a grid, a shared table): ask it once.
        self.portfolio = torch.stack([x for i, x in enumerate(ordered)
                                      if not any(torch.equal(x, y) for y in ordered[:i])])
        self.X = torch.empty(0, self.dim, dtype=torch.float64)
        self.Y = torch.empty(0, 1, dtype=torch.float64)
        self._asked = 0

    def ask(self) -> Tensor:
        """The next point: `1 x dim` in the unit cube (each ask moves on, told or not)."""
        i = self._asked
        self._asked += 1
        if i < self.portfolio.shape[0]:
            return self.portfolio[i:i + 1].clone()
        g = make_generator(self.seed, "portfolio", i)
        return torch.rand(1, self.dim, generator=g, dtype=torch.float64)

    def tell(self, X, y) -> None:
        """Record evaluations: X `q x dim` (unit cube), y `q` or `q x 1`. The portfolio does not
        adapt to them; they are kept for inspection."""
        X, y = check_observations(X, y, self.dim)
        self.X = torch.cat([self.X, X])
        self.Y = torch.cat([self.Y, y])
