"""A worker and its GPU: a run that names another GPU index trains on the worker's own (a worker started with
`--gpu N` sees that GPU alone), and a CUDA error that breaks a process's context fails its run and ends only the
training process it broke (each attempt trains in a process of its own): the worker trains the next run in a
fresh one. The attempt runs in-process here (worker.attempt.AttemptRunner), then in real processes."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import torch

from amst_core.store import lifecycle
from amst_core.store.models import Run, RunStatus
from launch.supervisor import EXIT_RESTART
from tests.kit.db import tx
from tests.kit.svc import Service, service_env, submit_and_wait, tiny_run
from tests.kit.tiny import tiny_config
from worker.attempt import AttemptRunner
from worker.runner import on_this_worker
from worker.settings import WorkerSettings

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # nothing here differs by backend
FRESH_PROCESS = "the GPU context of its training process is unusable after it: the next run trains in a fresh process"


def train_here(db_url: str, tmp_path: Path, run_id: str) -> str | None:
    """What a worker's training process does with a run its worker claimed, in this process."""
    settings = WorkerSettings(DATABASE_URL=db_url, AMST_ARTIFACTS=str(tmp_path / "artifacts"))
    with tx(db_url) as s:
        attempt = lifecycle.claim(s, run_id, "w-gpu", "cuda:0")
    return AttemptRunner(settings, "w-gpu", "cuda:0").run(run_id, attempt)


def failing_with(monkeypatch: pytest.MonkeyPatch, err: Exception) -> None:
    def broken(*_args, **_kwargs):
        raise err

    monkeypatch.setattr("amst_core.execute.execute_run", broken)


def new_run(db_url: str) -> str:
    with tx(db_url) as s:
        return lifecycle.create_run(s, tiny_config()).id


def run_error(db_url: str, run_id: str) -> str:
    with tx(db_url) as s:
        return s.get(Run, run_id).error


@sqlite_only
def test_a_device_side_assert_fails_its_run_and_says_its_process_ends(db_url: str, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    failing_with(monkeypatch, torch.AcceleratorError("CUDA error: device-side assert triggered"))
    run_id = new_run(db_url)
    assert train_here(db_url, tmp_path, run_id) == RunStatus.failed
    error = run_error(db_url, run_id)
    assert error.startswith("AcceleratorError: CUDA error: device-side assert triggered")
    assert FRESH_PROCESS in error


@sqlite_only
@pytest.mark.parametrize("err", [RuntimeError("the data loader fell over"),
                                 torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")])
def test_other_failures_are_no_broken_context(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              err: Exception) -> None:
    failing_with(monkeypatch, err)
    run_id = new_run(db_url)
    assert train_here(db_url, tmp_path, run_id) == RunStatus.failed
    assert FRESH_PROCESS not in run_error(db_url, run_id)


def test_a_pinned_worker_trains_a_run_that_names_another_gpu_on_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMST_WORKER_GPU", "3")
    assert on_this_worker(tiny_config(device="cuda:1")).device == "cuda:0"
    for device in ("cpu", "auto", "cuda", "cuda:0"):
        assert on_this_worker(tiny_config(device=device)).device == device
    monkeypatch.delenv("AMST_WORKER_GPU")
    assert on_this_worker(tiny_config(device="cuda:1")).device == "cuda:1"  # a worker that sees every GPU


BREAK_THE_GPU = '''
import amst_core.execute as execute
import torch

real = execute.execute_run


def execute_run(cfg, *args, **kwargs):
    if cfg.name == "breaks-the-gpu":  # what a label beyond the classes does to a CUDA context
        raise torch.AcceleratorError("CUDA error: device-side assert triggered")
    return real(cfg, *args, **kwargs)


execute.execute_run = execute_run
'''


def test_a_broken_context_ends_its_training_process_and_the_same_worker_trains_the_next_run(tmp_path: Path) -> None:
    """Real processes (embedded backend): the run fails naming the error, once (its task acknowledged, the run
    not taken again), and the worker process, which never held the broken context, trains the next run in a
    fresh training process without being restarted."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(BREAK_THE_GPU)
    svc = Service(service_env(tmp_path), tmp_path)
    try:
        svc.start_api()
        svc.env = {**svc.env, "PYTHONPATH": str(hook)}
        worker = svc.start_worker("worker")
        (run,) = submit_and_wait(svc, {"broken": tiny_run(name="breaks-the-gpu", epochs=1)}, timeout=120).values()
        assert run["status"] == "failed" and "device-side assert triggered" in run["error"], run
        assert FRESH_PROCESS in run["error"]
        (again,) = submit_and_wait(svc, {"next": tiny_run(epochs=1)}, timeout=180).values()
        assert again["status"] == "succeeded", svc.logs("worker")
        assert worker.poll() is None, "the worker was not stopped"
        assert httpx.get(f"{svc.url}/runs/{run['id']}", timeout=5).json()["attempt"] == 1  # never taken again
    finally:
        svc.stop()


def test_amst_up_restarts_a_process_that_asks_for_it_however_often(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A service process that exits with EXIT_RESTART asks for a fresh one, however soon after its start: no crash
    loop, while any other quick death still counts (the API here: a worker is restarted whatever its exits)."""
    from launch import supervisor as serve

    monkeypatch.setattr(serve, "BACKOFF_FIRST_S", 0.0)

    def start(child: serve.Child, env: dict, logs: Path) -> None:  # what serve.start does, without a process
        child.started_at, child.restart_at = serve.time.monotonic(), None

    monkeypatch.setattr(serve, "start", start)

    class Exited:
        def __init__(self, code: int) -> None:
            self.returncode = code

        def poll(self) -> int:
            return self.returncode

    child = serve.Child("api", ["amst", "serve", "api"], Exited(EXIT_RESTART), serve.time.monotonic())
    for _ in range(serve.CRASH_LOOP + 2):
        assert serve.watch({"api": child}, {}, tmp_path) is None  # noticed: restart due
        serve.watch({"api": child}, {}, tmp_path)  # restarted
        child.process = Exited(EXIT_RESTART)
    assert child.quick_failures == 0
    assert "asked for a fresh process" in capsys.readouterr().err
    child.process = Exited(3)
    for _ in range(serve.CRASH_LOOP - 1):
        assert serve.watch({"api": child}, {}, tmp_path) is None
        serve.watch({"api": child}, {}, tmp_path)
        child.process = Exited(3)
    assert serve.watch({"api": child}, {}, tmp_path) is child  # five quick deaths of another kind: a loop
