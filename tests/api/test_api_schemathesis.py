"""Schemathesis over every operation of a real API process, with `--checks all` and a bounded number of
examples: no 5xx, no response that breaks the schema, no schema-valid request refused for no stated reason
(tests/api/schemathesis.toml lists the reasons), and `Allow`, auth and content types as the schema says.

Runs on PostgreSQL when it is reachable (it refuses more inputs than SQLite: NUL, huge integers), and once more
with a token configured, so that the schema's auth and the server's agree both ways."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.kit.db import empty_pg_database
from tests.kit.svc import Service, reachable, service_env

CONFIG = Path(__file__).with_name("schemathesis.toml")
TOKEN = "schemathesis-token"


def run_schemathesis(url: str, examples: int, cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    """Run in `cwd`: schemathesis writes a cache folder (.schemathesis/) where it runs."""
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run",
               f"{url}/openapi.json", "--checks", "all", "--max-examples", str(examples), "--seed", "20261201",
               "--workers", "1", "--no-color", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=cwd)


def api_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return service_env(tmp_path, BROKER_URL="memory://", AMST_SSE_POLL_S="0.05", AMST_SSE_KEEPALIVE_S="0.5",
                       **extra)


def check(result: subprocess.CompletedProcess) -> None:
    tail = (result.stdout + result.stderr)[-6000:]
    assert result.returncode == 0, tail
    assert " passed" in result.stdout and "failures" not in result.stdout.split("SUMMARY")[-1], tail


def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    if reachable("127.0.0.1", 5432):
        with empty_pg_database("amst_st") as url:
            service = Service(api_env(tmp_path, DATABASE_URL=url), tmp_path)
            try:
                service.start_api()
                check(run_schemathesis(service.url, 25, tmp_path))
            finally:
                service.stop()
    else:
        pytest.skip("PostgreSQL is not reachable; the token variant below runs on SQLite")


def test_schemathesis_finds_nothing_with_a_token(tmp_path: Path) -> None:
    service = Service(api_env(tmp_path, AMST_API_TOKEN=TOKEN), tmp_path)
    try:
        service.start_api()
        check(run_schemathesis(service.url, 8, tmp_path, "--header", f"Authorization: Bearer {TOKEN}"))
    finally:
        service.stop()
