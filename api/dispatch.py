"""Run messages, sent and revoked here alone: by the API (submit, retry, cancel, the reaper) and by a worker
process (`amst serve worker`: a run it hands back or re-queues, the reaper). No worker code here.

The database is the source of truth (DESIGN.md section 5): a message only says "run <id> may start"; the worker
takes a lease on the run row. So a lost message is re-sent by the reaper, and a duplicate one is harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cached_property
from typing import Protocol

from celery import Celery
from kombu import Connection
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from amst_core.settings import Settings
from amst_core.store.lifecycle import TASK_NAME
from api.errors import ApiError

log = logging.getLogger("amst.api")
PING_TIMEOUT_S = 1.5


class RunDispatcher(Protocol):
    def send(self, run_id: str, queue: str) -> str:
        """Queue the run on `queue`; returns the task id. Raises when the broker cannot take the message."""

    def revoke(self, task_id: str) -> None: ...

    def ping(self) -> None:
        """Raise unless the broker answers within a second or two."""


def queue_or_undo(s: Session, send: Callable[[], object], undo: Callable[[], object], what: str) -> None:
    """Send what a request stored (after its commit: a worker must find the row), or, when the broker refuses,
    undo it and answer 503: a request the broker cannot take leaves nothing behind (POST /runs, POST /sweeps)."""
    try:
        send()
    except Exception as err:
        undo()
        s.commit()
        log.error("could not queue the %s: %s", what, err)
        raise ApiError(503, f"could not queue the {what}: {err}") from None
    s.commit()


class Dispatcher:
    """Celery's send_task and revoke of the run message (TASK_NAME), on a client app of its own."""

    def __init__(self, settings: Settings):
        self.broker = settings.celery_broker

    @cached_property
    def celery(self) -> Celery:
        # Created on first use: building the app object is cheap, but nothing should touch the broker before a
        # run is actually submitted (tests and /health never do).
        app = Celery("amst-api", broker=self.broker, set_as_current=False)
        app.conf.update(task_serializer="json", accept_content=["json"], broker_connection_retry_on_startup=False)
        return app

    def send(self, run_id: str, queue: str) -> str:
        try:
            return self.celery.send_task(TASK_NAME, args=[run_id], queue=queue).id
        except Exception as err:
            # A connection that broke under us (kombu's SQL transport can hand out a closed channel when another
            # process sets up the broker's tables at the same moment): one fresh app, one more try; a broker that
            # is really down fails again and the caller answers 503.
            log.warning("sending run %s failed (%s: %s); retrying once on a new connection", run_id,
                        type(err).__name__, err)
            self.__dict__.pop("celery", None)
            return self.celery.send_task(TASK_NAME, args=[run_id], queue=queue).id

    def revoke(self, task_id: str) -> None:
        self.celery.control.revoke(task_id)

    def ping(self) -> None:
        if self.broker.startswith("sqla+"):  # kombu's SQL transport connects lazily: ask its database
            engine = create_engine(self.broker.removeprefix("sqla+"))
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
            finally:
                engine.dispose()
            return
        with Connection(self.broker, connect_timeout=PING_TIMEOUT_S) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=PING_TIMEOUT_S)


__all__ = ["TASK_NAME", "Dispatcher", "RunDispatcher", "queue_or_undo"]
