"""Fixtures of the service's tests: store URLs for each backend and real server processes.

The PostgreSQL tests read a database URL from $METAPRIOR_TEST_POSTGRES_URL (`.ci/run` starts a
throwaway cluster and sets it). Without it they skip, except under CI ($CI set), where a
missing PostgreSQL is a failure: the store contract must be shown on both backends there.
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text

from metaprior.service.launch import ServerProcess

PG_ENV = "METAPRIOR_TEST_POSTGRES_URL"


def postgres_base_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        message = (f"${PG_ENV} is not set: no PostgreSQL to test the store on (.ci/run starts "
                   "one; locally, point it at a database you can create schemas in)")
        if os.environ.get("CI"):
            pytest.fail(f"under CI the PostgreSQL tests must run: {message}")
        pytest.skip(message)
    return url


def fresh_postgres_url() -> str:
    """A URL of the test database whose search path is a new, empty schema: each test gets a
    store of its own without the cost of a database per test."""
    base = postgres_base_url()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    url = base.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


def fresh_sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / f'store-{uuid.uuid4().hex[:8]}.db'}"


def drop_postgres_schema(url: str) -> None:
    """Drop the schema of a `fresh_postgres_url` (best effort: a test database is not worth a
    hang, so a lock that does not come within seconds leaves the schema behind)."""
    schema = url.rsplit("search_path%3D", 1)[-1]
    engine = create_engine(postgres_base_url().replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '5s'"))
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    except Exception:  # noqa: BLE001 - cleanup only
        pass
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A new, empty store on each backend."""
    if request.param == "sqlite":
        yield fresh_sqlite_url(tmp_path)
        return
    url = fresh_postgres_url()
    yield url
    drop_postgres_schema(url)


@pytest.fixture(scope="session")
def sqlite_server(tmp_path_factory):
    """One server process over an SQLite store, shared by the HTTP tests."""
    work = tmp_path_factory.mktemp("server")
    server = ServerProcess(f"sqlite:///{work / 'store.db'}", workdir=work).start()
    yield server
    server.stop()


@pytest.fixture
def client(sqlite_server):
    from metaprior.service import Client

    with Client(sqlite_server.url, token=sqlite_server.token) as c:
        yield c


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
