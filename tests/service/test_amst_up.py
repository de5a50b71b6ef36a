"""`amst up`, the embedded default, as a user starts it: in an empty folder, with nothing configured.

It must create .amst/ there (SQLite run store and broker), serve the API, train a run, and on SIGINT (Ctrl-C) or
SIGTERM stop its children and exit 0, leaving no process behind. Its children run in sessions of their own, so
the check follows the process tree recorded while it ran, not only `amst up`'s own process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.kit.procs import leftovers
from tests.kit.svc import CRASH_AT_THE_FIRST_BATCH, tiny_run, wait_until
from tests.kit.up import TERMINAL, Up, child_of, start_up

EXIT_WITHIN_S = 40  # supervise() gives its children 20 s to stop before it kills them


# ---- `amst up` in an empty folder ----------------------------------------------------------------------------------


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    with start_up(tmp_path) as server:
        yield server


def train_one(up: Up) -> str:
    resp = httpx.post(f"{up.url}/runs", json=tiny_run(method="naive", epochs=1), timeout=10)
    assert resp.status_code == 201, resp.text
    run_id = resp.json()["id"]
    up.record_tree()
    wait_until(lambda: up.get(f"/runs/{run_id}")["status"] in TERMINAL, 240, message="the run to end")
    run = up.get(f"/runs/{run_id}")
    assert run["status"] == "succeeded", up.logs()
    assert run["epochs_done"] == 1 and run["best_val_acc"] is not None
    series = up.get(f"/runs/{run_id}/metrics")["series"]
    assert {(s["split"], s["component"], s["name"]) for s in series} >= {("val", "fused", "acc"),
                                                                         ("train", "fused", "loss")}
    assert all(s["epochs"] == [0] for s in series if s["split"] == "val")
    return run_id


def stop_and_check(up: Up, sig: int) -> None:
    up.record_tree()
    assert len([p for p in up.tree if p.ppid == up.proc.pid]) >= 2, "amst up has children (API, worker)"
    assert len(leftovers(up.proc.pid, up.tree)) >= 3, "the check sees amst up and its children while they run"
    asked = time.monotonic()
    os.kill(up.proc.pid, sig)  # to `amst up` only, as a supervisor or a terminal would
    try:
        code = up.proc.wait(timeout=EXIT_WITHIN_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"amst up still running {EXIT_WITHIN_S} s after {signal.Signals(sig).name}:\n{up.logs()}")
    print(f"\namst up exited {time.monotonic() - asked:.1f} s after {signal.Signals(sig).name}")
    assert code == 0, up.logs()
    # Its children were waited for; allow a moment for anything they left to be reaped before looking.
    with contextlib.suppress(AssertionError):
        wait_until(lambda: not leftovers(up.proc.pid, up.tree), 5, message="no process left")
    left = leftovers(up.proc.pid, up.tree)
    assert not left, "left behind:\n" + "\n".join(p.describe() for p in left)
    with pytest.raises(ProcessLookupError):
        os.killpg(up.proc.pid, 0)
    assert (up.cwd / ".amst" / "amst.db").is_file()
    assert (up.cwd / ".amst" / "broker.db").is_file()


def test_amst_up_trains_a_run_and_stops_cleanly_on_sigint(up: Up) -> None:
    train_one(up)
    stop_and_check(up, signal.SIGINT)


def test_amst_up_stops_cleanly_on_sigterm_and_hands_a_running_run_back(up: Up) -> None:
    train_one(up)
    resp = httpx.post(f"{up.url}/runs", json=tiny_run(method="naive", epochs=500), timeout=10)
    assert resp.status_code == 201, resp.text
    long_id = resp.json()["id"]
    wait_until(lambda: up.get(f"/runs/{long_id}")["epochs_done"] >= 1, 240, message="the long run's first epoch")
    stop_and_check(up, signal.SIGTERM)
    with contextlib.closing(sqlite3.connect(up.cwd / ".amst" / "amst.db")) as db:
        status, worker = db.execute("SELECT status, worker_id FROM runs WHERE id = ?", (long_id,)).fetchone()
        attempts = db.execute("SELECT status FROM attempts WHERE run_id = ?", (long_id,)).fetchall()
    assert (status, worker) == ("queued", None), "the stopping worker hands its run back to the queue"
    assert attempts == [("interrupted",)]


# ---- supervision: a child that dies is started again ----------------------------------------------------------------


def test_amst_up_restarts_a_killed_worker_and_api_and_the_run_goes_on(up: Up) -> None:
    resp = httpx.post(f"{up.url}/runs", json=tiny_run(method="naive", epochs=6), timeout=10)
    assert resp.status_code == 201, resp.text
    run_id = resp.json()["id"]
    wait_until(lambda: up.get(f"/runs/{run_id}")["epochs_done"] >= 2, 240, message="two epochs")
    os.killpg(child_of(up, "worker").pid, signal.SIGKILL)  # as the out-of-memory killer would
    wait_until(lambda: "worker exited (killed by SIGKILL" in up.log.read_text(), 20, message="the message")
    wait_until(lambda: "worker restarted" in up.log.read_text(), 20, message="the worker to be restarted")

    api = child_of(up, "api")
    os.killpg(api.pid, signal.SIGKILL)
    wait_until(lambda: "api restarted" in up.log.read_text(), 20, message="the API to be restarted")

    def answers() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{up.url}/health", timeout=2).status_code == 200
        return False

    wait_until(answers, 60, message="the restarted API to answer")
    wait_until(lambda: up.get(f"/runs/{run_id}")["status"] in TERMINAL, 300, message="the resumed run to end")
    run = up.get(f"/runs/{run_id}")
    assert run["status"] == "succeeded" and run["attempt"] == 2, up.logs()
    assert run["attempts"][1]["start_epoch"] >= 2, "the new worker resumed from the checkpoint"
    series = up.get(f"/runs/{run_id}/metrics?split=val&name=acc")["series"]
    assert series and all(s["epochs"] == list(range(6)) for s in series)
    assert up.proc.poll() is None, "amst up itself never stopped"
    stop_and_check(up, signal.SIGINT)  # Ctrl-C still stops everything, restarted children included


HEALTHY = [sys.executable, "-c", "import time; time.sleep(60)"]
BROKEN = [sys.executable, "-c", "import sys; print('address already in use'); sys.exit(3)"]


def test_an_api_that_keeps_dying_at_start_ends_amst_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from launch import supervisor as serve
    from launch import up

    monkeypatch.setattr(serve, "BACKOFF_FIRST_S", 0.05)
    code = up.supervise({"api": BROKEN, "worker": HEALTHY}, {**os.environ, "AMST_HOME": str(tmp_path)})
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("api exited (exit code 3)") == serve.CRASH_LOOP - 1
    assert "api keeps failing at start" in err and "address already in use" in err


def test_a_worker_that_keeps_dying_never_ends_amst_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Whatever kills it (its runs, a broker that is down), the worker is started again, every BACKOFF_MAX_S at
    most, and the API is never stopped."""
    from launch import supervisor as serve
    from launch import up

    monkeypatch.setattr(serve, "BACKOFF_FIRST_S", 0.01)
    monkeypatch.setattr(serve, "BACKOFF_MAX_S", 0.05)
    started: list[str] = []
    real_start = serve.start

    def start(child: serve.Child, env: dict, logs: Path) -> None:
        started.append(child.name)
        if started.count("worker") > 2 * serve.CRASH_LOOP:  # enough: Ctrl-C
            os.kill(os.getpid(), signal.SIGINT)
        real_start(child, env, logs)

    monkeypatch.setattr(serve, "start", start)
    code = up.supervise({"api": HEALTHY, "worker": BROKEN}, {**os.environ, "AMST_HOME": str(tmp_path)})
    err = capsys.readouterr().err
    assert code == 0, err
    assert started.count("api") == 1, "the API was never stopped"
    assert err.count("worker exited (exit code 3)") >= 2 * serve.CRASH_LOOP
    assert err.count("worker keeps failing at start") == 1 and "address already in use" in err
    assert "the API keeps serving" in err


