"""A run's own log (amst_core.runlog): a worker's training process (worker.attempt.AttemptRunner) writes what it
and the engine log for a run to <run folder>/logs/output.log, one header per attempt, nothing from other threads,
and never more than the cap. The attempt runs in-process here, on a tiny synthetic run (SQLite store: the log is a
file, nothing in it differs by backend); then in a real worker."""

from __future__ import annotations

import errno
import logging
import re
import threading
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from amst_core import runlog
from amst_core.runlog import RunLogHandler, log_path
from amst_core.store import lifecycle
from amst_core.store.models import Run, RunStatus
from tests.kit.db import tx
from tests.kit.svc import Service, tiny_run, wait_until
from tests.kit.tiny import tiny_config
from worker.attempt import AttemptRunner
from worker.settings import WorkerSettings

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the log does not differ by backend
HEADER = re.compile(r"^--- attempt (\d+) on worker (\S+) \((.+)\) at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC ---$")


class InProcess:
    """A worker's side (claim) and its training process's (AttemptRunner) in this process."""

    def __init__(self, db_url: str, tmp_path: Path):
        self.settings = WorkerSettings(DATABASE_URL=db_url, AMST_ARTIFACTS=str(tmp_path / "artifacts"))
        self.runner = AttemptRunner(self.settings, "w-test", "cpu")

    def execute(self, run_id: str) -> str | None:
        with tx(self.settings.db_url) as s:
            attempt = lifecycle.claim(s, run_id, "w-test", "cpu")
        return self.runner.run(run_id, attempt)


def executor(db_url: str, tmp_path: Path) -> InProcess:
    return InProcess(db_url, tmp_path)


def new_run(db_url: str, **fields) -> str:
    with tx(db_url) as s:
        return lifecycle.create_run(s, tiny_config(**fields)).id


