"""Fixtures: the backend (PostgreSQL + Redis when reachable, and the embedded default) and the service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kit.db import empty_pg_database
from tests.kit.svc import BACKENDS, REDIS, Service, reachable, redis_db, service_env


@pytest.fixture(params=BACKENDS)
def backend_env(request, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for service processes; says in the test output which backend was used."""
    env = service_env(tmp_path)
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


