"""Sweeps in the run store: created whole or not at all, their runs released fairly, cancelled together, and
their results read back for the matrix (amst_core.sweeps).

Fairness: a sweep's runs are ordinary queued runs, but only `max_concurrent` of them at a time hold a broker
message (a task); the rest are held back (queued, no task) and released one by one as earlier ones end (by the
reaper-and-release pass, amst_core.store.reaper). So a run submitted on its own never waits behind more than
`max_concurrent` runs of any one sweep, and two sweeps share the workers.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from amst_core.config import NOT_IN_LABELS, RunConfig
from amst_core.store.lifecycle import TransitionError, create_run, new_run_id, request_cancel
from amst_core.store.models import TERMINAL, Run, RunStatus, RunTag, Sweep, utcnow
from amst_core.sweeps import RunResult, SweepRun, find_cell, format_cell, modality_measures

NAME_LIMIT = 200
SERVER_TAG_PREFIX = "sweep:"  # the server's tags: a request may not set them (api.runconfig.check_user_tags)
_NOT_IN_LABELS = re.compile(f"[{NOT_IN_LABELS}]")


def sweep_tag(sweep_id: str) -> str:
    return f"{SERVER_TAG_PREFIX}{sweep_id}"


def run_label(sweep_name: str, cell: Mapping[str, Any]) -> str:
    """A sweep's run is named by its sweep and cell; a grid value may hold what a name may not (a newline)."""
    return _NOT_IN_LABELS.sub(" ", f"{sweep_name} {format_cell(cell)}")[:NAME_LIMIT]


def create_sweep(s: Session, name: str | None, base: Mapping[str, Any], grid: Mapping[str, Any],
                 runs: list[SweepRun], baseline: Mapping[str, Any] | None, max_concurrent: int,
                 idempotency_key: str | None = None, request_hash: str | None = None) -> Sweep:
    """The sweep and every run of it, held back; `runs` come from amst_core.sweeps.expand (validated). The first
    run holds the request's idempotency key (the runs' unique column: one mechanism for both). Each run carries
    the `sweep:<id>` tag, but its config does not: a re-run of that config is a run of its own."""
    if baseline:
        find_cell(list(dict.fromkeys(r.cell_key for r in runs)), baseline)  # SweepError unless one cell
    sweep_id = new_run_id()
    sweep = Sweep(id=sweep_id, name=name or f"sweep-{sweep_id[:8]}", base=dict(base), grid=dict(grid),
                  baseline=dict(baseline) if baseline else None, max_concurrent=max_concurrent, created_at=utcnow())
    s.add(sweep)
    s.flush()
    for i, r in enumerate(runs):
        cfg = RunConfig.model_validate({**r.config.model_dump(mode="json"), "name": run_label(sweep.name, r.cell)})
        run = create_run(s, cfg, *((idempotency_key, request_hash) if i == 0 else (None, None)))
        run.tags.append(RunTag(tag=sweep_tag(sweep_id)))
        run.sweep_id, run.sweep_cell = sweep_id, dict(r.cell)
    s.flush()
    return sweep


def delete_sweep(s: Session, sweep_id: str) -> None:
    """Undo a sweep that could not be queued: its runs (their tags with them) and itself."""
    s.execute(delete(Run).where(Run.sweep_id == sweep_id))
    s.execute(delete(Sweep).where(Sweep.id == sweep_id))


def runs_to_release(s: Session, sweep_id: str | None = None) -> list[tuple[str, str]]:
    """(run id, queue) of held-back runs that may get their task now: per sweep (every sweep, or the one named),
    as many as bring its dispatched, unfinished runs up to its `max_concurrent`, oldest first."""
    held = (Run.sweep_id.is_not(None)) & (Run.status == RunStatus.queued) & Run.task_id.is_(None)
    query = select(Sweep.id, Sweep.max_concurrent).where(Sweep.cancelled_at.is_(None),
                                                         Sweep.id.in_(select(Run.sweep_id).where(held)))
    sweeps = s.execute(query.where(Sweep.id == sweep_id) if sweep_id is not None else query).all()
    out: list[tuple[str, str]] = []
    for sweep_id, limit in sweeps:
        busy = s.scalar(select(func.count()).select_from(Run).where(
            Run.sweep_id == sweep_id, Run.status.not_in(TERMINAL), Run.task_id.is_not(None))) or 0
        if busy >= limit:
            continue
        rows = s.execute(select(Run.id, Run.queue).where(held, Run.sweep_id == sweep_id)
                         .order_by(Run.created_at, Run.id).limit(limit - busy)).all()
        out += [(r.id, r.queue) for r in rows]
    return out


