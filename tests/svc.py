"""Helpers for the service tests: real processes, an API (uvicorn) and Celery workers, on PostgreSQL + Redis
when they are reachable on 127.0.0.1 (the development machines have them) and on the embedded default
(SQLite + SQLite broker) always."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
from tiny import write_tiny_avdigits

REDIS = ("127.0.0.1", 6379)
ROOT = Path(__file__).resolve().parents[1]
__all__ = ["write_tiny_avdigits"]


def reachable(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_db() -> str:
    import redis

    index = int(uuid.uuid4().int % 15) + 1
    redis.Redis(host=REDIS[0], port=REDIS[1], db=index).flushdb()
    return f"redis://{REDIS[0]}:{REDIS[1]}/{index}"


BACKENDS = ["postgres+redis", "embedded"]


class Service:
    """The API and any number of workers as child processes, each in its own process group."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env, self.log_dir = env, log_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen] = {}
        subprocess.run([sys.executable, "-m", "amst_core.cli", "db", "upgrade"], env=env, check=True, cwd=ROOT,
                       capture_output=True)

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = (self.log_dir / f"{name}.log").open("w")
        proc = subprocess.Popen([sys.executable, "-m", "amst_core.cli", *args], env=self.env, cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def start_api(self) -> None:
        self.start("api", "serve", "api", "--port", str(self.port))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"API did not start:\n{self.logs('api')}")

    def start_worker(self, name: str = "worker", *args: str) -> subprocess.Popen:
        return self.start(name, "serve", "worker", *args)

    def logs(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text()[-4000:] if path.exists() else ""

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def tiny_run(**overrides) -> dict:
    """A 2-epoch avdigits AMST-FULL run small enough for a CPU test."""
    body = {
        "method": "amst_full",
        "dataset": {"name": "avdigits"},
        "skip": {"audio": 2},
        "model": {"frames": 1, "image_size": 28, "audio_frames": 12, "mel_bins": 13},
        "epochs": 2,
        "batch_size": 20,
        "device": "cpu",
        "optim": {"lr": 0.05},
    }
    body.update(overrides)
    return body


def wait_until(predicate, timeout: float, interval: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")
