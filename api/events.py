"""Server-sent events for one run: status changes and new epochs' points, polled from the database.

Protocol: every event carries `id: <last epoch sent>` (-1 before any), so a client that reconnects with
`Last-Event-ID` gets only newer epochs. The stream opens with a `status` event; then a `metrics` event (the JSON
shape of GET /runs/{id}/metrics) for each batch of new epochs, and a `status` event when the status, progress or
heartbeat changes; `: keep-alive` comments when idle. When the run ends: its last metrics, a final `status`, and
`end`. If an attempt resumes from an earlier checkpoint, metrics restart from there: clients replace points
by epoch.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from amst_core.store import lifecycle, queries
from amst_core.store.models import TERMINAL, Run, utcnow
from api.schemas import MetricsOut, RunDetail

StateKey = tuple[Any, ...]  # status, epochs_done, heartbeat_at, cancel_requested, attempt
ATTEMPT = 4


def sse(event: str, data: BaseModel | dict[str, Any], event_id: int, retry_ms: int | None = None) -> str:
    payload = data.model_dump_json() if isinstance(data, BaseModel) else json.dumps(data)
    head = f"retry: {retry_ms}\n" if retry_ms is not None else ""
    return f"{head}event: {event}\nid: {event_id}\ndata: {payload}\n\n"


@dataclass
class Poll:
    gone: bool = False
    state: StateKey = ()
    terminal: bool = False
    through_epoch: int = -1  # the client has every epoch up to this one after this poll's events
    metrics: MetricsOut | None = None  # None when no new epoch, or none of the filtered series has points in it
    detail: RunDetail | None = None


class RunEvents:
    def __init__(self, sessions: Callable[[], Session], detail: Callable[[Session, Run], RunDetail],
                 run_id: str, filters: queries.SeriesFilters, since_epoch: int, poll_s: float, keepalive_s: float):
        self.sessions = sessions
        self.detail = detail
        self.run_id = run_id
        self.filters = filters
        self.sent_epoch = since_epoch
        self.poll_s = poll_s
        self.keepalive_s = keepalive_s
        self.rewind_attempt: int | None = None  # an attempt whose rewritten epochs are still to be sent

    def poll(self, last_state: StateKey | None) -> Poll:
        """One look at the run (in a worker thread): a cheap row of state, then points and detail only if new."""
        with self.sessions() as s:
            row = s.execute(select(Run.status, Run.epochs_done, Run.heartbeat_at, Run.cancel_requested,
                                   Run.attempt).where(Run.id == self.run_id)).first()
            if row is None:
                return Poll(gone=True)
            out = Poll(state=tuple(row), terminal=row.status in TERMINAL)
            after = min(self.sent_epoch, row.epochs_done - 1)
            if last_state is not None and last_state[ATTEMPT] != row.attempt:
                self.rewind_attempt = row.attempt
            if self.rewind_attempt == row.attempt:
                after, rewritten = self.rewind(s, row.attempt, after)
                if not rewritten and not out.terminal:  # hold back: those epochs are about to be replaced
                    out.through_epoch = after
                    return self.with_detail(s, out, last_state)
            out.through_epoch = max(after, row.epochs_done - 1)
            if out.through_epoch > after:
                series = queries.series_points(s, self.run_id, self.filters, after, row.epochs_done)
                run = queries.get_run(s, self.run_id) if series else None
                if run is not None:
                    out.metrics = MetricsOut.build(run, utcnow(), series, after, lifecycle.superseded_from(s, run))
            return self.with_detail(s, out, last_state)

    def rewind(self, s: Session, attempt: int, after: int) -> tuple[int, bool]:
        """An attempt that resumed from an earlier checkpoint supersedes the epochs after it (the store decides
        which: lifecycle.resumed): send them again, but only once it has written one (before that, the old
        attempt's points are still there, or already gone)."""
        resumed = lifecycle.resumed(s, self.run_id, attempt)
        if resumed is None:  # the run has no such attempt (deleted meanwhile)
            return min(after, -1), False
        if resumed.rewritten:
            self.rewind_attempt = None
        return min(after, resumed.from_epoch - 1), resumed.rewritten

    def with_detail(self, s: Session, out: Poll, last_state: StateKey | None) -> Poll:
        if out.state != last_state or out.terminal:
            run = queries.get_run(s, self.run_id)
            if run is None:
                return Poll(gone=True)
            out.detail = self.detail(s, run)
        return out

    async def stream(self) -> AsyncIterator[str]:
        state: StateKey | None = None
        last_write = time.monotonic()
        while True:
            poll = await asyncio.to_thread(self.poll, state)
            if poll.gone:
                yield sse("end", {"reason": "deleted"}, self.sent_epoch)
                return
            chunks: list[str] = []
            if state is None and poll.detail is not None:  # the stream always opens with the run's status
                chunks.append(sse("status", poll.detail, self.sent_epoch, retry_ms=2000))
            self.sent_epoch = poll.through_epoch
            if poll.metrics is not None:
                chunks.append(sse("metrics", poll.metrics, self.sent_epoch))
            # Later status changes follow the metrics; so does the final status of a run that ended.
            if poll.detail is not None and (state is not None or (poll.terminal and poll.metrics is not None)):
                chunks.append(sse("status", poll.detail, self.sent_epoch))
            if poll.terminal:
                yield "".join(chunks) + sse("end", {"reason": str(poll.state[0])}, self.sent_epoch)
                return
            state = poll.state
            if not chunks and time.monotonic() - last_write >= self.keepalive_s:
                chunks.append(": keep-alive\n\n")
            if chunks:
                last_write = time.monotonic()
                yield "".join(chunks)
            await asyncio.sleep(self.poll_s)
