"""Run lifecycle in the store (amst_core.store.lifecycle, DESIGN.md section 5), on a SQLite file and on PostgreSQL.

Every transition is a conditional UPDATE: these tests drive the functions directly with two "workers" (ids) and,
for the reaper, two database sessions at once.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from amst_core.metrics import MetricPoint
from amst_core.settings import Settings
from amst_core.store import lifecycle
from amst_core.store.db import get_engine
from amst_core.store.lifecycle import TransitionError
from amst_core.store.models import TERMINAL, Attempt, Run, RunStatus, utcnow
from amst_core.store.writer import DbSink
from tests.kit.db import tx
from tests.kit.tiny import tiny_config

# Small, explicit values: lost after 2 x 1 s without a heartbeat; stalled after max(5 x median, 60 s).
SETTINGS = Settings(AMST_HEARTBEAT_S=1, AMST_LOST_AFTER=2, AMST_STALLED_FACTOR=5, AMST_STALLED_MIN_S=60)
LONG_AGO = timedelta(hours=1)


# ---- one fresh database per test, on both backends ------------------------------------------------------------

# ---- helpers --------------------------------------------------------------------------------------------------

def new_run(url: str, **fields) -> str:
    with tx(url) as s:
        return lifecycle.create_run(s, tiny_config(**fields)).id


def load(url: str, run_id: str) -> Run:
    with tx(url) as s:
        run = s.get(Run, run_id)
        assert run is not None
        return run


def attempts(url: str, run_id: str) -> list[Attempt]:
    with tx(url) as s:
        return list(s.scalars(select(Attempt).where(Attempt.run_id == run_id).order_by(Attempt.number)))


def set_fields(url: str, run_id: str, **values) -> None:
    with tx(url) as s:
        s.execute(update(Run).where(Run.id == run_id).values(**values))


def running(url: str, worker: str = "w1", **fields) -> tuple[str, int]:
    """A run leased by `worker` and running; returns (run id, attempt)."""
    run_id = new_run(url, **fields)
    with tx(url) as s:
        attempt = lifecycle.claim(s, run_id, worker, "cpu")
        assert attempt is not None
        assert lifecycle.set_running(s, run_id, worker, attempt, 0)
    return run_id, attempt


def reap(url: str, settings: Settings = SETTINGS) -> lifecycle.ReapResult:
    with tx(url) as s:
        return lifecycle.reap(s, settings)


# ---- create, claim, start --------------------------------------------------------------------------------------

def test_create_run_picks_the_queue_by_device_and_keeps_tags(url: str) -> None:
    cpu = load(url, new_run(url, device="cpu", tags=["b", "a", "b"], max_restarts=4))
    assert (cpu.queue, cpu.status, cpu.attempt, cpu.restarts, cpu.max_restarts) == ("cpu", "queued", 0, 0, 4)
    assert cpu.tag_names == ["a", "b"]
    assert cpu.epochs_total == 2 and cpu.epochs_done == 0 and not cpu.cancel_requested
    for device in ("cuda", "cuda:1", "auto"):
        assert load(url, new_run(url, device=device)).queue == "gpu", device


def test_claim_succeeds_once(url: str) -> None:
    run_id = new_run(url)
    with tx(url) as s:
        assert lifecycle.claim(s, run_id, "w1", "cpu") == 1
    with tx(url) as s:
        assert lifecycle.claim(s, run_id, "w2", "cpu") is None
    run = load(url, run_id)
    assert (run.status, run.worker_id, run.attempt, run.device) == ("starting", "w1", 1, "cpu")
    assert run.heartbeat_at is not None and run.started_at is not None
    [row] = attempts(url, run_id)
    assert (row.number, row.worker_id, row.status, row.ended_at) == (1, "w1", "starting", None)


def test_claim_refused_when_cancel_was_requested(url: str) -> None:
    run_id = new_run(url)
    set_fields(url, run_id, cancel_requested=True)
    with tx(url) as s:
        assert lifecycle.claim(s, run_id, "w1", "cpu") is None
    assert load(url, run_id).status == "queued" and attempts(url, run_id) == []


@pytest.mark.parametrize("status", ["starting", "running", "stalled", "succeeded", "failed", "cancelled", "lost"])
def test_claim_refused_for_a_run_that_is_not_queued(url: str, status: str) -> None:
    run_id = new_run(url)
    set_fields(url, run_id, status=status)
    with tx(url) as s:
        assert lifecycle.claim(s, run_id, "w1", "cpu") is None
    assert load(url, run_id).status == status and attempts(url, run_id) == []


def test_claim_of_a_missing_run_returns_none(url: str) -> None:
    with tx(url) as s:
        assert lifecycle.claim(s, "no-such-run", "w1", "cpu") is None


def test_set_running_by_the_lease_holder_only(url: str) -> None:
    run_id = new_run(url)
    with tx(url) as s:
        attempt = lifecycle.claim(s, run_id, "w1", "cpu")
    with tx(url) as s:
        assert not lifecycle.set_running(s, run_id, "w2", attempt, 0)
    assert load(url, run_id).status == "starting"
    with tx(url) as s:
        assert lifecycle.set_running(s, run_id, "w1", attempt, 3)
    assert load(url, run_id).status == "running"
    [row] = attempts(url, run_id)
    assert (row.status, row.start_epoch) == ("running", 3)


PROVENANCE = {"code": {"version": "0.1.0", "commit": "3f2a1c0" + "0" * 33, "dirty": False},
              "environment": {"torch": "2.9.0", "cuda": None, "host": "box", "device": "cpu"},
              "data": {"dataset": "synthetic", "digest": "0840849064a50c5e"}, "config": {"seed": 0},
              "digests": {"code": "c0de", "environment": "e0e0", "data": "0840849064a50c5e"}}


def provenance_of(url: str, run_id: str) -> dict | None:
    with tx(url) as s:  # a deferred column: read inside the session
        return s.scalar(select(Run.provenance).where(Run.id == run_id))


def test_provenance_is_recorded_by_the_lease_holder_of_that_attempt_only(url: str) -> None:
    run_id, attempt = running(url)
    assert provenance_of(url, run_id) is None
    with tx(url) as s:
        assert not lifecycle.record_provenance(s, run_id, "w2", attempt, PROVENANCE)  # not its lease
        assert not lifecycle.record_provenance(s, run_id, "w1", attempt + 1, PROVENANCE)  # not this attempt
    assert provenance_of(url, run_id) is None
    with tx(url) as s:
        assert lifecycle.record_provenance(s, run_id, "w1", attempt, PROVENANCE)
    assert provenance_of(url, run_id) == PROVENANCE
    with tx(url) as s:
        lifecycle.finish(s, run_id, "w1", attempt, RunStatus.succeeded)
    moved = {**PROVENANCE, "environment": {**PROVENANCE["environment"], "host": "other"}}
    with tx(url) as s:  # an ended run keeps what its attempt recorded
        assert not lifecycle.record_provenance(s, run_id, "w1", attempt, moved)
    assert provenance_of(url, run_id) == PROVENANCE


def test_a_rerun_names_its_run_until_that_run_is_deleted(url: str) -> None:
    original = new_run(url)
    with tx(url) as s:
        again = lifecycle.create_run(s, tiny_config(), rerun_of=original).id
    assert load(url, again).rerun_of == original and load(url, original).rerun_of is None
    with tx(url) as s:
        assert lifecycle.delete_run(s, original)
    assert load(url, again).rerun_of is None  # ON DELETE SET NULL: the re-run stays


# ---- heartbeat, finish, release --------------------------------------------------------------------------------

def test_heartbeat_reports_cancel_and_lease_loss(url: str) -> None:
    run_id, _ = running(url)
    set_fields(url, run_id, heartbeat_at=utcnow() - LONG_AGO)
    with tx(url) as s:
        assert lifecycle.heartbeat(s, run_id, "w1") is False
    assert utcnow() - load(url, run_id).heartbeat_at < timedelta(minutes=5), "the lease was refreshed"
    with tx(url) as s:
        assert lifecycle.heartbeat(s, run_id, "w2") is None, "w2 never held the run"

    set_fields(url, run_id, heartbeat_at=utcnow() - LONG_AGO)
    assert reap(url).requeued == [(run_id, "cpu")]  # the lease is taken away
    before = load(url, run_id).heartbeat_at
    with tx(url) as s:
        assert lifecycle.heartbeat(s, run_id, "w1") is None
    assert load(url, run_id).heartbeat_at == before, "a reaped worker must not refresh the run"

    cancelled, _ = running(url, worker="w3")
    with tx(url) as s:
        lifecycle.request_cancel(s, s.get(Run, cancelled))
    with tx(url) as s:
        assert lifecycle.heartbeat(s, cancelled, "w3") is True


def test_heartbeat_of_a_run_leased_to_another_worker_returns_none(url: str) -> None:
    run_id, _ = running(url, worker="w2")
    with tx(url) as s:
        assert lifecycle.heartbeat(s, run_id, "w1") is None
    with tx(url) as s:
        assert lifecycle.heartbeat(s, run_id, "missing") is None
        assert lifecycle.heartbeat(s, "no-such-run", "w2") is None


def test_finish_by_the_lease_holder(url: str) -> None:
    run_id, attempt = running(url)
    with tx(url) as s:
        assert lifecycle.finish(s, run_id, "w1", attempt, RunStatus.succeeded, summary={"best_epoch": 1})
    run = load(url, run_id)
    assert run.status == "succeeded" and run.finished_at is not None and run.summary == {"best_epoch": 1}
    [row] = attempts(url, run_id)
    assert row.status == "succeeded" and row.ended_at is not None
    with tx(url) as s:  # a second finish (a duplicate delivery) changes nothing
        assert not lifecycle.finish(s, run_id, "w1", attempt, RunStatus.failed, error="late")
    assert load(url, run_id).status == "succeeded"


def test_finish_by_another_worker_is_a_no_op(url: str) -> None:
    run_id, attempt = running(url)
    with tx(url) as s:
        assert not lifecycle.finish(s, run_id, "w2", attempt, RunStatus.failed, error="not mine")
    run = load(url, run_id)
    assert (run.status, run.error, run.finished_at, run.worker_id) == ("running", None, None, "w1")


@pytest.mark.parametrize("call", ["finish", "release", "set_running"])
def test_a_worker_without_the_lease_leaves_the_attempt_row_alone(url: str, call: str) -> None:
    run_id, attempt = running(url)
    with tx(url) as s:
        if call == "finish":
            lifecycle.finish(s, run_id, "w2", attempt, RunStatus.failed, error="not mine")
        elif call == "release":
            lifecycle.release(s, run_id, "w2", attempt)
        else:
            lifecycle.set_running(s, run_id, "w2", attempt, 7)
    [row] = attempts(url, run_id)
    assert (row.status, row.ended_at, row.error, row.start_epoch) == ("running", None, None, 0)


def test_finish_of_a_reaped_worker_is_dropped(url: str) -> None:
    run_id, attempt = running(url)
    set_fields(url, run_id, heartbeat_at=utcnow() - LONG_AGO)
    reap(url)
    with tx(url) as s:
        assert not lifecycle.finish(s, run_id, "w1", attempt, RunStatus.succeeded)
    run = load(url, run_id)
    assert run.status == "queued" and run.finished_at is None
    assert attempts(url, run_id)[0].status == "lost"


def test_release_hands_the_run_back_to_the_queue(url: str) -> None:
    run_id, attempt = running(url)
    with tx(url) as s:
        assert lifecycle.release(s, run_id, "w2", attempt) is None, "only the lease holder releases"
    assert load(url, run_id).status == "running"
    with tx(url) as s:
        assert lifecycle.release(s, run_id, "w1", attempt) == "cpu"
    run = load(url, run_id)
    assert (run.status, run.worker_id, run.finished_at) == ("queued", None, None)
    [row] = attempts(url, run_id)
    assert row.status == "interrupted" and row.ended_at is not None
    with tx(url) as s:
        assert lifecycle.claim(s, run_id, "w2", "cpu") == 2, "the next worker takes it as attempt 2"


# ---- cancel and retry ------------------------------------------------------------------------------------------

def test_cancel_of_a_queued_run_is_immediate(url: str) -> None:
    run_id = new_run(url)
    with tx(url) as s:
        lifecycle.request_cancel(s, s.get(Run, run_id))
    run = load(url, run_id)
    assert run.status == "cancelled" and run.cancel_requested and run.finished_at is not None


@pytest.mark.parametrize("status", ["starting", "running", "stalled"])
def test_cancel_of_a_live_run_only_raises_the_flag(url: str, status: str) -> None:
    run_id, _ = running(url)
    set_fields(url, run_id, status=status)
    with tx(url) as s:
        lifecycle.request_cancel(s, s.get(Run, run_id))
    run = load(url, run_id)
    assert run.status == status and run.cancel_requested and run.finished_at is None


@pytest.mark.parametrize("status", [str(s) for s in TERMINAL])
def test_cancel_of_a_finished_run_is_refused(url: str, status: str) -> None:
    run_id = new_run(url)
    set_fields(url, run_id, status=status)
    with tx(url) as s, pytest.raises(TransitionError):
        lifecycle.request_cancel(s, s.get(Run, run_id))
    assert not load(url, run_id).cancel_requested


@pytest.mark.parametrize("status", ["failed", "cancelled", "lost"])
def test_retry_resets_the_run(url: str, status: str) -> None:
    run_id, _ = running(url)
    set_fields(url, run_id, status=status, cancel_requested=True, error="boom", finished_at=utcnow())
    with tx(url) as s:
        lifecycle.retry(s, s.get(Run, run_id))
    run = load(url, run_id)
    assert (run.status, run.cancel_requested, run.error, run.finished_at, run.worker_id) == (
        "queued", False, None, None, None)
    assert run.attempt == 1, "the attempt count is history: the next claim makes it 2"
    with tx(url) as s:
        assert lifecycle.claim(s, run_id, "w2", "cpu") == 2


@pytest.mark.parametrize("status", ["queued", "starting", "running", "stalled", "succeeded"])
def test_retry_refused_unless_failed_cancelled_or_lost(url: str, status: str) -> None:
    run_id = new_run(url)
    set_fields(url, run_id, status=status)
    with tx(url) as s, pytest.raises(TransitionError):
        lifecycle.retry(s, s.get(Run, run_id))
    assert load(url, run_id).status == status


# ---- reaper: lost and stalled ------------------------------------------------------------------------------------

def test_reap_requeues_a_silent_run_then_marks_it_lost(url: str) -> None:
    run_id, _ = running(url, max_restarts=1)
    set_fields(url, run_id, heartbeat_at=utcnow() - LONG_AGO)
    result = reap(url)
    assert result.requeued == [(run_id, "cpu")] and result.lost == []
    run = load(url, run_id)
    assert (run.status, run.restarts, run.worker_id, run.finished_at) == ("queued", 1, None, None)
    assert "w1" in run.error
    [first] = attempts(url, run_id)
    assert first.status == "lost" and first.ended_at is not None

    with tx(url) as s:  # the restart: another worker, attempt 2, dies as well
        assert lifecycle.claim(s, run_id, "w2", "cpu") == 2
        lifecycle.set_running(s, run_id, "w2", 2, 0)
    set_fields(url, run_id, heartbeat_at=utcnow() - LONG_AGO)
    result = reap(url)
    assert result.requeued == [] and result.lost == [run_id]
    run = load(url, run_id)
    assert (run.status, run.restarts) == ("lost", 1) and run.finished_at is not None
    assert [a.status for a in attempts(url, run_id)] == ["lost", "lost"]
    assert reap(url) == lifecycle.ReapResult([], [], []), "a lost run is terminal"


def test_reap_of_a_silent_run_whose_cancel_was_requested_ends_it(url: str) -> None:
    """Its worker died after the cancel was asked for: re-queued, no worker could ever claim it (claim refuses
    a run with cancel_requested), so it would sit in `queued` for ever."""
    run_id, _ = running(url)
    with tx(url) as s:
        lifecycle.request_cancel(s, s.get(Run, run_id))
    set_fields(url, run_id, heartbeat_at=utcnow() - LONG_AGO)
    result = reap(url)
    run = load(url, run_id)
    assert result.requeued == [], "a run nobody may claim was re-queued"
    assert run.status in TERMINAL and run.finished_at is not None


def test_reap_leaves_runs_with_a_fresh_heartbeat_alone(url: str) -> None:
    run_id, _ = running(url)
    queued = new_run(url)
    set_fields(url, queued, heartbeat_at=utcnow() - LONG_AGO)  # not live: no lease to lose
    assert reap(url) == lifecycle.ReapResult([], [], [])
    assert load(url, run_id).status == "running" and load(url, run_id).restarts == 0
    assert load(url, queued).status == "queued"


def test_two_reapers_requeue_a_run_once(url: str) -> None:
    """Reaper A updates but has not committed; reaper B, started meanwhile, must wait and then find nothing."""
    run_id, _ = running(url)
    set_fields(url, run_id, heartbeat_at=utcnow() - LONG_AGO)
    engine = get_engine(url)
    results: dict[str, lifecycle.ReapResult] = {}
    errors: list[BaseException] = []

    def reaper_b() -> None:
        try:
            with Session(engine) as s, s.begin():
                results["b"] = lifecycle.reap(s, SETTINGS)
        except BaseException as err:  # reported by the main thread
            errors.append(err)

    with Session(engine) as a:
        a.begin()
        results["a"] = lifecycle.reap(a, SETTINGS)
        thread = threading.Thread(target=reaper_b, daemon=True)
        thread.start()
        thread.join(0.5)  # B reads the run as dead and blocks on A's write (or has not got that far yet)
        a.commit()
    thread.join(30)
    assert not thread.is_alive(), "reaper B never finished"
    assert not errors, errors
    assert results["a"].requeued == [(run_id, "cpu")]
    assert results["b"].requeued == [] and results["b"].lost == []
    run = load(url, run_id)
    assert (run.status, run.restarts) == ("queued", 1)


def test_stalled_after_the_longer_of_factor_times_median_and_the_floor(url: str) -> None:
    now = utcnow()
    cases = {  # (median epoch s, seconds since the last epoch) -> stalled?
        "within_factor": (100.0, 300, False),  # limit max(5 x 100, 60) = 500 s
        "past_factor": (100.0, 600, True),
        "within_floor": (1.0, 30, False),  # limit max(5 x 1, 60) = 60 s
        "past_floor": (1.0, 120, True),
    }
    ids = {}
    for name, (median, ago, _) in cases.items():
        ids[name], _ = running(url, worker=name)
        set_fields(url, ids[name], median_epoch_s=median, last_epoch_at=now - timedelta(seconds=ago),
                   epochs_done=1, heartbeat_at=utcnow())
    no_epoch_yet, _ = running(url, worker="fresh")
    set_fields(url, no_epoch_yet, started_at=now - timedelta(seconds=120), heartbeat_at=utcnow())

    result = reap(url)
    expected = {ids[n] for n, (_, _, stalled) in cases.items() if stalled} | {no_epoch_yet}
    assert set(result.stalled) == expected and result.requeued == [] and result.lost == []
    for name, (_, _, stalled) in cases.items():
        assert load(url, ids[name]).status == ("stalled" if stalled else "running"), name
    assert reap(url).stalled == [], "a stalled run is reported once"

    with tx(url) as s:  # stalled is still alive: the heartbeat keeps the lease
        assert lifecycle.heartbeat(s, ids["past_factor"], "past_factor") is False

    sink = DbSink(ids["past_factor"], url)
    sink.write([MetricPoint("val", "fused", None, "acc", 1, 0.5),
                MetricPoint("train", "run", None, "epoch_time", 1, 100.0)])
    run = load(url, ids["past_factor"])
    assert run.status == "running" and run.epochs_done == 2, "a new epoch ends the stall"


def test_a_long_first_epoch_that_makes_progress_is_not_stalled(url: str) -> None:
    """The newcomer's case: the first epoch takes longer than the floor, but batches keep finishing."""
    started = utcnow() - timedelta(seconds=600)
    moving, _ = running(url, worker="moving")
    set_fields(url, moving, started_at=started, heartbeat_at=utcnow())
    frozen, _ = running(url, worker="frozen")
    set_fields(url, frozen, started_at=started, heartbeat_at=utcnow())
    live = {"epoch": 0, "split": "train", "batch": 40, "batches": 93, "samples_per_s": 12.5,
            "updated_at": (utcnow() - timedelta(seconds=5)).timestamp()}
    with tx(url) as s:  # the moving run's worker reports a batch that finished 5 s ago
        assert lifecycle.heartbeat(s, moving, "moving", live) is False
    with tx(url) as s:  # the frozen one's last batch was 10 minutes ago
        assert lifecycle.heartbeat(s, frozen, "frozen", {**live, "updated_at": started.timestamp()}) is False
    assert reap(url).stalled == [frozen]
    assert load(url, moving).live == live and load(url, moving).status == "running"
    with tx(url) as s:
        assert lifecycle.finish(s, moving, "moving", 1, RunStatus.succeeded)
    assert load(url, moving).live is None, "a finished run has no progress inside an epoch"


