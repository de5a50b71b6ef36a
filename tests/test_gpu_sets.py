"""`amst serve worker --gpus`: the GPU locks its workers share (worker/gpulocks.py) and the supervisor that starts
them (launch/gpuworkers.py). The rule: one-GPU runs side by side on each GPU while no multi-GPU run waits; a
multi-GPU run waits for the one-GPU runs already training on its GPUs, none starts there meanwhile, and it takes
its GPUs all at once; never two runs on one GPU. Each worker opens its own lock files, as separate processes do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from launch.gpuworkers import members
from tests.kit.svc import wait_until
from worker import gpulocks
from worker.gpulocks import GpuLocks, from_env


def one_gpu_worker(folder: Path, gpu: str) -> GpuLocks:
    return GpuLocks(folder, [gpu])


def can_start(locks: GpuLocks) -> bool:
    """Whether a one-GPU worker would take a run now (the GPU let go again at once)."""
    taken = locks.take(1, lambda: False)
    if taken is not None:
        taken.release()
    return taken is not None


def waiting_taker(locks: GpuLocks, count: int, stop: threading.Event) -> tuple[threading.Thread, list]:
    """A multi-GPU worker waiting for `count` GPUs in a thread; what it got lands in the list."""
    got: list = []
    thread = threading.Thread(target=lambda: got.append(locks.take(count, stop.is_set)), daemon=True)
    thread.start()
    return thread, got


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpulocks, "POLL_S", 0.02)


def test_a_gpu_holds_one_run_at_a_time(tmp_path: Path) -> None:
    first, second = one_gpu_worker(tmp_path, "0"), one_gpu_worker(tmp_path, "0")
    held = first.take(1, lambda: False)
    assert held is not None and held.gpus == ["0"]
    assert second.take(1, lambda: False) is None  # the same GPU, another worker: refused, never shared
    assert one_gpu_worker(tmp_path, "1").take(1, lambda: False) is not None  # another GPU is free
    held.release()
    assert second.take(1, lambda: False) is not None


def test_a_multi_gpu_run_waits_for_the_runs_training_and_no_new_one_starts_meanwhile(tmp_path: Path) -> None:
    gpu0, gpu1 = one_gpu_worker(tmp_path, "0"), one_gpu_worker(tmp_path, "1")
    training = gpu0.take(1, lambda: False)  # a one-GPU run trains on GPU 0
    assert training is not None
    stop = threading.Event()
    thread, got = waiting_taker(GpuLocks(tmp_path, ["0", "1"]), 2, stop)
    wait_until(lambda: not can_start(gpu1), 5, interval=0.02, message="GPU 1 to be wanted by the two-GPU run")
    time.sleep(0.2)
    assert got == [] and not can_start(gpu1)  # still waiting; GPU 1 takes no new run
    training.release()  # the one-GPU run ends
    thread.join(5)
    assert got and got[0] is not None and got[0].gpus == ["0", "1"]
    assert not can_start(gpu0) and not can_start(gpu1)  # both in use
    got[0].release()
    assert can_start(gpu0) and can_start(gpu1)  # wanted no more


def test_a_run_on_fewer_gpus_than_the_worker_has_takes_the_free_ones_at_once(tmp_path: Path) -> None:
    training = one_gpu_worker(tmp_path, "0").take(1, lambda: False)
    assert training is not None
    deadline = time.monotonic() + 5
    taken = GpuLocks(tmp_path, ["0", "1", "2"]).take(2, lambda: time.monotonic() > deadline)
    assert taken is not None and taken.gpus == ["1", "2"]


def test_a_waiter_never_holds_some_gpus_while_it_waits_for_others(tmp_path: Path) -> None:
    training = one_gpu_worker(tmp_path, "1").take(1, lambda: False)
    assert training is not None
    stop = threading.Event()
    thread, got = waiting_taker(GpuLocks(tmp_path, ["0", "1"]), 2, stop)
    time.sleep(0.2)
    # GPU 0 is free but wanted: another multi-GPU worker (another set on GPUs 0 and 2) still gets it, so two
    # waiters cannot block each other, each holding half of what the other needs
    deadline = time.monotonic() + 5
    other = GpuLocks(tmp_path, ["0", "2"]).take(2, lambda: time.monotonic() > deadline)
    assert other is not None and other.gpus == ["0", "2"]
    other.release()
    stop.set()  # the worker stops while it waits: nothing taken
    thread.join(5)
    assert got == [None]


def test_a_lock_dies_with_its_process(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from worker.gpulocks import GpuLocks\n"
        f"assert GpuLocks(Path({str(tmp_path)!r}), ['0']).take(1, lambda: False) is not None\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n")], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    assert holder.stdout.readline().strip() == "held"
    assert one_gpu_worker(tmp_path, "0").take(1, lambda: False) is None
    holder.kill()
    holder.wait()
    assert one_gpu_worker(tmp_path, "0").take(1, lambda: False) is not None


def test_gpu_ids_from_the_environment_name_their_lock_files(tmp_path: Path) -> None:
    assert from_env({"CUDA_VISIBLE_DEVICES": "0,1"}) is None  # a worker alone on its GPUs
    assert from_env({gpulocks.LOCK_DIR_ENV: str(tmp_path), "CUDA_VISIBLE_DEVICES": "0,1"}) is None  # not a set's
    locks = from_env({gpulocks.LOCK_DIR_ENV: str(tmp_path), gpulocks.MEMBER_ENV: "1",
                      "CUDA_VISIBLE_DEVICES": "2, GPU-8d1c/x"})
    assert locks is not None and locks.gpus == ["2", "GPU-8d1c/x"]
    assert locks.path("GPU-8d1c/x", "lock").parent == tmp_path  # a UUID with odd characters stays in the folder


def test_a_set_is_one_worker_per_gpu_and_one_for_the_runs_on_several() -> None:
    found = members([0, 1, 2], ["gpu-x3", "gpu-x2", "gpu"])
    assert found == {"gpu0": ["--gpu", "0", "--queue", "gpu"], "gpu1": ["--gpu", "1", "--queue", "gpu"],
                     "gpu2": ["--gpu", "2", "--queue", "gpu"], "gpus0-1-2": ["--gpus", "0,1,2", "--queue",
                                                                            "gpu-x3,gpu-x2"]}
    assert list(members([0, 1], ["gpu-x2"])) == ["gpus0-1"]  # --queue without gpu: no one-GPU workers
    assert list(members([0, 1], ["gpu"])) == ["gpu0", "gpu1"]


# A stand-in for `amst serve worker`: says when it starts (with what it was given) and stops; GPU 1's dies once at
# its start; with FAKE_DIES=all every one dies at once.
FAKE_WORKER = """
import os, signal, sys, time
from pathlib import Path
log = Path(os.environ["SET_LOG"])
name = sys.argv[2] if sys.argv[1] == "--gpu" else "multi"
def say(line):
    with log.open("a") as f:
        f.write(line + "\\n")
