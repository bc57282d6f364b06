"""The store's contract, one suite run against every backend (SQLite and PostgreSQL).

Each test states one behaviour that any backend must have: names are unique, what is missing is
a `NotFoundError`, what you load is a copy, a told value is kept and a different one refused,
the study lock serialises concurrent writers, a job is claimed once and its prior becomes current
with its end.
"""

from __future__ import annotations

import threading
import types

import pytest
from sqlalchemy import create_engine, inspect, text

from metaprior.errors import ConfigError
from metaprior.service.db import Store, normalize_url
from metaprior.service.errors import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    StoreVersionError,
)
from metaprior.service.jobs import heartbeat
from metaprior.service.models import SCHEMA_VERSION

SPACE = {"version": 1, "parameters": [{"type": "float", "name": "x", "lower": 0.0, "upper": 1.0,
                                       "log": False}]}


@pytest.fixture
def store(store_url):
    s = Store(store_url)
    yield s
    s.close()


def study_with_trials(store: Store, family="fam", study="s1", n=2):
    if family not in [f.name for f in store.list_families()]:
        store.create_family(family, SPACE, "minimize")
    store.create_study(family, study, seed=0, options={})
    with store.locked_study(study) as lock:
        return lock.add_trials([{"x": i / 10} for i in range(n)], "sobol")


# ---- families and names ---------------------------------------------------------------------
def test_create_twice_raises_already_exists(store):
    store.create_family("fam", SPACE, "minimize")
    with pytest.raises(AlreadyExistsError, match="fam"):
        store.create_family("fam", SPACE, "maximize")
    store.create_study("fam", "s", seed=0, options={})
    with pytest.raises(AlreadyExistsError, match="'s'"):
        store.create_study("fam", "s", seed=1, options={})


def test_missing_raises_not_found(store):
    with pytest.raises(NotFoundError, match="nope"):
        store.get_family("nope")
    with pytest.raises(NotFoundError, match="nope"):
        store.get_study("nope")
    with pytest.raises(NotFoundError, match="nope"):
        store.create_study("nope", "s", seed=0, options={})
    with pytest.raises(NotFoundError, match="42"):
        store.get_job(42)
    # names no database text column can hold are simply absent, not a database error
    with pytest.raises(NotFoundError):
        store.get_study("a\x00b")
    with pytest.raises(NotFoundError):
        store.get_family("\ud800")


def test_loaded_records_are_copies(store):
    store.create_family("fam", SPACE, "minimize")
    fam = store.get_family("fam")
    fam.space["parameters"].clear()
    fam.direction = "maximize"
    again = store.get_family("fam")
    assert again.space == SPACE and again.direction == "minimize"
    trials = study_with_trials(store)
    trials[0].params["x"] = 99
    assert store.list_trials("s1")[0].params == {"x": 0.0}


# ---- priors ---------------------------------------------------------------------------------
def test_prior_versions_count_up_and_the_latest_is_current(store):
    store.create_family("fam", SPACE, "minimize")
    with pytest.raises(NotFoundError, match="no prior"):
        store.get_prior("fam")
    v1 = store.add_prior("fam", b"one")
    v2 = store.add_prior("fam", b"two")
    assert (v1.version, v2.version) == (1, 2)
    assert store.get_family("fam").current_prior == 2
    assert store.get_prior("fam") == (2, b"two")
    assert store.get_prior("fam", 1) == (1, b"one")
    assert [(p.version, p.size) for p in store.list_priors("fam")] == [(1, 3), (2, 3)]
    with pytest.raises(NotFoundError, match="version 3"):
        store.get_prior("fam", 3)


def test_a_study_keeps_the_prior_version_it_started_with(store):
    store.create_family("fam", SPACE, "minimize")
    assert store.create_study("fam", "before", seed=0, options={}).prior_version is None
    store.add_prior("fam", b"one")
    store.create_study("fam", "with-1", seed=0, options={})
    store.add_prior("fam", b"two")
    assert store.get_study("before").prior_version is None
    assert store.get_study("with-1").prior_version == 1