# ---- queue position ----------------------------------------------------------------------------------------------

def test_queue_position_counts_queued_runs_ahead_in_the_same_queue(url: str) -> None:
    c1 = new_run(url, device="cpu")
    g1 = new_run(url, device="cuda")
    c2 = new_run(url, device="cpu")
    g2 = new_run(url, device="cuda")
    c3 = new_run(url, device="cpu")

    def positions() -> dict[str, int | None]:
        with tx(url) as s:
            return {r: lifecycle.queue_position(s, s.get(Run, r)) for r in (c1, c2, c3, g1, g2)}

    assert positions() == {c1: 0, c2: 1, c3: 2, g1: 0, g2: 1}
    with tx(url) as s:
        assert lifecycle.claim(s, c1, "w1", "cpu") == 1
        lifecycle.request_cancel(s, s.get(Run, g1))
    assert positions() == {c1: None, c2: 0, c3: 1, g1: None, g2: 0}


# ---- attempts that die: a training process killed, a worker that stops heartbeating ---------------------------------

SEGFAULT = "the training process was killed by SIGSEGV (a native crash in PyTorch or a library it calls)"


def crash(url: str, run_id: str, attempt: int, retries: int = 1, worker: str = "w1", **kwargs):
    with tx(url) as s:
        return lifecycle.record_crash(s, run_id, worker, attempt, SEGFAULT, retries, **kwargs)


