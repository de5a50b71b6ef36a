"""The store is the only writer of run state: an epoch's progress, the lease check that guards it, and what a
resumed attempt supersedes are decided in amst_core.store.lifecycle, which the metrics sink, the event stream and
the routes call (SQLite and PostgreSQL)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from amst_core.metrics import MetricPoint
from amst_core.store import lifecycle
from amst_core.store.db import get_engine
from amst_core.store.models import Point, Run, RunStatus, Series
from amst_core.store.writer import DbSink
from tests.kit.db import tx
from tests.kit.tiny import tiny_config


def leased(url: str, worker: str = "w1", start_epoch: int = 0) -> tuple[str, int]:
    with tx(url) as s:
        run_id = lifecycle.create_run(s, tiny_config(epochs=10)).id
    with tx(url) as s:
        attempt = lifecycle.claim(s, run_id, worker, "cpu")
        lifecycle.set_running(s, run_id, worker, attempt, start_epoch)
    return run_id, attempt


def points(epoch: int, attempt: int) -> list[MetricPoint]:
    return [MetricPoint("val", "fused", None, "acc", epoch, 0.5, attempt=attempt),
            MetricPoint("train", "run", None, "epoch_time", epoch, 1.0, attempt=attempt)]


def stored_epochs(url: str, run_id: str) -> dict[int, int]:
    with tx(url) as s:
        rows = s.execute(select(Point.epoch, Point.attempt).join(Series, Series.id == Point.series_id)
                         .where(Series.run_id == run_id, Series.name == "acc")).all()
    return dict(rows)


def test_an_epoch_is_recorded_only_by_the_lease_holder(url: str) -> None:
    run_id, _ = leased(url)
    with tx(url) as s:
        assert lifecycle.check_lease(s, run_id, "w1") == 10
        assert lifecycle.check_lease(s, run_id, None) == 10, "a sink without a worker (the CLI) checks nothing"
        with pytest.raises(lifecycle.LeaseLost, match="held by w1 now, not w2"):
            lifecycle.check_lease(s, run_id, "w2")
        with pytest.raises(LookupError):
            lifecycle.check_lease(s, "0" * 16, "w1")


def test_a_training_process_reads_its_config_only_while_its_worker_holds_the_lease(url: str) -> None:
    run_id, attempt = leased(url)
    with tx(url) as s:
        assert lifecycle.leased_config(s, run_id, "w1", attempt)["epochs"] == 10
        assert lifecycle.leased_config(s, run_id, "w2", attempt) is None
        assert lifecycle.leased_config(s, run_id, "w1", attempt + 1) is None
        lifecycle.finish(s, run_id, "w1", attempt, RunStatus.cancelled)
    with tx(url) as s:
        assert lifecycle.leased_config(s, run_id, "w1", attempt) is None, "an ended run is trained no more"


def test_a_recorded_epoch_ends_a_stall_and_nothing_else_changes_the_status(url: str) -> None:
    run_id, _ = leased(url)
    with tx(url) as s:
        s.execute(update(Run).where(Run.id == run_id).values(status=RunStatus.stalled))
        lifecycle.record_epoch(s, run_id, {"epochs_done": 1})
    with tx(url) as s:
        run = s.get(Run, run_id)
        assert (run.status, run.epochs_done) == (RunStatus.running, 1)
        s.execute(update(Run).where(Run.id == run_id).values(status=RunStatus.cancelled))
        lifecycle.record_epoch(s, run_id, {"epochs_done": 2})
    with tx(url) as s:
        assert s.get(Run, run_id).status == RunStatus.cancelled, "only a stall is ended by an epoch"


def test_a_resumed_attempt_supersedes_the_epochs_from_its_start_for_the_sink_and_the_readers(url: str) -> None:
    """The sink deletes what the store says the attempt supersedes; readers (the event stream, GET .../metrics)
    learn from the same store where that starts, and whether the attempt has rewritten any of it yet."""
    run_id, first = leased(url)
    sink = DbSink(run_id, url, worker_id="w1")
    sink.begin(0)
    for epoch in range(4):
        sink.write(points(epoch, first))
    with tx(url) as s:
        assert lifecycle.resumed(s, run_id, first) == lifecycle.Resumed(0, True)
        assert lifecycle.release(s, run_id, "w1", first) == "cpu"  # handed back; resumes from epoch 2
    with tx(url) as s:
        second = lifecycle.claim(s, run_id, "w2", "cpu")
        assert lifecycle.resumed(s, run_id, second) == lifecycle.Resumed(0, False), "starting: not said yet"
        assert lifecycle.resumed(s, run_id, second + 1) is None
        lifecycle.set_running(s, run_id, "w2", second, 2)
    with tx(url) as s:
        assert lifecycle.resumed(s, run_id, second) == lifecycle.Resumed(2, False)
    resumed = DbSink(run_id, url, worker_id="w2")
    resumed.begin(2)
    assert stored_epochs(url, run_id) == {0: first, 1: first}
    with tx(url) as s:
        assert s.get(Run, run_id).epochs_done == 2
    resumed.write(points(2, second))
    with tx(url) as s:
        assert lifecycle.resumed(s, run_id, second) == lifecycle.Resumed(2, True)
        superseded = s.scalars(select(Point.epoch).where(lifecycle.superseded_points(run_id, 2))).all()
    assert sorted(superseded) == [2, 2] and stored_epochs(url, run_id) == {0: first, 1: first, 2: second}


def test_a_retry_the_broker_refuses_leaves_the_run_as_it_was(url: str) -> None:
    run_id, attempt = leased(url)
    with tx(url) as s:
        lifecycle.finish(s, run_id, "w1", attempt, RunStatus.failed, error="boom")

    def refused(run_id: str, queue: str) -> str:
        raise ConnectionError("broker down")

    with (Session(get_engine(url), expire_on_commit=False) as s,
          pytest.raises(lifecycle.MessageRefused, match="broker down")):
        lifecycle.retry_and_send(s, s.get(Run, run_id), refused)
    with tx(url) as s:
        run = s.get(Run, run_id)
        assert (run.status, run.error, run.worker_id) == (RunStatus.failed, "boom", "w1")
    with Session(get_engine(url), expire_on_commit=False) as s:
        run = lifecycle.retry_and_send(s, s.get(Run, run_id), lambda run_id, queue: "task-1")
        assert (run.status, run.task_id) == (RunStatus.queued, "task-1")


def test_a_live_run_is_not_deleted(url: str) -> None:
    run_id, attempt = leased(url)
    with tx(url) as s:
        assert not lifecycle.delete_run(s, run_id)
    with tx(url) as s:
        lifecycle.finish(s, run_id, "w1", attempt, RunStatus.succeeded)
    with tx(url) as s:
        assert lifecycle.delete_run(s, run_id) and s.get(Run, run_id) is None


# ---- who writes run rows -------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
RUN_ROW_WRITE = re.compile(r"(update|delete|insert)\(Run\b|UPDATE runs|\brun\.\w+\s*=[^=]|setattr\(run\b", re.I)
STATUS_WRITE = re.compile(r"\.status\s*=[^=]|\bstatus=(?!None)[^,)]*RunStatus|\"status\"\]?:?\s*=?\s*RunStatus")


def sources(*packages: str) -> dict[str, str]:
    return {str(path.relative_to(ROOT)): path.read_text() for package in packages
            for path in sorted((ROOT / package).rglob("*.py"))}


def test_no_service_module_writes_a_run_row() -> None:
    """Routes, the worker and the launcher change a run through amst_core.store, never with their own SQL; the
    worker and the launcher do not even read one (lease checks are the store's)."""
    writers = {path for path, text in sources("api", "worker", "launch", "ui").items() if RUN_ROW_WRITE.search(text)}
    assert writers == set()
    readers = {path for path, text in sources("worker", "launch").items() if re.search(r"select\(Run\b", text)}
    assert readers == set()


def test_routes_keep_http_only() -> None:
    """Every query of a route lives in the store (amst_core.store: queries, lifecycle, sweeps)."""
    sql = re.compile(r"\bselect\(|\.execute\(|\.scalars?\(|\btext\(\"")
    assert {path for path, text in sources("api/routes").items() if sql.search(text)} == set()


def test_every_status_transition_is_in_the_lifecycle() -> None:
    store = sources("amst_core")
    writers = {path for path, text in store.items() if STATUS_WRITE.search(text)}
    assert writers == {"amst_core/store/lifecycle.py"}
