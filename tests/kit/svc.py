"""Service stacks under test: real processes, an API (uvicorn) and Celery workers, on PostgreSQL + Redis when they
are reachable on 127.0.0.1 (the development machines and CI have them) or on the embedded default (SQLite + SQLite
broker). Every stack's run store is a copy of a migrated template (tests/kit/db.py): none migrates from scratch.

Most service tests share one running stack per backend and session (`StackPool`, tests/service/conftest.py); a test
that kills, stops or restarts one of its processes, or needs a worker configured its own way, starts its own."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg

from amst_core.store.db import get_engine
from amst_core.store.migrate import upgrade
from tests.kit.db import migrated_pg_database, migrated_sqlite
from tests.kit.tiny import write_tiny_avdigits

REDIS = ("127.0.0.1", 6379)
ROOT = Path(__file__).resolve().parents[2]
TERMINAL = {"succeeded", "failed", "cancelled", "lost"}


def reachable(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def own_redis_db() -> Iterator[str]:
    """A Redis database of the stack's own, emptied before and after (its processes are stopped by then): one that
    holds no key, so that stacks of this session and test sessions running at once on one server (a shared
    development machine) never consume each other's run messages. None free is an error, not a shared one."""
    import redis

    server = redis.Redis(host=REDIS[0], port=REDIS[1])
    used = set(server.info("keyspace"))  # {"db3", ...}: those holding keys
    free = [i for i in range(1, 16) if f"db{i}" not in used]
    if not free:
        raise RuntimeError(f"no empty Redis database on {REDIS[0]}:{REDIS[1]} (databases 1-15 all hold keys): "
                           "another test session is running, or one left its keys (redis-cli flushall)")
    index = free[uuid.uuid4().int % len(free)]
    db = redis.Redis(host=REDIS[0], port=REDIS[1], db=index)
    db.flushdb()
    try:
        yield f"redis://{REDIS[0]}:{REDIS[1]}/{index}"
    finally:
        db.flushdb()


BACKENDS = ["postgres+redis", "embedded"]


def external_backends_reachable() -> bool:
    return reachable("127.0.0.1", 5432) and reachable(*REDIS)


# The backend of service tests whose subject does not differ by backend: PostgreSQL + Redis where CI and the
# development machines have them, the embedded default elsewhere. Tests whose subject differs (broker transport,
# outages, a worker killed mid-run and its run re-queued) run on both; `amst up` and `make run` on the embedded one.
# AMST_TEST_BACKEND=embedded (or postgres+redis) chooses it.
DEFAULT_BACKEND = os.environ.get("AMST_TEST_BACKEND") or (BACKENDS[0] if external_backends_reachable() else BACKENDS[1])
FAST_LIFECYCLE = {"AMST_HEARTBEAT_S": "0.5", "AMST_CANCEL_POLL_S": "0.2", "AMST_REAPER_S": "0.5",
                  "AMST_SSE_POLL_S": "0.1"}


def service_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of service processes under test: the embedded default in `tmp_path` (overridden by
    `extra`), tiny avdigits data, fast heartbeats and reaping, one thread."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "BROKER_URL", "AMST_"))}
    data_root = tmp_path / "data"
    if not (data_root / "avdigits").exists():
        write_tiny_avdigits(data_root)
    env.update({"AMST_HOME": str(tmp_path / ".amst"), "AMST_DATA_ROOT": str(data_root),
                "AMST_ARTIFACTS": str(tmp_path / "artifacts"), **FAST_LIFECYCLE, "OMP_NUM_THREADS": "1",
                "PYTHONUNBUFFERED": "1", **extra})
    return env


@contextlib.contextmanager
def stack_env(backend: str, tmp_path: Path, **extra: str) -> Iterator[dict[str, str]]:
    """service_env on `backend`: for PostgreSQL + Redis, a database copied from the template and a Redis database of
    its own (both removed afterwards); the test is skipped when they are not reachable. Says which one in the
    test's output."""
    env = service_env(tmp_path, **extra)
    if backend == "embedded":
        print(f"\n[service backend] embedded: SQLite + SQLite broker in {env['AMST_HOME']}")
        yield env
        return
    if not external_backends_reachable():
        import pytest

        pytest.skip("PostgreSQL or Redis is not reachable on 127.0.0.1; the embedded variant still runs")
    with migrated_pg_database("amst_svc") as url, own_redis_db() as broker:
        env["DATABASE_URL"], env["BROKER_URL"] = url, broker
        print(f"\n[service backend] PostgreSQL {url} + Redis {env['BROKER_URL']}")
        yield env


def prepare_store(env: dict[str, str]) -> None:
    """Give a stack a migrated run store without migrating it: a SQLite store that does not exist yet is a copy of
    the template; a PostgreSQL database made from the template is left as it is. Only an empty PostgreSQL (a
    cluster of the test's own) is migrated."""
    url = env.get("DATABASE_URL") or f"sqlite:///{Path(env['AMST_HOME']).resolve() / 'amst.db'}"
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists():
            migrated_sqlite(path)
        return
    with psycopg.connect(url.replace("+psycopg", ""), connect_timeout=10) as conn:
        migrated = conn.execute("SELECT to_regclass('public.alembic_version')").fetchone()[0] is not None
    if not migrated:
        upgrade(url)
        get_engine(url).dispose()