# ---- trials ---------------------------------------------------------------------------------
def test_tell_same_value_twice_is_fine_a_different_one_conflicts(store):
    t = study_with_trials(store)
    assert store.tell("s1", [(t[0].id, 0.5)])[0].state == "complete"
    assert store.tell("s1", [(t[0].id, 0.5)])[0].value == 0.5
    with pytest.raises(ConflictError, match="0.5"):
        store.tell("s1", [(t[0].id, 0.6)])
    assert store.list_trials("s1")[0].value == 0.5


def test_tell_is_all_or_none_and_refuses_foreign_trials(store):
    t1 = study_with_trials(store, study="s1")
    t2 = study_with_trials(store, study="s2")
    with pytest.raises(NotFoundError, match=f"trial {t2[0].id}"):
        store.tell("s1", [(t1[0].id, 1.0), (t2[0].id, 2.0)])
    assert [t.state for t in store.list_trials("s1")] == ["pending", "pending"]
    with pytest.raises(NotFoundError):
        store.tell("s1", [(10**6, 1.0)])


def test_abandon_pending_only_and_an_abandoned_trial_may_still_be_told(store):
    t = study_with_trials(store)
    assert store.abandon("s1", t[0].id).state == "abandoned"
    store.tell("s1", [(t[1].id, 3.0)])
    with pytest.raises(ConflictError, match="complete"):
        store.abandon("s1", t[1].id)
    assert store.tell("s1", [(t[0].id, 1.0)])[0].state == "complete"


def test_pending_trials_time_out(store):
    study_with_trials(store, n=2)
    with store.locked_study("s1") as lock:
        assert lock.abandon_older_than(3600) == 0
        assert lock.abandon_older_than(-1) == 2
    assert {t.state for t in store.list_trials("s1")} == {"abandoned"}


def test_the_study_lock_serialises_writers(store_url):
    """A second holder of a study's lock sees what the first wrote under it, even from
    another connection: the lock is in the database, not in this process."""
    a, b = Store(store_url), Store(store_url)
    a.create_family("fam", SPACE, "minimize")
    a.create_study("fam", "s", seed=0, options={})
    inside, seen = threading.Event(), []

    def first():
        with a.locked_study("s") as lock:
            lock.add_trials([{"x": 0.1}], "sobol")
            inside.set()
            threading.Event().wait(0.5)  # hold the lock while the other one asks for it

    def second():
        inside.wait()
        with b.locked_study("s") as lock:
            seen.append(len(lock.trials()))
            lock.add_trials([{"x": 0.2}], "sobol")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [1]
    assert len(a.list_trials("s")) == 2
    a.close()
    b.close()


def test_an_ask_needs_one_connection_at_a_time(store_url, monkeypatch):
    """Asks queued on a study's lock hold their connections; an ask that needed a second one
    while it held the lock would wait on a pool they emptied. A pool of one shows it."""
    from metaprior.service import engine as engine_module
    from metaprior.service.studies import StudyService

    def one_connection(url, **kwargs):
        return create_engine(url, **{**kwargs, "pool_size": 1, "max_overflow": 0,
                                     "pool_timeout": 5})

    monkeypatch.setattr(engine_module, "create_engine", one_connection)
    store = Store(store_url)
    try:
        store.create_family("fam", SPACE, "minimize")
        store.create_study("fam", "s", seed=0, options={"num_restarts": 1, "raw_samples": 8})
        service = StudyService(store)
        first, second = service.ask("s", 2), service.ask("s", 1)
        assert [t.state for t in first + second] == ["pending"] * 3
    finally:
        store.close()


def test_a_failed_locked_block_writes_nothing(store):
    study_with_trials(store, n=1)
    with pytest.raises(RuntimeError), store.locked_study("s1") as lock:
        lock.add_trials([{"x": 0.5}], "sobol")
        raise RuntimeError("the model failed")
    assert len(store.list_trials("s1")) == 1


