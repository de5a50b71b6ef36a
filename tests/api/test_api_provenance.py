"""Provenance in the service: what a run recorded, in GET /runs/{id} and never in run lists; POST /runs/{id}/rerun
(the recorded config, the data it trained on, 409 when they changed, force, idempotency, auth); how runs differ
(GET /differences, a sweep's `differences`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from amst_core import provenance
from amst_core.config import RunConfig
from amst_core.store import lifecycle
from amst_core.store.db import get_engine
from amst_core.store.models import Run
from api.settings import ApiSettings
from tests.kit.api import TOKEN, FakeDispatcher, FakeWorker, config, counts, submit
from tests.kit.tiny import write_tiny_avdigits

AVDIGITS = config("amst_alt", dataset={"name": "avdigits"}, name="paper-run", tags=["table-2"], seed=7)


def error_of(r: Any, status: int, field: str | None) -> str:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["field"] == field, body
    return body["message"]


def trained(settings: ApiSettings, run_id: str, **code: Any) -> dict[str, Any]:
    """The run trained by a worker that recorded its provenance as execute_run collects it (on the API's data
    folder); `code` overrides the code part (another commit, a modified tree). Returns what was recorded."""
    with Session(get_engine(settings.db_url)) as s:
        cfg = RunConfig.model_validate(s.get(Run, run_id).config)
    prov = provenance.collect(cfg, "cpu", provenance.data_fingerprint(cfg, settings.data_roots))
    if code:
        prov["code"] = {**prov["code"], **code}
        prov["digests"]["code"] = provenance.digest(prov["code"])
    worker = FakeWorker(settings.db_url, run_id).start()
    with Session(get_engine(settings.db_url)) as s, s.begin():
        assert lifecycle.record_provenance(s, run_id, worker.worker_id, worker.attempt, prov)
    worker.epoch(0)
    worker.finish()
    return prov


@pytest.fixture
def avdigits(client: TestClient, data_root: Path) -> Path:
    return write_tiny_avdigits(data_root)


# ---- GET /runs/{id} ----------------------------------------------------------------------------------------------

def test_a_run_shows_its_provenance_in_its_detail_and_not_in_lists(client: TestClient, settings: ApiSettings,
                                                                    avdigits: Path) -> None:
    run = submit(client, AVDIGITS)
    assert (run["provenance"], run["rerun_of"]) == (None, None)  # queued: nothing recorded yet
    recorded = trained(settings, run["id"])
    detail = client.get(f"/runs/{run['id']}").json()
    assert detail["provenance"] == recorded
    assert detail["provenance"]["environment"]["device"] == "cpu" and detail["provenance"]["environment"]["torch"]
    assert detail["provenance"]["data"]["files"]["count"] == 3  # train, val and test .npz
    assert detail["provenance"]["config"]["seed"] == 7
    for listed in (client.get("/runs").json()["items"], client.get("/runs", params={"with_config": True,
                                                                                     "q": "seed=7"}).json()["items"]):
        assert [r["id"] for r in listed] == [run["id"]] and "provenance" not in listed[0]


# ---- POST /runs/{id}/rerun ---------------------------------------------------------------------------------------

def test_a_rerun_trains_the_recorded_config_on_the_data_it_trained_on(client: TestClient, settings: ApiSettings,
                                                                       dispatcher: FakeDispatcher,
                                                                       avdigits: Path) -> None:
    run = submit(client, AVDIGITS)
    recorded = trained(settings, run["id"])
    r = client.post(f"/runs/{run['id']}/rerun")
    assert r.status_code == 201, r.text
    again = r.json()
    assert r.headers["location"] == f"/runs/{again['id']}" and dispatcher.sent[-1][0] == again["id"]
    assert (again["name"], again["tags"], again["rerun_of"], again["warnings"]) == (
        "paper-run (re-run)", ["table-2"], run["id"], [])
    assert again["config"]["data_fingerprint"] == recorded["digests"]["data"]
    differing = {k for k in again["config"] if again["config"][k] != recorded["config"][k]}
    assert differing == {"name", "data_fingerprint"}  # every other setting as recorded
    twice = client.post(f"/runs/{again['id']}/rerun", json={}).json()  # a re-run of a re-run: one suffix
    assert twice["name"] == "paper-run (re-run)" and twice["rerun_of"] == again["id"]


def test_changed_data_refuse_a_rerun_that_says_what_changed_unless_forced(client: TestClient, settings: ApiSettings,
                                                                          db_url: str, avdigits: Path) -> None:
    run = submit(client, AVDIGITS)
    trained(settings, run["id"])
    (avdigits / "val.npz").write_bytes((avdigits / "val.npz").read_bytes() + b"\0")  # one file grew
    before = counts(db_url)
    message = error_of(client.post(f"/runs/{run['id']}/rerun", json={"force": False}), 409, "force")
    assert f"the data changed since run {run['id']} trained" in message
    assert "the dataset folder held 3 files" in message and '{"force": true}' in message
    assert counts(db_url) == before  # nothing created
    r = client.post(f"/runs/{run['id']}/rerun", json={"force": True})
    assert r.status_code == 201, r.text
    forced = r.json()
    assert forced["config"]["data_fingerprint"] is None  # it takes the data as they are
    [warning] = forced["warnings"]
    assert "the data changed" in warning and "the dataset folder held 3 files" in warning


def test_a_run_that_recorded_nothing_reruns_its_stored_config_and_says_so(client: TestClient) -> None:
    run = submit(client, config(name="never-started", seed=4))
    r = client.post(f"/runs/{run['id']}/rerun", json={})
    assert r.status_code == 201, r.text
    again = r.json()
    assert again["config"]["seed"] == 4 and again["config"]["data_fingerprint"] is None
    [warning] = again["warnings"]
    assert f"run {run['id']} recorded no provenance" in warning and "nothing recorded to check" in warning


def test_a_rerun_of_a_config_this_server_no_longer_takes_is_a_409(client: TestClient, db_url: str) -> None:
    run = submit(client, config())
    with Session(get_engine(db_url)) as s, s.begin():
        s.execute(update(Run).where(Run.id == run["id"]).values(config={**run["config"], "method": "gone"}))
    message = error_of(client.post(f"/runs/{run['id']}/rerun"), 409, "run_id")
    assert f"run {run['id']} cannot be re-run on this server" in message and "method" in message


@pytest.mark.parametrize(("body", "field"), [(b'{"force": "yes"}', "force"), (b"[true]", "body"),
                                             (b'{"forse": true}', "forse"), (b"{", "body")])
def test_a_bad_rerun_body_is_refused(client: TestClient, body: bytes, field: str, db_url: str) -> None:
    run = submit(client, config())
    before = counts(db_url)
    r = client.post(f"/runs/{run['id']}/rerun", content=body)
    assert r.status_code in (400, 422) and r.json()["error"]["field"] == field, r.text
    assert counts(db_url) == before


def test_a_rerun_is_idempotent_with_a_key_and_needs_the_token(client: TestClient, locked: TestClient,
                                                              dispatcher: FakeDispatcher) -> None:
    run = submit(client, config())
    first = client.post(f"/runs/{run['id']}/rerun", headers={"Idempotency-Key": "again-1"})
    replay = client.post(f"/runs/{run['id']}/rerun", headers={"Idempotency-Key": "again-1"})
    assert (first.status_code, replay.status_code) == (201, 200) and replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] == first.json()["id"] and len(dispatcher.sent) == 2  # the run, one re-run
    forced = client.post(f"/runs/{run['id']}/rerun", json={"force": True}, headers={"Idempotency-Key": "again-1"})
    error_of(forced, 409, "Idempotency-Key")
    error_of(client.post("/runs/0123456789abcdef/rerun"), 404, "run_id")
    assert locked.post(f"/runs/{run['id']}/rerun").status_code == 401
    assert locked.post(f"/runs/{run['id']}/rerun", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 201


def test_the_broker_refusing_a_rerun_leaves_nothing(client: TestClient, dispatcher: FakeDispatcher,
                                                    db_url: str) -> None:
    run = submit(client, config())
    before = counts(db_url)
    dispatcher.fail = "connection refused"
    message = error_of(client.post(f"/runs/{run['id']}/rerun"), 503, None)
    assert message == "could not queue the run: connection refused" and counts(db_url) == before


# ---- how runs differ ---------------------------------------------------------------------------------------------

def test_differences_name_what_differs_and_how_many_runs_have_each(client: TestClient, settings: ApiSettings,
                                                                   avdigits: Path) -> None:
    runs = [submit(client, {**AVDIGITS, "seed": seed})["id"] for seed in range(4)]
    for run_id in runs[:2]:
        trained(settings, run_id, commit="3f2a1c0" + "0" * 33, dirty=False)
    trained(settings, runs[2], commit="9e81b44" + "0" * 33, dirty=True)
    r = client.get("/differences", params={"run": runs})
    assert r.status_code == 200, r.text
    assert r.json() == {"runs": runs, "differences": [
        "code differs: 3f2a1c0 (2 runs), 9e81b44-dirty (1 run)",
        "1 run recorded no provenance (trained before it was recorded): not compared"]}
    assert client.get("/differences", params={"run": runs[:2]}).json()["differences"] == []
    error_of(client.get("/differences", params={"run": [runs[0], "0123456789abcdef"]}), 404, "run")
    assert client.get("/differences").status_code == 422


def test_a_sweep_says_how_its_runs_differ(client: TestClient, settings: ApiSettings) -> None:
    r = client.post("/sweeps", json={"base": config(epochs=2), "grid": {"seed": [0, 1]}})
    assert r.status_code == 201, r.text
    sweep = r.json()
    assert sweep["differences"] == []
    first, second = (run["id"] for run in sweep["runs"])
    trained(settings, first, commit="3f2a1c0" + "0" * 33, dirty=False)
    trained(settings, second, commit="3f2a1c0" + "0" * 33, dirty=True)
    assert client.get(f"/sweeps/{sweep['id']}").json()["differences"] == [
        "code differs: 3f2a1c0 (1 run), 3f2a1c0-dirty (1 run)"]
    for fmt, warned in (("markdown", True), ("latex", True), ("csv", False)):  # the CSV holds numbers only
        table = client.get(f"/sweeps/{sweep['id']}/table", params={"format": fmt}).text
        assert ("Warning: the runs' code differs: 3f2a1c0 (1 run), 3f2a1c0-dirty (1 run)." in table) is warned, fmt
    again = client.post(f"/runs/{first}/rerun").json()  # a re-run joins no sweep
    assert not any(t.startswith("sweep:") for t in again["tags"]) and again["id"] not in {
        run["id"] for run in client.get(f"/sweeps/{sweep['id']}").json()["runs"]}
