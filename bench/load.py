"""Load on loopback: the API under many readers while workers train, side by side with the same readers on an
idle server, bounded to about two minutes.

A real API process and two worker processes (PostgreSQL + Redis when both answer, else the embedded default) on
tiny avdigits data. Each phase lasts --phase-s seconds (30), after a 10 s baseline of one sequential client:
  idle   50 concurrent clients read the run list, run details and curves of 20 finished runs (100 epochs of an
         AMST-FULL run's points each, written by the worker's own DbSink); nothing trains.
  load   the same 50 clients, plus 20 queued runs trained by the 2 workers, plus 100 open event streams on them.
Per route it prints requests, errors (any status but 200, or a failed request) and p50/p95 latency in ms, and
for the streams the events received and the streams that broke. The clients run in this process (asyncio,
httpx), on the same machine: they compete with the server for the CPU, as the workers do.

    python bench/load.py [--phase-s 30] [--api-workers 1] [--pg-url postgresql://postgres@127.0.0.1:5432/test | --no-pg]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from live_latency import epoch_points
from scratch import scratch_database

from amst_core.config import load_config
from amst_core.store import lifecycle
from amst_core.store.db import session_scope
from amst_core.store.migrate import upgrade
from amst_core.store.models import RunStatus
from amst_core.store.writer import DbSink
from tests.kit.svc import REDIS, Service, reachable, redis_db, service_env, tiny_run

READERS, STREAMS, QUEUED, SEEDED, SEEDED_EPOCHS = 50, 100, 20, 20, 100


def seed_finished_runs(url: str) -> list[str]:
    """Finished runs with a long history, written as a worker writes them."""
    rng = random.Random(0)
    ids = []
    for i in range(SEEDED):
        cfg = load_config(base={"method": "amst_full", "dataset": {"name": "synthetic"}, "epochs": SEEDED_EPOCHS,
                                "seed": i, "tags": ["seeded"]})
        with session_scope(url) as s:
            run_id = lifecycle.create_run(s, cfg).id
            attempt = lifecycle.claim(s, run_id, "seeder", "cpu")
            lifecycle.set_running(s, run_id, "seeder", attempt, 0)
        sink = DbSink(run_id, url)
        sink.begin(0)
        for epoch in range(SEEDED_EPOCHS):
            sink.write(epoch_points(epoch, rng))
        with session_scope(url) as s:
            lifecycle.finish(s, run_id, "seeder", attempt, RunStatus.succeeded)
        ids.append(run_id)
    return ids


class Recorder:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = {}
        self.errors: dict[str, int] = {}
        self.kinds: dict[str, int] = {}  # what the errors were: a status code or an exception type

    def add(self, route: str, seconds: float, outcome: int | str) -> None:
        self.latency.setdefault(route, []).append(seconds)
        ok = outcome == 200
        self.errors[route] = self.errors.get(route, 0) + (not ok)
        if not ok:
            self.kinds[f"{route}: {outcome}"] = self.kinds.get(f"{route}: {outcome}", 0) + 1


async def reader(client: httpx.AsyncClient, run_ids: list[str], until: float, rec: Recorder, seed: int) -> None:
    rng = random.Random(seed)
    routes = [("GET /runs", lambda: "/runs?limit=50"),
              ("GET /runs/{id}", lambda: f"/runs/{rng.choice(run_ids)}"),
              ("GET /runs/{id}/metrics", lambda: f"/runs/{rng.choice(run_ids)}/metrics?split=val"),
              ("GET /runs/{id}/metrics since", lambda: f"/runs/{rng.choice(run_ids)}/metrics?since_epoch=90")]
    while time.monotonic() < until:
        route, path = rng.choice(routes)
        started = time.perf_counter()
        try:
            outcome: int | str = (await client.get(path())).status_code
        except httpx.HTTPError as err:
            outcome = f"{type(err).__name__} ({err})"[:120]
        rec.add(route, time.perf_counter() - started, outcome)


async def stream(url: str, until: float, counts: dict[str, int]) -> None:
    """One event stream, open until the run ends or the phase does."""
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=60)) as client, \
                client.stream("GET", url) as resp:
            if resp.status_code != 200:
                counts["broken"] += 1
                return
            async for line in resp.aiter_lines():
                if line.startswith("event:"):
                    counts["events"] += 1
                    if line.endswith("end"):
                        return
                if time.monotonic() > until:
                    return
    except httpx.HTTPError:
        counts["broken"] += 1


async def phase(base: str, run_ids: list[str], seconds: float, stream_urls: list[str],
                readers: int = READERS) -> tuple[Recorder, dict]:
    rec, counts = Recorder(), {"events": 0, "broken": 0}
    until = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=readers, max_keepalive_connections=readers)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        tasks = [reader(client, run_ids, until, rec, i) for i in range(readers)]
        tasks += [stream(u, until, counts) for u in stream_urls]
        await asyncio.gather(*tasks)
    return rec, counts


def cpu_seconds(pid: int, with_children: bool = True) -> float:
    """User + system CPU time of a process, and of its live children (uvicorn's worker processes), so far."""
    total = 0.0
    for child in [pid, *(children(pid) if with_children else [])]:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:13]) / os.sysconf("SC_CLK_TCK")
    return total


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
    return found


