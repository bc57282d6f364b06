"""Store URLs and the database engine behind a store.

`sqlite:///path.db` is the embedded default (`default_url`: a file in the store directory of
`metaprior.store`, `$METAPRIOR_STORE`); `postgresql://...` (psycopg 3) lets several server
processes share one store. SQLite connections are set up for the store's locking: WAL, full
fsync, and SQLAlchemy's own BEGIN so that a write transaction can take the write lock first.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError

from metaprior.errors import ConfigError
from metaprior.store import default_store

DB_FILE = "service.db"
# SQLite waits this long for another process's write lock before it gives up: an ask holds the
# lock for one model fit (about a second), so a minute is far beyond any honest wait.
SQLITE_BUSY_SECONDS = 60.0


def default_url() -> str:
    """`sqlite:///<store directory>/service.db` (the store directory of `metaprior.store`)."""
    return f"sqlite:///{default_store() / DB_FILE}"


def normalize_url(url: str) -> str:
    """The SQLAlchemy URL of a store URL: `postgresql://` and `postgres://` use psycopg 3;
    `sqlite:///path` as given. Anything else is a `ConfigError` naming the URL."""
    if not isinstance(url, str) or not url:
        raise ConfigError(f"store URL must be a non-empty string (got {url!r})")
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix):]
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"store URL {url!r} is not a database URL; use sqlite:///path.db or "
                          "postgresql://user:password@host/db") from None
    if parsed.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise ConfigError(f"store URL {url!r}: the store runs on sqlite:/// or postgresql:// "
                          f"(got {parsed.drivername!r})")
    if parsed.drivername.startswith("sqlite") and parsed.database in (None, "", ":memory:"):
        raise ConfigError(f"store URL {url!r}: an in-memory SQLite store would be a different "
                          "store in every process; give a file, sqlite:///path.db")
    return url


def set_wal(cursor, retry_seconds: float = SQLITE_BUSY_SECONDS) -> None:
    """Switch a new SQLite connection to WAL, retrying while another connection holds the lock.

    Switching the journal mode needs the database to itself, and SQLite may answer "database is
    locked" at once instead of through the busy timeout (seen with several servers opening a new
    store together), so the wait happens here.
    """
    deadline = time.monotonic() + retry_seconds
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def make_engine(url: str) -> Engine:
    """An engine for a normalised store URL, set up for the store's locking."""
    if url.startswith("sqlite"):
        path = make_url(url).database
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS,
                                                  "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection, _record):
            # SQLAlchemy, not the sqlite3 module, must issue BEGIN, so that a write transaction
            # can ask for the write lock up front (see _begin).
            dbapi_connection.isolation_level = None
            cur = dbapi_connection.cursor()
            set_wal(cur)  # readers never wait for the writer
            cur.execute("PRAGMA synchronous=FULL")  # a commit survives a power cut too
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):
            # A deferred BEGIN that later writes can deadlock with another writer and fail at
            # once; IMMEDIATE takes the write lock first, waiting up to the busy timeout.
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def storable(name: str) -> bool:
    """Whether a database text column can hold `name`: PostgreSQL refuses NUL characters and
    both backends refuse lone surrogates, so such a name is never stored and never found."""
    if "\x00" in name:
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
