"""Live latency: from the end of an epoch to its points being readable through the API.

A real API process (`amst serve api`, as tests/service/svc.py starts it) serves a fresh database; this process
plays the worker: it leases a run and writes epochs of about 230 realistic metric points with DbSink, the
worker's own writer. For each epoch it records `t_end = time.time()` just before `sink.write(points)` and
measures when that epoch is first readable
  (a) by polling `GET /runs/{id}/metrics?since_epoch=...` every 20 ms, and
  (b) on the server-sent event stream `GET /runs/{id}/events` (a reader thread; the `metrics` event carrying it).
Epochs are spaced by a random pause so that they fall at random phases of the API's SSE poll period.
It prints p50/p95/max in ms for both paths on SQLite and, when it answers, PostgreSQL, plus the time of
`sink.write` itself and the machine's load average.

    python bench/live_latency.py [--epochs 30] [--pg-url postgresql://postgres@127.0.0.1:5432/test | --no-pg]
                                 [--sse-poll-s 0.25]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
from scratch import scratch_database

from amst_core.config import load_config
from amst_core.metrics import MetricPoint
from amst_core.store import lifecycle
from amst_core.store.db import session_scope
from amst_core.store.migrate import upgrade
from amst_core.store.models import RunStatus
from amst_core.store.writer import DbSink

ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.02
WARMUP_EPOCHS = 2  # the first writes create the series: not what a running dashboard waits for
WORKER = "bench-worker"

SPLITS = ("train", "val", "test")
NAMES = ("loss", "acc", "acc_prob", "macro_f1")
CURVES = [("fused", None), ("alt", None), ("joint", None)] + [
    (c, m) for c in ("branch", "helper", "alt_branch", "joint_branch", "alt_helper", "joint_helper")
    for m in ("audio", "visual")]
GAPS = ("branch", "helper", "alt_branch", "joint_branch", "alt_helper", "joint_helper")


def epoch_points(epoch: int, rng: random.Random) -> list[MetricPoint]:
    """One AMST-FULL epoch's points on two modalities: curves per split, component, modality and metric, the
    imbalance gaps, learning rates, skip flags and timings."""
    acc = min(0.99, 0.3 + 0.02 * epoch)
    points = [MetricPoint(split, c, m, name, epoch,
                          rng.uniform(0.1, 2.0) if name == "loss" else acc * rng.uniform(0.8, 1.0))
              for split in SPLITS for c, m in CURVES for name in NAMES]
    points += [MetricPoint(split, c, None, gap, epoch, rng.uniform(0, 0.3))
               for split in SPLITS for c in GAPS for gap in ("acc_gap", "loss_gap")]
    points += [MetricPoint("train", part, None, "lr", epoch, 0.05) for part in ("audio", "visual", "fusion", "alt")]
    points += [MetricPoint("train", "run", m, "skip", epoch, float(epoch % 2 == 0 or m == "visual"))
               for m in ("audio", "visual")]
    points += [MetricPoint("train", "run", None, name, epoch, value)
               for name, value in (("epoch_time", 12.0), ("train_time", 10.0), ("samples_per_s", 900.0))]
    return points


# ---- databases and the API process --------------------------------------------------------------------------------

@contextlib.contextmanager
def pg_reachable(url: str) -> str | None:
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as err:
        return f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def api_process(url: str, home: Path, sse_poll_s: float | None) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("AMST_API_TOKEN",)}
    env.update({"DATABASE_URL": url, "BROKER_URL": "memory://", "AMST_HOME": str(home),
                "AMST_REAPER_S": "3600", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    if sse_poll_s is not None:
        env["AMST_SSE_POLL_S"] = str(sse_poll_s)
    log = (home / "api.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "launch", "serve", "api", "--port", str(port)], env=env,
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start:\n{(home / 'api.log').read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


# ---- the two readers ------------------------------------------------------------------------------------------------

class Reader(threading.Thread):
    """Records when each epoch is first readable on one path; `wait_for` hands that time to the writer."""

    def __init__(self, name: str):
        super().__init__(daemon=True, name=name)
        self.arrived: dict[int, float] = {}
        self.cond = threading.Condition()
        self.opened = threading.Event()
        self.stopped = threading.Event()
        self.error: BaseException | None = None

    def seen(self, epochs: set[int], now: float) -> None:
        with self.cond:
            for e in epochs:
                self.arrived.setdefault(e, now)
            self.cond.notify_all()

    def failed(self, err: BaseException) -> None:
        self.error = err
        self.opened.set()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, epoch: int, timeout: float = 10) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: epoch in self.arrived or self.error is not None, timeout):
                raise TimeoutError(f"{self.name}: epoch {epoch} not readable within {timeout} s")
        if self.error is not None:
            raise RuntimeError(f"{self.name} failed") from self.error
        return self.arrived[epoch]


class SseReader(Reader):
    """Follows the run's event stream; an epoch arrives with the first `metrics` event that carries it."""

    def __init__(self, base: str, run_id: str):
        super().__init__("sse-reader")
        self.url = f"{base}/runs/{run_id}/events"

    def run(self) -> None:
        event = "message"
        try:
            with httpx.stream("GET", self.url, timeout=httpx.Timeout(10, read=None)) as resp:
                resp.raise_for_status()
                for line in resp.iter_lines():
                    if line.startswith("event:"):
                        event = line.split(":", 1)[1].strip()
                    elif line.startswith("data:"):
                        now = time.time()
                        if event == "status":
                            self.opened.set()
                        elif event == "metrics":
                            data = json.loads(line.split(":", 1)[1])
                            self.seen({e for s in data["series"] for e in s["epochs"]}, now)
                        elif event == "end":
                            return
        except BaseException as err:  # reported by the main thread
            self.failed(err)


