"""The idempotency race: many clients send the same request with the same Idempotency-Key at once (a retrying
client, a double click). Exactly one run is created; every other answer replays it; never a 500."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from tests.kit.api import config, counts

CLIENTS = 20


def test_concurrent_requests_with_one_key_make_one_run(client: TestClient, db_url: str) -> None:
    body = config(seed=7, tags=["race"])
    start = threading.Barrier(CLIENTS)

    def post(_: int):
        start.wait()
        return client.post("/runs", json=body, headers={"Idempotency-Key": "double-click-1"})

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(post, range(CLIENTS)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] * (CLIENTS - 1) + [201], [r.text for r in answers if r.status_code >= 300]
    assert len({r.json()["id"] for r in answers}) == 1
    assert all(r.headers.get("idempotent-replayed") == "true" for r in answers if r.status_code == 200)
    assert counts(db_url)["runs"] == 1


def test_concurrent_requests_with_one_key_and_other_bodies_conflict(client: TestClient, db_url: str) -> None:
    start = threading.Barrier(8)

    def post(seed: int):
        start.wait()
        return client.post("/runs", json=config(seed=seed % 2), headers={"Idempotency-Key": "shared"})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(8)))
    assert {r.status_code for r in answers} <= {200, 201, 409}, [r.text for r in answers]
    assert sum(r.status_code == 201 for r in answers) == 1
    winner = next(r.json() for r in answers if r.status_code == 201)
    for r in answers:  # the loser's body differs from the winner's: a conflict that names the header
        if r.json().get("error"):
            assert r.json()["error"]["field"] == "Idempotency-Key"
        else:
            assert r.json()["id"] == winner["id"] and r.json()["seed"] == winner["seed"]
    assert counts(db_url)["runs"] == 1