def measured(name: str, svc: Service, seconds: float, work) -> dict[str, tuple]:
    """Run one phase; report it with the CPU share the API process and this client process used."""
    api, me = svc.procs["api"].pid, os.getpid()
    before = cpu_seconds(api), cpu_seconds(me, with_children=False), time.monotonic()
    rec, counts = asyncio.run(work)
    elapsed = time.monotonic() - before[2]
    rows = report(name, rec, counts, elapsed)
    print(f"  CPU: API process {100 * (cpu_seconds(api) - before[0]) / elapsed:.0f} % of a core, clients "
          f"{100 * (cpu_seconds(me, with_children=False) - before[1]) / elapsed:.0f} %, load average "
          f"{os.getloadavg()[0]:.2f}")
    return rows


def report(name: str, rec: Recorder, counts: dict, seconds: float) -> dict[str, tuple]:
    rows = {}
    for route, values in sorted(rec.latency.items()):
        ms = sorted(v * 1000 for v in values)
        p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
        rows[route] = (len(ms), rec.errors[route], statistics.median(ms), p95)
    total = sum(r[0] for r in rows.values())
    print(f"\n{name}: {total} requests in {seconds:.0f} s ({total / seconds:.0f}/s), "
          f"{sum(r[1] for r in rows.values())} errors; streams: {counts['events']} events, {counts['broken']} broken")
    for kind, n in sorted(rec.kinds.items()):
        print(f"  error {kind} x {n}")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase-s", type=float, default=30.0)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--api-workers", type=int, default=1, help="API processes (amst serve api --workers)")
    args = parser.parse_args()
    external = not args.no_pg and reachable("127.0.0.1", 5432) and reachable(*REDIS)
    with tempfile.TemporaryDirectory() as tmp, scratch_database(args.pg_url if external else None) as url:
        tmp_path = Path(tmp)
        extra = {"DATABASE_URL": url, "BROKER_URL": redis_db()} if external else {"DATABASE_URL": url}
        env = service_env(tmp_path, AMST_SSE_POLL_S="0.25", **extra)
        upgrade(url)
        seeded = seed_finished_runs(url)
        svc = Service(env, tmp_path)
        try:
            svc.start_api("--workers", str(args.api_workers))
            backend = "PostgreSQL + Redis" if external else "SQLite + SQLite broker"
            print(f"API processes: {args.api_workers}; backend: {backend}; {os.cpu_count()} CPUs; "
                  f"load average {os.getloadavg()[0]:.2f}")
            alone = measured("one client (service time)", svc, 10, phase(svc.url, seeded, 10, [], readers=1))
            idle = measured("idle", svc, args.phase_s, phase(svc.url, seeded, args.phase_s, []))
            svc.start_worker("worker-1", "--queue", "cpu")
            svc.start_worker("worker-2", "--queue", "cpu")
            queued = [httpx.post(f"{svc.url}/runs", json=tiny_run(method="naive", epochs=3, tags=["load"]),
                                 timeout=30).json()["id"] for _ in range(QUEUED)]
            urls = [f"{svc.url}/runs/{queued[i % QUEUED]}/events" for i in range(STREAMS)]
            loaded = measured("load", svc, args.phase_s, phase(svc.url, seeded, args.phase_s, urls))
            done = sum(httpx.get(f"{svc.url}/runs/{r}", timeout=30).json()["status"] == "succeeded" for r in queued)
            print(f"queued runs succeeded during the load phase: {done} of {QUEUED}")
        finally:
            svc.stop()
    print(f"\n{'route':<30}{'alone p50':>10}   {'idle n':>7}{'err':>4}{'p50 ms':>8}{'p95 ms':>8}   {'load n':>7}"
          f"{'err':>4}{'p50 ms':>8}{'p95 ms':>8}{'p95 x':>7}")
    for route in idle:
        a, b = idle[route], loaded.get(route, (0, 0, float("nan"), float("nan")))
        one = alone.get(route, (0, 0, float("nan"), float("nan")))[2]
        print(f"{route:<30}{one:>10.1f}   {a[0]:>7}{a[1]:>4}{a[2]:>8.0f}{a[3]:>8.0f}   {b[0]:>7}{b[1]:>4}{b[2]:>8.0f}"
              f"{b[3]:>8.0f}{b[3] / a[3]:>7.1f}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
