"""DbSink through faults: a database that stops answering (the epochs wait, in order, and are written when it
answers again), an outage past the grace, a lease taken by another worker, and the points budget of a run."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from amst_core.config import ConfigError
from amst_core.selection import ModelSelection
from amst_core.store import lifecycle
from amst_core.store.writer import DatabaseUnavailable, DbSink, LeaseLost
from tests.kit.db import tx
from tests.kit.store import epoch, load, new_run, selecting, stored


class Outage:
    """Makes a sink's transactions fail as a dropped connection does, while `down` is set."""

    def __init__(self, sink: DbSink):
        self.down = False
        real = sink.commit

        def commit(points):
            if self.down:
                raise OperationalError("INSERT", {}, ConnectionRefusedError("connection refused"))
            return real(points)

        sink.commit = commit  # type: ignore[method-assign]


def leased(url: str, worker: str = "w1") -> str:
    run_id = new_run(url)
    with tx(url) as s:
        attempt = lifecycle.claim(s, run_id, worker, "cpu")
        lifecycle.set_running(s, run_id, worker, attempt, 0)
    return run_id


def test_epochs_wait_through_an_outage_and_are_written_in_order(url: str) -> None:
    run_id = leased(url)
    sink = DbSink(run_id, url, worker_id="w1", grace_s=60)
    outage, selection = Outage(sink), ModelSelection()
    sink.begin(0)
    sink.write(selecting(epoch(0, val=0.3), selection))
    outage.down = True
    sink.write(selecting(epoch(1, val=0.6), selection))  # no exception: training goes on
    sink.write(selecting(epoch(2, val=0.4), selection))
    assert {p.epoch for p in sink.pending()} == {1, 2} and sink.pending()[0].epoch == 1
    assert load(url, run_id).epochs_done == 1, "what was not written is not claimed"
    outage.down = False
    sink.write(selecting(epoch(3, val=0.5), selection))
    assert sink.pending() == []
    run = load(url, run_id)
    assert run.epochs_done == 4 and run.best_epoch == 1 and run.best_val_acc == 0.6
    assert stored(url, run_id)[("val", "fused", None, "acc")] == {0: 0.3, 1: 0.6, 2: 0.4, 3: 0.5}


def test_an_outage_past_the_grace_stops_the_run(url: str) -> None:
    run_id = leased(url)
    sink = DbSink(run_id, url, worker_id="w1", grace_s=0.0)
    Outage(sink).down = True
    sink.write(epoch(0))  # the outage starts here
    with pytest.raises(DatabaseUnavailable, match="AMST_DB_GRACE_S"):
        sink.write(epoch(1))
    with pytest.raises(DatabaseUnavailable):
        sink.close()


def test_too_many_buffered_points_stop_the_run(url: str) -> None:
    run_id = leased(url)
    sink = DbSink(run_id, url, grace_s=3600, max_buffered=len(epoch(0)) + 1)
    Outage(sink).down = True
    sink.write(epoch(0))
    with pytest.raises(DatabaseUnavailable, match="metric points waiting"):
        sink.write(epoch(1))


def test_close_waits_for_the_database(url: str) -> None:
    run_id = leased(url)
    sink = DbSink(run_id, url, grace_s=30)
    outage = Outage(sink)
    outage.down = True
    sink.write(epoch(0))
    calls = {"n": 0}
    real_flush = sink.flush

    def flush() -> bool:
        calls["n"] += 1
        outage.down = calls["n"] < 3  # the database answers on the third try
        return real_flush()

    sink.flush = flush  # type: ignore[method-assign]
    sink.close()
    assert load(url, run_id).epochs_done == 1 and calls["n"] == 3


def test_a_worker_whose_lease_was_taken_writes_nothing(url: str) -> None:
    run_id = leased(url, worker="old")
    with tx(url) as s:  # the reaper re-queued the run and another worker took it
        lifecycle.release(s, run_id, "old", 1)
        lifecycle.claim(s, run_id, "new", "cpu")
    sink = DbSink(run_id, url, worker_id="old")
    with pytest.raises(LeaseLost, match="held by new"):
        sink.write(epoch(0))
    assert stored(url, run_id) == {} and load(url, run_id).epochs_done == 0


def test_a_run_over_the_points_budget_fails_at_its_first_epoch(url: str) -> None:
    run_id = leased(url)  # 10 epochs
    per_epoch = len(epoch(0))
    DbSink(run_id, url, max_points=per_epoch * 10).write(epoch(0))
    with pytest.raises(ConfigError, match="AMST_MAX_POINTS_PER_RUN") as err:
        DbSink(leased(url), url, max_points=per_epoch * 10 - 1).write(epoch(0))
    assert err.value.field == "epochs"
