"""Run lifecycle in the database, the source of truth (DESIGN.md section 5).

queued -> starting -> running -> succeeded | failed | cancelled, plus `stalled` (alive, no new epoch for
too long; back to running with the next epoch) and `lost` (no heartbeat for `lost_after_s`; re-queued while
restarts remain). An attempt whose training process died (`crashed`) or whose worker stopped heartbeating (`lost`)
ended without an end of its own: a run whose attempts end so more than AMST_CRASH_RETRIES times in a row is
failed, not re-queued again (it is probably what kills them). Every transition is a conditional UPDATE, so two
workers, a worker and the reaper, or a duplicate Celery delivery can never both win.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, delete, func, or_, select, update
from sqlalchemy.orm import Session

from amst_core.config import RunConfig
from amst_core.placement import Placement
from amst_core.settings import Settings, queue_for
from amst_core.store.models import ACTIVE, TERMINAL, Attempt, Point, Run, RunStatus, RunTag, Series, Worker, utcnow
from amst_core.vocab import LIVE, RETRYABLE

# The broker message that says "run <id> may start" (its one argument): the worker's Celery task, sent by
# api.dispatch (the API, and the worker when it hands a run back). The row, not the message, decides who trains.
TASK_NAME = "amst.execute_run"
CRASHED = "crashed"  # an attempt's status: its training process died without recording an end
DIED = (CRASHED, RunStatus.lost.value)  # attempts that ended without an end of their own


class TransitionError(Exception):
    """The run is not in a state that allows the requested change (HTTP 409)."""


class LeaseLost(RuntimeError):
    """Another worker holds the run now (this one was presumed dead): its results must not be written."""


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def create_run(s: Session, cfg: RunConfig, idempotency_key: str | None = None,
               request_hash: str | None = None, rerun_of: str | None = None) -> Run:
    run = Run(
        id=new_run_id(), name=cfg.display_name, status=RunStatus.queued, method=cfg.method,
        dataset=cfg.dataset.name, seed=cfg.seed, config=cfg.model_dump(mode="json"),
        queue=queue_for(cfg.device, cfg.resources.gpus),
        idempotency_key=idempotency_key, request_hash=request_hash, max_restarts=cfg.max_restarts,
        epochs_total=cfg.epochs, epochs_done=0, attempt=0, restarts=0, cancel_requested=False,
        created_at=utcnow(), rerun_of=rerun_of,
    )
    run.tags = [RunTag(tag=t) for t in sorted(set(cfg.tags))]
    s.add(run)
    s.flush()
    return run


def relabel(run: Run, changes: dict[str, Any]) -> Run:
    """PATCH /runs/{id}: any of name, notes, tags (replaced) and archived. Labels only, never what the run trains,
    so a run in any state may change them, and the worker holding it never notices."""
    if "name" in changes:
        run.name = changes["name"]
    if "notes" in changes:
        run.notes = changes["notes"]
    if "tags" in changes:
        keep = set(changes["tags"])
        # Rows of tags that stay are kept: deleting and adding one in the same flush would clash on its key.
        run.tags = [t for t in run.tags if t.tag in keep] + [RunTag(tag=t) for t in sorted(keep - set(run.tag_names))]
    if "archived" in changes:  # archiving again keeps the first time
        run.archived_at = (run.archived_at or utcnow()) if changes["archived"] else None
    return run


def claim(s: Session, run_id: str, worker_id: str, device: str) -> int | None:
    """Take the lease of a queued run; returns the new attempt number, or None if someone else has it
    (or it was cancelled meanwhile)."""
    now = utcnow()
    result = s.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == RunStatus.queued, Run.cancel_requested.is_(False))
        .values(status=RunStatus.starting, worker_id=worker_id, attempt=Run.attempt + 1, heartbeat_at=now,
                started_at=func.coalesce(Run.started_at, now), device=device, error=None)
    )
    if result.rowcount != 1:
        return None
    attempt = s.scalar(select(Run.attempt).where(Run.id == run_id))
    s.add(Attempt(run_id=run_id, number=attempt, worker_id=worker_id, status=RunStatus.starting, started_at=now))
    return attempt


def set_running(s: Session, run_id: str, worker_id: str, attempt: int, start_epoch: int) -> bool:
    ok = s.execute(update(Run).where(Run.id == run_id, Run.worker_id == worker_id, Run.status == RunStatus.starting)
                   .values(status=RunStatus.running, heartbeat_at=utcnow())).rowcount == 1
    if ok:
        s.execute(update(Attempt).where(Attempt.run_id == run_id, Attempt.number == attempt)
                  .values(status=RunStatus.running, start_epoch=start_epoch))
    return ok


def record_provenance(s: Session, run_id: str, worker_id: str, attempt: int, provenance: dict[str, Any]) -> bool:
    """What attempt `attempt` recorded at its start (amst_core.provenance.collect), kept with the run: each attempt
    replaces the last one's (a retried run may resume on another host, with other versions). Only while
    `worker_id` holds the lease of that attempt."""
    return s.execute(update(Run).where(Run.id == run_id, Run.worker_id == worker_id, Run.attempt == attempt,
                                       Run.status.in_(LIVE))
                     .values(provenance=provenance)).rowcount == 1


def leased_config(s: Session, run_id: str, worker_id: str, attempt: int) -> dict[str, Any] | None:
    """The config of attempt `attempt` while `worker_id` holds its lease (the training process's first look), or
    None when the run was reaped, ended or taken meanwhile."""
    return s.scalar(select(Run.config).where(Run.id == run_id, Run.worker_id == worker_id, Run.attempt == attempt,
                                             Run.status.in_(LIVE)))


def heartbeat(s: Session, run_id: str, worker_id: str, live: dict[str, Any] | None = None) -> bool | None:
    """Refresh the lease, with the progress inside the epoch when given (`amst_core.engine.LiveProgress`).
    Returns cancel_requested, or None if this worker no longer holds the run."""
    values: dict[str, Any] = {"heartbeat_at": utcnow()}
    if live is not None:
        progress_at = datetime.fromtimestamp(live["updated_at"], UTC)
        values.update(live=live, progress_at=progress_at, status=case(  # a finished batch ends a stall
            ((Run.status == RunStatus.stalled) & (Run.progress_at.is_(None) | (Run.progress_at < progress_at)),
             RunStatus.running.value), else_=Run.status))
    s.execute(update(Run).where(Run.id == run_id, Run.worker_id == worker_id, Run.status.in_(LIVE))
              .values(**values))
    row = s.execute(select(Run.cancel_requested, Run.worker_id, Run.status).where(Run.id == run_id)).first()
    if row is None or row.worker_id != worker_id or row.status not in LIVE:
        return None
    return bool(row.cancel_requested)


def finish(s: Session, run_id: str, worker_id: str, attempt: int, status: RunStatus,
           error: str | None = None, summary: dict[str, Any] | None = None) -> bool:
    """End an attempt; only the worker holding the lease may (a reaped worker's late result is dropped)."""
    now = utcnow()
    values: dict[str, Any] = {"status": status, "finished_at": now, "error": error, "live": None}
    if summary is not None:
        values["summary"] = summary
    ok = s.execute(update(Run).where(Run.id == run_id, Run.worker_id == worker_id, Run.status.in_(LIVE))
                   .values(**values)).rowcount == 1
    if ok:
        s.execute(update(Attempt).where(Attempt.run_id == run_id, Attempt.number == attempt,
                                        Attempt.ended_at.is_(None))
                  .values(status=status, ended_at=now, error=error))
    return ok


def release(s: Session, run_id: str, worker_id: str, attempt: int) -> str | None:
    """Hand a live run back to the queue (its worker is shutting down); returns its queue, or None."""
    ok = s.execute(update(Run).where(Run.id == run_id, Run.worker_id == worker_id, Run.status.in_(LIVE))
                   .values(status=RunStatus.queued, worker_id=None)).rowcount == 1
    if not ok:
        return None
    s.execute(update(Attempt).where(Attempt.run_id == run_id, Attempt.number == attempt, Attempt.ended_at.is_(None))
              .values(status="interrupted", ended_at=utcnow(), error="worker shut down"))
    return s.scalar(select(Run.queue).where(Run.id == run_id)) if ok else None


def message_sent(s: Session, run_id: str, task_id: str) -> None:
    """The run's broker message was sent as `task_id` (revoked by that id on cancel). Also moves updated_at, so
    a run waiting in a long queue is re-sent once per reaper period, not on every pass."""
    s.execute(update(Run).where(Run.id == run_id).values(task_id=task_id, updated_at=utcnow()))


# ---- an attempt's epochs: progress, and what a resumed attempt supersedes ------------------------------------------

def check_lease(s: Session, run_id: str, worker_id: str | None) -> int:
    """The run's epochs_total, once sure that `worker_id` (when given) still holds its lease: LeaseLost if not,
    LookupError if the run is gone."""
    row = s.execute(select(Run.worker_id, Run.epochs_total).where(Run.id == run_id)).first()
    if row is None:
        raise LookupError(f"run {run_id} does not exist")
    if worker_id is not None and row.worker_id != worker_id:
        raise LeaseLost(f"run {run_id} is held by {row.worker_id or 'no worker'} now, not {worker_id}")
    return row.epochs_total


def record_epoch(s: Session, run_id: str, progress: dict[str, Any]) -> None:
    """An epoch's points are stored: the run's progress and best-so-far move forward (`progress`: epochs_done,
    last_epoch_at, median_epoch_s, best columns), and a stalled run runs again (a new epoch is progress)."""
    s.execute(update(Run).where(Run.id == run_id).values(**progress, status=case(
        (Run.status == RunStatus.stalled, RunStatus.running.value), else_=Run.status)))


def superseded_points(run_id: str, from_epoch: int) -> ColumnElement[bool]:
    """The points an attempt that (re)starts writing at `from_epoch` supersedes: every point of the run at that
    epoch and after. The metrics sink deletes them when the attempt begins; the event stream sends those epochs
    again once the attempt has rewritten one; GET /runs/{id}/metrics says where they start (superseded_from)."""
    return Point.series_id.in_(select(Series.id).where(Series.run_id == run_id)) & (Point.epoch >= from_epoch)


def rewound(s: Session, run_id: str, start_epoch: int, best: dict[str, Any]) -> None:
    """The run's progress goes back to `start_epoch` once the points after it are gone, and its best-so-far to
    what the epochs kept say."""
    s.execute(update(Run).where(Run.id == run_id).values(epochs_done=start_epoch, **best))


@dataclass
class Resumed:
    """A resumed attempt, as readers of a run's points see it."""

    from_epoch: int  # the attempt resumed here: points held from here on, written earlier, are superseded
    rewritten: bool  # the attempt has stored one of those epochs already (before, the old points still stand)


def resumed(s: Session, run_id: str, attempt: int) -> Resumed | None:
    """Where attempt `attempt` of the run started (a first attempt: epoch 0, superseding nothing; one that is
    still starting: 0 until it says), or None if the run has no such attempt."""
    start = s.scalar(select(Attempt.start_epoch).where(Attempt.run_id == run_id, Attempt.number == attempt))
    if start is None:
        return None
    rewritten = s.scalar(select(Point.epoch).where(superseded_points(run_id, start), Point.attempt == attempt)
                         .limit(1)) is not None
    return Resumed(start, rewritten)


def superseded_from(s: Session, run: Run) -> int | None:
    """What readers of the run's points are told (GET /runs/{id}/metrics, the event stream): the epoch from
    which points they hold from an earlier attempt are superseded by the current one, which resumed there. None
    for a first attempt: nothing to replace."""
    if run.attempt <= 1:
        return None
    return s.scalar(select(Attempt.start_epoch).where(Attempt.run_id == run.id, Attempt.number == run.attempt))


@dataclass
class AttemptState:
    """A run and one of its attempts, as the worker finds them once the attempt's training process is gone."""

    status: str
    worker_id: str | None
    queue: str
    attempt_status: str
    attempt_ended: bool


def attempt_state(s: Session, run_id: str, attempt: int) -> AttemptState | None:
    row = s.execute(select(Run.status, Run.worker_id, Run.queue, Attempt.status.label("attempt_status"),
                           Attempt.ended_at).join(Attempt, Attempt.run_id == Run.id)
                    .where(Run.id == run_id, Attempt.number == attempt)).first()
    if row is None:
        return None
    return AttemptState(row.status, row.worker_id, row.queue, row.attempt_status, row.ended_at is not None)


def deaths_in_a_row(s: Session, run_id: str) -> int:
    """The run's latest attempts that ended without an end of their own (crashed, or lost with their worker)."""
    count = 0
    for status in s.scalars(select(Attempt.status).where(Attempt.run_id == run_id, Attempt.ended_at.is_not(None))
                            .order_by(Attempt.number.desc())):
        if status not in DIED:
            break
        count += 1
    return count


@dataclass
class CrashOutcome:
    status: str
    error: str
    requeue_on: str | None  # the queue to send the run's message to again, when it is retried


def record_crash(s: Session, run_id: str, worker_id: str, attempt: int, cause: str, crash_retries: int,
                 tail: list[str] | None = None, retry: bool = True) -> CrashOutcome | None:
    """The training process of a live attempt died without recording an end (`cause` says how). The run is
    re-queued while it has restarts left and has not died more than `crash_retries` times in a row (and `retry`);
    otherwise it fails with the cause (cancelled, if a cancel was asked for). None if the lease is not `worker_id`'s.
    """
    run = s.execute(select(Run.restarts, Run.max_restarts, Run.cancel_requested, Run.queue)
                    .where(Run.id == run_id, Run.worker_id == worker_id, Run.attempt == attempt,
                           Run.status.in_(LIVE))).first()
    if run is None:
        return None
    log_end = "\n--- the end of the run's log ---\n" + "\n".join(tail) if tail else ""
    now = utcnow()
    s.execute(update(Attempt).where(Attempt.run_id == run_id, Attempt.number == attempt, Attempt.ended_at.is_(None))
              .values(status=CRASHED, ended_at=now, error=cause + log_end))
    deaths = deaths_in_a_row(s, run_id)
    verdict = not_again(deaths, crash_retries, run.restarts, run.max_restarts, retry)
    if run.cancel_requested:
        values: dict[str, Any] = {"status": RunStatus.cancelled, "finished_at": now, "error": cause}
    elif verdict is None:
        values = {"status": RunStatus.queued, "restarts": Run.restarts + 1, "worker_id": None,
                  "error": f"{cause}; re-queued: retry {deaths} of {crash_retries} (AMST_CRASH_RETRIES)"}
    else:
        values = {"status": RunStatus.failed, "finished_at": now, "error": f"{cause}; {verdict}{log_end}"}
    s.execute(update(Run).where(Run.id == run_id, Run.worker_id == worker_id, Run.status.in_(LIVE))
              .values(live=None, **values))
    requeue = values["status"] == RunStatus.queued
    return CrashOutcome(values["status"], values["error"], run.queue if requeue else None)


def not_again(deaths: int, crash_retries: int, restarts: int, max_restarts: int, retry: bool = True) -> str | None:
    """Why a run whose attempt just died is not re-queued, or None when it is."""
    if not retry:
        return "not retried: it would end the same way"
    if deaths > crash_retries:
        return f"{deaths} attempts in a row ended so: not retried again (AMST_CRASH_RETRIES={crash_retries})"
    if restarts >= max_restarts:
        return f"no restart left (max_restarts {max_restarts})"
    return None


def request_cancel(s: Session, run: Run) -> Run:
    """A queued run is cancelled at once; a live one is flagged and its worker stops within seconds."""
    if run.status in TERMINAL:
        raise TransitionError(f"run {run.id} is already {run.status}")
    if run.status == RunStatus.queued:
        run.status = RunStatus.cancelled
        run.finished_at = utcnow()
    run.cancel_requested = True
    s.flush()
    return run


def retry(s: Session, run: Run) -> Run:
    """Queue a failed, cancelled or lost run again; its next attempt resumes from the last checkpoint."""
    if run.status not in RETRYABLE:
        raise TransitionError(f"only a failed, cancelled or lost run can be retried; run {run.id} is {run.status}")
    run.status = RunStatus.queued
    run.cancel_requested = False
    run.error = None
    run.finished_at = None
    run.worker_id = None
    s.flush()
    return run


class MessageRefused(Exception):
    """The broker did not take a run's message; the run was put back as it was."""


RETRY_RESTORE = ("status", "cancel_requested", "error", "finished_at", "worker_id")


def retry_and_send(s: Session, run: Run, send: Callable[[str, str], str]) -> Run:
    """POST /runs/{id}/retry: `retry`, committed before its message is sent (a worker must find the row queued).
    When the broker refuses the message the run is put back as it was, so the answer and the state agree:
    MessageRefused, from the broker's error."""
    before = {k: getattr(run, k) for k in RETRY_RESTORE}
    retry(s, run)
    s.commit()
    try:
        task_id = send(run.id, run.queue)
    except Exception as err:
        for k, v in before.items():
            setattr(run, k, v)
        s.commit()
        raise MessageRefused(str(err)) from err
    message_sent(s, run.id, task_id)
    s.commit()
    return run


def discard_unsent(s: Session, run_id: str) -> None:
    """A run just created whose message the broker refused: removed, so the request leaves nothing behind."""
    s.execute(delete(Run).where(Run.id == run_id))


def delete_run(s: Session, run_id: str) -> bool:
    """Delete a run that is not live, with its series, points, tags and attempts (ON DELETE CASCADE). Conditional,
    so a worker that claimed the run a moment ago wins: False then."""
    return s.execute(delete(Run).where(Run.id == run_id, Run.status.not_in(LIVE))).rowcount == 1


@dataclass
class ReapResult:
    requeued: list[tuple[str, str]]  # (run id, queue) to dispatch again
    lost: list[str]  # ended: lost, or failed when its worker died during it too often
    stalled: list[str]


class ReaperClock:
    """When a reaper may judge heartbeats. After it could not reach the database (and when it starts, not knowing
    for how long the database was gone), it waits lost_after_s: the workers could not write their heartbeats
    either, and their runs are not lost, the database was."""

    def __init__(self, lost_after_s: float):
        self.lost_after_s = lost_after_s
        self.unsure_since = time.monotonic()

    @classmethod
    def sure(cls, lost_after_s: float) -> ReaperClock:
        """A clock that judges at once (a reaper that knows the database was up all along: tests)."""
        clock = cls(lost_after_s)
        clock.unsure_since = float("-inf")
        return clock

    def failed(self) -> None:
        self.unsure_since = time.monotonic()

    def may_judge(self) -> bool:
        return time.monotonic() - self.unsure_since > self.lost_after_s


def reap(s: Session, settings: Settings, clock: ReaperClock | None = None) -> ReapResult:
    """Detect runs whose worker died (lost: re-queue while restarts remain, and failed when that happened more
    than AMST_CRASH_RETRIES times in a row) and runs that stopped making progress (stalled). Safe to run from any
    number of processes at once. With a `clock` that is not sure of the heartbeats yet, only stalled runs are
    looked for."""
    now = utcnow()
    result = ReapResult([], [], [])
    if clock is not None and not clock.may_judge():
        result.stalled = mark_stalled(s, settings)
        return result
    dead = s.execute(select(Run.id, Run.queue, Run.restarts, Run.max_restarts, Run.attempt, Run.worker_id,
                            Run.cancel_requested)
                     .where(Run.status.in_(LIVE), Run.heartbeat_at < now - timedelta(seconds=settings.lost_after_s)))
    for row in dead.all():
        deaths = deaths_in_a_row(s, row.id) + 1  # this attempt too
        verdict = not_again(deaths, settings.crash_retries, row.restarts, row.max_restarts)
        requeue = verdict is None and not row.cancel_requested
        stopped = f"worker {row.worker_id} stopped heartbeating" + (
            f" during this run {deaths} times in a row (the run may be what kills it)" if deaths > 1 else "")
        values: dict[str, Any] = (
            {"status": RunStatus.queued, "restarts": Run.restarts + 1, "worker_id": None, "error": stopped}
            if requeue else {"status": RunStatus.cancelled, "finished_at": now, "error": stopped}
            if row.cancel_requested else {"finished_at": now, "error": f"{stopped}; {verdict}",
                                          "status": RunStatus.failed if deaths > settings.crash_retries
                                          else RunStatus.lost}
        )
        won = s.execute(update(Run).where(Run.id == row.id, Run.worker_id == row.worker_id, Run.status.in_(LIVE),
                                          Run.heartbeat_at < now - timedelta(seconds=settings.lost_after_s))
                        .values(**values)).rowcount == 1
        if not won:
            continue
        s.execute(update(Attempt).where(Attempt.run_id == row.id, Attempt.number == row.attempt,
                                        Attempt.ended_at.is_(None))
                  .values(status=RunStatus.lost, ended_at=now, error="worker stopped heartbeating"))
        if requeue:
            result.requeued.append((row.id, row.queue))
        elif not row.cancel_requested:
            result.lost.append(row.id)
    result.stalled = mark_stalled(s, settings)
    return result


def mark_stalled(s: Session, settings: Settings) -> list[str]:
    now = utcnow()
    running = s.execute(select(Run.id, Run.median_epoch_s, Run.last_epoch_at, Run.started_at, Run.progress_at)
                        .where(Run.status == RunStatus.running))
    stalled = []
    for row in running.all():
        # Progress is a finished epoch or a finished batch: a long first epoch that moves is not stalled.
        progress = [t for t in (row.last_epoch_at, row.progress_at) if t is not None]
        since = max(progress) if progress else row.started_at
        limit = max(settings.stalled_min_s, settings.stalled_factor * (row.median_epoch_s or 0.0))
        if since is not None and (now - since).total_seconds() > limit:
            done = s.execute(update(Run).where(Run.id == row.id, Run.status == RunStatus.running)
                             .values(status=RunStatus.stalled)).rowcount
            if done:
                stalled.append(row.id)
    return stalled


def queued_runs_without_lease(s: Session, older_than_s: float) -> list[tuple[str, str]]:
    """Queued runs that have waited long: re-dispatched in case their broker message was lost (not a sweep's runs
    held back until their sweep may run one more: they have no message yet)."""
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    held = Run.sweep_id.is_not(None) & Run.task_id.is_(None)
    rows = s.execute(select(Run.id, Run.queue).where(Run.status == RunStatus.queued, Run.updated_at < cutoff,
                                                     ~held))
    return [(r.id, r.queue) for r in rows.all()]


def register_worker(s: Session, worker_id: str, place: Placement, queues: str, device: str,
                    gpus: Sequence[Mapping[str, Any]]) -> None:
    """A worker's row at its start: where it runs (host, process, Slurm job, pod) and what it has (device, GPUs).
    A worker started again under the same id (AMST_WORKER_ID) replaces what its previous life said: it may be
    back in another job or pod, and it runs nothing yet."""
    now = utcnow()
    values: dict[str, Any] = {
        "hostname": place.hostname, "pid": place.pid, "queues": queues, "device": device,
        "gpus": [dict(g) for g in gpus], "slurm_job_id": place.slurm_job_id, "slurm_job_name": place.slurm_job_name,
        "slurm_partition": place.slurm_partition, "pod_name": place.pod_name, "pod_namespace": place.pod_namespace,
        "started_at": now, "heartbeat_at": now, "stopped_at": None, "current_run_id": None}
    values = {name: fitted(Worker, name, value) for name, value in values.items()}
    worker = s.get(Worker, worker_id)
    if worker is None:
        s.add(Worker(id=worker_id, **values))
    else:
        for name, value in values.items():
            setattr(worker, name, value)


def fitted(model: type, column: str, value: Any) -> Any:
    """A string cut to its column's length: what the environment names (a Slurm job name, a host) may be longer
    than the store keeps, and PostgreSQL refuses an over-long value where SQLite would keep it whole."""
    length = getattr(model.__table__.c[column].type, "length", None)
    return value[:length] if isinstance(value, str) and length else value


def worker_heartbeat(s: Session, worker_id: str, current_run_id: str | None) -> None:
    s.execute(update(Worker).where(Worker.id == worker_id)
              .values(heartbeat_at=utcnow(), current_run_id=current_run_id))


def worker_stopped(s: Session, worker_id: str) -> None:
    s.execute(update(Worker).where(Worker.id == worker_id).values(stopped_at=utcnow(), current_run_id=None))


def queue_position(s: Session, run: Run) -> int | None:
    if run.status != RunStatus.queued:
        return None
    ahead = s.scalar(select(func.count()).select_from(Run).where(
        Run.status == RunStatus.queued, Run.queue == run.queue,
        or_(Run.created_at < run.created_at, (Run.created_at == run.created_at) & (Run.id < run.id))))
    return int(ahead or 0)


__all__ = ["ACTIVE", "LIVE", "RETRYABLE", "TERMINAL"]
