"""A worker's row (amst_core.store.lifecycle.register_worker): where it runs and its GPUs, as it announces them at
start, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import pytest

from amst_core.placement import Placement
from amst_core.store import lifecycle
from amst_core.store.models import Worker
from tests.kit.db import tx
from tests.kit.gpu import fake_cards
from worker.settings import WorkerSettings

H100 = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_mib": 81_105}
IN_SLURM = Placement("node07", 311, slurm_job_id="4242", slurm_job_name="amst-worker", slurm_partition="gpu")
IN_POD = Placement("amst-worker-7d9f-x2x", 1, pod_name="amst-worker-7d9f-x2x", pod_namespace="research")


def row(url: str, worker_id: str) -> Worker:
    with tx(url) as s:
        worker = s.get(Worker, worker_id)
        assert worker is not None, worker_id
        return worker


def test_a_worker_registers_where_it_runs_and_its_gpus(url: str) -> None:
    with tx(url) as s:
        lifecycle.register_worker(s, "w1", IN_SLURM, "gpu", "cuda:0", [H100, {**H100, "index": 1}])
        lifecycle.register_worker(s, "cpu", Placement("box", 7), "cpu", "cpu", [])
    w1 = row(url, "w1")
    assert (w1.hostname, w1.pid, w1.slurm_job_id, w1.slurm_job_name, w1.slurm_partition) == \
        ("node07", 311, "4242", "amst-worker", "gpu")
    assert (w1.pod_name, w1.pod_namespace) == (None, None)
    assert w1.gpus == [H100, {**H100, "index": 1}]
    assert row(url, "cpu").gpus == [], "a CPU worker says it has none (NULL is for one that said nothing)"


def test_a_worker_started_again_under_its_id_replaces_what_it_said(url: str) -> None:
    """AMST_WORKER_ID keeps a worker's id across restarts: back in a pod instead of a Slurm job, it runs nothing
    yet and is no longer stopped."""
    with tx(url) as s:
        lifecycle.register_worker(s, "w1", IN_SLURM, "gpu", "cuda:0", [H100])
        lifecycle.worker_heartbeat(s, "w1", "run-1")
        lifecycle.worker_stopped(s, "w1")
        lifecycle.worker_heartbeat(s, "w1", "run-2")  # the last beat of a worker stopped mid-run
    first = row(url, "w1")
    with tx(url) as s:
        lifecycle.register_worker(s, "w1", IN_POD, "gpu,cpu", "cpu", [])
    again = row(url, "w1")
    assert (again.hostname, again.pid, again.queues, again.device, again.gpus) == \
        ("amst-worker-7d9f-x2x", 1, "gpu,cpu", "cpu", [])
    assert (again.slurm_job_id, again.slurm_job_name, again.slurm_partition) == (None, None, None)
    assert (again.pod_name, again.pod_namespace) == ("amst-worker-7d9f-x2x", "research")
    assert again.current_run_id is None and again.stopped_at is None
    assert again.started_at > first.started_at


def test_what_the_environment_names_is_cut_to_what_the_store_keeps(url: str) -> None:
    """A Slurm job name may be longer than its column: PostgreSQL would refuse the whole registration."""
    long_name = "sweep-" + "x" * 400
    with tx(url) as s:
        lifecycle.register_worker(s, "w1", Placement("h" * 300, 1, slurm_job_id="1", slurm_job_name=long_name),
                                  "gpu", "cuda:0", [H100])
    w1 = row(url, "w1")
    assert w1.slurm_job_name == long_name[:200] and w1.hostname == "h" * 200


def test_a_workers_maintenance_announces_its_slurm_job_and_gpus_at_start(url: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """worker.runner's one call: what the Slurm job's environment and torch.cuda say reach the worker's row."""
    from worker.runner import Maintenance

    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_JOB_PARTITION", "gpu")
    fake_cards(monkeypatch, [("NVIDIA H100 80GB HBM3", 85_045_231_616)])
    settings = WorkerSettings(DATABASE_URL=url, AMST_HEARTBEAT_S=600, AMST_REAPER_S=600)
    executor = SimpleNamespace(settings=settings, worker_id="w1", current_run=None, waiting_run=None, device="cuda:0")
    maintenance = Maintenance(executor, "gpu", send=lambda *_: None)  # type: ignore[arg-type]
    maintenance.start()
    try:
        deadline = time.monotonic() + 10
        while not exists(url, "w1") and time.monotonic() < deadline:
            time.sleep(0.05)
        w1 = row(url, "w1")
    finally:
        maintenance.stop()
    assert (w1.slurm_job_id, w1.slurm_partition, w1.pid, w1.queues) == ("4242", "gpu", os.getpid(), "gpu")
    assert w1.gpus == [H100]
    assert row(url, "w1").stopped_at is not None