say(f"start {name} {os.environ['AMST_GPU_LOCK_DIR']} {os.environ.get('AMST_WORKER_HEALTH_FILE')} "
    f"{os.environ.get('AMST_WORKER_ID')} {os.environ.get('AMST_WORKER_IDLE_EXIT_S')}")
def leave(signum, _frame):
    say(f"stopped {name} {signum}")
    sys.exit(0)
signal.signal(signal.SIGTERM, leave)
if os.environ.get("FAKE_DIES") == "all" or (name == "1" and log.read_text().count("start 1 ") == 1):
    os._exit(7)
time.sleep(60)
"""

SET = """
import sys
import launch.gpuworkers as g
import launch.supervisor
launch.supervisor.BACKOFF_FIRST_S, g.POLL_S, g.IDLE_LOOK_S = 0.05, 0.05, 0.1
workers = g.Supervisor([0, 1], ["gpu-x2", "gpu"])
workers.command = [sys.executable, sys.argv[1]]
sys.exit(workers.run())
"""


def start_set(tmp_path: Path, **env: str) -> tuple[subprocess.Popen, Path]:
    """`amst serve worker --gpus 0,1`'s set in a process of its own, over stand-in workers; its log."""
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE_WORKER)
    log = tmp_path / "set.log"
    log.touch()
    full = {**os.environ, "SET_LOG": str(log), gpulocks.LOCK_DIR_ENV: str(tmp_path / "locks"), **env}
    proc = subprocess.Popen([sys.executable, "-c", SET, str(script)], env=full, cwd=Path(__file__).parents[1],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return proc, log


def lines(log: Path, word: str) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.startswith(word)]


def test_the_set_starts_again_a_worker_that_died_and_passes_ctrl_c_on_as_sigterm(tmp_path: Path) -> None:
    proc, log = start_set(tmp_path, AMST_WORKER_HEALTH_FILE=str(tmp_path / "health"), AMST_WORKER_ID="one-id")
    try:
        wait_until(lambda: len(lines(log, "start 1 ")) == 2 and len(lines(log, "start ")) == 4, 20,
                   message="GPU 1's worker started again")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    starts = {line.split()[1]: line.split()[2:] for line in lines(log, "start ")}
    assert starts["0"] == [str(tmp_path / "locks"), f"{tmp_path / 'health'}.gpu0", "None", "None"]
    assert starts["multi"][1] == f"{tmp_path / 'health'}.gpus0-1"  # a health file each, no shared worker id
    assert sorted(lines(log, "stopped")) == [f"stopped {n} {signal.SIGTERM}" for n in ("0", "1", "multi")]


