"""The competitors of the benchmark, each behind one ask/tell interface in original units.

A method is built per (task, seed) from a family `Context` (the meta-trained prior, the
baselines' source data and FSBO's meta-trained surrogate), so every method sees the same
training tasks and none sees a held-out task before its run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from metaprior.acquisition import DEFAULT_NUM_RESTARTS, DEFAULT_RAW_SAMPLES
from metaprior.errors import ConfigError
from metaprior.optim import Optimizer
from metaprior.prior import MetaPrior
from metaprior.space import box_from_unit, box_to_unit
from metaprior.tasks.family import TaskFamily, make_generator
from metaprior.zero_shot import prior_minimizer

# The library's acquisition settings, the same for every GP-based method: the benchmark measures
# what a user gets.
NUM_RESTARTS = DEFAULT_NUM_RESTARTS
RAW_SAMPLES = DEFAULT_RAW_SAMPLES

METHODS = ("random", "bo", "bo-warmstart", "metaprior", "metaprior-two-gp",
           "metaprior-mean", "metaprior-weighted",
           "metaprior-kernel", "metaprior-both", "metaprior-mean-tr", "metaprior-shift", "rgpe",
           "fsbo", "portfolio")
# Side of the "-tr" methods' trust region, as a fraction of the box (`Optimizer(trust_region=)`).
TRUST_REGION = 0.2


@dataclass
class Context:
    """What the methods of one family may learn from (training split only).

    `portfolio_losses` is the portfolio's `M x M` table of each source task's best point
    evaluated on every source task (None: the portfolio estimates it from `source_data`).
    """

    family: TaskFamily
    prior: MetaPrior
    source_data: list = field(default_factory=list)
    fsbo_prior: object | None = None
    portfolio_losses: Tensor | None = None


class RandomSearch:
    """Uniform random points in the box."""

    def __init__(self, bounds: Tensor, seed: int):
        self.bounds = bounds
        self.generator = make_generator(seed, "random-search")

    def ask(self) -> Tensor:
        u = torch.rand(1, self.bounds.shape[-1], generator=self.generator, dtype=torch.float64)
        return box_from_unit(u, self.bounds)

    def tell(self, X: Tensor, y: Tensor) -> None:
        pass


class WarmStartBO(Optimizer):
    """The ablation that isolates the zero-shot point: uninformed BO (Sobol design, then
    `SingleTaskGP`) whose first point is the prior's zero-shot minimiser instead of a Sobol
    point."""

    def __init__(self, bounds: Tensor, zero_shot: MetaPrior, **kwargs):
        super().__init__(bounds, prior=None, **kwargs)
        self.zero_shot = zero_shot

    def _propose(self, n: int) -> tuple[Tensor, str]:
        if self._n_seen() == 0:
            first = prior_minimizer(self.zero_shot, self.bounds, seed=self.seed).unsqueeze(0)
            rest = self._sobol_points(n - 1) if n > 1 else first[:0]
            return torch.cat([first, rest]), "prior"
        return super()._propose(n)


class TwoGPOptimizer(Optimizer):
    """The ablation of the default without the shift ensemble: `TrustedPriorModel(
    with_shift=False)`, the informed and the uninformed GP only (the default of benchmark v2,
    8e6968e; method "metaprior-two-gp")."""

    trusted_options = {"with_shift": False}


class UnitCubeAdapter:
    """Runs a unit-cube optimiser (the baselines) in a family's original units."""

    def __init__(self, inner, bounds: Tensor):
        self.inner, self.bounds = inner, bounds

    def ask(self) -> Tensor:
        return box_from_unit(self.inner.ask(), self.bounds)

    def tell(self, X: Tensor, y: Tensor) -> None:
        self.inner.tell(box_to_unit(X, self.bounds).clamp(0, 1), y)


def make_method(name: str, ctx: Context, seed: int):
    """An object with `ask() -> 1 x d` and `tell(X, y)` for method `name`.

    On a typed family (`family.space` not a box) the `Optimizer`-based methods run over the
    space itself, as a user's study would, and every method is wrapped in `SpaceAdapter`.
    """
    space = ctx.family.space
    if space.is_box:
        return _make_method(name, ctx, seed, ctx.family.bounds)
    from benchmarks.typed import SpaceAdapter

    return SpaceAdapter(_make_method(name, ctx, seed, space), space)


def _make_method(name: str, ctx: Context, seed: int, domain):
    """Method `name` over `domain`: the family's bounds, or its typed space."""
    bounds = ctx.family.bounds
    common = {"seed": seed, "num_restarts": NUM_RESTARTS, "raw_samples": RAW_SAMPLES}
    if name == "random":
        return RandomSearch(bounds, seed)
    if name == "bo":
        return Optimizer(domain, prior=None, **common)
    if name == "bo-warmstart":
        return WarmStartBO(domain, ctx.prior, **common)
    if name == "metaprior":
        return Optimizer(domain, prior=ctx.prior, **common)
    if name == "metaprior-two-gp":
        return TwoGPOptimizer(domain, prior=ctx.prior, **common)
    if name.startswith("metaprior-"):
        mode, _, tr = name.split("-", 1)[1].partition("-")
        if tr not in ("", "tr"):
            raise ConfigError(f"unknown method {name!r}; known: {METHODS}")
        return Optimizer(domain, prior=ctx.prior, mode=mode,
                         trust_region=TRUST_REGION if tr else None, **common)
    if name == "rgpe":
        from benchmarks.baselines.rgpe import RGPEOptimizer

        return UnitCubeAdapter(RGPEOptimizer(ctx.source_data, ctx.family.dim, seed=seed,
                                             num_restarts=NUM_RESTARTS,
                                             raw_samples=RAW_SAMPLES), bounds)
    if name == "fsbo":
        from benchmarks.baselines.fsbo import FSBOOptimizer

        return UnitCubeAdapter(FSBOOptimizer(ctx.fsbo_prior, ctx.family.dim, seed=seed,
                                             num_restarts=NUM_RESTARTS,
                                             raw_samples=RAW_SAMPLES), bounds)
    if name == "portfolio":
        from benchmarks.baselines.portfolio import PortfolioOptimizer

        return UnitCubeAdapter(PortfolioOptimizer(ctx.source_data, ctx.family.dim, seed=seed,
                                                  losses=ctx.portfolio_losses), bounds)
    raise ConfigError(f"unknown method {name!r}; known: {METHODS}")
