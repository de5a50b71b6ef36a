"""The run service end to end, with real processes: API, Celery workers, database and broker."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter

import httpx
import pytest

from tests.kit.svc import BACKENDS, Service, tiny_run, wait_until

TERMINAL = {"succeeded", "failed", "cancelled", "lost"}


def get_run(svc: Service, run_id: str) -> dict:
    return httpx.get(f"{svc.url}/runs/{run_id}", timeout=5).json()


def follow_events(svc: Service, run_id: str, timeout: float = 240) -> list[tuple[str, dict]]:
    """Read the SSE stream until its `end` event; returns (event, data) pairs."""
    events: list[tuple[str, dict]] = []
    event = "message"
    with httpx.stream("GET", f"{svc.url}/runs/{run_id}/events", timeout=httpx.Timeout(10, read=timeout)) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((event, json.loads(line.split(":", 1)[1])))
                if event == "end":
                    break
    return events


def series_of(svc: Service, run_id: str) -> list[dict]:
    resp = httpx.get(f"{svc.url}/runs/{run_id}/metrics", timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()["series"]


def assert_complete_curves(series: list[dict], epochs: int) -> None:
    """Per-modality curves exist, and every series has each epoch exactly once (no gap, no duplicate)."""
    keys = Counter((s["split"], s["component"], s["modality"], s["name"]) for s in series)
    assert all(n == 1 for n in keys.values()), "a series listed twice"
    for split in ("train", "val"):
        for component in ("alt_branch", "alt_helper", "joint_branch"):
            for modality in ("audio", "visual"):
                assert (split, component, modality, "acc") in keys, (split, component, modality)
    for s in series:
        if s["split"] in ("train", "val") and s["name"] in ("acc", "loss") and s["component"] != "run":
            assert s["epochs"] == list(range(epochs)), (s["split"], s["component"], s["modality"], s["epochs"])


def test_post_run_follow_to_success_with_per_modality_curves(stack: Service) -> None:
    service = stack
    resp = httpx.post(f"{service.url}/runs", json=tiny_run(), timeout=10)
    assert resp.status_code == 201, resp.text
    run_id = resp.json()["id"]

    events = follow_events(service, run_id)
    statuses = [d["status"] for e, d in events if e == "status"]
    assert statuses[-1] == "succeeded", service.logs("worker")
    streamed_epochs = sorted({e for ev, d in events if ev == "metrics" for s in d["series"] for e in s["epochs"]})
    assert streamed_epochs == [0, 1]

    run = get_run(service, run_id)
    assert run["status"] == "succeeded" and run["epochs_done"] == 2 and run["attempt"] == 1
    assert run["best_val_acc"] is not None
    assert_complete_curves(series_of(service, run_id), epochs=2)


def test_cancel_mid_run_then_worker_takes_the_next_run(stack: Service) -> None:
    service = stack
    long_run = httpx.post(f"{service.url}/runs", json=tiny_run(method="naive", epochs=500), timeout=10).json()
    wait_until(lambda: get_run(service, long_run["id"])["epochs_done"] >= 1, 240, message="first epoch")
    asked = time.monotonic()
    assert httpx.post(f"{service.url}/runs/{long_run['id']}/cancel", json={}, timeout=10).status_code == 200
    wait_until(lambda: get_run(service, long_run["id"])["status"] == "cancelled", 10, message="cancelled")
    assert time.monotonic() - asked < 10

    short = httpx.post(f"{service.url}/runs", json=tiny_run(method="naive", epochs=1), timeout=10).json()
    wait_until(lambda: get_run(service, short["id"])["status"] in TERMINAL, 240, message="next run")
    assert get_run(service, short["id"])["status"] == "succeeded", service.logs("worker")


TIMING = {"epoch_time", "train_time", "samples_per_s"}


def values_of(svc: Service, run_id: str) -> dict[tuple, list]:
    """Every series of a run but wall-clock ones: {(split, component, modality, name): [(epoch, value)]}."""
    return {(s["split"], s["component"], s["modality"], s["name"]): list(zip(s["epochs"], s["values"], strict=True))
            for s in series_of(svc, run_id) if s["name"] not in TIMING}


@pytest.mark.parametrize("backend_env", BACKENDS, indirect=True)  # the run is re-sent through the broker
def test_killed_worker_mid_epoch_is_resumed_and_ends_as_if_never_killed(service: Service) -> None:
    """SIGKILL in the middle of an epoch: the run is lost, re-queued, resumed by another worker from its last
    checkpoint, and its every metric equals that of the same run trained without interruption. On both backends:
    the lost run's message is sent again through the broker, whose transport differs."""
    service.start_api()
    service.start_worker("worker-a")
    epochs = 5
    # 30 batches of a wider model: an epoch lasts several heartbeats, long enough to be caught in its middle
    body = tiny_run(method="amst_alt", epochs=epochs, batch_size=2)
    body["model"] = {**body["model"], "width": 32}
    run_id = httpx.post(f"{service.url}/runs", json=body, timeout=10).json()["id"]

    def inside_an_epoch() -> bool:
        run = get_run(service, run_id)
        live = run["live"] or {}
        return run["epochs_done"] >= 2 and live.get("split") == "train" and live.get("batch", 0) > 0 \
            and live.get("epoch") == run["epochs_done"]

    wait_until(inside_an_epoch, 300, interval=0.05, message="a batch into the third epoch on worker a")
    service.kill("worker-a")  # SIGKILL: no goodbye, no final state
    wait_until(lambda: get_run(service, run_id)["restarts"] == 1, 30, message="lost and re-queued")

    service.start_worker("worker-b")
    wait_until(lambda: get_run(service, run_id)["status"] in TERMINAL, 300, message="resumed run ends")
    run = get_run(service, run_id)
    assert run["status"] == "succeeded", service.logs("worker-b")
    assert run["attempt"] == 2
    assert [a["status"] for a in run["attempts"]] == ["lost", "succeeded"]
    assert run["attempts"][1]["start_epoch"] >= 2, "the second attempt resumed from a checkpoint"
    series = series_of(service, run_id)
    for s in series:
        if s["split"] in ("train", "val") and s["name"] == "acc" and s["component"] != "run":
            assert s["epochs"] == list(range(epochs)), (s["component"], s["modality"], s["epochs"])

    reference = httpx.post(f"{service.url}/runs", json=body, timeout=10).json()["id"]  # same run, not killed
    wait_until(lambda: get_run(service, reference)["status"] in TERMINAL, 300, message="the reference run")
    assert values_of(service, run_id) == values_of(service, reference)


def test_a_worker_that_stops_cleanly_says_so(service: Service) -> None:
    service.start_api()
    service.start_worker("worker-a")

    def workers() -> list[dict]:
        return httpx.get(f"{service.url}/workers", timeout=5).json()

    wait_until(lambda: any(w["alive"] for w in workers()), 120, message="the worker to register")
    wait_until(lambda: "ready." in service.logs("worker-a"), 120, message="Celery's worker to be ready")
    service.kill("worker-a", signal.SIGTERM)
    (worker,) = workers()
    assert worker["stopped_at"] is not None and not worker["alive"], worker