def claim_running(url: str, run_id: str, worker: str = "w2") -> int:
    with tx(url) as s:
        attempt = lifecycle.claim(s, run_id, worker, "cpu")
        assert attempt is not None
        assert lifecycle.set_running(s, run_id, worker, attempt, 0)
    return attempt


def test_a_run_whose_training_process_dies_is_retried_then_failed_with_the_cause(url: str) -> None:
    run_id, attempt = running(url, max_restarts=5)
    first = crash(url, run_id, attempt, tail=["INFO amst.engine: epoch 1/2", "Fatal Python error: Segmentation fault"])
    assert (first.status, first.requeue_on) == ("queued", "cpu")
    run = load(url, run_id)
    assert (run.status, run.worker_id, run.restarts, run.finished_at) == ("queued", None, 1, None)
    assert run.error.startswith(SEGFAULT) and "retry 1 of 1 (AMST_CRASH_RETRIES)" in run.error
    [row] = attempts(url, run_id)
    assert row.status == "crashed" and row.ended_at is not None
    assert row.error.startswith(SEGFAULT) and row.error.endswith("Fatal Python error: Segmentation fault")

    second = claim_running(url, run_id)
    assert second == 2
    outcome = crash(url, run_id, second, worker="w2", tail=["Fatal Python error: Segmentation fault"])
    assert (outcome.status, outcome.requeue_on) == ("failed", None)
    run = load(url, run_id)
    assert run.status == "failed" and run.finished_at is not None and run.restarts == 1
    assert run.error.startswith(SEGFAULT)
    assert "2 attempts in a row ended so: not retried again (AMST_CRASH_RETRIES=1)" in run.error
    assert "Segmentation fault" in run.error, "the end of the run's log is quoted"
    assert [a.status for a in attempts(url, run_id)] == ["crashed", "crashed"]
    with tx(url) as s:  # a late or duplicate message for the failed run does not train it again
        assert lifecycle.claim(s, run_id, "w3", "cpu") is None