RELEASING = "releasing"  # task_id while a releaser sends the message: no second releaser sends one too


def release_held(s: Session, send: Callable[[str, str], str | None], sweep_id: str | None = None) -> list[str]:
    """Send the message of every held-back run that may start now (`runs_to_release`; of one sweep when named),
    committing as it goes; the reaper passes of the API and of every worker may call it at once: a run
    is marked first, and only the caller whose mark took sends. Returns the released run ids; a send that fails
    un-marks its run and raises (the next call tries again)."""
    sent = []
    for run_id, queue in runs_to_release(s, sweep_id):
        marked = s.execute(update(Run).where(Run.id == run_id, Run.task_id.is_(None))
                           .values(task_id=RELEASING, updated_at=utcnow())).rowcount == 1
        s.commit()
        if not marked:
            continue
        try:
            task_id = send(run_id, queue)
        except Exception:
            s.execute(update(Run).where(Run.id == run_id, Run.task_id == RELEASING).values(task_id=None))
            s.commit()
            raise
        s.execute(update(Run).where(Run.id == run_id).values(task_id=task_id or "sent"))
        s.commit()
        sent.append(run_id)
    return sent


def cancel_sweep(s: Session, sweep: Sweep) -> list[str]:
    """Cancel every run of the sweep not yet ended (queued ones at once, live ones flagged for their worker);
    returns the task ids to revoke."""
    sweep.cancelled_at = sweep.cancelled_at or utcnow()
    tasks = []
    for run in s.scalars(select(Run).where(Run.sweep_id == sweep.id, Run.status.not_in(TERMINAL))
                         .with_for_update()):
        try:
            request_cancel(s, run)
        except TransitionError:
            continue
        if run.task_id:
            tasks.append(run.task_id)
    s.flush()
    return tasks


def get_sweep(s: Session, sweep_id: str, for_update: bool = False) -> Sweep | None:
    query = select(Sweep).where(Sweep.id == sweep_id)
    return s.scalar(query.with_for_update() if for_update else query)


def newest_sweeps(s: Session, limit: int) -> list[Sweep]:
    return list(s.scalars(select(Sweep).order_by(Sweep.created_at.desc(), Sweep.id.desc()).limit(limit)))


def sweep_runs(s: Session, sweep_id: str) -> list[Run]:
    return list(s.scalars(select(Run).where(Run.sweep_id == sweep_id).order_by(Run.created_at, Run.id)))


def progress(runs: list[Run]) -> dict[str, Any]:
    counts = Counter(str(r.status) for r in runs)
    done = sum(counts[str(t)] for t in TERMINAL)
    return {"total": len(runs), "done": done, "succeeded": counts[str(RunStatus.succeeded)],
            "by_status": dict(sorted(counts.items()))}


def status(sweep: Sweep, runs: list[Run]) -> str:
    """queued (nothing started), running, succeeded (every run), finished (all ended, some not succeeded), or
    cancelled."""
    statuses = {str(r.status) for r in runs}
    if statuses <= {str(t) for t in TERMINAL}:
        if sweep.cancelled_at is not None:
            return "cancelled"
        return "succeeded" if statuses <= {str(RunStatus.succeeded)} else "finished"
    if sweep.cancelled_at is not None:
        return "cancelling"
    return "queued" if statuses == {str(RunStatus.queued)} else "running"


def results(runs: list[Run]) -> list[RunResult]:
    """The succeeded runs' measures for the matrix: best val acc, test acc at best, helper and branch test
    accuracy per modality at the best epoch."""
    out = []
    for run in runs:
        if run.status != RunStatus.succeeded or run.sweep_cell is None:
            continue
        measures: dict[str, float | None] = {"best_val_acc": run.best_val_acc, "test_acc_at_best": run.test_acc_at_best}
        measures.update(modality_measures((run.summary or {}).get("test_at_best")))
        out.append(RunResult(dict(run.sweep_cell), measures))
    return out
