"""What several test modules share: small configs and priors (each trained once per run), and a
table of typed runs. Import it as `from helpers import ...` (pytest puts `tests/` on `sys.path`
through `tests/conftest.py`); test modules never import each other or `conftest`.
"""

from __future__ import annotations

import dataclasses
import functools
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch.quasirandom import SobolEngine  # noqa: E402

from metaprior.config import ReptileConfig  # noqa: E402
from metaprior.meta.reptile import meta_train  # noqa: E402
from metaprior.nets import init_params  # noqa: E402
from metaprior.prior import MetaPrior  # noqa: E402
from metaprior.space import Categorical, Float, Int, SearchSpace  # noqa: E402
from metaprior.tasks import Branin, Forrester  # noqa: E402
from metaprior.tasks.family import make_generator  # noqa: E402

torch.set_num_threads(1)


def small_config(**changes) -> ReptileConfig:
    """A config that trains in about a second on one core (the seed's task setup, fewer steps)."""
    base = dataclasses.replace(
        ReptileConfig.seed(), outer_steps=60, tasks_per_step=8, inner_steps=5,
        outer_optimizer="adam", outer_lr=0.003, checkpoint_every=10,
    )
    return dataclasses.replace(base, **changes)


def quick_config(outer_steps: int) -> ReptileConfig:
    """The default config with fewer, smaller meta-steps (a few seconds on one core)."""
    return dataclasses.replace(ReptileConfig(), outer_steps=outer_steps, tasks_per_step=16)


@functools.cache
def forrester_prior() -> MetaPrior:
    """A 1-D prior on Forrester variants, 200 outer steps of 16 tasks (about 4 s)."""
    return meta_train(Forrester(), quick_config(200), seed=0, progress=False)


@functools.cache
def branin_prior() -> MetaPrior:
    """A 2-D prior on Branin variants, 400 outer steps of 16 tasks (about 5 s).

    Its zero-shot minimiser already lands within a few percent of the held-out optima, which
    `test_bo_quality` relies on.
    """
    return meta_train(Branin(), quick_config(400), seed=0, progress=False)


def branin_points(n: int, seed: int = 0) -> torch.Tensor:
    """`n x 2` scrambled Sobol points in Branin's box."""
    lo, hi = Branin().bounds
    return lo + SobolEngine(2, scramble=True, seed=seed).draw(n, dtype=torch.float64) * (hi - lo)


def help_task():
    """The first held-out Branin task (seed 0): a task the Branin prior should help on."""
    return Branin().held_out_tasks(1, seed=0)[0]


def random_prior(dim: int, seed: int = 0, hidden: tuple[int, ...] = (16, 16)) -> MetaPrior:
    """An untrained prior on the unit cube of dimension `dim` (for shape and contract tests)."""
    cfg = dataclasses.replace(ReptileConfig(), hidden=hidden)
    params = init_params(dim, hidden, make_generator(seed, "random-prior", dim))
    bounds = torch.stack([torch.zeros(dim), torch.ones(dim)]).double()
    return MetaPrior(params, bounds, y_mean=1.5, y_std=2.0, config=cfg, family=f"random{dim}")


# A typed space with every kind of parameter, and raw runs over it (a user's table of runs).
MIXED = SearchSpace([Float("lr", 1e-4, 1e-1, log=True), Int("layers", 1, 4),
                     Categorical("opt", ["adam", "sgd", 3, True])])


def runs_table(n_tasks: int = 12, rows: int = 6, seed: int = 0) -> pd.DataFrame:
    """Raw runs over `MIXED`: a learning rate, a layer count and an optimizer per row."""
    rng = np.random.default_rng(seed)
    n = n_tasks * rows
    lr = 10 ** rng.uniform(-4, -1, n)
    layers = rng.integers(1, 5, n)
    opt = np.array(["adam", "sgd", 3, True], dtype=object)[rng.integers(0, 4, n)]
    task = np.repeat([f"d{i}" for i in range(n_tasks)], rows)
    shift = np.repeat(rng.normal(size=n_tasks), rows)
    y = (np.log10(lr) + 2.5 + shift) ** 2 + 0.1 * layers + np.array([o == "sgd" for o in opt])
    return pd.DataFrame({"dataset": task, "lr": lr, "layers": layers, "opt": opt, "loss": y})
