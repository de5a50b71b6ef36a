"""The client against the API in this process: the app on a copy of the migrated SQLite template, a fake
dispatcher instead of a broker, and an httpx transport into it (no port, no network)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from amst_client import Client
from api.settings import ApiSettings
from tests.kit.api import IN_PROCESS_URL as URL
from tests.kit.api import TOKEN, FakeDispatcher, in_process_app
from tests.kit.db import sqlite_copy


@pytest.fixture
def settings(tmp_path: Path, sqlite_template: Path) -> ApiSettings:
    data = tmp_path / "data"
    data.mkdir()
    return ApiSettings(database_url=sqlite_copy(sqlite_template, tmp_path), broker_url="memory://", api_token=TOKEN,
                       data_root=data, artifacts=tmp_path / "artifacts", reaper_s=3600.0)


@pytest.fixture
def dispatcher() -> FakeDispatcher:
    return FakeDispatcher()


@pytest.fixture
def app(settings: ApiSettings, dispatcher: FakeDispatcher) -> FastAPI:
    return in_process_app(settings, dispatcher)


class InProcess(httpx.BaseTransport):
    """httpx requests handed to the app through FastAPI's TestClient (which may be built on another httpx
    package, httpx2: its transport cannot serve our client directly)."""

    def __init__(self, test_client: TestClient):
        self.test_client = test_client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        answer = self.test_client.request(request.method, str(request.url), headers=dict(request.headers),
                                          content=request.read())
        return httpx.Response(answer.status_code, headers=list(answer.headers.multi_items()), content=answer.content)


@pytest.fixture
def transport(app: FastAPI) -> Iterator[httpx.BaseTransport]:
    """Requests straight into the app, its lifespan run."""
    with TestClient(app) as test_client:
        yield InProcess(test_client)


@pytest.fixture
def client(transport: httpx.BaseTransport) -> Iterator[Client]:
    """A client with the server's token (the API asks for it on every mutating route)."""
    with Client(URL, token=TOKEN, transport=transport) as c:
        yield c
