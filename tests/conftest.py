from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from amst_core.store.db import get_engine
from tests.kit import db
from tests.kit.db import empty_postgres, migrated_pg_database, sqlite_copy
from tests.kit.svc import BACKENDS, DEFAULT_BACKEND, external_backends_reachable
from tests.kit.tiny import tiny_config

pytest_plugins = ["tests.kit.tiers"]  # the tiers (service, browser, slow) decided by path and fixture

# The models in tests are tiny: one thread is faster than two fighting over cache, and it keeps CI (2 cores)
# from oversubscribing when a test starts worker processes of its own.
torch.set_num_threads(1)


@pytest.fixture
def make_config():
    return tiny_config


@pytest.fixture(scope="session")
def sqlite_template() -> Path:
    """One migrated SQLite file; each test gets a copy (much faster than migrating per test)."""
    return db.sqlite_template()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """The session's PostgreSQL database, a copy of the migrated template."""
    with migrated_pg_database("amst_test") as url:
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
    external = "PostgreSQL + Redis on 127.0.0.1 (reachable)" if external_backends_reachable() else \
        "PostgreSQL/Redis NOT reachable: their variants are skipped"
    return [f"service backends: embedded SQLite + SQLite broker, and {external}; tests whose subject does not "
            f"differ by backend run on {DEFAULT_BACKEND} only (of {', '.join(BACKENDS)})"]
