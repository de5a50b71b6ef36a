"""Runs: submit, validation, idempotency, listing, lifecycle controls, downloads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from amst_core.store.db import get_engine
from amst_core.store.models import Run, RunStatus, utcnow
from api.settings import ApiSettings
from tests.kit.api import FakeDispatcher, FakeWorker, config, counts, submit
from tests.kit.tiny import write_tiny_avdigits


@contextmanager
def statements(app: FastAPI) -> Iterator[list[str]]:
    """The SQL statements the app runs inside the block (to prove there is no N+1)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        seen.append(sql)

    event.listen(app.state.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(app.state.engine, "before_cursor_execute", record)


def error_of(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["status"] == status and body["message"]
    return body


def test_submit_with_only_method_and_dataset(client: TestClient, dispatcher: FakeDispatcher, db_url: str) -> None:
    r = client.post("/runs", json={"method": "naive", "dataset": {"name": "synthetic"}})
    assert r.status_code == 201, r.text
    run = r.json()
    assert r.headers["location"] == f"/runs/{run['id']}"
    assert run["status"] == "queued" and run["queue"] == "gpu" and run["queue_position"] == 0
    # Filled in from the dataset's recipe, as the New run form and sweeps do (GET /datasets `recipes`).
    assert run["config"]["epochs"] == 5 and run["config"]["optim"]["lr"] == 0.05
    assert run["config"]["optim"]["lr_step"] == 70 and run["config"]["recipe"] == "dataset"  # the reference's
    assert run["config_origin"]["optim.lr"] == "recipe" and run["config_origin"]["optim.lr_step"] == "reference"
    assert run["config_origin"]["model.frames"] == "data" and "name" not in run["config_origin"]
    assert run["epochs_total"] == 5 and run["progress"] == 0.0 and run["eta_s"] is None
    assert dispatcher.sent == [(run["id"], "gpu")]
    with Session(get_engine(db_url)) as s:
        assert s.scalar(select(Run.task_id).where(Run.id == run["id"])) == f"task-{run['id']}-1"
    again = client.get(f"/runs/{run['id']}").json()
    assert again["id"] == run["id"] and again["config"] == run["config"] and again["attempts"] == []
    paper = client.post("/runs", json={"method": "naive", "dataset": {"name": "synthetic"}, "recipe": "reference",
                                       "seed": 4}).json()
    assert paper["config"]["optim"]["lr"] == 0.001 and paper["config"]["epochs"] == 100
    assert paper["config_origin"]["optim.lr"] == "reference" and paper["config_origin"]["seed"] == "request"


def test_submit_names_tags_and_queue_position(client: TestClient) -> None:
    first = submit(client, config(name="a", tags=["x", "y", "x"]))
    second = submit(client, config(seed=3))
    assert first["name"] == "a" and first["tags"] == ["x", "y"]
    assert second["name"] == "naive_synthetic_3" and second["queue_position"] == 1


BAD_BODIES: list[tuple[str, bytes | dict[str, Any] | list[Any], int, str | None, str]] = [
    # (case, body, status, field, words the message must contain)
    ("malformed", b'{"method": "naive", ', 400, "body", "malformed JSON"),
    ("empty", b"", 400, "body", "malformed JSON"),
    ("nan literal", b'{"method": "naive", "dataset": {"name": "synthetic"}, "seed": NaN}', 400, "body", "NaN"),
    ("not utf-8", b'{"method": "\xff\xfe"}', 400, "body", "malformed JSON"),
    ("deep", b"[" * 100_000, 400, "body", "malformed JSON"),
    ("not an object", [1, 2], 422, None, "JSON object"),
    ("no method", {"dataset": {"name": "synthetic"}}, 422, "method", "Field required"),
    ("unknown method", config("magic"), 422, "method", "unknown method 'magic'"),
    ("unknown dataset", {"method": "naive", "dataset": {"name": "mnist"}}, 422, "dataset.name", "unknown dataset"),
    ("skip factor 0", config(skip={"audio": 0}), 422, "skip.audio", "greater than or equal to 1"),
    ("root outside", config(dataset={"name": "avdigits", "root": "../etc"}), 422, "dataset.root", "outside"),
    ("root absolute", config(dataset={"name": "avdigits", "root": "/etc"}), 422, "dataset.root", "outside"),
    ("not prepared", config(dataset={"name": "avdigits"}), 422, "dataset.root", "amst prepare avdigits"),
    ("unknown field", config(bogus=1), 422, "bogus", "Extra inputs"),
    ("bad method param", config("amst_alt", method_params={"skip_mode": "sometimes"}), 422,
     "method_params.skip_mode", "faithful"),
    ("fixed fusion", config("amst_alt", fusion="concat"), 422, "fusion", "fixes its own heads"),
    ("huge epochs", config(epochs=10**12), 422, "epochs", "at most 10000 epochs on this server"),
    ("infinite lr", b'{"method": "naive", "dataset": {"name": "synthetic"}, "optim": {"lr": 1e999}}', 422,
     "optim.lr", "finite"),
    ("nul in name", config(name="a\u0000b"), 422, "name", "NUL"),
    ("long tag", config(tags=["t" * 101]), 422, "tags.0", "at most 100"),
    ("long name", config(name="n" * 201), 422, "name", "at most 200"),
    ("wrong type", config(epochs="many"), 422, "epochs", "valid integer"),
    ("unknown param", config("ogm_ge", method_params={"beta": 1}), 422, "method_params.beta", "Extra inputs"),
    ("negative alpha", config("ogm_ge", method_params={"alpha": -1}), 422, "method_params.alpha", "greater than"),
    ("window backwards", config("pmr", method_params={"modulation_start": 9, "modulation_end": 3}), 422,
     "method_params.modulation_end", "before modulation_start"),
    ("pmr on three", config("pmr", dataset={"name": "synthetic", "synthetic": {
        "modalities": ["audio", "text", "visual"]}}), 422, "method", "exactly 2 modalities"),
    ("unimodal without modality", config("unimodal"), 422, "method_params.modality", "one modality"),
    ("unimodal absent modality", config("unimodal", method_params={"modality": "text"}), 422,
     "method_params.modality", "has no text"),
]


@pytest.mark.parametrize("case", BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_bad_body_is_a_4xx_naming_the_field_and_writes_nothing(
        case: tuple[str, Any, int, str | None, str], client: TestClient, dispatcher: FakeDispatcher,
        db_url: str) -> None:
    _, body, status, field, words = case
    before = counts(db_url)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = client.post("/runs", content=raw, headers={"content-type": "application/json"})
    err = error_of(r, status)
    assert err["field"] == field, err
    assert words in err["message"], err
    if field is not None and status == 422:
        assert err["message"].startswith(f"{field}: "), err  # the message names the field too
    assert counts(db_url) == before and dispatcher.sent == []


def test_bad_idempotency_key_and_broker_down_write_nothing(client: TestClient, dispatcher: FakeDispatcher,
                                                            db_url: str) -> None:
    before = counts(db_url)
    err = error_of(client.post("/runs", json=config(), headers={"Idempotency-Key": "k" * 201}), 422)
    assert err["field"] == "Idempotency-Key"
    dispatcher.fail = "connection refused"
    err = error_of(client.post("/runs", json=config()), 503)
    assert err["message"] == "could not queue the run: connection refused"
    assert counts(db_url) == before


def test_prepared_dataset_is_accepted(client: TestClient, data_root: Path) -> None:
    write_tiny_avdigits(data_root)
    run = submit(client, config(dataset={"name": "avdigits", "preset": "hard"}))
    assert run["dataset"] == "avdigits"
    assert run["config"]["model"]["mel_bins"] == 13  # avdigits' own default, not the reference's 128
    (data_root / "mine").symlink_to(data_root / "avdigits")  # a link that stays inside AMST_DATA_ROOT is fine
    assert submit(client, config(dataset={"name": "avdigits", "root": "mine"}))["config"]["dataset"]["root"] == "mine"


def test_idempotency_key_replays_and_conflicts(client: TestClient, dispatcher: FakeDispatcher, db_url: str) -> None:
    first = client.post("/runs", json=config(seed=1), headers={"Idempotency-Key": "req-1"})
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    # Same request, spelled differently (a default written out, other key order): still the same request.
    same = {"seed": 1, "device": "cpu", "epochs": 5, "batch_size": 64, "dataset": {"name": "synthetic"},
            "method": "naive"}
    replay = client.post("/runs", json=same, headers={"Idempotency-Key": "req-1"})
    assert replay.status_code == 200 and replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] == first.json()["id"]
    before = counts(db_url)
    err = error_of(client.post("/runs", json=config(seed=2), headers={"Idempotency-Key": "req-1"}), 409)
    assert err["field"] == "Idempotency-Key"
    assert counts(db_url) == before and len(dispatcher.sent) == 1
    other = client.post("/runs", json=config(seed=1), headers={"Idempotency-Key": "req-2"})
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]


ROUTES_OF_A_RUN = [("GET", ""), ("GET", "/metrics"), ("GET", "/events"), ("GET", "/checkpoint"), ("GET", "/config"),
                   ("POST", "/cancel"), ("POST", "/retry"), ("DELETE", "")]


def test_unknown_run_is_404_everywhere(client: TestClient) -> None:
    for method, suffix in ROUTES_OF_A_RUN:
        for run_id in ("0123456789abcdef", "not-a-run"):
            err = error_of(client.request(method, f"/runs/{run_id}{suffix}"), 404)
            assert err["message"] == f"run {run_id} not found", (method, suffix)
    err = error_of(client.get("/no/such/route"), 404)
    assert "/docs" in err["message"]


def make_runs(client: TestClient, db_url: str) -> dict[str, list[str]]:
    """Five runs that match every filter of the pagination test, and a decoy for each filter."""
    match = [submit(client, config(tags=["sweep", "lr"], seed=i))["id"] for i in range(5)]
    decoys = {
        "method": submit(client, config("amst_alt", tags=["sweep", "lr"]))["id"],
        "dataset": submit(client, config(dataset={"name": "synthetic", "synthetic": {"num_classes": 3}}))["id"],
        "tag": submit(client, config(tags=["sweep"]))["id"],
        "status": submit(client, config(tags=["sweep", "lr"]))["id"],
    }
    with Session(get_engine(db_url)) as s, s.begin():
        s.execute(update(Run).where(Run.id == decoys["status"]).values(status=RunStatus.failed))
        s.execute(update(Run).where(Run.id == decoys["dataset"]).values(dataset="cremad"))
        # Three runs created in the same microsecond: the id breaks the tie, and no page may lose or repeat one.
        same = utcnow() - timedelta(hours=1)
        s.execute(update(Run).where(Run.id.in_(match[1:4])).values(created_at=same))
    return {"match": match, **{k: [v] for k, v in decoys.items()}}


def newest_first(db_url: str, ids: list[str]) -> list[str]:
    with Session(get_engine(db_url)) as s:
        return list(s.scalars(select(Run.id).where(Run.id.in_(ids)).order_by(Run.created_at.desc(), Run.id.desc())))


def test_pagination_with_filters(client: TestClient, app: FastAPI, db_url: str) -> None:
    runs = make_runs(client, db_url)
    params: dict[str, Any] = {"status": "queued", "method": "naive", "dataset": "synthetic", "tag": ["sweep", "lr"],
                              "limit": 2}
    pages, cursor = [], None
    for _ in range(3):
        with statements(app) as sql:
            page = client.get("/runs", params={**params, **({"cursor": cursor} if cursor else {})}).json()
        assert len(sql) <= 2, sql  # the page, and the tags of the whole page: no N+1
        pages.append([item["id"] for item in page["items"]])
        cursor = page["next_cursor"]
    assert [len(p) for p in pages] == [2, 2, 1] and cursor is None
    assert [i for p in pages for i in p] == newest_first(db_url, runs["match"])
    item = client.get("/runs", params={"tag": "lr", "limit": 1}).json()["items"][0]
    assert set(item) >= {"progress", "best_val_acc", "heartbeat_age_s", "tags", "queue", "epochs_total"}
    either = client.get("/runs", params={"status": ["queued", "failed"], "tag": ["sweep", "lr"]}).json()["items"]
    assert {i["id"] for i in either} == {*runs["match"], *runs["method"], *runs["status"]}
    many = client.get("/runs", params=[("status", "failed"), ("status", "queued"), ("method", "amst_alt")]).json()
    assert [i["id"] for i in many["items"]] == runs["method"]
    assert len(client.get("/runs").json()["items"]) == 9


@pytest.mark.parametrize(("params", "status", "field"), [
    ({"cursor": "not-a-cursor"}, 400, "cursor"),
    ({"cursor": "W" * 1000}, 422, "cursor"),
    ({"cursor": "WyIyMDI2IiwiJCQkIl0"}, 400, "cursor"),  # ["2026","$$$"]: decodes, but is no cursor of ours
    ({"status": "sleeping"}, 422, "status"),
    ({"limit": 0}, 422, "limit"),
    ({"limit": 201}, 422, "limit"),
    ({"limit": "ten"}, 422, "limit"),
    ({"tag": "a\u0000"}, 422, "tag"),
    ({"method": "naive,amst_alt"}, 422, "method"),  # repeat the parameter instead
    ({"method": ["naive"] * 51}, 422, "method"),
])
def test_list_bad_query(client: TestClient, params: dict[str, Any], status: int, field: str) -> None:
    err = error_of(client.get("/runs", params=params), status)
    assert err["field"] == field and field in err["message"]


def test_cancel_queued_run_at_once_and_revoke(client: TestClient, dispatcher: FakeDispatcher) -> None:
    run = submit(client)
    r = client.post(f"/runs/{run['id']}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled" and r.json()["cancel_requested"] and r.json()["finished_at"]
    assert dispatcher.revoked == [f"task-{run['id']}-1"]
    err = error_of(client.post(f"/runs/{run['id']}/cancel"), 409)
    assert "already cancelled" in err["message"]


def test_cancel_running_run_sets_the_flag(client: TestClient, db_url: str) -> None:
    run = submit(client)
    FakeWorker(db_url, run["id"]).start()
    body = client.post(f"/runs/{run['id']}/cancel").json()
    assert body["status"] == "running" and body["cancel_requested"] is True


def test_retry_failed_run(client: TestClient, dispatcher: FakeDispatcher, db_url: str) -> None:
    run = submit(client)
    worker = FakeWorker(db_url, run["id"]).start()
    worker.epoch(0)
    worker.finish(RunStatus.failed, "CUDA out of memory")
    assert error_of(client.post(f"/runs/{submit(client)['id']}/retry"), 409)["message"].startswith("only a failed")
    dispatcher.fail = "broker down"
    error_of(client.post(f"/runs/{run['id']}/retry"), 503)
    detail = client.get(f"/runs/{run['id']}").json()
    assert detail["status"] == "failed" and detail["error"] == "CUDA out of memory"  # unchanged by the failed retry
    dispatcher.fail = None
    r = client.post(f"/runs/{run['id']}/retry")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "queued" and r.json()["error"] is None and r.json()["epochs_done"] == 1
    assert dispatcher.sent[-1] == (run["id"], "cpu")
    assert r.json()["attempts"][0]["status"] == "failed"


def test_delete(client: TestClient, db_url: str, settings: ApiSettings) -> None:
    run = submit(client)
    worker = FakeWorker(db_url, run["id"]).start()
    worker.epoch(0)
    err = error_of(client.delete(f"/runs/{run['id']}"), 409)
    assert "cancel it first" in err["message"]
    worker.finish()
    (settings.run_dir(run["id"]) / "checkpoints").mkdir(parents=True)
    (settings.run_dir(run["id"]) / "checkpoints" / "last.pt").write_bytes(b"x")
    r = client.delete(f"/runs/{run['id']}")
    assert r.status_code == 204 and r.content == b""
    error_of(client.get(f"/runs/{run['id']}"), 404)
    assert not settings.run_dir(run["id"]).exists()
    assert counts(db_url) == {"runs": 0, "run_tags": 0, "attempts": 0, "series": 0, "points": 0}
    queued = submit(client)
    assert client.delete(f"/runs/{queued['id']}").status_code == 204


def test_checkpoint_download(client: TestClient, settings: ApiSettings) -> None:
    run = submit(client)
    err = error_of(client.get(f"/runs/{run['id']}/checkpoint"), 404)
    assert "no best checkpoint" in err["message"]
    folder = settings.run_dir(run["id"]) / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "best.pt").write_bytes(b"best weights")
    (folder / "last.pt").write_bytes(b"last weights")
    r = client.get(f"/runs/{run['id']}/checkpoint")
    assert r.status_code == 200 and r.content == b"best weights"
    assert f"{run['id']}-best.pt" in r.headers["content-disposition"]
    assert client.get(f"/runs/{run['id']}/checkpoint", params={"which": "last"}).content == b"last weights"
    assert error_of(client.get(f"/runs/{run['id']}/checkpoint", params={"which": "worst"}), 422)["field"] == "which"


def test_config_download(client: TestClient) -> None:
    run = submit(client, config(name="cfg"))
    assert client.get(f"/runs/{run['id']}/config").json() == run["config"]
    r = client.get(f"/runs/{run['id']}/config", params={"format": "yaml"})
    assert r.headers["content-type"].startswith("application/yaml")
    assert yaml.safe_load(r.text) == run["config"]


def test_detail_in_few_queries(client: TestClient, app: FastAPI, db_url: str) -> None:
    run = submit(client)
    worker = FakeWorker(db_url, run["id"]).start()
    for epoch in range(3):
        worker.epoch(epoch)
    with statements(app) as sql:
        detail = client.get(f"/runs/{run['id']}").json()
    assert len(sql) <= 5, sql  # run, tags, attempts, latest values, queue position
    assert detail["epochs_done"] == 3 and detail["median_epoch_s"] == 1.5 and detail["eta_s"] == 3.0
    assert detail["heartbeat_age_s"] is not None and detail["heartbeat_age_s"] < 60
    latest = {(v["split"], v["component"], v["modality"], v["name"]): v for v in detail["latest"]}
    assert latest[("val", "fused", None, "acc")] == {"split": "val", "component": "fused", "modality": None,
                                                     "name": "acc", "epoch": 2, "value": 0.52}
    assert detail["best_epoch"] == 2 and detail["attempts"][0]["worker_id"] == "w1"
