"""Small priors shared by the GP, optimiser and BO-quality tests (cached: trained once per run).

The name avoids `helpers.py`, which other test folders may use; import it as
`from gp_helpers import ...` (pytest puts `tests/` on `sys.path` through `tests/conftest.py`).
"""

from __future__ import annotations

import dataclasses
import functools
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from metaprior.config import ReptileConfig  # noqa: E402
from metaprior.meta.reptile import meta_train  # noqa: E402
from metaprior.nets import init_params  # noqa: E402
from metaprior.prior import MetaPrior  # noqa: E402
from metaprior.tasks import Branin, Forrester  # noqa: E402
from metaprior.tasks.family import make_generator  # noqa: E402

torch.set_num_threads(1)


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


def random_prior(dim: int, seed: int = 0, hidden: tuple[int, ...] = (16, 16)) -> MetaPrior:
    """An untrained prior on the unit cube of dimension `dim` (for shape and contract tests)."""
    cfg = dataclasses.replace(ReptileConfig(), hidden=hidden)
    params = init_params(dim, hidden, make_generator(seed, "random-prior", dim))
    bounds = torch.stack([torch.zeros(dim), torch.ones(dim)]).double()
    return MetaPrior(params, bounds, y_mean=1.5, y_std=2.0, config=cfg, family=f"random{dim}")
