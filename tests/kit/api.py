"""Helpers of the API tests: requests, a fake dispatcher, a fake worker that writes points like the real one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from amst_core.metrics import MetricPoint
from amst_core.selection import ModelSelection
from amst_core.store import lifecycle
from amst_core.store.db import get_engine
from amst_core.store.lifecycle import ReaperClock
from amst_core.store.models import Attempt, Point, Run, RunStatus, RunTag, Series, utcnow
from amst_core.store.writer import DbSink
from api.main import create_app
from api.settings import ApiSettings

TOKEN = "s3cret-token"  # the bearer token of the `locked` fixture's API
IN_PROCESS_URL = "http://amst.test"  # the base URL of a client talking to the app in this process (no port)

TABLES = (Run, RunTag, Attempt, Series, Point)


class FakeDispatcher:
    """Records what the API would send to Celery; `fail` makes the broker unreachable."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.revoked: list[str] = []
        self.fail: str | None = None

    def send(self, run_id: str, queue: str) -> str:
        if self.fail:
            raise ConnectionError(self.fail)
        self.sent.append((run_id, queue))
        return f"task-{run_id}-{len(self.sent)}"

    def revoke(self, task_id: str) -> None:
        self.revoked.append(task_id)

    def ping(self) -> None:
        if self.fail:
            raise ConnectionError(self.fail)


def in_process_app(settings: ApiSettings, dispatcher: FakeDispatcher) -> FastAPI:
    """The API app as the in-process tests use it: a fake dispatcher instead of a broker, and a reaper that
    knows the database was up all along."""
    app = create_app(settings)
    app.state.dispatcher = dispatcher
    app.state.reaper_clock = ReaperClock.sure(settings.lost_after_s)
    return app


def config(method: str = "naive", **fields: Any) -> dict[str, Any]:
    """A minimal run request: only what the API requires, plus what a test sets."""
    return {"method": method, "dataset": {"name": "synthetic"}, "epochs": 5, "device": "cpu", **fields}


def submit(client: TestClient, body: dict[str, Any] | None = None, **headers: str) -> dict[str, Any]:
    r = client.post("/runs", json=body or config(), headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def counts(url: str) -> dict[str, int]:
    with Session(get_engine(url)) as s:
        return {t.__tablename__: s.scalar(select(func.count()).select_from(t)) for t in TABLES}


def epoch_points(epoch: int, value: float = 0.5) -> list[MetricPoint]:
    """One epoch as a worker writes it: fused/branch/helper curves per split and a few run-level series."""
    points = [MetricPoint(split, component, modality, name, epoch, value + 0.01 * epoch)
              for split in ("train", "val", "test")
              for component, modality in (("fused", None), ("branch", "audio"), ("branch", "visual"),
                                          ("helper", "audio"), ("helper", "visual"))
              for name in ("acc", "loss")]
    points += [MetricPoint("train", "run", None, "epoch_time", epoch, 1.5),
               MetricPoint("train", "skip", "audio", "skip", epoch, float(epoch % 2 == 0))]
    return points


class FakeWorker:
    """Plays the worker's part against the store: lease, points, heartbeat, end."""

    def __init__(self, url: str, run_id: str, worker_id: str = "w1"):
        self.url, self.run_id, self.worker_id = url, run_id, worker_id
        self.sink = DbSink(run_id, url)
        self.attempt = 0
        self.selection = ModelSelection()  # the engine's model selection, whose points the sink stores

    def start(self, start_epoch: int = 0) -> FakeWorker:
        with Session(get_engine(self.url)) as s, s.begin():
            attempt = lifecycle.claim(s, self.run_id, self.worker_id, "cpu")
            assert attempt is not None, "run not claimable"
            self.attempt = attempt
            lifecycle.set_running(s, self.run_id, self.worker_id, attempt, start_epoch)
        self.sink.begin(start_epoch)
        return self

    def epoch(self, epoch: int, value: float = 0.5) -> None:
        points = epoch_points(epoch, value)
        points += self.selection.update(epoch, points)
        for p in points:  # as the trainer does: each point says which attempt wrote it
            p.attempt = self.attempt
        self.sink.write(points)

    def finish(self, status: RunStatus = RunStatus.succeeded, error: str | None = None,
               summary: dict[str, Any] | None = None) -> None:
        with Session(get_engine(self.url)) as s, s.begin():
            assert lifecycle.finish(s, self.run_id, self.worker_id, self.attempt, status, error, summary)

    def go_silent(self, seconds: float = 3600) -> None:
        """The worker died: its last heartbeat is long ago."""
        with Session(get_engine(self.url)) as s, s.begin():
            s.execute(update(Run).where(Run.id == self.run_id)
                      .values(heartbeat_at=utcnow() - timedelta(seconds=seconds)))


def set_status(url: str, run_id: str, status: RunStatus) -> None:
    with Session(get_engine(url)) as s, s.begin():
        s.execute(update(Run).where(Run.id == run_id).values(status=status))