def test_training_trials_come_from_finished_studies(store):
    t1 = study_with_trials(store, study="done")
    t2 = study_with_trials(store, study="open")
    store.tell("done", [(t1[0].id, 1.0)])
    store.tell("open", [(t2[0].id, 2.0)])
    store.finish_study("done")
    assert [t.value for t in store.training_trials("fam", include_unfinished=False)] == [1.0]
    assert [t.value for t in store.training_trials("fam", include_unfinished=True)] == [1.0, 2.0]


# ---- jobs -----------------------------------------------------------------------------------
def test_a_job_is_claimed_once_and_its_prior_becomes_current(store):
    store.create_family("fam", SPACE, "minimize")
    job = store.create_job("fam", {"outer_steps": 5}, seed=0, include_unfinished=False)
    assert store.claim_job("w1").id == job.id
    assert store.claim_job("w2") is None
    store.update_job(job.id, "w1", 0.5, "half way")
    assert store.get_job(job.id).progress == 0.5
    with pytest.raises(ConflictError):
        store.finish_job(job.id, "w2", b"prior", "done")
    version = store.finish_job(job.id, "w1", b"prior", "done")
    done = store.get_job(job.id)
    assert (done.state, done.prior_version) == ("done", version.version)
    assert store.get_family("fam").current_prior == version.version
    assert store.get_prior("fam") == (version.version, b"prior")


def test_a_failed_job_keeps_its_error(store):
    store.create_family("fam", SPACE, "minimize")
    job = store.create_job("fam", {}, seed=0, include_unfinished=False)
    store.claim_job("w")
    store.fail_job(job.id, "w", "TaskFamilyError: too few studies")
    out = store.get_job(job.id)
    assert (out.state, out.error) == ("failed", "TaskFamilyError: too few studies")
    assert store.get_family("fam").current_prior is None


def test_a_running_job_is_taken_for_dead_only_when_its_heartbeat_stops(store, monkeypatch):
    from metaprior.service import db

    now = [1000.0]
    monkeypatch.setattr(db, "time", types.SimpleNamespace(time=lambda: now[0]))
    store.create_family("fam", SPACE, "minimize")
    job = store.create_job("fam", {}, seed=0, include_unfinished=False)
    assert store.claim_job("w1").id == job.id
    now[0] += db.STALE_JOB_SECONDS - 1
    store.touch_job(job.id, "w1")  # a long chunk of training, still alive
    now[0] += db.STALE_JOB_SECONDS - 1
    assert store.claim_job("w2") is None
    now[0] += 2  # no beat for longer than STALE_JOB_SECONDS: the worker is taken for dead
    assert store.claim_job("w2").id == job.id
    store.touch_job(job.id, "w1")  # the old worker's late beat does not take it back
    with pytest.raises(ConflictError):
        store.finish_job(job.id, "w1", b"prior", "done")
    assert store.finish_job(job.id, "w2", b"prior", "done").version == 1


def test_the_heartbeat_beats_while_its_block_runs_and_stops_after():
    beats = []
    fake = types.SimpleNamespace(touch_job=lambda job_id, worker: beats.append((job_id, worker)))
    with heartbeat(fake, 7, "w", every=0.01):
        for _ in range(1000):  # until the thread has beaten twice (bounded: a broken beat fails)
            if len(beats) >= 2:
                break
            threading.Event().wait(0.01)
    assert len(beats) >= 2
    after = len(beats)
    threading.Event().wait(0.05)
    assert len(beats) == after and set(beats) == {(7, "w")}


# ---- schema ---------------------------------------------------------------------------------
def test_a_store_reopens_with_its_data(store_url):
    Store(store_url).create_family("fam", SPACE, "minimize")
    again = Store(store_url)
    assert again.schema_version == SCHEMA_VERSION
    assert again.get_family("fam").space == SPACE


