"""The real Celery client: a message for `amst.execute_run` on the run's queue; a broker that is down is a 503."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from api.dispatch import TASK_NAME, Dispatcher
from api.main import create_app
from api.settings import ApiSettings
from tests.kit.api import config, counts


def test_memory_broker_send_and_revoke() -> None:
    dispatcher = Dispatcher(ApiSettings(broker_url="memory://"))
    task_id = dispatcher.send("0123456789abcdef", "cpu")
    assert str(uuid.UUID(task_id)) == task_id
    dispatcher.revoke(task_id)
    assert dispatcher.celery is dispatcher.celery  # built once, then reused


def test_a_send_that_breaks_once_is_retried_on_a_fresh_connection() -> None:
    dispatcher = Dispatcher(ApiSettings(broker_url="memory://"))
    broken = dispatcher.celery

    def closed_channel(*args, **kwargs):
        raise AttributeError("'NoneType' object has no attribute 'client'")  # what kombu's SQL transport raised

    broken.send_task = closed_channel
    task_id = dispatcher.send("0123456789abcdef", "cpu")
    assert str(uuid.UUID(task_id)) == task_id and dispatcher.celery is not broken


def test_message_reaches_redis() -> None:
    redis = pytest.importorskip("redis")
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
    except OSError:
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    queue = f"amst-api-test-{uuid.uuid4().hex[:8]}"
    client = redis.Redis(host="127.0.0.1", port=6379, db=15)
    try:
        task_id = Dispatcher(ApiSettings(broker_url="redis://127.0.0.1:6379/15")).send("0123456789abcdef", queue)
        message = json.loads(client.lpop(queue))
        assert message["headers"]["task"] == TASK_NAME and message["headers"]["id"] == task_id
        assert message["headers"]["argsrepr"] == "['0123456789abcdef']"
    finally:
        client.delete(queue)


def test_broker_down_is_503_and_nothing_written(make_settings: Callable[..., ApiSettings], db_url: str) -> None:
    app = create_app(make_settings(broker_url="redis://127.0.0.1:1/0"))  # the real Dispatcher; nothing listens
    before = counts(db_url)
    r = TestClient(app).post("/runs", json=config())
    assert r.status_code == 503, r.text
    assert r.json()["error"]["message"].startswith("could not queue the run: ")
    assert counts(db_url) == before
