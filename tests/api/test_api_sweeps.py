"""POST /sweeps refuses what cannot run with the field named (a grid key or the base), never a 500, and sends the
first runs' messages (the rest are held back)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.kit.api import FakeDispatcher

BASE = {"method": "naive", "dataset": {"name": "synthetic"}, "device": "cpu", "epochs": 1}


@pytest.mark.parametrize(("body", "field", "words"), [
    ({"base": BASE, "grid": {"method": ["amst_full"], "skip.audio": [0]}}, "grid.skip.audio", "cell method=amst_full"),
    ({"base": {"method": "naive"}, "grid": {"seed": [0]}}, "base.dataset", "cell seed=0: dataset"),
    ({"base": BASE, "grid": {"b": [[], [None]]}}, "grid.b", "cell b=[]"),
    ({"base": BASE, "grid": {"seed": [0]}, "baseline": {"seed": 5}}, "baseline", "matches no cell"),
    ({"base": BASE, "grid": {}}, "grid", ""),
])
def test_a_sweep_that_cannot_run_is_refused_naming_the_field(client: TestClient, body: dict, field: str,
                                                              words: str) -> None:
    resp = client.post("/sweeps", json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["field"] == field and words in resp.json()["error"]["message"]
    assert client.get("/sweeps").json()["items"] == [] and client.get("/runs").json()["items"] == []


def test_a_sweep_sends_only_its_first_runs(client: TestClient, dispatcher: FakeDispatcher) -> None:
    resp = client.post("/sweeps", json={"base": BASE, "grid": {"seed": [0, 1, 2, 3]}, "max_concurrent": 3})
    assert resp.status_code == 201, resp.text
    sweep = resp.json()
    assert resp.headers["Location"] == f"/sweeps/{sweep['id']}"
    assert sweep["max_concurrent"] == 2  # at most the server's AMST_SWEEP_MAX_CONCURRENT
    assert len(dispatcher.sent) == 2 and {r["status"] for r in sweep["runs"]} == {"queued"}
    assert len(client.get("/runs", params={"tag": f"sweep:{sweep['id']}"}).json()["items"]) == 4
