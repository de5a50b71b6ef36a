"""The one wait through a database outage (amst_core.store.outage): the metrics sink, the worker's transactions
and the heartbeat watcher all give up after the same grace, and go on as soon as the database answers."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import InterfaceError, OperationalError

from amst_core.store import outage as outage_module
from amst_core.store.outage import DatabaseUnavailable, Outage, wait_out


def dropped() -> OperationalError:
    return OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


class Clock:
    """time.monotonic and time.sleep of the module, moved by hand: no test sleeps."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.now = 1000.0
        self.pauses: list[float] = []
        monkeypatch.setattr(outage_module.time, "monotonic", lambda: self.now)

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def failing(times: int, error: Exception | None = None):
    calls = {"n": 0}

    def action() -> str:
        calls["n"] += 1
        if calls["n"] <= times:
            raise error or dropped()
        return "done"

    return action, calls


def test_wait_out_retries_with_growing_pauses_until_the_database_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(monkeypatch)
    action, calls = failing(5)
    outage = Outage(grace_s=60)
    assert wait_out(action, outage, sleep=clock.sleep) == "done"
    assert calls["n"] == 6 and clock.pauses == [0.25, 0.5, 1.0, 2.0, 4.0]
    assert outage.down_since is None, "an answer ends the outage"


def test_wait_out_gives_up_after_the_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(monkeypatch)
    action, _ = failing(1000, InterfaceError("SELECT 1", {}, OSError("gone")))
    with pytest.raises(DatabaseUnavailable, match="AMST_DB_GRACE_S is 10 s"):
        wait_out(action, Outage(grace_s=10), sleep=clock.sleep)
    assert 10 < sum(clock.pauses) <= 10 + 5.0, "the pauses grow to at most 5 s and stop past the grace"
    assert max(clock.pauses) == 5.0


def test_an_error_of_the_statement_is_not_waited_out(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(monkeypatch)
    action, calls = failing(1, ValueError("a bug"))
    with pytest.raises(ValueError):
        wait_out(action, Outage(grace_s=60), sleep=clock.sleep)
    assert calls["n"] == 1 and clock.pauses == []


def test_an_outage_counts_from_its_first_failure_and_the_caller_may_check_more(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What the heartbeat watcher does between its own ticks, and the sink's extra bound (points held)."""
    clock = Clock(monkeypatch)
    outage = Outage(grace_s=5)
    assert outage.failed(dropped()) == 0.0
    clock.now += 4
    assert outage.failed(dropped()) == 4.0
    clock.now += 2
    with pytest.raises(DatabaseUnavailable, match="6 s; training waits"):
        outage.failed(dropped(), "; training waits")
    assert outage.answered() == 6.0 and outage.answered() is None

    def too_many(err: BaseException) -> None:
        raise DatabaseUnavailable("too many points held") from err

    action, calls = failing(3)
    with pytest.raises(DatabaseUnavailable, match="too many"):
        wait_out(action, Outage(grace_s=60), too_many, sleep=clock.sleep)
    assert calls["n"] == 1
