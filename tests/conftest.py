from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from amst_core.store.db import get_engine
from amst_core.store.migrate import upgrade
from tests.kit.db import empty_pg_database, empty_postgres, migrated_sqlite, sqlite_copy
from tests.kit.tiny import tiny_config

pytest_plugins = ["tests.kit.tiers"]  # the tiers (service, browser, slow) decided by path and fixture

# The models in tests are tiny: one thread is faster than two fighting over cache, and it keeps CI (2 cores)
# from oversubscribing when a test starts worker processes of its own.
torch.set_num_threads(1)


@pytest.fixture
def make_config():
    return tiny_config


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file; each test gets a copy (much faster than migrating per test)."""
    return migrated_sqlite(tmp_path_factory.mktemp("template") / "amst.db")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    with empty_pg_database("amst_test") as url:
        upgrade(url)
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    """An empty, migrated run store: a SQLite copy, or the session's PostgreSQL database truncated."""
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_database")
        empty_postgres(url)
        yield url
        return
    url = sqlite_copy(sqlite_template, tmp_path)
    yield url
    get_engine(url).dispose()


@pytest.fixture(autouse=True)
def _isolated_data_root(tmp_path_factory, monkeypatch):
    """Never touch a developer's ./data or ~/.cache from a test."""
    monkeypatch.setenv("AMST_DATA_ROOT", str(tmp_path_factory.mktemp("data")))
    monkeypatch.setenv("AMST_CACHE", str(tmp_path_factory.mktemp("cache")))


def pytest_report_header(config) -> list[str]:
    """Say which backends the service tests use (DESIGN.md section 8)."""
    import socket

    def up(port: int) -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    external = "PostgreSQL + Redis on 127.0.0.1 (reachable)" if up(5432) and up(6379) else \
        "PostgreSQL/Redis NOT reachable: their variants are skipped"
    return [f"service backends: embedded SQLite + SQLite broker, and {external}"]
