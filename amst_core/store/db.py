"""Database URLs, engines and sessions for the run store (SQLite embedded default, or PostgreSQL)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

# Threads of one API process that may each hold a connection: anyio's threadpool (40: FastAPI's sync routes)
# and asyncio.to_thread's (event streams, the reaper: min(32, cores + 4)).
POOL_THREADS = 72


def home() -> Path:
    """Where the embedded default keeps its files: ./.amst of the current directory (AMST_HOME overrides)."""
    return Path(os.environ.get("AMST_HOME", ".amst")).resolve()


def default_database_url() -> str:
    return f"sqlite:///{home() / 'amst.db'}"


def normalise_url(url: str) -> str:
    """postgres:// and postgresql:// use the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def database_url() -> str:
    return normalise_url(os.environ.get("DATABASE_URL") or default_database_url())


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (API) never block the writer (worker)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@lru_cache(maxsize=4)
def get_engine(url: str | None = None) -> Engine:
    url = normalise_url(url or database_url())
    if url.startswith("sqlite"):
        make_sqlite_folder(url)
        # No bound on connections: SQLite serialises writers itself (busy_timeout), and a connection is a file
        # handle. A bounded pool only added a second queue, whose 30 s timeout answered 500 to concurrent
        # requests, some after their commit (100 sweeps at once: 63 failed, 61 s; unbounded: none, 3 s).
        # The API's threadpool bounds how many are open.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10}, pool_size=5,
                               max_overflow=-1)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # As many as the threads that may each hold one (POOL_THREADS): fewer made concurrent requests queue for the
    # pool and fail after its 30 s, some after their commit (100 sweeps at once). Those beyond 10 are opened only
    # while needed and closed after; PostgreSQL's default max_connections is 100.
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=POOL_THREADS - 10)


def make_sqlite_folder(url: str) -> None:
    """SQLite makes the database file, not its folder."""
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


@lru_cache(maxsize=4)
def _factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(get_engine(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = _factory(normalise_url(url or database_url()))()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
