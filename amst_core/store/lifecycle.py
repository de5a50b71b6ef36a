"""Run lifecycle in the database, the source of truth (DESIGN.md section 5).

queued -> starting -> running -> succeeded | failed | cancelled, plus `stalled` (alive, no new epoch for
too long; back to running with the next epoch) and `lost` (no heartbeat for `lost_after_s`; re-queued while
restarts remain). Every transition is a conditional UPDATE, so two workers, a worker and the reaper, or a
duplicate Celery delivery can never both win.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, or_, select, update
from sqlalchemy.orm import Session

from amst_core.config import RunConfig
from amst_core.settings import Settings, queue_for
from amst_core.store.models import ACTIVE, TERMINAL, Attempt, Run, RunStatus, RunTag, Worker, utcnow

RETRYABLE = (RunStatus.failed, RunStatus.cancelled, RunStatus.lost)
LIVE = (RunStatus.starting, RunStatus.running, RunStatus.stalled)


class TransitionError(Exception):
    """The run is not in a state that allows the requested change (HTTP 409)."""


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def create_run(s: Session, cfg: RunConfig, idempotency_key: str | None = None,
               request_hash: str | None = None) -> Run:
    run = Run(
        id=new_run_id(), name=cfg.display_name, status=RunStatus.queued, method=cfg.method,
        dataset=cfg.dataset.name, seed=cfg.seed, config=cfg.model_dump(mode="json"), queue=queue_for(cfg.device),
        idempotency_key=idempotency_key, request_hash=request_hash, max_restarts=cfg.max_restarts,
        epochs_total=cfg.epochs, epochs_done=0, attempt=0, restarts=0, cancel_requested=False,
        created_at=utcnow(),
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


@dataclass
class ReapResult:
    requeued: list[tuple[str, str]]  # (run id, queue) to dispatch again
    lost: list[str]
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
    """Detect runs whose worker died (lost: re-queue while restarts remain) and runs that stopped making
    progress (stalled). Safe to run from any number of processes at once. With a `clock` that is not sure of
    the heartbeats yet, only stalled runs are looked for."""
    now = utcnow()
    result = ReapResult([], [], [])
    if clock is not None and not clock.may_judge():
        result.stalled = mark_stalled(s, settings)
        return result
    dead = s.execute(select(Run.id, Run.queue, Run.restarts, Run.max_restarts, Run.attempt, Run.worker_id,
                            Run.cancel_requested)
                     .where(Run.status.in_(LIVE), Run.heartbeat_at < now - timedelta(seconds=settings.lost_after_s)))
    for row in dead.all():
        requeue = row.restarts < row.max_restarts and not row.cancel_requested
        values: dict[str, Any] = (
            {"status": RunStatus.queued, "restarts": Run.restarts + 1, "worker_id": None} if requeue
            else {"status": RunStatus.cancelled if row.cancel_requested else RunStatus.lost, "finished_at": now}
        )
        won = s.execute(update(Run).where(Run.id == row.id, Run.worker_id == row.worker_id, Run.status.in_(LIVE),
                                          Run.heartbeat_at < now - timedelta(seconds=settings.lost_after_s))
                        .values(error=f"worker {row.worker_id} stopped heartbeating", **values)).rowcount == 1
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


def register_worker(s: Session, worker_id: str, hostname: str, pid: int, queues: str, device: str) -> None:
    worker = s.get(Worker, worker_id)
    now = utcnow()
    if worker is None:
        s.add(Worker(id=worker_id, hostname=hostname, pid=pid, queues=queues, device=device, started_at=now,
                     heartbeat_at=now))
    else:
        worker.heartbeat_at, worker.stopped_at, worker.queues, worker.device = now, None, queues, device


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


__all__ = ["ACTIVE", "TERMINAL"]