def test_servers_opening_a_new_store_at_once_all_open_it(store_url):
    """Without a lock around creating the schema, PostgreSQL refuses all but one of several
    concurrent CREATE TABLEs, and those servers fail to start."""
    start, errors, stores = threading.Barrier(4), [], []

    def open_store() -> None:
        start.wait()
        try:
            stores.append(Store(store_url))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert {s.schema_version for s in stores} == {SCHEMA_VERSION}
    for s in stores:
        s.close()


def test_an_older_store_is_migrated_and_keeps_its_data(store_url):
    old = Store(store_url)
    old.create_family("fam", SPACE, "minimize")
    old.close()
    engine = create_engine(normalize_url(store_url))
    with engine.begin() as conn:  # make it a version-1 store: no index on the jobs' state
        conn.execute(text("DROP INDEX ix_jobs_state"))
        conn.execute(text("ALTER TABLE jobs DROP COLUMN cross_validate_steps"))
        conn.execute(text("UPDATE metaprior_schema SET version = 1"))
    assert "ix_jobs_state" not in {i["name"] for i in inspect(engine).get_indexes("jobs")}
    store = Store(store_url)
    assert store.schema_version == SCHEMA_VERSION == 3
    assert "ix_jobs_state" in {i["name"] for i in inspect(engine).get_indexes("jobs")}
    assert store.get_family("fam").space == SPACE
    engine.dispose()
    store.close()


def test_a_version_2_stores_jobs_gain_the_cross_validation_flag(store_url):
    old = Store(store_url)
    old.create_family("fam", SPACE, "minimize")
    queued = old.create_job("fam", {"outer_steps": 5}, seed=0, include_unfinished=False)
    old.close()
    engine = create_engine(normalize_url(store_url))
    with engine.begin() as conn:  # a version-2 store: jobs without the column
        conn.execute(text("ALTER TABLE jobs DROP COLUMN cross_validate_steps"))
        conn.execute(text("UPDATE metaprior_schema SET version = 2"))
    store = Store(store_url)
    assert store.schema_version == 3
    assert store.get_job(queued.id).cross_validate_steps is False
    assert store.create_job("fam", {}, seed=0, include_unfinished=False,
                            cross_validate_steps=True).cross_validate_steps is True
    engine.dispose()
    store.close()


def test_a_newer_store_is_refused(store_url):
    Store(store_url).close()
    engine = create_engine(normalize_url(store_url))
    with engine.begin() as conn:
        conn.execute(text("UPDATE metaprior_schema SET version = :v"), {"v": SCHEMA_VERSION + 1})
    engine.dispose()
    with pytest.raises(StoreVersionError, match=f"version {SCHEMA_VERSION + 1}"):
        Store(store_url)


def test_bad_urls_are_config_errors():
    with pytest.raises(ConfigError, match="mysql"):
        Store("mysql://u@h/db")
    with pytest.raises(ConfigError, match="in-memory"):
        Store("sqlite://")
    assert normalize_url("postgresql://u:p@h/db").startswith("postgresql+psycopg://")
    assert normalize_url("postgres://u:p@h/db").startswith("postgresql+psycopg://")


def test_switching_a_new_sqlite_store_to_wal_waits_for_a_lock_held_elsewhere(tmp_path):
    # SQLite may refuse the journal-mode switch at once while another connection holds the
    # database; a server opening the store then must wait, not fail to start.
    import sqlite3

    from metaprior.service.engine import set_wal

    path = tmp_path / "s.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    opener = sqlite3.connect(path, timeout=0)  # no busy wait of its own
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        set_wal(opener.cursor(), retry_seconds=0)
    release = threading.Timer(0.3, holder.execute, args=("COMMIT",))
    release.start()
    set_wal(opener.cursor(), retry_seconds=30)
    release.join()
    assert opener.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
