"""DbSink, the worker's metric writer (amst_core.store.writer), and the migrations, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import event, func, select, text, update

from amst_core.metrics import MetricPoint
from amst_core.placement import Placement
from amst_core.selection import ModelSelection
from amst_core.store import lifecycle
from amst_core.store.db import get_engine
from amst_core.store.migrate import alembic_config, current
from amst_core.store.models import Modality, Point, Run, Series, Worker
from amst_core.store.writer import DbSink
from tests.kit.db import empty_pg_database, tx
from tests.kit.store import epoch, load, new_run, selecting, stored
from tests.kit.tiny import tiny_config

# ---- databases ------------------------------------------------------------------------------------------------

# ---- helpers ----------------------------------------------------------------------------------------------------


def latest(url: str, run_id: str) -> dict[tuple[str, str, str | None, str], tuple[int | None, float | None]]:
    with tx(url) as s:
        rows = s.execute(select(Series.split, Series.component, Series.modality, Series.name, Series.last_epoch,
                                Series.last_value).where(Series.run_id == run_id))
        return {(sp, c, Modality(m).to_api(), n): (ep, v) for sp, c, m, n, ep, v in rows}


def best(url: str, run_id: str) -> tuple[int | None, float | None, float | None]:
    run = load(url, run_id)
    return run.best_epoch, run.best_val_acc, run.test_acc_at_best


VAL_ACC = ("val", "fused", None, "acc")


def broken(*_args, **_kwargs):
    raise RuntimeError("database went away")


# ---- one epoch, one transaction, upserts ----------------------------------------------------------------------------

def test_an_epoch_is_written_in_one_transaction(url: str) -> None:
    run_id = new_run(url)
    sink = DbSink(run_id, url)
    commits: list[int] = []

    def listener(_conn) -> None:
        commits.append(1)

    event.listen(sink.engine, "commit", listener)
    try:
        sink.write(epoch(0))
        assert len(commits) == 1
        sink.write(epoch(1))
        assert len(commits) == 2
    finally:
        event.remove(sink.engine, "commit", listener)
    assert len(stored(url, run_id)) == len(epoch(0))
    assert load(url, run_id).epochs_done == 2


def test_a_failed_write_leaves_nothing_behind(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = new_run(url)
    sink = DbSink(run_id, url)
    sink.write(epoch(0))

    monkeypatch.setattr(sink, "update_run", broken)  # the last step of the write fails
    extra = [*epoch(1), MetricPoint("val", "helper", "audio", "acc", 1, 0.3)]  # with a series new in this write
    with pytest.raises(RuntimeError):
        sink.write(extra)
    points = stored(url, run_id)
    assert all(set(v) == {0} for v in points.values()), "half an epoch became visible"
    assert ("val", "helper", "audio", "acc") not in points
    assert load(url, run_id).epochs_done == 1


def test_the_same_sink_writes_again_after_a_failed_write(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = new_run(url)
    sink = DbSink(run_id, url)
    sink.write(epoch(0))
    extra = [*epoch(1), MetricPoint("val", "helper", "audio", "acc", 1, 0.3)]
    with monkeypatch.context() as m:
        m.setattr(sink, "update_run", broken)
        with pytest.raises(RuntimeError):
            sink.write(extra)
    sink.write(extra)  # the worker's retry of the same epoch
    assert stored(url, run_id)[("val", "helper", "audio", "acc")] == {1: 0.3}
    assert load(url, run_id).epochs_done == 2


def test_writing_an_epoch_twice_keeps_one_point_per_series_and_epoch(url: str) -> None:
    run_id = new_run(url)
    sink = DbSink(run_id, url)
    sink.write(epoch(0, val=0.4, loss=2.0))
    sink.write(epoch(0, val=0.6, loss=1.5))
    DbSink(run_id, url).write(epoch(0, val=0.7, loss=1.2))  # a fresh sink (another process) as well
    points = stored(url, run_id)  # fails on duplicates
    assert len(points) == len(epoch(0))
    assert points[VAL_ACC] == {0: 0.7} and points[("train", "fused", None, "loss")] == {0: 1.2}
    assert latest(url, run_id)[VAL_ACC] == (0, 0.7)
    with tx(url) as s:
        assert s.scalar(select(func.count()).select_from(Point)) == len(epoch(0))


# ---- latest values, begin(k), best-so-far ---------------------------------------------------------------------------

def test_latest_values_only_move_forward(url: str) -> None:
    run_id = new_run(url)
    sink = DbSink(run_id, url)
    sink.write(epoch(2, val=0.9))
    sink.write(epoch(1, val=0.1))  # an older epoch arrives late
    assert latest(url, run_id)[VAL_ACC] == (2, 0.9)
    assert stored(url, run_id)[VAL_ACC] == {1: 0.1, 2: 0.9}
    sink.write([MetricPoint(*VAL_ACC, epoch=4, value=0.2), MetricPoint(*VAL_ACC, epoch=3, value=0.3)])
    assert latest(url, run_id)[VAL_ACC] == (4, 0.2), "the newest epoch within one write wins"


def test_begin_removes_later_epochs_and_recomputes_latest_and_best(url: str) -> None:
    run_id = new_run(url)
    sink, selection = DbSink(run_id, url), ModelSelection()
    vals = [0.5, 0.8, 0.8, 0.9, 0.95]
    times = [4.0, 2.0, 3.0, 100.0, 100.0]
    for e, (v, t) in enumerate(zip(vals, times, strict=True)):
        sink.write(selecting(epoch(e, val=v, test=0.1 * (e + 1), epoch_time=t), selection))
    sink.write([MetricPoint("val", "helper", "audio", "acc", 3, 0.5)])  # a series with points only from epoch 3
    assert best(url, run_id) == (4, 0.95, 0.5)

    resumed = DbSink(run_id, url)  # the next attempt's sink resumes from the epoch-3 checkpoint
    resumed.begin(3)
    points = stored(url, run_id)
    assert all(max(v) == 2 for v in points.values()), "epochs >= 3 are gone"
    assert ("val", "helper", "audio", "acc") not in points
    last = latest(url, run_id)
    assert last[VAL_ACC] == (2, 0.8) and last[("train", "run", None, "epoch_time")] == (2, 3.0)
    assert last[("val", "helper", "audio", "acc")] == (None, None)
    run = load(url, run_id)
    assert run.epochs_done == 3
    assert best(url, run_id) == (1, 0.8, pytest.approx(0.2)), "the selection as of the last epoch kept"

    restored = ModelSelection()  # what the checkpoint of epoch 2 holds
    for e in range(3):
        restored.update(e, epoch(e, val=vals[e], test=0.1 * (e + 1)))
    resumed.write(selecting(epoch(3, val=0.85, test=0.7, epoch_time=1.0), restored))
    assert best(url, run_id) == (3, 0.85, 0.7)
    assert latest(url, run_id)[VAL_ACC] == (3, 0.85)
    assert load(url, run_id).median_epoch_s == pytest.approx(2.5), "median of 4, 2, 3 and the new 1"

    DbSink(run_id, url).begin(0)  # a restart from scratch
    assert stored(url, run_id) == {}
    assert best(url, run_id) == (None, None, None) and load(url, run_id).epochs_done == 0


def test_the_sink_copies_the_engines_selection_and_decides_nothing(url: str) -> None:
    run_id = new_run(url)
    sink = DbSink(run_id, url)
    sink.write(epoch(0, val=0.9, test=0.8))  # no selection points: nothing is chosen
    assert best(url, run_id) == (None, None, None)
    chosen = [MetricPoint("val", "run", None, "best_epoch", 1, 0.0), MetricPoint("val", "run", None, "best_val_acc", 1,
                                                                               0.3)]
    sink.write(epoch(1, val=0.9) + chosen)  # whatever the engine says, even a lower val acc than another epoch's
    assert best(url, run_id) == (0, 0.3, None)


def test_non_finite_values_are_stored_as_null(url: str) -> None:
    run_id = new_run(url)
    sink = DbSink(run_id, url)
    sink.write([*epoch(0), MetricPoint("train", "branch", "audio", "loss", 0, math.nan),
                MetricPoint("train", "branch", "visual", "loss", 0, math.inf),
                MetricPoint("val", "branch", "visual", "loss", 0, -math.inf)])
    points = stored(url, run_id)
    for key in (("train", "branch", "audio", "loss"), ("train", "branch", "visual", "loss"),
                ("val", "branch", "visual", "loss")):
        assert points[key] == {0: None}, key
        assert latest(url, run_id)[key] == (0, None)
    sink.write([MetricPoint("train", "branch", "audio", "loss", 1, 0.25)])  # the series goes on
    assert stored(url, run_id)[("train", "branch", "audio", "loss")] == {0: None, 1: 0.25}


def test_median_epoch_time(url: str) -> None:
    run_id = new_run(url)
    sink = DbSink(run_id, url)
    for e, t in enumerate([3.0, 1.0, 2.0]):
        sink.write(epoch(e, epoch_time=t))
    assert load(url, run_id).median_epoch_s == pytest.approx(2.0)
    sink.write(epoch(3, epoch_time=40.0))
    assert load(url, run_id).median_epoch_s == pytest.approx(2.5)
    sink.write([MetricPoint("val", "fused", None, "epoch_time", 4, 1000.0)])  # not the run's series
    assert load(url, run_id).median_epoch_s == pytest.approx(2.5)


def test_median_epoch_time_counts_a_rewritten_epoch_once(url: str) -> None:
    run_id = new_run(url)
    sink = DbSink(run_id, url)
    for e, t in enumerate([1.0, 2.0, 30.0]):
        sink.write(epoch(e, epoch_time=t))
    sink.write(epoch(2, epoch_time=30.0))  # a retried write of the same epoch
    sink.write(epoch(2, epoch_time=30.0))
    assert load(url, run_id).median_epoch_s == pytest.approx(2.0), "median of the stored points 1, 2, 30"


@pytest.mark.slow  # 30,000 new series in one write (past the drivers' limits): 3 s a backend idle, 12 s under load
def test_a_large_epoch_fits_the_parameter_limits(url: str) -> None:
    """30,000 points of 30,000 new series in one write: chunking keeps every statement within the driver limits."""
    run_id = new_run(url)
    points = [MetricPoint(split, f"combo:{i}", None, name, 0, 0.5 + i * 1e-6)
              for i in range(2500) for split in ("train", "val", "test") for name in ("loss", "acc", "acc_prob",
                                                                                       "macro_f1")]
    assert len(points) == 30_000
    DbSink(run_id, url).write(points)
    with tx(url) as s:
        assert s.scalar(select(func.count()).select_from(Series).where(Series.run_id == run_id)) == 30_000
        assert s.scalar(select(func.count()).select_from(Point)) == 30_000
        assert s.scalar(select(Series.last_value).where(Series.run_id == run_id, Series.component == "combo:2499",
                                                        Series.split == "test", Series.name == "acc")) \
            == pytest.approx(0.5 + 2499e-6)
    assert load(url, run_id).epochs_done == 1


# ---- migrations ---------------------------------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgresql":
        with empty_pg_database("amst_migrate") as url:
            yield url
        return
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    yield url
    get_engine(url).dispose()


def test_migrations_upgrade_an_empty_database_to_head_without_drift(empty_url: str) -> None:
    cfg = alembic_config(empty_url)
    assert current(empty_url) is None
    command.upgrade(cfg, "head")
    assert current(empty_url) == ScriptDirectory.from_config(cfg).get_current_head()
    command.check(cfg)  # raises AutogenerateDiffsDetected when the models and the migrations disagree
    command.upgrade(cfg, "head")  # idempotent
    with tx(empty_url) as s:
        lifecycle.create_run(s, tiny_config())


OLD_WORKER = {"id": "gpu0@box", "hostname": "box", "pid": 11, "queues": "gpu", "device": "cuda:0",
              "started_at": "2026-12-01 10:00:00", "heartbeat_at": "2026-12-01 10:00:05", "current_run_id": "r1"}


def test_0005_keeps_the_workers_registered_before_it_and_goes_back(empty_url: str) -> None:
    """Workers announce their GPUs, Slurm job and pod from 0005 on: a worker row written at 0004 survives the
    upgrade (nothing announced: NULL, which GET /workers reads as "not said"), registers again with all of it, and
    the downgrade drops the new columns and keeps the row (SQLite rebuilds the table for it)."""
    cfg = alembic_config(empty_url)
    command.upgrade(cfg, "0004")
    columns = ", ".join(OLD_WORKER)
    with get_engine(empty_url).begin() as conn:
        conn.execute(text(f"INSERT INTO workers ({columns}) VALUES ({', '.join(':' + c for c in OLD_WORKER)})"),
                     OLD_WORKER)
    command.upgrade(cfg, "0005")
    with tx(empty_url) as s:
        old = s.get(Worker, "gpu0@box")
        assert (old.hostname, old.pid, old.queues, old.device, old.current_run_id) == ("box", 11, "gpu", "cuda:0", "r1")
        assert old.heartbeat_at == datetime(2026, 12, 1, 10, 0, 5, tzinfo=UTC)
        assert (old.gpus, old.slurm_job_id, old.pod_name) == (None, None, None)
        lifecycle.register_worker(s, "gpu0@box", Placement("node7", 12, slurm_job_id="4242"), "gpu", "cuda:0",
                                  [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_mib": 81_105}])
    with tx(empty_url) as s:
        again = s.get(Worker, "gpu0@box")
        assert (again.hostname, again.slurm_job_id, again.gpus[0]["memory_mib"]) == ("node7", "4242", 81_105)
    command.downgrade(cfg, "0004")
    with get_engine(empty_url).connect() as conn:
        row = conn.execute(text("SELECT * FROM workers")).mappings().one()
    assert "gpus" not in row and (row["id"], row["hostname"], row["queues"]) == ("gpu0@box", "node7", "gpu")


def test_0006_gives_runs_a_provenance_and_the_run_they_rerun_and_goes_back(empty_url: str) -> None:
    """Runs record their provenance and the run they re-run from 0006 on: a run written at 0005 survives the
    upgrade with neither (NULL: nothing recorded), takes both, and the downgrade drops them and keeps the runs."""
    cfg = alembic_config(empty_url)
    command.upgrade(cfg, "0005")
    with get_engine(empty_url).begin() as conn:
        conn.execute(text("INSERT INTO runs (id, name, status, method, dataset, seed, config, queue, created_at, "
                          "updated_at, attempt, restarts, max_restarts, cancel_requested, epochs_total, epochs_done) "
                          "VALUES ('old', 'before', 'succeeded', 'naive', 'synthetic', 0, '{}', 'cpu', "
                          "'2026-12-01 10:00:00', '2026-12-01 10:00:00', 1, 0, 2, false, 2, 2)"))
    command.upgrade(cfg, "0006")
    with tx(empty_url) as s:
        assert s.execute(select(Run.provenance, Run.rerun_of).where(Run.id == "old")).one() == (None, None)
        again = lifecycle.create_run(s, tiny_config(), rerun_of="old").id
        s.execute(update(Run).where(Run.id == "old").values(provenance={"digests": {"data": "abc"}}))
    with tx(empty_url) as s:
        assert s.execute(select(Run.provenance, Run.rerun_of).where(Run.id == again)).one() == (None, "old")
        assert s.scalar(select(Run.provenance).where(Run.id == "old")) == {"digests": {"data": "abc"}}
    command.downgrade(cfg, "0005")
    with get_engine(empty_url).connect() as conn:
        rows = conn.execute(text("SELECT * FROM runs")).mappings().all()
    assert {r["id"] for r in rows} == {"old", again}
    assert all("provenance" not in r and "rerun_of" not in r for r in rows)
