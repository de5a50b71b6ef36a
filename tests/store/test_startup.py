"""A stack's processes start in any order (podman-compose 1.0 and Kubernetes have no `depends_on` conditions):
`amst db upgrade` waits for the database, `amst serve api|worker` for the schema it makes, each for at most
AMST_SCHEMA_WAIT_S, then says what is missing. And a worker's health file, touched by its heartbeat loop."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from amst_core.store import migrate
from tests.kit.db import migrated_sqlite
from worker.settings import WorkerSettings

CLOSED = "postgresql+psycopg://amst:secret@127.0.0.1:9/amst"  # the discard port: nothing answers


def test_a_migrated_store_passes_at_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"sqlite:///{migrated_sqlite(tmp_path / 'amst.db')}"
    with caplog.at_level(logging.WARNING, logger="amst_core.store.migrate"):
        migrate.wait_for_schema(url, timeout_s=30)
    assert caplog.records == [], "no waiting on a store at the newest revision"
    assert migrate.current(url) == migrate.head()


def test_an_empty_store_is_waited_for_then_named_with_the_fix(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    with pytest.raises(SystemExit) as failed:
        migrate.wait_for_schema(url, timeout_s=0.3, poll_s=0.1)
    message = str(failed.value)
    assert f"its schema is at revision none (empty), this code needs {migrate.head()}" in message
    assert "run `amst db upgrade`" in message and "within 0.3 s (AMST_SCHEMA_WAIT_S)" in message


def test_a_store_newer_than_the_code_says_so(tmp_path: Path) -> None:
    import sqlite3

    path = migrated_sqlite(tmp_path / "amst.db")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alembic_version SET version_num = 'f00dcafe0099'")
    with pytest.raises(SystemExit) as failed:
        migrate.wait_for_schema(f"sqlite:///{path}", timeout_s=0.2, poll_s=0.1)
    assert f"at revision f00dcafe0099, newer than this code's {migrate.head()}: upgrade the code" in str(failed.value)


def test_the_wait_ends_when_the_migration_lands(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / 'amst.db'}"
    upgrade = threading.Timer(0.5, migrate.upgrade, args=(url,))
    upgrade.start()
    with caplog.at_level(logging.WARNING, logger="amst_core.store.migrate"):
        migrate.wait_for_schema(url, timeout_s=60, poll_s=0.1)
    upgrade.join()
    assert [r.message for r in caplog.records if "waiting up to 60 s" in r.message], "said once what it waits for"


def test_a_database_that_does_not_answer_is_named_without_its_password() -> None:
    with pytest.raises(SystemExit) as failed:
        migrate.wait_for_database(CLOSED, timeout_s=0.2, poll_s=0.1)
    message = str(failed.value)
    assert message.startswith("the database postgresql+psycopg://amst:***@127.0.0.1:9/amst did not answer "
                              "within 0.2 s (AMST_SCHEMA_WAIT_S): OperationalError"), message
    assert "secret" not in message


def test_amst_serve_api_on_an_unmigrated_store_exits_with_the_reason(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'amst.db'}", "AMST_SCHEMA_WAIT_S": "0.5"}
    done = subprocess.run([sys.executable, "-m", "launch", "serve", "api", "--port", "9"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "run `amst db upgrade`" in done.stderr.splitlines()[-1], done.stderr[-2000:]


def maintenance(health_file: Path | None, database_url: str):
    from worker.runner import Maintenance

    settings = WorkerSettings(DATABASE_URL=database_url, AMST_WORKER_HEALTH_FILE=health_file)
    executor = SimpleNamespace(settings=settings, worker_id="w", current_run=None, waiting_run=None, device="cpu")
    return Maintenance(executor, "cpu", send=lambda *_: None)  # type: ignore[arg-type]


def test_the_heartbeat_loop_touches_the_health_file_even_through_a_database_outage(tmp_path: Path) -> None:
    alive = tmp_path / "alive"
    maintenance(alive, CLOSED).tick()
    assert time.time() - alive.stat().st_mtime < 60, "alive: the worker trains on through an outage"


def test_without_a_health_file_nothing_is_written_and_an_unwritable_one_only_warns(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    maintenance(None, CLOSED).beat()
    assert list(tmp_path.iterdir()) == []
    with caplog.at_level(logging.WARNING, logger="worker.runner"):
        maintenance(tmp_path / "missing" / "alive", CLOSED).beat()
    assert "cannot touch the health file" in caplog.text
