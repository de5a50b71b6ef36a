from __future__ import annotations

import pytest
import torch
from tiny import tiny_config

# The models in tests are tiny: one thread is faster than two fighting over cache, and it keeps CI (2 cores)
# from oversubscribing when a test starts worker processes of its own.
torch.set_num_threads(1)


@pytest.fixture
def make_config():
    return tiny_config


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