def test_a_run_over_the_memory_limit_fails_at_once(url: str) -> None:
    run_id, attempt = running(url)
    outcome = crash(url, run_id, attempt, retries=2, retry=False)
    assert outcome.status == "failed" and "not retried: it would end the same way" in outcome.error
    assert load(url, run_id).status == "failed"


def test_a_crash_after_a_cancel_request_cancels_and_max_restarts_still_bounds_retries(url: str) -> None:
    cancelled, attempt = running(url)
    with tx(url) as s:
        lifecycle.request_cancel(s, s.get(Run, cancelled))
    assert crash(url, cancelled, attempt).status == "cancelled"
    no_restarts, attempt = running(url, max_restarts=0)
    outcome = crash(url, no_restarts, attempt, retries=5)
    assert outcome.status == "failed" and "no restart left (max_restarts 0)" in outcome.error


def test_a_crash_is_recorded_by_the_lease_holder_only(url: str) -> None:
    run_id, attempt = running(url)
    assert crash(url, run_id, attempt, worker="w2") is None
    assert crash(url, run_id, attempt + 1) is None, "another attempt's process"
    set_fields(url, run_id, heartbeat_at=utcnow() - LONG_AGO)
    reap(url)
    assert crash(url, run_id, attempt) is None, "the run was reaped meanwhile"
    assert load(url, run_id).status == "queued" and attempts(url, run_id)[0].status == "lost"


