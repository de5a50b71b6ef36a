"""A sweep's runs in the store: held back, released at most `max_concurrent` at a time as earlier ones end, never
re-dispatched by the reaper while held, cancelled together (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from amst_core.store import lifecycle
from amst_core.store import sweeps as store
from amst_core.store.db import get_engine
from amst_core.store.models import Run, RunStatus
from amst_core.sweeps import expand
from tests.kit.db import tx
from tests.kit.tiny import tiny_config

BASE = tiny_config().model_dump(mode="json")


def new_sweep(url: str, seeds: int, limit: int) -> str:
    with tx(url) as s:
        runs = expand(BASE, {"seed": list(range(seeds))})
        return store.create_sweep(s, "s", BASE, {"seed": list(range(seeds))}, runs, None, limit).id


def session(url: str) -> Session:
    """A plain session: release_held commits as it goes."""
    return Session(get_engine(url), expire_on_commit=False)


def release(url: str) -> list[str]:
    with tx(url) as s:
        ids = [run_id for run_id, _ in store.runs_to_release(s)]
        for run_id in ids:
            s.execute(update(Run).where(Run.id == run_id).values(task_id=f"task-{run_id}"))
        return ids


def set_status(url: str, run_id: str, status: RunStatus) -> None:
    with tx(url) as s:
        s.execute(update(Run).where(Run.id == run_id).values(status=status))


def test_runs_are_released_up_to_the_limit_as_earlier_ones_end(url: str) -> None:
    sweep_id = new_sweep(url, seeds=5, limit=2)
    other = new_sweep(url, seeds=1, limit=2)
    first = release(url)
    assert len(first) == 3  # two of the first sweep, the other sweep's one: sweeps do not wait for each other
    assert release(url) == []
    with tx(url) as s:
        runs = store.sweep_runs(s, sweep_id)
        assert [r.sweep_cell for r in runs] == [{"seed": i} for i in range(5)]
        assert all(f"sweep:{sweep_id}" in r.tag_names for r in runs)
        # the reaper re-sends lost messages of queued runs, never those of held-back ones (they have none)
        lost = {run_id for run_id, _ in lifecycle.queued_runs_without_lease(s, older_than_s=-1)}
        assert lost == {r.id for r in runs if r.task_id} | {r.id for r in store.sweep_runs(s, other)}
    set_status(url, runs[0].id, RunStatus.running)
    assert release(url) == []  # running still counts
    set_status(url, runs[0].id, RunStatus.succeeded)
    assert release(url) == [runs[2].id]  # the oldest held one


def test_cancelling_a_sweep_cancels_its_queued_and_flags_its_live_runs(url: str) -> None:
    sweep_id = new_sweep(url, seeds=3, limit=1)
    (released,) = release(url)
    set_status(url, released, RunStatus.running)
    with tx(url) as s:
        sweep = s.get(store.Sweep, sweep_id)
        assert store.cancel_sweep(s, sweep) == [f"task-{released}"]
    with tx(url) as s:
        runs = store.sweep_runs(s, sweep_id)
        assert {r.id: (r.status, r.cancel_requested) for r in runs} == {
            r.id: ((RunStatus.running, True) if r.id == released else (RunStatus.cancelled, True)) for r in runs}
        assert store.status(s.get(store.Sweep, sweep_id), runs) == "cancelling"
    assert release(url) == []  # a cancelled sweep releases nothing


def test_release_held_sends_each_run_once_even_with_two_releasers(url: str) -> None:
    sweep_id = new_sweep(url, seeds=3, limit=2)
    sent: list[str] = []

    def other_send(run_id: str, queue: str) -> str:
        sent.append(run_id)
        return f"task-{run_id}"

    def send(run_id: str, queue: str) -> str:
        sent.append(run_id)
        if len(sent) == 1:  # a second releaser (the API's reaper) runs meanwhile
            with session(url) as other:
                store.release_held(other, other_send)
        return f"task-{run_id}"

    with session(url) as s:
        store.release_held(s, send)
    assert len(sent) == 2 and len(set(sent)) == 2  # up to the limit, and no run sent twice
    with tx(url) as s:
        assert sorted(r.task_id for r in store.sweep_runs(s, sweep_id) if r.task_id) == sorted(f"task-{i}"
                                                                                              for i in sent)

    def broken(run_id: str, queue: str) -> str:
        raise ConnectionError("broker down")

    set_status(url, sent[0], RunStatus.succeeded)
    with session(url) as s, pytest.raises(ConnectionError):
        store.release_held(s, broken)
    with tx(url) as s:  # the failed send left the run held, for the next pass
        assert [r.task_id for r in store.sweep_runs(s, sweep_id)][2] is None