class PollReader(Reader):
    """A dashboard polling GET /runs/{id}/metrics every 20 ms with the since_epoch cursor, independently of the
    writer (so the poll phase is random with respect to the epoch's end, as for a real client)."""

    def __init__(self, base: str, run_id: str):
        super().__init__("poll-reader")
        self.base, self.path = base, f"/runs/{run_id}/metrics"

    def run(self) -> None:
        since = -1
        try:
            with httpx.Client(base_url=self.base, timeout=10) as client:
                while not self.stopped.is_set():
                    resp = client.get(self.path, params={"since_epoch": since})
                    now = time.time()
                    resp.raise_for_status()
                    body = resp.json()
                    self.opened.set()
                    self.seen({e for s in body["series"] for e in s["epochs"]}, now)
                    since = body["next_since_epoch"]
                    time.sleep(POLL_S)
        except BaseException as err:
            self.failed(err)


# ---- one backend -------------------------------------------------------------------------------------------------

def measure(backend: str, pg_url: str, epochs: int, sse_poll_s: float | None, seed: int) -> dict[str, list[float]]:
    rng = random.Random(seed)
    with scratch_database(None if backend == "sqlite" else pg_url) as url, tempfile.TemporaryDirectory() as home:
        upgrade(url)
        cfg = load_config(base={"method": "amst_full", "dataset": {"name": "avdigits"}, "epochs": epochs + 10,
                                "device": "cpu"})
        with session_scope(url) as s:
            run_id = lifecycle.create_run(s, cfg).id
        with session_scope(url) as s:
            attempt = lifecycle.claim(s, run_id, WORKER, "cpu")
            lifecycle.set_running(s, run_id, WORKER, attempt, 0)
        sink = DbSink(run_id, url)
        sink.begin(0)
        samples: dict[str, list[float]] = {"poll": [], "sse": [], "write": []}
        with api_process(url, Path(home), sse_poll_s) as base:
            readers = {"sse": SseReader(base, run_id), "poll": PollReader(base, run_id)}
            for reader in readers.values():
                reader.start()
                if not reader.opened.wait(30) or reader.error is not None:
                    raise RuntimeError(f"{reader.name} did not start: {reader.error!r}")
            for epoch in range(WARMUP_EPOCHS + epochs):
                points = epoch_points(epoch, rng)
                time.sleep(rng.uniform(0.1, 0.4))  # training; also a random phase against the SSE poll period
                t_end = time.time()
                sink.write(points)
                t_written = time.time()
                arrived = {key: reader.wait_for(epoch) for key, reader in readers.items()}
                with session_scope(url) as s:  # keep the lease fresh, as the worker's watcher does
                    lifecycle.heartbeat(s, run_id, WORKER)
                if epoch >= WARMUP_EPOCHS:
                    samples["write"].append((t_written - t_end) * 1000)
                    for key, t in arrived.items():
                        samples[key].append((t - t_end) * 1000)
            readers["poll"].stopped.set()
            with session_scope(url) as s:
                lifecycle.finish(s, run_id, WORKER, attempt, RunStatus.succeeded)
            for reader in readers.values():
                reader.join(10)
        print(f"{backend}: {len(points)} points per epoch, {epochs} epochs measured", file=sys.stderr)
        return samples


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="PostgreSQL server to create a scratch database on")
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    parser.add_argument("--sse-poll-s", type=float, default=None,
                        help="the API's AMST_SSE_POLL_S (default: the service default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    backends = ["sqlite"]
    if not args.no_pg:
        why = pg_reachable(args.pg_url)
        if why is None:
            backends.append("postgresql")
        else:
            print(f"PostgreSQL skipped: {args.pg_url} not reachable ({why})", file=sys.stderr)
    load_before = os.getloadavg()
    results = {b: measure(b, args.pg_url, args.epochs, args.sse_poll_s, args.seed) for b in backends}
    load_after = os.getloadavg()

    from api.settings import ApiSettings

    sse_poll = args.sse_poll_s if args.sse_poll_s is not None else ApiSettings().sse_poll_s
    print(f"\nEpoch end -> readable, {args.epochs} epochs of {len(epoch_points(0, random.Random(0)))} points; "
          f"GET polled every {POLL_S * 1000:.0f} ms; API SSE poll {sse_poll * 1000:.0f} ms\n")
    print("| backend | path | p50 ms | p95 ms | max ms |")
    print("|---|---|---:|---:|---:|")
    labels = {"poll": "GET /runs/{id}/metrics (polling)", "sse": "SSE `metrics` event",
              "write": "`sink.write` itself"}
    for backend, samples in results.items():
        for key in ("poll", "sse", "write"):
            values = samples[key]
            print(f"| {backend} | {labels[key]} | {percentile(values, 0.5):.1f} | {percentile(values, 0.95):.1f} "
                  f"| {max(values):.1f} |")
    print(f"\nload average (1, 5, 15 min): before {', '.join(f'{v:.2f}' for v in load_before)}; "
          f"after {', '.join(f'{v:.2f}' for v in load_after)}; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
