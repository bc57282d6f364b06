"""Shared test setup: one thread (tiny networks gain nothing from more) and a small trained prior."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import small_config  # noqa: E402

from metaprior import cpu_kernel  # noqa: E402
from metaprior.meta.reptile import meta_train  # noqa: E402
from metaprior.tasks import Logistic  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def compiled_inner_loop():
    """Build the compiled CPU inner loop once, before any test runs (or kills) a subprocess
    that would otherwise build it (about 25 s; then every process imports it)."""
    cpu_kernel.load()


@pytest.fixture(scope="session")
def logistic_prior():
    """A Logistic prior meta-trained for 300 outer steps of 8 tasks (about 3 s)."""
    cfg = small_config(outer_steps=300, inner_steps=10, adapt_steps=32)
    return meta_train(Logistic(), cfg, seed=0, progress=False)


@pytest.fixture(scope="session")
def tiny_prior():
    """A barely trained Logistic prior, for tests of the prior's mechanics."""
    return meta_train(Logistic(), small_config(outer_steps=5), seed=0, progress=False)
