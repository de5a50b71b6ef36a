"""Fixtures: the backend (PostgreSQL + Redis when reachable, and the embedded default) and the service."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbkit import empty_pg_database
from svc import BACKENDS, REDIS, Service, reachable, redis_db, write_tiny_avdigits


@pytest.fixture(params=BACKENDS)
def backend_env(request, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for service processes; says in the test output which backend was used."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "BROKER_URL"))}
    data_root = tmp_path / "data"
    write_tiny_avdigits(data_root)
    env.update({
        "AMST_HOME": str(tmp_path / ".amst"), "AMST_DATA_ROOT": str(data_root),
        "AMST_ARTIFACTS": str(tmp_path / "artifacts"),
        "AMST_HEARTBEAT_S": "0.5", "AMST_CANCEL_POLL_S": "0.2", "AMST_REAPER_S": "0.5", "AMST_SSE_POLL_S": "0.1",
        "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
    })
    if request.param == "postgres+redis":
        if not (reachable("127.0.0.1", 5432) and reachable(*REDIS)):
            pytest.skip("PostgreSQL or Redis is not reachable on 127.0.0.1; the embedded variant still runs")
        with empty_pg_database("amst_svc") as url:
            env["DATABASE_URL"], env["BROKER_URL"] = url, redis_db()
            print(f"\n[service backend] PostgreSQL {url} + Redis {env['BROKER_URL']}")
            yield env
        return
    print(f"\n[service backend] embedded: SQLite + SQLite broker in {env['AMST_HOME']}")
    yield env


@pytest.fixture
def service(backend_env, tmp_path: Path) -> Iterator[Service]:
    svc = Service(backend_env, tmp_path)
    try:
        yield svc
    finally:
        svc.stop()