class Service:
    """The API and any number of workers as child processes, each in its own process group."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env, self.log_dir = env, log_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen] = {}
        prepare_store(env)

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = (self.log_dir / f"{name}.log").open("w")
        proc = subprocess.Popen([sys.executable, "-m", "launch", *args], env=self.env, cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def start_api(self, *args: str) -> None:
        self.start("api", "serve", "api", "--port", str(self.port), *args)
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

    def settle(self, timeout: float = 120) -> None:
        """Cancel what a test left queued or running and wait until it has ended, so that the next test on a
        shared stack finds its worker idle."""
        def active() -> list[str]:
            resp = httpx.get(f"{self.url}/runs", params={"status": ["queued", "running"], "limit": 200}, timeout=10)
            return [r["id"] for r in resp.json()["items"]]

        for run_id in active():
            httpx.post(f"{self.url}/runs/{run_id}/cancel", json={}, timeout=10)
        wait_until(lambda: not active(), timeout, interval=0.5, message="the shared stack to be idle")


class StackPool:
    """One running stack per backend (the API and one worker), started on first use and stopped when the pool
    closes (at the end of the test session). Tests on it share its store: they find their runs by id, tag or name,
    never by being alone."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.stacks: dict[str, Service] = {}
        self.exits = contextlib.ExitStack()

    def get(self, backend: str) -> Service:
        if backend not in self.stacks:
            self.stacks[backend] = self.start(backend)
        return self.stacks[backend]

    def start(self, backend: str) -> Service:
        folder = self.folder / backend.replace("+", "-")
        folder.mkdir()
        # HF_HUB_OFFLINE: the text datasets' tiny RoBERTa lies under the data root; nothing is ever downloaded.
        env = self.exits.enter_context(stack_env(backend, folder, HF_HUB_OFFLINE="1"))
        svc = Service(env, folder)
        self.exits.callback(svc.stop)
        svc.start_api()
        svc.start_worker()
        return svc

    def close(self) -> None:
        self.exits.close()


def tiny_run(**overrides) -> dict:
    """A 2-epoch avdigits AMST-FULL run small enough for a CPU test."""
    body = {
        "method": "amst_full",
        "dataset": {"name": "avdigits"},
        "skip": {"audio": 2},
        "model": {"frames": 1, "image_size": 28, "audio_frames": 12, "mel_bins": 13, "width": 8},
        "epochs": 2,
        "batch_size": 20,
        "device": "cpu",
        "optim": {"lr": 0.05},
    }
    body.update(overrides)
    return body


def submit_and_wait(svc: Service, bodies: dict[str, dict], timeout: float = 600) -> dict[str, dict]:
    """POST each body to /runs (201 expected), wait until every run has ended; {key: the run as GET returns it}."""
    ids = {}
    for key, body in bodies.items():
        resp = httpx.post(f"{svc.url}/runs", json=body, timeout=10)
        assert resp.status_code == 201, (key, resp.text)
        ids[key] = resp.json()["id"]

    def runs() -> dict[str, dict] | None:
        found = {k: httpx.get(f"{svc.url}/runs/{r}", timeout=5).json() for k, r in ids.items()}
        return found if all(r["status"] in ("succeeded", "failed", "cancelled", "lost") for r in found.values()) \
            else None

    return wait_until(runs, timeout, interval=1, message=f"{len(ids)} runs to end")


# What a crashing oneDNN kernel does to the training process, at its first batch (the engine asks should_stop
# before every batch). Written as sitecustomize.py into a folder on PYTHONPATH, it is loaded by every Python
# process of the worker, so by its training processes too.
CRASH_AT_THE_FIRST_BATCH = '''
import os
import signal

import amst_core.execute as execute

real = execute.execute_run


def execute_run(cfg, *args, should_stop=None, **kwargs):
    if cfg.name == "segfaults":
        def should_stop(*_):
            os.kill(os.getpid(), signal.SIGSEGV)
    return real(cfg, *args, should_stop=should_stop, **kwargs)


execute.execute_run = execute_run
'''


def wait_until(predicate, timeout: float, interval: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


PG_BIN = Path("/usr/lib/postgresql")


class OwnPostgres:
    """A PostgreSQL cluster of the test's own, on its own port, that the test may stop and start (the shared
    server on 5432 is never touched). initdb refuses to run as root, so the cluster belongs to `postgres`."""

    def __init__(self) -> None:
        versions = sorted(PG_BIN.glob("*/bin/initdb"))
        if not versions:
            raise FileNotFoundError("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin = versions[-1].parent
        # Not under pytest's tmp_path: its parents are private to root, and the server runs as `postgres`.
        self.folder, self.port = Path(tempfile.mkdtemp(prefix="amst-pg-")), free_port()
        self.folder.chmod(0o755)
        folder = self.folder
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_owner:
            subprocess.run(["chown", "postgres", str(folder)], check=True)
        subprocess.run([*self.as_owner, str(self.bin / "initdb"), "-D", str(folder / "data"), "-A", "trust",
                        "-U", "postgres", "--no-sync", "-E", "UTF8"], check=True, capture_output=True)
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str) -> None:
        subprocess.run([*self.as_owner, str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-w", *args],
                       check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        self.pg_ctl("-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off",
                    "-l", str(self.folder / "server.log"), "start")

    def stop(self) -> None:
        self.pg_ctl("-m", "fast", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class OwnRedis:
    """A Redis server of the test's own (no persistence: a restart empties it, as a crashed Redis would)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save",
                                      "", "--appendonly", "no"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_until(lambda: reachable("127.0.0.1", self.port), 10, message="redis-server to listen")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