def test_seven_runs_that_crash_their_training_process_stop_neither_amst_up_nor_its_api(tmp_path: Path) -> None:
    """Finding B of issue 21: each run's native crash used to kill the worker; five quick deaths in a row stopped
    `amst up` and the API with it."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(CRASH_AT_THE_FIRST_BATCH)
    with start_up(tmp_path, PYTHONPATH=str(hook), AMST_CRASH_RETRIES="0") as server:
        ids = []
        for _ in range(7):
            resp = httpx.post(f"{server.url}/runs", json=tiny_run(name="segfaults", epochs=1), timeout=10)
            assert resp.status_code == 201, resp.text
            ids.append(resp.json()["id"])
        for run_id in ids:
            wait_until(lambda r=run_id: server.get(f"/runs/{r}")["status"] in TERMINAL, 240,
                       message="the crashing runs to end")
            run = server.get(f"/runs/{run_id}")
            assert run["status"] == "failed" and "killed by SIGSEGV" in run["error"], server.logs()
        assert server.proc.poll() is None, server.logs()
        assert "worker exited" not in server.log.read_text(), "the worker itself never died"
        train_one(server)
        stop_and_check(server, signal.SIGINT)


def test_the_demo_watcher_prints_every_epoch_even_when_a_poll_misses_it(capsys: pytest.CaptureFixture) -> None:
    """Short epochs end between two polls: each still gets its line, before the final status."""
    from launch.up import DemoRun

    demo = DemoRun("http://unused", {})
    run = {"id": "r1", "epochs_total": 3, "best_val_acc": None, "test_acc_at_best": None, "error": None}
    demo.report({**run, "status": "queued", "epochs_done": 0})
    demo.report({**run, "status": "running", "epochs_done": 1, "best_val_acc": 0.5})
    demo.report({**run, "status": "succeeded", "epochs_done": 3, "best_val_acc": 0.75, "test_acc_at_best": 0.7})
    assert capsys.readouterr().out.splitlines() == [
        "demo run r1: queued", "demo run r1: running", "demo run r1: epoch 1/3, best val acc 0.500",
        "demo run r1: epoch 2/3", "demo run r1: epoch 3/3, best val acc 0.750", "demo run r1: succeeded",
        "demo run r1: test accuracy at the best epoch 0.700"]
    assert demo.done
    quick = DemoRun("http://unused", {})  # queued, then already over at the next poll
    quick.report({**run, "status": "queued", "epochs_done": 0})
    quick.report({**run, "status": "succeeded", "epochs_done": 1, "best_val_acc": 0.5, "test_acc_at_best": 0.4})
    assert capsys.readouterr().out.splitlines()[:4] == [
        "demo run r1: queued", "demo run r1: running", "demo run r1: epoch 1/3, best val acc 0.500",
        "demo run r1: succeeded"]