def exists(url: str, worker_id: str) -> bool:
    with tx(url) as s:
        return s.get(Worker, worker_id) is not None


def test_an_idle_worker_leaves_as_sigterm_would_stop_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """AMST_WORKER_IDLE_EXIT_S: the maintenance thread sends the worker SIGTERM (Celery's warm shutdown) once it
    has trained nothing for that long, once; a run in training, or one just ended, starts the count again."""
    import signal

    from worker import runner

    asked = []
    monkeypatch.setattr(runner.os, "kill", lambda pid, sig: asked.append((pid, sig)))
    settings = WorkerSettings(AMST_WORKER_IDLE_EXIT_S=60)
    executor = SimpleNamespace(settings=settings, worker_id="w1", current_run=None, waiting_run=None, device="cpu")
    maintenance = runner.Maintenance(executor, "cpu", send=lambda *_: None)  # type: ignore[arg-type]
    maintenance.idle_since -= 59
    assert not maintenance.leave_when_idle() and not asked
    executor.current_run = "r1"
    maintenance.idle_since -= 3600
    assert not maintenance.leave_when_idle(), "training is not idle"
    executor.current_run = None
    maintenance.idle_since -= 3600
    maintenance.nudge()  # a run of this worker ended (one shorter than a tick is never seen training)
    assert not maintenance.leave_when_idle()
    maintenance.idle_since -= 61
    assert maintenance.leave_when_idle() and asked == [(os.getpid(), signal.SIGTERM)]
    assert not maintenance.leave_when_idle() and len(asked) == 1, "asked once"


def test_without_an_idle_limit_a_worker_never_leaves_on_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker import runner

    monkeypatch.setattr(runner.os, "kill", lambda *_: pytest.fail("no SIGTERM without AMST_WORKER_IDLE_EXIT_S"))
    executor = SimpleNamespace(settings=WorkerSettings(), worker_id="w1", current_run=None, waiting_run=None,
                               device="cpu")
    maintenance = runner.Maintenance(executor, "cpu", send=lambda *_: None)  # type: ignore[arg-type]
    maintenance.idle_since -= 10 * 365 * 86400
    assert not maintenance.leave_when_idle()


def test_a_worker_that_starts_before_its_database_answers_registers_once_it_does(url: str, tmp_path) -> None:
    """The compose stack's `up`: the worker container can start before the network resolves `postgres`. Its
    maintenance thread must live through that (keep the health file fresh) and register at a later tick, not die
    at the first write and leave a worker that never heartbeats."""
    from worker.runner import Maintenance

    closed = "postgresql+psycopg://amst:secret@127.0.0.1:9/amst"  # the discard port: nothing answers
    alive = tmp_path / "alive"
    settings = WorkerSettings(DATABASE_URL=closed, AMST_HEARTBEAT_S=0.05, AMST_REAPER_S=0.05,
                              AMST_WORKER_HEALTH_FILE=alive)
    executor = SimpleNamespace(settings=settings, worker_id="late", current_run=None, waiting_run=None, device="cpu")
    maintenance = Maintenance(executor, "cpu", send=lambda *_: None)  # type: ignore[arg-type]
    maintenance.start()
    try:
        deadline = time.monotonic() + 20
        while not alive.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        assert maintenance.is_alive() and alive.exists(), "the loop lives through a database that does not answer"
        executor.settings = WorkerSettings(DATABASE_URL=url, AMST_HEARTBEAT_S=0.05, AMST_REAPER_S=0.05,
                                           AMST_WORKER_HEALTH_FILE=alive)
        while not exists(url, "late") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert exists(url, "late"), "registered once the database answered"
        first = row(url, "late").heartbeat_at
        while row(url, "late").heartbeat_at == first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert row(url, "late").heartbeat_at != first, "and heartbeats"
    finally:
        maintenance.stop()
    assert row(url, "late").stopped_at is not None
