"""Which worker can hold a run (issue 25): the queue of a run by what it needs, and a queued run that no live worker
can hold says so in GET /runs/{id} instead of waiting in silence."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from amst_core.placement import Placement, cannot_hold
from amst_core.settings import gpu_queues, queue_for
from amst_core.store import lifecycle
from amst_core.store.db import get_engine
from amst_core.store.models import Worker, utcnow
from tests.kit.api import config, submit

GPU_16GB = {"index": 0, "name": "NVIDIA T4", "memory_mib": 15_360}
GPU_80GB = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_mib": 81_559}


def test_a_run_goes_to_the_queue_of_what_it_needs() -> None:
    assert queue_for("cpu") == queue_for("cpu", 4) == "cpu"  # CPU ranks are processes of a CPU worker
    assert queue_for("auto") == queue_for("cuda", 1) == "gpu"
    assert queue_for("auto", 2) == "gpu-x2" and queue_for("cuda", 8) == "gpu-x8"
    assert gpu_queues(4) == ["gpu-x4", "gpu-x3", "gpu-x2", "gpu"]  # `amst serve worker --gpus 0,1,2,3`
    assert gpu_queues(1) == ["gpu"]


def worker(db_url: str, worker_id: str, queues: str, gpus: list[dict], hours_ago: float = 0) -> None:
    with Session(get_engine(db_url)) as s, s.begin():
        lifecycle.register_worker(s, worker_id, Placement("box", 1), queues, "cuda:0", gpus)
        if hours_ago:
            s.execute(update(Worker).where(Worker.id == worker_id)
                      .values(heartbeat_at=utcnow() - timedelta(hours=hours_ago)))


def waiting_for(client: TestClient, run_id: str) -> str | None:
    return client.get(f"/runs/{run_id}").json()["waiting_for"]


def test_a_run_no_live_worker_serves_says_which_worker_would(client: TestClient, db_url: str) -> None:
    run = submit(client, config(device="auto", resources={"gpus": 2}))
    assert run["queue"] == "gpu-x2"
    assert "no live worker serves queue gpu-x2" in run["waiting_for"]
    assert "amst serve worker --gpus 0,1" in run["waiting_for"]
    worker(db_url, "one-gpu", "gpu", [GPU_16GB])
    worker(db_url, "lost", "gpu-x2,gpu", [GPU_16GB, GPU_16GB], hours_ago=1)  # its heartbeats stopped
    assert "(1 live worker(s) serve other queues)" in waiting_for(client, run["id"])
    worker(db_url, "two-gpus", "gpu-x2,gpu", [GPU_16GB, {**GPU_16GB, "index": 1}])
    assert waiting_for(client, run["id"]) is None


@pytest.mark.parametrize(("gpus", "waits"), [([GPU_16GB], True), ([GPU_80GB], False), (None, False)])
def test_a_run_asking_for_more_gpu_memory_than_any_worker_has_says_so(client: TestClient, db_url: str,
                                                                       gpus: list | None, waits: bool) -> None:
    run = submit(client, config(device="auto", resources={"min_gpu_memory_gb": 40}))
    worker(db_url, "w", "gpu", gpus or [])
    if gpus is None:  # a worker registered before it announced its GPUs: not held against it
        with Session(get_engine(db_url)) as s, s.begin():
            s.execute(update(Worker).where(Worker.id == "w").values(gpus=None))
    reason = waiting_for(client, run["id"])
    assert (reason is not None) == waits
    if waits:
        assert "at least 40 GB" in reason and "this worker's have 15 GB" in reason


def test_what_a_worker_can_hold() -> None:
    auto = {"device": "auto"}
    assert cannot_hold({"device": "cpu", "resources": {"gpus": 4, "min_gpu_memory_gb": 80}}, []) is None
    assert cannot_hold(auto, []) is None  # one GPU's run on a worker without one: its CPU, as device auto allows
    assert cannot_hold({**auto, "resources": {"gpus": 2}}, [GPU_16GB]) == \
        "it asks for 2 GPUs (resources.gpus); this worker has 1"
    assert cannot_hold({**auto, "resources": {"gpus": 2}}, [GPU_16GB, GPU_16GB]) is None
    assert "this worker has no GPU" in cannot_hold({**auto, "resources": {"min_gpu_memory_gb": 8}}, [])
    assert cannot_hold({**auto, "resources": {"min_gpu_memory_gb": 40}}, [GPU_80GB]) is None


def test_a_run_that_is_not_queued_has_no_waiting_reason(client: TestClient) -> None:
    run = submit(client, config(device="cpu"))
    assert client.post(f"/runs/{run['id']}/cancel", json={}).status_code == 200
    assert waiting_for(client, run["id"]) is None
