"""`amst db upgrade`: bring an empty or older database to the current schema with Alembic; and the waits at start
that let the processes of a stack start in any order (compose engines without `depends_on` conditions,
Kubernetes): the migration waits for the database, the API and the workers for the schema."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from amst_core.store.db import database_url, make_sqlite_folder, normalise_url

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
log = logging.getLogger(__name__)


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url or database_url()))
    return cfg


def upgrade(url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def current(url: str | None = None, timeout_s: float = 10.0) -> str | None:
    """The database's revision (None: an empty database), over a connection of its own that gives up after
    `timeout_s` (a host that drops packets would otherwise hold a caller for minutes) and is closed after."""
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    url = normalise_url(url or database_url())
    if url.startswith("sqlite"):
        make_sqlite_folder(url)
        args: dict = {"timeout": max(1.0, timeout_s)}
    else:  # libpq: whole seconds, at least 2
        args = {"connect_timeout": max(2, min(10, int(timeout_s)))}
    engine = create_engine(url, poolclass=NullPool, connect_args=args)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head() -> str | None:
    """The newest revision this code's migrations make."""
    return _scripts().get_current_head()


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def wait_for_database(url: str, timeout_s: float, poll_s: float = 1.0) -> str | None:
    """The database's current revision, once it answers; SystemExit naming the database and the last error when it
    has not answered within `timeout_s`."""
    return _wait(lambda left: (current(url, left), None), url, timeout_s, poll_s, "answer")


def wait_for_schema(url: str, timeout_s: float, poll_s: float = 1.0) -> None:
    """Return once the database is at this code's newest revision (`amst db upgrade` ran); SystemExit saying what
    is missing after `timeout_s`."""
    newest = head()

    def at_head(left: float) -> tuple[str | None, str | None]:
        revision = current(url, left)
        if revision == newest:
            return revision, None
        if revision is not None and not _known(revision):
            return revision, f"its schema is at revision {revision}, newer than this code's {newest}: upgrade the code"
        return revision, (f"its schema is at revision {revision or 'none (empty)'}, this code needs {newest}: "
                          "run `amst db upgrade`")

    _wait(at_head, url, timeout_s, poll_s, "reach the current schema")


def _known(revision: str) -> bool:
    try:
        return _scripts().get_revision(revision) is not None
    except Exception:  # alembic's "Can't locate revision": a newer code's migration
        return False


def _wait(probe: Callable[[float], tuple[str | None, str | None]], url: str, timeout_s: float, poll_s: float,
          what: str) -> str | None:
    from sqlalchemy.engine import make_url

    where = make_url(normalise_url(url)).render_as_string(hide_password=True)
    deadline, said = time.monotonic() + timeout_s, False
    while True:
        try:
            revision, missing = probe(deadline - time.monotonic())
        except Exception as err:  # whatever keeps it from answering (refused, resolving, starting up): not yet
            revision, missing = None, f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"
        if missing is None:
            return revision
        if time.monotonic() >= deadline:
            raise SystemExit(f"the database {where} did not {what} within {timeout_s:g} s "
                             f"(AMST_SCHEMA_WAIT_S): {missing}")
        if not said:
            log.warning("waiting up to %g s for the database %s to %s: %s", timeout_s, where, what, missing)
            said = True
        time.sleep(poll_s)
