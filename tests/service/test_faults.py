"""Faults injected into a running service, each bounded in time: the database restarted mid-run (a cluster of the
test's own), the broker restarted mid-run (a Redis of the test's own), the API restarted under a connected
event-stream client, and a full artifacts disk. In each, the run ends as it would have without the fault, with
no point missing or repeated, and no restart spent."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.kit.svc import OwnPostgres, OwnRedis, Service, service_env, tiny_run, wait_until

TERMINAL = {"succeeded", "failed", "cancelled", "lost"}


def get_run(svc: Service, run_id: str) -> dict:
    return httpx.get(f"{svc.url}/runs/{run_id}", timeout=5).json()


def assert_every_epoch_once(svc: Service, run_id: str, epochs: int) -> None:
    series = httpx.get(f"{svc.url}/runs/{run_id}/metrics", params={"split": ["train", "val"]}, timeout=10)
    for s in series.json()["series"]:
        if s["component"] != "run":
            assert s["epochs"] == list(range(epochs)), (s["split"], s["component"], s["modality"], s["epochs"])


def submit(svc: Service, **fields) -> str:
    resp = httpx.post(f"{svc.url}/runs", json=tiny_run(**fields), timeout=10)
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def finished(svc: Service, run_id: str, timeout: float = 300) -> dict:
    wait_until(lambda: get_run(svc, run_id)["status"] in TERMINAL, timeout, message=f"run {run_id} to end")
    return get_run(svc, run_id)


def test_a_database_restart_mid_run_costs_nothing(tmp_path: Path) -> None:
    """PostgreSQL stops for longer than a run's lost limit (1.5 s here) while an epoch trains: the worker keeps
    training and holds its metrics, no reaper declares the run lost, and it ends with one attempt."""
    try:
        pg = OwnPostgres()
    except (FileNotFoundError, subprocess.CalledProcessError) as err:
        pytest.skip(f"cannot make a PostgreSQL cluster here: {err}")
    pg.start()
    svc = Service(service_env(tmp_path, DATABASE_URL=pg.url), tmp_path)
    try:
        svc.start_api()
        svc.start_worker()
        epochs = 10
        run_id = submit(svc, method="naive", epochs=epochs)
        wait_until(lambda: get_run(svc, run_id)["epochs_done"] >= 2, 240, message="two epochs")
        pg.stop()
        time.sleep(6)  # four lost limits: long enough to be judged lost by a naive reaper
        pg.start()
        run = finished(svc, run_id)
        assert run["status"] == "succeeded", svc.logs("worker")
        assert run["attempt"] == 1 and run["restarts"] == 0, run["attempts"]
        assert_every_epoch_once(svc, run_id, epochs)
        assert "the database is unreachable" in svc.logs("worker"), "the outage happened during the run"
    finally:
        svc.stop()
        pg.remove()


def test_a_broker_restart_mid_run_costs_nothing(tmp_path: Path) -> None:
    redis = OwnRedis()
    redis.start()
    svc = Service(service_env(tmp_path, BROKER_URL=redis.url), tmp_path)
    try:
        svc.start_api()
        svc.start_worker()
        run_id = submit(svc, method="naive", epochs=8)
        wait_until(lambda: get_run(svc, run_id)["epochs_done"] >= 1, 240, message="the first epoch")
        redis.kill()
        time.sleep(1)
        health = httpx.get(f"{svc.url}/health", timeout=10)
        assert health.status_code == 503 and health.json()["status"] == "degraded", health.text
        assert not health.json()["broker"]["reachable"] and health.json()["database"]["reachable"]
        refused = httpx.post(f"{svc.url}/runs", json=tiny_run(method="naive", epochs=1), timeout=30)
        assert refused.status_code == 503, refused.text  # said at once, and nothing stored
        time.sleep(2)
        redis.start()  # empty: what was in it is gone
        run = finished(svc, run_id)
        assert run["status"] == "succeeded" and run["attempt"] == 1, svc.logs("worker")
        assert_every_epoch_once(svc, run_id, 8)
        wait_until(lambda: httpx.get(f"{svc.url}/health", timeout=10).status_code == 200, 30,
                   message="health to be ok again")
        after = finished(svc, submit(svc, method="naive", epochs=1), timeout=120)
        assert after["status"] == "succeeded", "runs are queued and trained again"
        assert len(httpx.get(f"{svc.url}/runs", timeout=5).json()["items"]) == 2
    finally:
        svc.stop()
        redis.kill()


class EventSource:
    """A client of GET /runs/{id}/events as a browser's EventSource is: it reconnects when the stream breaks,
    sending Last-Event-ID, until the `end` event."""

    def __init__(self, url: str):
        self.url = url
        self.last_id: str | None = None
        self.events: list[tuple[str, dict]] = []
        self.connections = 0
        self.thread = threading.Thread(target=self.follow, daemon=True)

    def follow(self) -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            headers = {"Last-Event-ID": self.last_id} if self.last_id is not None else {}
            try:
                with httpx.stream("GET", self.url, headers=headers, timeout=httpx.Timeout(5, read=30)) as resp:
                    if resp.status_code != 200:
                        raise httpx.TransportError(f"status {resp.status_code}")
                    self.connections += 1
                    if self.read(resp.iter_lines()):
                        return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)  # the stream's `retry` is 2 s; shorter keeps the test short

    def read(self, lines) -> bool:
        event, data, event_id = "message", None, None
        for line in lines:
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("id:"):
                event_id = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data = json.loads(line.split(":", 1)[1])
            elif line == "" and data is not None:  # an event is complete only at its blank line
                self.events.append((event, data))
                self.last_id = event_id
                if event == "end":
                    return True
                event, data = "message", None
        return False


def test_an_api_restart_under_an_event_stream_client_loses_and_repeats_nothing(tmp_path: Path) -> None:
    svc = Service(service_env(tmp_path), tmp_path)
    try:
        svc.start_api()
        svc.start_worker()
        epochs = 8
        run_id = submit(svc, method="naive", epochs=epochs)
        client = EventSource(f"{svc.url}/runs/{run_id}/events")
        client.thread.start()
        wait_until(lambda: any(e == "metrics" for e, _ in client.events), 240, message="a first metrics event")
        svc.kill("api", signal.SIGKILL)
        time.sleep(1)
        svc.start_api()  # the same port
        client.thread.join(timeout=300)
        assert not client.thread.is_alive() and client.events[-1][0] == "end", client.events[-3:]
        assert client.connections >= 2, "the client reconnected"
        received: dict[tuple, list[int]] = {}
        for event, data in client.events:
            if event == "metrics":
                for s in data["series"]:
                    received.setdefault((s["split"], s["component"], s["modality"], s["name"]), []).extend(
                        s["epochs"])
        val = {k: v for k, v in received.items() if k[0] == "val" and k[1] != "run"}
        assert val and all(v == list(range(epochs)) for v in val.values()), val
    finally:
        svc.stop()


def test_a_full_artifacts_disk_fails_the_run_saying_so(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(artifacts)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small filesystem here (needs root); tests/core covers it with a write hook")
    svc = Service(service_env(tmp_path, AMST_ARTIFACTS=str(artifacts)), tmp_path)
    try:
        svc.start_api()
        svc.start_worker()
        run_id = submit(svc, method="naive", epochs=3)
        run = finished(svc, run_id, timeout=180)
        assert run["status"] == "failed", run
        assert "no space left on device for checkpoints at" in run["error"] and str(artifacts) in run["error"]
        assert run["epochs_done"] == 0, "no epoch is claimed whose checkpoint was not saved"
        assert not list(artifacts.rglob("*.tmp")), "no partial checkpoint"
    finally:
        svc.stop()
        subprocess.run(["umount", "-l", str(artifacts)], check=False)
