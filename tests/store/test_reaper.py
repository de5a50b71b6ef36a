"""One reaper-and-release pass (amst_core.store.reaper), run by the API's periodic task and by every worker: a lost
run is re-queued and sent once, and a sweep's next run released once, whoever calls it and however many call it;
a worker alone (no API) reaps and releases with the same pass."""

from __future__ import annotations

import time
from datetime import timedelta
from types import SimpleNamespace

from sqlalchemy import update
from sqlalchemy.orm import Session

from amst_core.placement import Placement
from amst_core.settings import Settings
from amst_core.store import lifecycle, reaper
from amst_core.store import sweeps as store
from amst_core.store.db import get_engine
from amst_core.store.models import Run, RunStatus, utcnow
from amst_core.sweeps import expand
from tests.kit.db import tx
from tests.kit.tiny import tiny_config
from worker.settings import WorkerSettings

SETTINGS = Settings(AMST_HEARTBEAT_S=1, AMST_LOST_AFTER=2, AMST_REAPER_S=1)


class Sender:
    """A caller's broker client (the API's dispatcher, or a worker's)."""

    def __init__(self, name: str):
        self.name, self.sent = name, []

    def __call__(self, run_id: str, queue: str) -> str:
        self.sent.append(run_id)
        return f"{self.name}-{run_id}"


def a_pass(url: str, send: Sender) -> reaper.ReaperPass:
    """A plain session, as the API's and the worker's: the pass commits as it goes."""
    with Session(get_engine(url), expire_on_commit=False) as s:
        return reaper.reap_and_release(s, SETTINGS, send, lifecycle.ReaperClock.sure(SETTINGS.lost_after_s))


def lost_run(url: str) -> str:
    with tx(url) as s:
        run_id = lifecycle.create_run(s, tiny_config()).id
    with tx(url) as s:
        attempt = lifecycle.claim(s, run_id, "dead", "cpu")
        lifecycle.set_running(s, run_id, "dead", attempt, 0)
        s.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=utcnow() - timedelta(hours=1)))
    return run_id


def test_a_lost_run_is_requeued_and_sent_once_whoever_calls(url: str) -> None:
    run_id = lost_run(url)
    api, worker = Sender("api"), Sender("worker")
    first = a_pass(url, worker)
    assert first.resent == [run_id] and worker.sent == [run_id]
    assert a_pass(url, api).resent == [] and api.sent == [], "the other caller finds nothing to do"
    with tx(url) as s:
        run = s.get(Run, run_id)
        assert (run.status, run.restarts, run.task_id) == (RunStatus.queued, 1, f"worker-{run_id}")


def test_a_sweeps_next_run_is_released_once_whoever_calls(url: str) -> None:
    base = tiny_config().model_dump(mode="json")
    with tx(url) as s:
        sweep = store.create_sweep(s, "s", base, {"seed": [0, 1]}, expand(base, {"seed": [0, 1]}), None, 1)
    api, worker = Sender("api"), Sender("worker")
    (first,) = a_pass(url, api).released
    with tx(url) as s:
        s.execute(update(Run).where(Run.id == first).values(status=RunStatus.succeeded))
    (second,) = a_pass(url, worker).released
    assert a_pass(url, api).released == [] and a_pass(url, worker).released == []
    assert api.sent == [first] and worker.sent == [second]
    with tx(url) as s:
        assert {r.id for r in store.sweep_runs(s, sweep.id)} == {first, second}


def test_a_refused_message_is_tried_again_at_the_next_pass(url: str) -> None:
    run_id = lost_run(url)

    def broker_down(run_id: str, queue: str) -> str:
        raise ConnectionError("broker down")

    assert a_pass(url, broker_down).resent == []  # type: ignore[arg-type]
    # It is queued now, its message never sent: re-sent once it has waited on an idle queue.
    with tx(url) as s:
        lifecycle.register_worker(s, "idle", Placement("host", 1), "cpu", "cpu", [])
        s.execute(update(Run).where(Run.id == run_id).values(updated_at=utcnow() - timedelta(hours=1)))
    assert a_pass(url, Sender("api")).resent == [run_id]


def test_a_worker_alone_reaps_and_releases_with_the_same_pass(url: str) -> None:
    """No API: a worker's maintenance tick re-queues the run another worker lost, and sends its message."""
    from worker.runner import Maintenance

    run_id = lost_run(url)
    settings = WorkerSettings(**{**SETTINGS.model_dump(), "database_url": url})
    executor = SimpleNamespace(settings=settings, worker_id="alive", current_run=None, waiting_run=None, device="cpu")
    with tx(url) as s:
        lifecycle.register_worker(s, "alive", Placement("host", 1), "cpu", "cpu", [])
    send = Sender("worker")
    maintenance = Maintenance(executor, "cpu", send)  # type: ignore[arg-type]
    maintenance.clock = lifecycle.ReaperClock.sure(settings.lost_after_s)
    maintenance.tick()
    assert send.sent == [run_id]
    with tx(url) as s:
        assert s.get(Run, run_id).status == RunStatus.queued


def test_a_worker_whose_run_ended_runs_the_pass_at_once(url: str) -> None:
    """Its sweep's next run is released now, not at the next tick (minutes away here)."""
    from worker.runner import Maintenance

    settings = WorkerSettings(**{**SETTINGS.model_dump(), "database_url": url, "heartbeat_s": 600.0,
                                 "reaper_s": 600.0})
    executor = SimpleNamespace(settings=settings, worker_id="alive", current_run=None, waiting_run=None, device="cpu")
    send = Sender("worker")
    maintenance = Maintenance(executor, "cpu", send)  # type: ignore[arg-type]
    maintenance.clock = lifecycle.ReaperClock.sure(settings.lost_after_s)
    maintenance.start()
    try:
        run_id = lost_run(url)
        maintenance.nudge()  # what Executor.run_ended does
        deadline = time.monotonic() + 10
        while not send.sent and time.monotonic() < deadline:
            time.sleep(0.05)
        assert send.sent == [run_id]
    finally:
        maintenance.stop()
    assert not maintenance.is_alive()
