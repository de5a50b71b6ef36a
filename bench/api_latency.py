"""Latency of the read routes at the issue's scale: 1,000 runs and 1,000,000 points stored.

Fills a fresh database (bulk inserts, not the API), then times GET /runs (a page of 50, with and without filters,
first and deeper pages) and GET /runs/{id}/metrics (one run's curves) in-process through the ASGI app, and
prints p50/p95 in milliseconds. Targets (issue): p95 < 50 ms for a page of runs, < 25 ms for one run's curves.

    python bench/api_latency.py [--url postgresql://postgres@127.0.0.1:5432/test] [--requests 200]

With a PostgreSQL URL a scratch database is created next to the given one and dropped at the end.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from scratch import scratch_database
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from amst_core.store.db import get_engine
from amst_core.store.migrate import upgrade
from amst_core.store.models import Modality, Point, Run, RunStatus, RunTag, Series, utcnow
from api.main import create_app
from api.settings import ApiSettings

SPLITS = ("train", "val", "test")
CURVES = [(c, m) for c in ("fused", "branch", "helper") for m in ("audio", "visual")] + [("fused", None)]
NAMES = ("acc", "loss", "acc_prob", "macro_f1")
METHODS = ("naive", "amst_alt", "amst_joint", "amst_full")
STATUSES = (RunStatus.succeeded, RunStatus.failed, RunStatus.running, RunStatus.queued, RunStatus.cancelled)


def fill(url: str, runs: int, points: int, seed: int = 0) -> list[str]:
    """`runs` runs sharing `points` points evenly (84 series each); returns the run ids."""
    rng = random.Random(seed)
    series_keys = [(sp, c, Modality.from_api(m), n) for sp in SPLITS for c, m in CURVES for n in NAMES]
    epochs = max(1, points // (runs * len(series_keys)))
    engine = get_engine(url)
    ids = [uuid.uuid4().hex[:16] for _ in range(runs)]
    start = utcnow() - timedelta(days=30)
    with Session(engine) as s, s.begin():
        s.execute(insert(Run), [
            {"id": rid, "name": f"run{i}", "status": rng.choice(STATUSES), "method": rng.choice(METHODS),
             "dataset": rng.choice(("avdigits", "cremad")), "seed": i % 5, "config": {"method": "naive"},
             "queue": "gpu", "created_at": start + timedelta(minutes=i), "updated_at": start, "attempt": 1,
             "restarts": 0, "max_restarts": 2, "cancel_requested": False, "epochs_total": epochs,
             "epochs_done": epochs, "best_epoch": epochs - 1, "best_val_acc": 0.8, "test_acc_at_best": 0.79,
             "heartbeat_at": utcnow()}
            for i, rid in enumerate(ids)])
        s.execute(insert(RunTag), [{"run_id": rid, "tag": t} for rid in ids for t in rng.sample(
            ["sweep", "baseline", "lr", "seed", "cremad"], 2)])
        s.execute(insert(Series), [{"run_id": rid, "split": k[0], "component": k[1], "modality": k[2], "name": k[3],
                                    "last_epoch": epochs - 1, "last_value": 0.5}
                                   for rid in ids for k in series_keys])
        series_ids = list(s.scalars(select(Series.id)))
        now = time.time()
        rows = ({"series_id": sid, "epoch": e, "value": rng.random(), "step": 0, "attempt": 1, "recorded_at": now}
                for sid in series_ids for e in range(epochs))
        for chunk in chunks(rows, 50_000):
            s.execute(insert(Point), chunk)
    return ids


def chunks(rows: Iterator[dict], size: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def timed(client: TestClient, paths: Callable[[], str], n: int) -> tuple[float, float]:
    for _ in range(5):  # warm the connection pool and the statement caches
        client.get(paths())
    samples = []
    for _ in range(n):
        path = paths()
        t0 = time.perf_counter()
        r = client.get(path)
        samples.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, (path, r.text)
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]


def measure(url: str, ids: list[str], n: int) -> dict[str, tuple[float, float]]:
    rng = random.Random(1)
    app = create_app(ApiSettings(database_url=url, broker_url="memory://", data_root=Path(tempfile.gettempdir())))
    client = TestClient(app)
    cursors = []
    page = client.get("/runs", params={"limit": 50}).json()
    while page["next_cursor"] and len(cursors) < 15:
        cursors.append(page["next_cursor"])
        page = client.get("/runs", params={"limit": 50, "cursor": page["next_cursor"]}).json()
    deeper = {"GET /runs (deeper pages)": timed(client, lambda: f"/runs?limit=50&cursor={rng.choice(cursors)}", n)
              } if cursors else {}
    return {
        "GET /runs (first page)": timed(client, lambda: "/runs?limit=50", n),
        **deeper,
        "GET /runs (filtered)": timed(client, lambda: "/runs?limit=50&status=succeeded,failed&method="
                                      f"{rng.choice(METHODS)}&tag=sweep", n),
        "GET /runs/{id}/metrics": timed(client, lambda: f"/runs/{rng.choice(ids)}/metrics", n),
        "GET /runs/{id}/metrics?split=val": timed(client, lambda: f"/runs/{rng.choice(ids)}/metrics?split=val", n),
        "GET /runs/{id}": timed(client, lambda: f"/runs/{rng.choice(ids)}", n),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="PostgreSQL URL to create a scratch database next to")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with scratch_database(args.url) as url:
        upgrade(url)
        t0 = time.perf_counter()
        ids = fill(url, args.runs, args.points)
        print(f"{get_engine(url).dialect.name}: {args.runs} runs, {args.points} points filled in "
              f"{time.perf_counter() - t0:.1f}s", file=sys.stderr)
        for route, (p50, p95) in measure(url, ids, args.requests).items():
            print(f"{route:36s} p50 {p50:6.1f} ms   p95 {p95:6.1f} ms")


if __name__ == "__main__":
    main()
