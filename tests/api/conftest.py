"""Fixtures for the API tests: the app on a fresh SQLite file and on a fresh PostgreSQL database (when one answers
at 127.0.0.1:5432; the test ids say which backend ran), with a fake dispatcher instead of a broker."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from api_testkit import FakeDispatcher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from amst_core.store.db import get_engine, normalise_url
from amst_core.store.migrate import upgrade
from api.main import create_app
from api.settings import ApiSettings

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file; each test gets a copy (much faster than migrating per test)."""
    path = tmp_path_factory.mktemp("template") / "amst.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    get_engine(url).dispose()  # closes the WAL, so the file alone is the whole database
    return path


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.Error as err:
        pytest.skip(f"PostgreSQL at {PG_ADMIN} is not reachable ({err.__class__.__name__}); SQLite only")
    name = f"amst_api_test_{uuid.uuid4().hex[:10]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = normalise_url(f"postgresql://postgres@127.0.0.1:5432/{name}")
    try:
        upgrade(url)
        yield url
    finally:
        get_engine(url).dispose()
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _empty_postgres(url: str) -> None:
    with get_engine(url).begin() as conn:
        conn.execute(text("SET LOCAL lock_timeout = '10s'"))  # a leaked transaction fails the test, never hangs it
        conn.execute(text("TRUNCATE runs, run_tags, attempts, series, points, workers RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_database")
        _empty_postgres(url)
        yield url
        return
    path = tmp_path / "amst.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite:///{path}"
    yield url
    get_engine(url).dispose()


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    return root


@pytest.fixture
def make_settings(db_url: str, data_root: Path, tmp_path: Path) -> Callable[..., ApiSettings]:
    def make(**overrides: Any) -> ApiSettings:
        values: dict[str, Any] = {
            "database_url": db_url, "broker_url": "memory://", "api_token": "", "data_root": data_root,
            "artifacts": tmp_path / "artifacts", "sse_poll_s": 0.05, "sse_keepalive_s": 0.3, "reaper_s": 3600.0,
        }
        return ApiSettings(**{**values, **overrides})

    return make


@pytest.fixture
def settings(make_settings: Callable[..., ApiSettings]) -> ApiSettings:
    return make_settings()


@pytest.fixture
def dispatcher() -> FakeDispatcher:
    return FakeDispatcher()


@pytest.fixture
def app(settings: ApiSettings, dispatcher: FakeDispatcher) -> FastAPI:
    app = create_app(settings)
    app.state.dispatcher = dispatcher
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:  # runs the lifespan (startup check, reaper with a long period)
        yield c


@pytest.fixture
def session(settings: ApiSettings) -> Iterator[Session]:
    with Session(get_engine(settings.db_url)) as s:
        yield s
