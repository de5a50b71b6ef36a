"""Read latency with many runs stored: indexed queries, no N+1 (full-scale numbers: tests/api/latency_bench.py)."""

from __future__ import annotations

import random

from fastapi.testclient import TestClient
from latency_bench import fill, timed

from api.main import create_app
from api.settings import ApiSettings

RUNS, POINTS = 150, 100_000  # about 800 points per run, as at the scale (1,000 runs, 1,000,000 points)


def p95_ms(client: TestClient, paths: list[str], target_ms: float) -> float:
    """p95 of a round of requests; up to three rounds, because a burst of load from elsewhere on a shared CI box
    is not a regression (an N+1 or a scan is slow every time)."""
    rng = random.Random(0)
    best = float("inf")
    for _ in range(3):
        best = min(best, timed(client, lambda: rng.choice(paths), 30)[1])
        if best < target_ms:
            break
    return best


def test_read_latency_targets(settings: ApiSettings) -> None:
    ids = fill(settings.db_url, RUNS, POINTS)
    client = TestClient(create_app(settings))
    cursor = client.get("/runs?limit=50").json()["next_cursor"]
    lists = ["/runs?limit=50", f"/runs?limit=50&cursor={cursor}",
             "/runs?limit=50&status=succeeded,failed&method=amst_full&tag=sweep"]
    assert p95_ms(client, lists, 50) < 50
    assert p95_ms(client, [f"/runs/{i}/metrics" for i in ids], 25) < 25