def test_workers_that_keep_dying_at_their_start_stop_the_set(tmp_path: Path) -> None:
    proc, log = start_set(tmp_path, FAKE_DIES="all")
    assert proc.wait(60) == 1
    assert "keeps ending at its start (5 times in a row): the set stops" in proc.stderr.read()
    assert max(len(lines(log, f"start {name} ")) for name in ("0", "1", "multi")) == 5  # the first to die 5 times


def test_the_set_leaves_when_none_of_its_gpus_is_used_for_the_idle_limit(tmp_path: Path) -> None:
    (tmp_path / "locks").mkdir()
    training = one_gpu_worker(tmp_path / "locks", "1").take(1, lambda: False)  # a run trains on GPU 1
    assert training is not None
    proc, log = start_set(tmp_path, AMST_WORKER_IDLE_EXIT_S="1")
    try:
        wait_until(lambda: len(lines(log, "start ")) >= 3, 20, message="the set's workers")
        time.sleep(2)
        assert proc.poll() is None  # a GPU in use: the set stays
        training.release()
        assert proc.wait(20) == 0  # idle a second: it leaves, its workers stopped as SIGTERM stops them
    finally:
        if proc.poll() is None:
            proc.kill()
    assert all(line.split()[-1] == "None" for line in lines(log, "start "))  # no idle limit of their own
    assert len(lines(log, "stopped")) == 3


def test_a_lock_folder_that_cannot_be_written_stops_the_set_saying_so(tmp_path: Path) -> None:
    (tmp_path / "locks").write_text("a file, not a folder")
    proc, _ = start_set(tmp_path)
    assert proc.wait(20) == 1
    assert f"AMST_GPU_LOCK_DIR={tmp_path / 'locks'}: cannot keep the GPUs' lock files there" in proc.stderr.read()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_worker_of_a_set_hands_back_a_run_or_stops_waiting_for_a_cancelled_one(db_url: str, tmp_path: Path,
                                                                                  monkeypatch) -> None:
    from celery.exceptions import Reject

    from amst_core.store import lifecycle
    from amst_core.store.models import Run
    from tests.kit.db import tx
    from tests.kit.tiny import tiny_config
    from worker import runner
    from worker.settings import WorkerSettings

    monkeypatch.setattr(runner, "REFUSED_PAUSE_S", 0.0)
    monkeypatch.setattr(runner, "STILL_QUEUED_S", 0.05)
    settings = WorkerSettings(DATABASE_URL=db_url, AMST_ARTIFACTS=str(tmp_path / "artifacts"))

    def worker_on(gpus: str) -> runner.Executor:
        monkeypatch.setenv(gpulocks.LOCK_DIR_ENV, str(tmp_path / "locks"))
        monkeypatch.setenv(gpulocks.MEMBER_ENV, "1")
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", gpus)
        return runner.Executor(settings, f"w-{gpus}", "cuda:0")

    with tx(db_url) as s:
        one = lifecycle.create_run(s, tiny_config(device="auto"))
        two = lifecycle.create_run(s, tiny_config(device="auto", resources={"gpus": 2}))
        one_id, two_id, one_config, two_config = one.id, two.id, one.config, two.config
    training = one_gpu_worker(tmp_path / "locks", "1").take(1, lambda: False)  # GPU 1 trains a run
    assert training is not None
    with pytest.raises(Reject, match="GPU 1 is in use"):  # its worker hands a second one back to the queue
        worker_on("1").take_gpus(one_id, one_config)
    assert worker_on("0").take_gpus(one_id, {**one_config, "device": "cpu"}) is None  # a CPU run takes no GPU
    multi = worker_on("0,1")
    waiting = threading.Thread(target=lambda: got.append(multi.take_gpus(two_id, two_config)), daemon=True)
    got: list = []
    waiting.start()
    wait_until(lambda: multi.waiting_run == two_id, 5, interval=0.02, message="the worker to wait for its GPUs")
    with tx(db_url) as s:
        lifecycle.request_cancel(s, s.get(Run, two_id))
    waiting.join(5)
    assert got == [None] and multi.waiting_run is None  # gone from the queue: it stopped waiting, took nothing
    assert can_start(one_gpu_worker(tmp_path / "locks", "0"))  # and wants GPU 0 no more
