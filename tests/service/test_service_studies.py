"""The rebuilt optimizer of an ask (in process, on each backend): where each point came from,
and the Sobol sequence carried across asks that only the store connects."""

from __future__ import annotations

import pytest

import metaprior as mp
from metaprior.service.blobs import prior_to_bytes
from metaprior.service.db import Store
from metaprior.service.studies import StudyService

FAST = {"num_restarts": 1, "raw_samples": 8}


@pytest.fixture(scope="module")
def prior():
    cfg = mp.ReptileConfig(outer_steps=2, tasks_per_step=2, points_per_task=8, hidden=(8,))
    return mp.meta_train(mp.tasks.Logistic(), cfg, progress=False)


@pytest.fixture
def service(store_url):
    store = Store(store_url)
    yield StudyService(store)
    store.close()


def points(trials) -> list[tuple]:
    return [tuple(sorted(t.params.items())) for t in trials]


def optimizer_points(store: Store, family: str, seed: int, n: int) -> list[tuple]:
    """The first `n` points of one in-process optimizer of the family."""
    space = mp.SearchSpace.from_dict(store.get_family(family).space)
    df = mp.Optimizer(space, seed=seed).ask(n)
    return [tuple(sorted(r.items())) for r in df.to_dict("records")]


def test_asks_without_a_prior_walk_one_sobol_sequence(service):
    store = service.store
    store.create_family("fam", mp.SearchSpace([mp.Float("a", 0.0, 1.0)]).to_dict(), "minimize")
    store.create_study("fam", "s", seed=0, options=FAST)
    first = service.ask("s", 2)
    store.abandon("s", first[0].id)
    later = service.ask("s", 1) + service.ask("s", 1)
    assert [t.source for t in first + later] == ["sobol"] * 4
    # each ask rebuilt its optimizer from the store: the abandoned point is not proposed again
    assert len(set(points(first + later))) == 4
    # the same sequence that one optimizer asked for four points draws
    assert points(first + later) == optimizer_points(store, "fam", seed=0, n=4)


def test_a_prior_proposes_first_then_sobol_then_bo(service, prior):
    store = service.store
    store.create_family("fam", prior.space.to_dict(), "minimize")
    store.add_prior("fam", prior_to_bytes(prior))
    store.create_study("fam", "s", seed=0, options=FAST)
    first = service.ask("s", 3)
    pending = service.ask("s", 1)  # nothing told yet: nothing for the model to adapt to
    assert [t.source for t in first + pending] == ["prior", "sobol", "sobol", "sobol"]
    assert len(set(points(first + pending))) == 4
    service.tell("s", [(t.id, float(i)) for i, t in enumerate(first + pending)])
    assert [t.source for t in service.ask("s", 2)] == ["bo", "bo"]