class Chatter(threading.Thread):
    """Another thread of the same process, logging on the same loggers for as long as the test runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.done = threading.Event()
        self.lines = 0

    def run(self) -> None:
        while not self.done.wait(0.005):
            logging.getLogger("amst.worker").info("chatter from another thread")
            logging.getLogger("amst.engine").warning("chatter from another thread")
            self.lines += 1


@sqlite_only
def test_an_executed_run_logs_its_attempts_epochs_and_nothing_else(db_url: str, tmp_path: Path) -> None:
    ex = executor(db_url, tmp_path)
    run_id = new_run(db_url, epochs=2)
    chatter = Chatter()
    chatter.start()
    try:
        assert ex.execute(run_id) == RunStatus.succeeded
        with tx(db_url) as s:  # a second attempt (as after a failure): appended, resumes after the last epoch
            s.execute(update(Run).where(Run.id == run_id).values(status=RunStatus.failed))
            lifecycle.retry(s, s.get(Run, run_id))
        assert ex.execute(run_id) == RunStatus.succeeded
    finally:
        chatter.done.set()
        chatter.join()
    assert chatter.lines > 0
    text = log_path(ex.settings.run_dir(run_id)).read_text()
    lines = text.splitlines()
    assert "chatter" not in text
    headers = [HEADER.match(line) for line in lines if line.startswith("--- ")]
    assert [(h[1], h[2], h[3]) for h in headers if h] == [("1", "w-test", "cpu"), ("2", "w-test", "cpu")]
    assert all(LINE.match(line) or HEADER.match(line) for line in lines), text
    first = text.split("--- attempt 2")[0]
    assert f"amst.worker: run {run_id} attempt 1 starts on w-test" in first
    epochs = [line for line in first.splitlines() if "amst.engine: epoch " in line]
    assert len(epochs) == 2 and "epoch 1/2" in epochs[0] and "epoch 2/2" in epochs[1]
    assert re.search(r"train acc [\d.]+ loss [\d.]+  val acc [\d.]+ \(audio [\d.]+ · visual [\d.]+\) loss [\d.]+",
                     epochs[0]), epochs[0]
    assert f"run {run_id} attempt 1 ended: succeeded" in first
    second = text.split("--- attempt 2")[1]
    assert "amst.engine: resuming from the checkpoint of epoch 2/2" in second
    assert f"run {run_id} attempt 2 ended: succeeded" in second
    assert logging.getLogger("amst").handlers == []  # detached after each attempt


def test_the_api_serves_the_log_a_worker_process_wrote(stack: Service) -> None:
    """End to end: the worker's run folder is the API's (AMST_ARTIFACTS), and a dashboard can follow the log."""
    service = stack
    run_id = httpx.post(f"{service.url}/runs", json=tiny_run(), timeout=10).json()["id"]
    seen, offset = "", 0

    def ended() -> bool:
        nonlocal seen, offset
        body = httpx.get(f"{service.url}/runs/{run_id}/logs", params={"offset": offset}, timeout=5).json()
        seen, offset = seen + body["text"], body["next_offset"]
        return "attempt 1 ended" in seen

    wait_until(ended, 240, interval=0.5, message="the run's log says it ended")
    assert seen.startswith("--- attempt 1 on worker ")
    assert "INFO amst.engine: epoch 2/2  train acc" in seen
    tail = httpx.get(f"{service.url}/runs/{run_id}/logs", params={"tail_bytes": 200}, timeout=5).json()
    assert tail["truncated"] and tail["text"].endswith(f"run {run_id} attempt 1 ended: succeeded\n")


@sqlite_only
def test_a_failure_leaves_its_traceback_in_the_runs_log(db_url: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args, **_kwargs):
        raise RuntimeError("the data loader fell over")

    monkeypatch.setattr("amst_core.execute.execute_run", broken)
    ex = executor(db_url, tmp_path)
    run_id = new_run(db_url)
    assert ex.execute(run_id) == RunStatus.failed
    text = log_path(ex.settings.run_dir(run_id)).read_text()
    assert f"ERROR amst.worker: run {run_id} failed\nTraceback (most recent call last):" in text
    assert "RuntimeError: the data loader fell over" in text
    assert f"run {run_id} attempt 1 ended: failed" in text


def test_the_log_stops_at_its_cap_with_a_last_line_saying_so(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "output.log"
    handler = RunLogHandler(path, max_bytes=2000)
    runlog.attach(handler)
    try:
        for i in range(200):
            logging.getLogger("amst.engine").info("line %d of a chatty run", i)
    finally:
        runlog.detach(handler)
    data = path.read_bytes()
    assert len(data) <= 2000
    assert data.decode().splitlines()[-1] == "--- log truncated: it reached 2000 bytes ---"
    again = RunLogHandler(path, max_bytes=2000)  # a later attempt writes nothing more, not even a header
    again.header(2, "w", "cpu")
    again.close()
    assert path.read_bytes() == data


def test_a_full_disk_silences_the_log_not_the_run(tmp_path: Path) -> None:
    handler = RunLogHandler(tmp_path / "output.log")

    def no_space(_data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    handler.file.write = no_space  # type: ignore[method-assign]
    runlog.attach(handler)
    try:
        handler.header(1, "w", "cpu")
        logging.getLogger("amst.engine").info("epoch 1/2")  # no exception reaches the caller
    finally:
        runlog.detach(handler)
    assert handler.full


def test_the_handler_takes_only_its_threads_and_restores_the_levels(tmp_path: Path) -> None:
    engine = logging.getLogger("amst.engine")
    before = logging.getLogger("amst").level
    handler = RunLogHandler(tmp_path / "output.log")
    runlog.attach(handler)
    try:
        assert engine.isEnabledFor(logging.INFO)
        other = threading.Thread(target=lambda: engine.info("not mine"))
        other.start()
        other.join()
        engine.info("mine")
    finally:
        runlog.detach(handler)
    text = (tmp_path / "output.log").read_text()
    assert "mine" in text and "not mine" not in text
    assert logging.getLogger("amst").level == before