def test_deaths_count_in_a_row(url: str) -> None:
    """An attempt that ends on its own (here: handed back by a stopping worker) breaks the series."""
    run_id, attempt = running(url, max_restarts=5)
    assert crash(url, run_id, attempt).status == "queued"
    second = claim_running(url, run_id)
    with tx(url) as s:
        assert lifecycle.release(s, run_id, "w2", second) == "cpu"
    third = claim_running(url, run_id, worker="w3")
    assert crash(url, run_id, third, worker="w3").status == "queued", "one death in a row, not two"


def test_reap_fails_a_run_whose_workers_keep_dying(url: str) -> None:
    """A run that kills every worker that takes it (max_restarts far away) is failed after AMST_CRASH_RETRIES + 1
    deaths in a row, saying how many."""
    settings = SETTINGS.model_copy(update={"crash_retries": 1})
    run_id, _ = running(url, max_restarts=10)
    set_fields(url, run_id, heartbeat_at=utcnow() - LONG_AGO)
    assert reap(url, settings).requeued == [(run_id, "cpu")]
    claim_running(url, run_id)
    set_fields(url, run_id, heartbeat_at=utcnow() - LONG_AGO)
    result = reap(url, settings)
    assert result.requeued == [] and result.lost == [run_id]
    run = load(url, run_id)
    assert run.status == "failed" and run.finished_at is not None
    assert "worker w2 stopped heartbeating during this run 2 times in a row" in run.error
    assert "not retried again (AMST_CRASH_RETRIES=1)" in run.error
    assert [a.status for a in attempts(url, run_id)] == ["lost", "lost"]
