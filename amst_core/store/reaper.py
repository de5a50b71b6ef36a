"""The reaper and the sweep release, in one pass that any number of processes may run at once.

Who calls it, and why both: the API's periodic task (api.main, every AMST_REAPER_S) and every worker's maintenance
thread (worker.runner, every tick and right after one of its runs ends). A deployment may have a worker but no
API for a while (an API restart, `amst serve worker` alone on a cluster node) or an API whose workers all died:
lost runs must be re-queued, and a sweep's held-back runs released, in either case. Every step is a conditional
write (lifecycle.reap's, sweeps.release_held's mark), so two callers never both re-queue or release a run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.orm import Session

from amst_core.settings import Settings
from amst_core.store import lifecycle, queries, sweeps
from amst_core.store.models import utcnow

log = logging.getLogger("amst.store")
Send = Callable[[str, str], str]  # (run id, queue) -> task id: api.dispatch.Dispatcher.send


@dataclass
class ReaperPass:
    resent: list[str] = field(default_factory=list)  # messages sent again: re-queued runs, lost messages
    released: list[str] = field(default_factory=list)  # a sweep's held-back runs, given their message
    lost: list[str] = field(default_factory=list)  # ended: lost, or failed (lifecycle.reap)
    stalled: list[str] = field(default_factory=list)


def reap_and_release(s: Session, settings: Settings, send: Send,
                     clock: lifecycle.ReaperClock | None = None) -> ReaperPass:
    """Lost and stalled runs (lifecycle.reap), then the messages to send: runs re-queued after their worker was
    lost, runs queued for long on a queue whose live worker sits idle (their message was lost), and a sweep's
    held-back runs that may start now. Commits as it goes; a message the broker refuses is tried at the next
    pass."""
    reaped = lifecycle.reap(s, settings, clock)
    waiting = lifecycle.queued_runs_without_lease(s, older_than_s=max(60.0, 6 * settings.reaper_s))
    idle = queries.idle_queues(s, utcnow() - timedelta(seconds=settings.lost_after_s))
    s.commit()
    for run_id in reaped.lost:
        log.warning("run %s lost its worker and has no restart left", run_id)
    out = ReaperPass(lost=reaped.lost, stalled=reaped.stalled, released=release_sweeps(s, send))
    again = dict.fromkeys(reaped.requeued + [(run_id, queue) for run_id, queue in waiting if queue in idle])
    for run_id, queue in again:
        if resend(s, send, run_id, queue):
            out.resent.append(run_id)
    return out


def release_sweeps(s: Session, send: Send) -> list[str]:
    try:
        return sweeps.release_held(s, send)
    except Exception as err:  # the broker is down: the next pass tries again
        s.rollback()
        log.error("could not release a sweep's runs: %s", err)
        return []


def resend(s: Session, send: Send, run_id: str, queue: str) -> bool:
    try:
        task_id = send(run_id, queue)
    except Exception as err:  # the broker is down: the next pass tries again
        log.error("could not re-dispatch run %s: %s", run_id, err)
        return False
    lifecycle.message_sent(s, run_id, task_id)
    s.commit()
    log.info("run %s dispatched again on %s", run_id, queue)
    return True
