"""Fixtures for the API tests: the app on a fresh SQLite file and on a fresh PostgreSQL database (when one answers
at 127.0.0.1:5432; the test ids say which backend ran), with a fake dispatcher instead of a broker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from amst_core.store.db import get_engine
from api.main import create_app
from api.settings import ApiSettings
from tests.kit.api import TOKEN, FakeDispatcher, in_process_app


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
    return in_process_app(settings, dispatcher)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    # Mutating calls of an API without a token must say they are JSON (CSRF); tests/api/test_api_guards.py
    # checks that rule with clients that do not.
    with TestClient(app, headers={"Content-Type": "application/json"}) as c:  # runs the lifespan
        yield c


@pytest.fixture
def session(settings: ApiSettings) -> Iterator[Session]:
    with Session(get_engine(settings.db_url)) as s:
        yield s


@pytest.fixture
def locked(make_settings: Callable[..., ApiSettings], dispatcher: FakeDispatcher) -> Iterator[TestClient]:
    """A client of an API that asks for the bearer token `api_testkit.TOKEN` on every mutating route."""
    app = create_app(make_settings(api_token=TOKEN))
    app.state.dispatcher = dispatcher
    with TestClient(app) as c:
        yield c
