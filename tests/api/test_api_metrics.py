"""Curves: filters, since_epoch, downsampling, whole epochs only, retried writes; and the live event stream."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from amst_core.metrics import MetricPoint
from amst_core.store.db import get_engine
from amst_core.store.models import Modality, Point, RunStatus, Series
from amst_core.store.writer import DbSink
from tests.kit.api import FakeWorker, epoch_points, set_status, submit

SERIES_PER_EPOCH = len(epoch_points(0)) + 3  # and the model selection: best_epoch, best_val_acc, test_acc_at_best


def running_run(client: TestClient, db_url: str, epochs: int) -> tuple[str, FakeWorker]:
    run_id = submit(client)["id"]
    worker = FakeWorker(db_url, run_id).start()
    for epoch in range(epochs):
        worker.epoch(epoch)
    return run_id, worker


def metrics(client: TestClient, run_id: str, **params: Any) -> dict[str, Any]:
    r = client.get(f"/runs/{run_id}/metrics", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def keys(body: dict[str, Any]) -> set[tuple[str, str, str | None, str]]:
    return {(s["split"], s["component"], s["modality"], s["name"]) for s in body["series"]}


def test_filters(client: TestClient, db_url: str) -> None:
    run_id, _ = running_run(client, db_url, 3)
    full = metrics(client, run_id)
    assert full["epochs_done"] == 3 and full["status"] == "running" and full["next_since_epoch"] == 2
    assert len(full["series"]) == SERIES_PER_EPOCH
    assert all(s["epochs"] == [0, 1, 2] for s in full["series"])
    fused = next(s for s in full["series"] if (s["split"], s["component"], s["name"]) == ("val", "fused", "acc"))
    assert fused["modality"] is None and fused["values"] == [0.5, 0.51, 0.52]
    assert {k[0] for k in keys(metrics(client, run_id, split="val"))} == {"val"}
    assert keys(metrics(client, run_id, modality="none", split="train")) == {
        ("train", "fused", None, "acc"), ("train", "fused", None, "loss"), ("train", "run", None, "epoch_time")}
    assert {("val", "run", None, n) for n in ("best_epoch", "best_val_acc", "test_acc_at_best")} <= keys(full)
    assert keys(metrics(client, run_id, modality="null", component="run", split="train")) == {
        ("train", "run", None, "epoch_time")}
    both = metrics(client, run_id, split=["val", "test"], component=["branch", "helper"], modality="audio", name="acc")
    assert keys(both) == {(sp, c, "audio", "acc") for sp in ("val", "test") for c in ("branch", "helper")}
    assert metrics(client, run_id, name="no_such_metric")["series"] == []


@pytest.mark.parametrize(("params", "field"), [
    ({"split": "dev"}, "split"), ({"modality": "smell"}, "modality"), ({"since_epoch": -2}, "since_epoch"),
    ({"since_epoch": 2**40}, "since_epoch"), ({"max_points": 1}, "max_points"), ({"max_points": "x"}, "max_points"),
])
def test_bad_metric_queries(client: TestClient, params: dict[str, Any], field: str) -> None:
    run_id = submit(client)["id"]
    r = client.get(f"/runs/{run_id}/metrics", params=params)
    assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text
    assert r.json()["error"]["message"].startswith(f"{field}: ")


def test_since_epoch_and_max_points(client: TestClient, db_url: str) -> None:
    run_id, _ = running_run(client, db_url, 10)
    newer = metrics(client, run_id, since_epoch=7, split="val", component="fused", name="acc")
    assert newer["series"][0]["epochs"] == [8, 9] and newer["next_since_epoch"] == 9
    nothing = metrics(client, run_id, since_epoch=9)
    assert nothing["series"] == [] and nothing["next_since_epoch"] == 9
    thin = metrics(client, run_id, max_points=4)
    assert all(s["epochs"] == [0, 3, 6, 9] for s in thin["series"])  # first and last kept
    assert thin["series"][0]["values"][-1] == pytest.approx(0.59)
    two = metrics(client, run_id, max_points=2, since_epoch=4)
    assert all(s["epochs"] == [5, 9] for s in two["series"])
    assert all(len(s["epochs"]) == 10 for s in metrics(client, run_id, max_points=10)["series"])


def test_only_whole_epochs_are_visible(client: TestClient, db_url: str) -> None:
    """Points of an epoch whose transaction did not bump epochs_done (a write in flight) stay hidden."""
    run_id, _ = running_run(client, db_url, 2)
    with Session(get_engine(db_url)) as s, s.begin():
        series_id = s.scalar(select(Series.id).where(Series.run_id == run_id, Series.split == "val",
                                                     Series.component == "fused", Series.name == "acc"))
        s.add(Point(series_id=series_id, epoch=2, value=0.9, recorded_at=time.time()))
    assert all(s["epochs"] == [0, 1] for s in metrics(client, run_id)["series"])


def test_one_point_per_epoch_after_retried_writes(client: TestClient, db_url: str) -> None:
    run_id, worker = running_run(client, db_url, 4)
    worker.epoch(3, value=0.7)  # the same epoch written twice: an upsert
    resumed = DbSink(run_id, db_url)  # a new attempt resumes from the checkpoint of epoch 2
    resumed.begin(2)
    for epoch in (2, 3):
        points = epoch_points(epoch, value=0.8)
        resumed.write(points + worker.selection.update(epoch, points))
    body = metrics(client, run_id)
    assert len(body["series"]) == SERIES_PER_EPOCH
    for s in body["series"]:
        assert s["epochs"] == [0, 1, 2, 3], s
    fused = next(s for s in body["series"] if (s["split"], s["component"], s["name"]) == ("val", "fused", "acc"))
    assert fused["values"] == pytest.approx([0.5, 0.51, 0.82, 0.83])


def test_non_finite_values_are_null(client: TestClient, db_url: str) -> None:
    run_id, worker = running_run(client, db_url, 1)
    worker.sink.write([MetricPoint("train", "fused", None, "loss", 1, float("inf")),
                       MetricPoint("train", "fused", None, "acc", 1, 0.3)])
    loss = metrics(client, run_id, split="train", component="fused", name="loss", modality="none")["series"][0]
    assert loss["values"] == [0.5, None]
    latest = client.get(f"/runs/{run_id}").json()["latest"]
    assert next(v for v in latest if v["component"] == "fused" and v["name"] == "loss"
                and v["split"] == "train")["value"] is None


# ---- server-sent events --------------------------------------------------------------------------------------

class Events:
    """Reads an SSE response; every read gives up after `timeout` (keep-alives wake it up, so it cannot hang)."""

    def __init__(self, response: Any, timeout: float = 10.0):
        self.lines = response.iter_lines()
        self.timeout = timeout
        self.keepalives = 0

    def next(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        event: dict[str, Any] = {}
        for line in self.lines:
            if time.monotonic() > deadline:
                raise AssertionError("no event in time")
            if line.startswith(":"):
                self.keepalives += 1
            elif line:
                field, _, value = line.partition(":")
                event[field] = value.removeprefix(" ")
            elif "event" in event:
                event["data"] = json.loads(event["data"])
                return event
        raise AssertionError(f"stream closed; partial event {event}")

    def until(self, name: str) -> list[dict[str, Any]]:
        seen = [self.next()]
        while seen[-1]["event"] != name:
            seen.append(self.next())
        return seen


def test_event_stream_follows_a_run(client: TestClient, db_url: str) -> None:
    run_id, worker = running_run(client, db_url, 1)
    with client.stream("GET", f"/runs/{run_id}/events") as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = Events(r)
        opening = events.next()
        assert opening["event"] == "status" and opening["id"] == "-1" and opening["data"]["status"] == "running"
        first = events.next()
        assert first["event"] == "metrics" and first["id"] == "0"
        assert all(s["epochs"] == [0] for s in first["data"]["series"])

        written: list[float] = []

        def write_epoch() -> None:  # the worker, in another thread
            time.sleep(0.4)  # longer than the keep-alive period of the test settings
            worker.epoch(1)
            written.append(time.monotonic())

        writer = threading.Thread(target=write_epoch)
        writer.start()
        metrics_event = next(e for e in events.until("metrics") if e["event"] == "metrics")
        latency = time.monotonic() - written[0] if written else 0.0
        writer.join()
        assert latency < 1.0, f"epoch readable after {latency:.2f}s"
        assert metrics_event["id"] == "1" and metrics_event["data"]["next_since_epoch"] == 1
        assert all(s["epochs"] == [1] for s in metrics_event["data"]["series"])
        assert len(metrics_event["data"]["series"]) == SERIES_PER_EPOCH

        worker.epoch(2)
        worker.finish()
        tail = events.until("end")
        names = [e["event"] for e in tail]
        assert names[-2:] == ["status", "end"] and "metrics" in names
        assert tail[-2]["data"]["status"] == "succeeded" and tail[-2]["data"]["epochs_done"] == 3
        assert tail[-1]["data"] == {"reason": "succeeded"} and tail[-1]["id"] == "2"
        assert events.keepalives >= 1  # idle stretches are filled with comments


def test_event_stream_resumes_after_last_event_id(client: TestClient, db_url: str) -> None:
    run_id, worker = running_run(client, db_url, 3)
    worker.finish()
    for headers, params in (({"Last-Event-ID": "1"}, {}), ({}, {"since_epoch": 1})):
        with client.stream("GET", f"/runs/{run_id}/events", headers=headers, params=params) as r:
            events = Events(r).until("end")
        assert [e["event"] for e in events] == ["status", "metrics", "status", "end"]
        assert all(s["epochs"] == [2] for s in events[1]["data"]["series"])
    with client.stream("GET", f"/runs/{run_id}/events", headers={"Last-Event-ID": "2"},
                       params={"split": "val", "name": "acc"}) as r:
        assert [e["event"] for e in Events(r).until("end")] == ["status", "end"]
    r = client.get(f"/runs/{run_id}/events", headers={"Last-Event-ID": "banana"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "Last-Event-ID"


def test_event_stream_ends_when_the_run_is_deleted(client: TestClient) -> None:
    run_id = submit(client)["id"]
    with client.stream("GET", f"/runs/{run_id}/events", params={"modality": "none"}) as r:
        events = Events(r)
        assert events.next()["data"]["status"] == "queued"
        assert client.delete(f"/runs/{run_id}").status_code == 204
        assert events.until("end")[-1]["data"] == {"reason": "deleted"}


def test_stream_sees_a_resumed_attempt(client: TestClient, db_url: str) -> None:
    """A lost worker's epochs after its last checkpoint are written again: the stream sends them again."""
    run_id, worker = running_run(client, db_url, 3)
    assert metrics(client, run_id)["superseded_from"] is None, "a first attempt replaces nothing"
    with client.stream("GET", f"/runs/{run_id}/events") as r:
        events = Events(r)
        assert [e["event"] for e in (events.next(), events.next())] == ["status", "metrics"]
        worker.go_silent()
        set_status(db_url, run_id, RunStatus.queued)  # what the reaper does
        FakeWorker(db_url, run_id, "w2").start(start_epoch=1).epoch(1, value=0.9)
        again = next(e for e in events.until("metrics") if e["event"] == "metrics")
        assert again["id"] == "1" and again["data"]["superseded_from"] == 1  # the store's word: lifecycle.resumed
        fused = next(s for s in again["data"]["series"] if s["component"] == "fused" and s["split"] == "val"
                     and s["name"] == "acc")
        assert fused["epochs"] == [1] and fused["values"] == [pytest.approx(0.91)]
    held = metrics(client, run_id, since_epoch=0)
    assert held["superseded_from"] == 1 and held["run"]["attempt"] == 2
    with Session(get_engine(db_url)) as s:
        modalities = set(s.scalars(select(Series.modality).where(Series.run_id == run_id)))
    assert Modality.none in modalities


def test_event_stream_filter_without_matches_sends_no_empty_metrics(client: TestClient, db_url: str) -> None:
    run_id, worker = running_run(client, db_url, 1)
    with client.stream("GET", f"/runs/{run_id}/events", params={"name": "no_such_metric"}) as r:
        events = Events(r)
        assert events.next()["event"] == "status"
        worker.epoch(1)
        worker.epoch(2)
        worker.finish()
        tail = events.until("end")
    assert "metrics" not in [e["event"] for e in tail]
    assert tail[-1]["id"] == "2"  # still resumable: every epoch up to 2 was considered
