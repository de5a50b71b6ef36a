"""Fresh run-store databases for tests: every store is a copy of a migrated template, never migrated from scratch
(SQLite: a copy of one migrated file; PostgreSQL: CREATE DATABASE ... TEMPLATE of one migrated database). Both
templates are made once per test process, on first use. Fixtures over them live in tests/conftest.py."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from amst_core.store.db import get_engine, normalise_url
from amst_core.store.migrate import upgrade

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def pg_admin() -> psycopg.Connection:
    try:
        return psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.Error as err:
        pytest.skip(f"PostgreSQL at {PG_ADMIN} is not reachable ({type(err).__name__}); the SQLite variant still runs")


@contextmanager
def scratch_pg_database(admin_url: str, prefix: str, template: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database on the server of `admin_url` (empty, or a copy of `template`), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    url = normalise_url(admin_url.rsplit("/", 1)[0] + f"/{name}")
    try:
        yield url
    finally:
        get_engine(url).dispose()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def empty_pg_database(prefix: str) -> Iterator[str]:
    """A scratch database on the local server; the test is skipped when PostgreSQL is not reachable."""
    pg_admin().close()
    with scratch_pg_database(PG_ADMIN, prefix) as url:
        yield url


@functools.cache
def pg_template() -> str:
    """The name of a migrated database on the local server, made once per process and dropped at its exit: the
    template of every migrated scratch database (copying it takes a fraction of a migration)."""
    pg_admin().close()
    name = f"amst_template_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = normalise_url(PG_ADMIN.rsplit("/", 1)[0] + f"/{name}")
    upgrade(url)
    get_engine(url).dispose()  # CREATE DATABASE ... TEMPLATE refuses a template with open connections
    atexit.register(drop_pg_database, name)
    return name


def drop_pg_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def migrated_pg_database(prefix: str) -> Iterator[str]:
    """A scratch database copied from the migrated template; the test is skipped when PostgreSQL is not reachable."""
    template = pg_template()
    with scratch_pg_database(PG_ADMIN, prefix, template) as url:
        yield url


@functools.cache
def sqlite_template() -> Path:
    """One migrated SQLite file per process (removed at its exit); every SQLite store of the tests is a copy."""
    folder = Path(tempfile.mkdtemp(prefix="amst-template-"))
    atexit.register(shutil.rmtree, folder, True)
    return migrate_sqlite(folder / "amst.db")


def migrated_sqlite(path: Path) -> Path:
    """A migrated SQLite run store at `path`: a copy of the template."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(sqlite_template(), path)
    return path


def migrate_sqlite(path: Path) -> Path:
    url = f"sqlite:///{path}"
    upgrade(url)
    get_engine(url).dispose()  # checkpoints the WAL: the file alone is the whole database
    return path


def empty_postgres(url: str) -> None:
    with get_engine(url).begin() as conn:
        conn.execute(text("SET LOCAL lock_timeout = '10s'"))  # a leaked transaction fails the test, never hangs it
        conn.execute(text("TRUNCATE runs, run_tags, attempts, series, points, workers, sweeps RESTART IDENTITY "
                          "CASCADE"))


def sqlite_copy(template: Path, folder: Path) -> str:
    path = folder / "amst.db"
    shutil.copy(template, path)
    return f"sqlite:///{path}"


@contextmanager
def tx(url: str) -> Iterator[Session]:
    """One transaction; objects stay readable after it."""
    with sessionmaker(get_engine(url), expire_on_commit=False)() as s, s.begin():
        yield s
