"""No input reaches a 500: hundreds of random bodies, query strings, headers and ids, on both backends."""

from __future__ import annotations

import random
from urllib.parse import urlencode

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.kit.api import FakeWorker, submit
from tests.kit.fuzz import NUMBERS, STRINGS, check, raw_bodies


def query(rng: random.Random, names: list[str]) -> list[tuple[str, str]]:
    return [(rng.choice(names), str(rng.choice([*STRINGS, *NUMBERS]))) for _ in range(rng.randrange(1, 4))]


def test_no_input_gives_a_500(app: FastAPI, db_url: str) -> None:
    rng = random.Random(20261127)
    client = TestClient(app, raise_server_exceptions=False)
    finished = submit(client)["id"]  # a finished run: its event stream ends by itself
    worker = FakeWorker(db_url, finished).start()
    worker.epoch(0)
    worker.finish()
    for body in raw_bodies(rng, 240):
        headers: dict[str, str | bytes] = {
            "content-type": rng.choice(["application/json", "text/plain", "application/x-www-form-urlencoded"])}
        if rng.random() < 0.2:
            headers["Idempotency-Key"] = rng.choice(["k", "k" * 300, "é".encode(), " ", "a\tb"])
        check(client.post("/runs", content=body, headers=headers), f"POST /runs {body[:80]!r}")
    routes = [("/runs", ["status", "method", "dataset", "tag", "limit", "cursor"]),
              (f"/runs/{finished}/metrics", ["split", "component", "modality", "name", "since_epoch", "max_points"]),
              (f"/runs/{finished}/events", ["split", "modality", "since_epoch"]),
              (f"/runs/{finished}/checkpoint", ["which"]), (f"/runs/{finished}/config", ["format"])]
    for _ in range(60):
        for path, names in routes:
            params = query(rng, names)  # encoded by hand: a lone surrogate becomes invalid UTF-8 on the wire
            url = f"{path}?{urlencode(params, errors='surrogatepass')}"
            check(client.get(url), f"GET {url}")
    ids = ["%00", "%ff", "x" * 500, "é", "..", "%2e%2e", "1;DROP", "0" * 16, "%F0%9F%98%80", "-1"]
    for run_id in ids:
        for method, suffix in (("GET", ""), ("GET", "/metrics"), ("GET", "/events"), ("POST", "/cancel"),
                               ("POST", "/retry"), ("DELETE", ""), ("GET", "/checkpoint")):
            check(client.request(method, f"/runs/{run_id}{suffix}"), f"{method} /runs/{run_id}{suffix}")
    for header in ("-5", "abc", "99999999999999999999", "1.5", "é".encode(), "١".encode()):
        check(client.get(f"/runs/{finished}/events", headers={"Last-Event-ID": header}), f"Last-Event-ID {header}")
    cursors = ["", "=", "e30", "W10", "WzEsMl0", "WyIyMDI2LTAxLTAxIiwiYSJd",
               "WyIwMDAxLTAxLTAxVDAwOjAwOjAwKzA1OjAwIiwiYSJd"]  # year 1 at +05:00: overflows when made UTC
    for cursor in cursors:
        check(client.get("/runs", params={"cursor": cursor}), f"cursor {cursor}")
