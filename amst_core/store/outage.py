"""Waiting out a database outage, said once: how long the run store may stay silent before a caller gives up.

A worker trains on through an outage shorter than AMST_DB_GRACE_S (DESIGN.md section 5: the database is the
source of truth, and a restart of it must cost nothing). Three callers wait so: the metrics sink (its epochs wait
in memory), the worker's one-transaction writes (`worker.runner.with_database`) and the training process's
heartbeat watcher. Each keeps an `Outage` (since when the database has been silent) and either calls
`wait_out` (retry with growing pauses until the grace is spent) or notes failures itself between its own ticks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import InterfaceError, OperationalError

log = logging.getLogger("amst.store")
T = TypeVar("T")

# Failures of the connection, not of the statement: worth waiting out.
OUTAGE = (OperationalError, InterfaceError)
FIRST_PAUSE_S, LONGEST_PAUSE_S = 0.25, 5.0


class DatabaseUnavailable(RuntimeError):
    """The run store has not answered for longer than the caller may wait."""


class Outage:
    """Since when the database has been silent, for one caller. `failed` says it did not answer (and raises
    DatabaseUnavailable once the silence is longer than `grace_s`); `answered` says it did again."""

    def __init__(self, grace_s: float, what: str = "the database"):
        self.grace_s, self.what = grace_s, what
        self.down_since: float | None = None

    @property
    def down_s(self) -> float:
        return 0.0 if self.down_since is None else time.monotonic() - self.down_since

    def failed(self, err: BaseException, detail: str = "") -> float:
        """Note a failed attempt; returns how long the database has been silent. DatabaseUnavailable past the
        grace (`detail` says what waits meanwhile)."""
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
            log.warning("%s: the database is unreachable (%s); waiting up to %.0f s (AMST_DB_GRACE_S)", self.what,
                        type(err).__name__, self.grace_s)
        waited = now - self.down_since
        if waited > self.grace_s:
            raise DatabaseUnavailable(f"the database has been unreachable for {waited:.0f} s{detail}; "
                                      f"AMST_DB_GRACE_S is {self.grace_s:.0f} s") from err
        return waited

    def answered(self) -> float | None:
        """The database answers again; returns how long it was silent, or None if it was not."""
        if self.down_since is None:
            return None
        waited = self.down_s
        self.down_since = None
        log.warning("%s: the database answers again after %.1f s", self.what, waited)
        return waited


def wait_out(action: Callable[[], T], outage: Outage, on_failure: Callable[[BaseException], None] | None = None,
             sleep: Callable[[float], None] = time.sleep) -> T:
    """`action()`, tried again with growing pauses while the database does not answer, until `outage`'s grace
    is spent (DatabaseUnavailable). `on_failure` replaces `outage.failed` where a caller has more to check (the
    sink also bounds the points it holds); it must raise to give up."""
    pause = FIRST_PAUSE_S
    while True:
        try:
            result = action()
        except OUTAGE as err:
            (on_failure or outage.failed)(err)
        else:
            outage.answered()
            return result
        sleep(pause)
        pause = min(pause * 2, LONGEST_PAUSE_S)
