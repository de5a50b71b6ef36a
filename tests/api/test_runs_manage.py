"""Managing runs: PATCH /runs/{id} (name, notes, tags, archive) and GET /runs?q=... (search), archived,
with_config, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from amst_core.store import queries
from amst_core.store.db import get_engine
from amst_core.store.models import Run, RunTag, utcnow
from tests.kit.api import TOKEN, FakeWorker, config, submit
from tests.kit.fuzz import check, junk, raw_bodies


def error_of(r: Any, status: int, field: str | None) -> str:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["status"] == status and body["field"] == field, body
    return body["message"]


def patch(client: TestClient, run_id: str, body: Any, status: int = 200) -> dict[str, Any]:
    r = client.patch(f"/runs/{run_id}", json=body)
    assert r.status_code == status, r.text
    return r.json()


def ids(page: dict[str, Any]) -> list[str]:
    return [item["id"] for item in page["items"]]


# ---- PATCH ----------------------------------------------------------------------------------------------------

def test_rename_strips_and_keeps_the_config(client: TestClient) -> None:
    run = submit(client, config(name="first", tags=["a"]))
    out = patch(client, run["id"], {"name": "  a better name  "})
    assert out["name"] == "a better name" and out["config"]["name"] == "first" and out["tags"] == ["a"]
    assert out["notes"] is None and out["archived"] is False and out["archived_at"] is None
    assert client.get(f"/runs/{run['id']}").json()["name"] == "a better name"


def test_rename_a_running_run(client: TestClient, db_url: str) -> None:
    run = submit(client)
    worker = FakeWorker(db_url, run["id"]).start()
    worker.epoch(0)
    out = patch(client, run["id"], {"name": "still training"})
    assert out["status"] == "running" and out["name"] == "still training"
    worker.epoch(1)  # the worker's writes do not undo the new name, nor does the name stop them
    detail = client.get(f"/runs/{run['id']}").json()
    assert detail["name"] == "still training" and detail["epochs_done"] == 2


def test_notes_set_and_clear(client: TestClient) -> None:
    run = submit(client)
    text = "lr too high?\nsee the audio branch\tfrom epoch 3 on " + "x" * 19_900
    assert patch(client, run["id"], {"notes": text})["notes"] == text
    assert patch(client, run["id"], {"name": "n"})["notes"] == text  # a field left out stays
    assert patch(client, run["id"], {"notes": None})["notes"] is None


def test_tags_replace_the_runs_tags(client: TestClient, db_url: str) -> None:
    run = submit(client, config(tags=["keep", "drop"]))
    assert patch(client, run["id"], {"tags": ["new", "keep", "new"]})["tags"] == ["keep", "new"]
    assert ids(client.get("/runs", params={"tag": "new"}).json()) == [run["id"]]
    assert ids(client.get("/runs", params={"tag": "drop"}).json()) == []
    assert patch(client, run["id"], {"tags": []})["tags"] == []
    with Session(get_engine(db_url)) as s:
        assert s.scalars(select(RunTag).where(RunTag.run_id == run["id"])).all() == []


def test_archive_hides_from_the_default_list(client: TestClient) -> None:
    old, kept = submit(client)["id"], submit(client)["id"]
    out = patch(client, old, {"archived": True})
    assert out["archived"] is True and out["archived_at"] is not None
    assert patch(client, old, {"archived": True})["archived_at"] == out["archived_at"]  # the first time stays
    assert ids(client.get("/runs").json()) == [kept]
    assert ids(client.get("/runs", params={"archived": "hide"}).json()) == [kept]
    assert ids(client.get("/runs", params={"archived": "only"}).json()) == [old]
    assert set(ids(client.get("/runs", params={"archived": "all"}).json())) == {old, kept}
    assert client.get("/runs", params={"archived": "all"}).json()["items"][0]["archived"] in (True, False)
    assert client.get(f"/runs/{old}").json()["archived"] is True  # still readable by id
    back = patch(client, old, {"archived": False})
    assert back["archived"] is False and back["archived_at"] is None
    assert set(ids(client.get("/runs").json())) == {old, kept}


def test_all_fields_at_once(client: TestClient) -> None:
    run = submit(client)
    out = patch(client, run["id"], {"name": "x", "notes": "y", "tags": ["z"], "archived": True})
    assert (out["name"], out["notes"], out["tags"], out["archived"]) == ("x", "y", ["z"], True)


def test_unknown_run_is_404(client: TestClient) -> None:
    for run_id in ("0123456789abcdef", "not-a-run", "bad%20id"):
        message = error_of(client.patch(f"/runs/{run_id}", json={"name": "x"}), 404, "run_id")
        assert "not found" in message


@pytest.mark.parametrize(("body", "field", "says"), [
    ({}, "body", "nothing to change"),
    ([], "body", "JSON object"),
    ("name", "body", "JSON object"),
    ({"name": "x", "colour": "red"}, "colour", "Extra inputs are not permitted"),
    ({"name": ""}, "name", "at least 1 character"),
    ({"name": "   "}, "name", "at least 1 character"),
    ({"name": "a\nb"}, "name", "control characters"),
    ({"name": "n" * 201}, "name", "at most 200 characters"),
    ({"name": None}, "name", "valid string"),
    ({"name": 5}, "name", "valid string"),
    ({"notes": "n" * 20_001}, "notes", "at most 20000 characters"),
    ({"notes": "a\u0000b"}, "notes", "NUL"),
    (b'{"notes": "\\ud800"}', "notes", "unicode string"),  # half a surrogate pair, as a JSON escape
    ({"tags": "baseline"}, "tags", "valid list"),
    ({"tags": None}, "tags", "valid list"),
    ({"tags": ["ok", ""]}, "tags.1", "at least 1 character"),
    ({"tags": ["t" * 101]}, "tags.0", "at most 100 characters"),
    ({"tags": ["a\tb"]}, "tags.0", "control characters"),
    ({"tags": [f"t{i}" for i in range(51)]}, "tags", "at most 50 tags on this server (AMST_MAX_TAGS); got 51"),
    ({"archived": "yes"}, "archived", "valid boolean"),
    ({"archived": 1}, "archived", "valid boolean"),
    ({"archived": None}, "archived", "valid boolean"),
])
def test_bad_body_is_a_422_naming_the_field(client: TestClient, db_url: str, body: Any, field: str,
                                            says: str) -> None:
    run = submit(client, config(name="same", tags=["t"]))
    sent = {"content": body} if isinstance(body, bytes) else {"json": body}
    message = error_of(client.patch(f"/runs/{run['id']}", **sent), 422, field)
    assert says in message and message.startswith(f"{field}: "), message
    after = client.get(f"/runs/{run['id']}").json()
    assert (after["name"], after["tags"], after["notes"], after["archived"]) == ("same", ["t"], None, False)


def test_no_body_is_422_and_malformed_json_400(client: TestClient) -> None:
    run_id = submit(client)["id"]
    message = error_of(client.patch(f"/runs/{run_id}"), 422, "body")
    assert "name, notes, tags, archived" in message
    assert "malformed JSON" in error_of(client.patch(f"/runs/{run_id}", content=b'{"name": '), 400, "body")
    assert "not valid JSON" in error_of(client.patch(f"/runs/{run_id}", content=b'{"notes": NaN}'), 400, "body")


def test_duplicate_tags_count_once_against_the_limit(client: TestClient) -> None:
    run_id = submit(client)["id"]
    assert len(patch(client, run_id, {"tags": [f"t{i % 50}" for i in range(120)]})["tags"]) == 50


def test_patch_needs_the_token_when_the_server_has_one(locked: TestClient) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    run_id = locked.post("/runs", json=config(name="before"), headers=auth).json()["id"]
    r = locked.patch(f"/runs/{run_id}", json={"name": "after"})
    assert error_of(r, 401, "Authorization") and r.headers["www-authenticate"] == "Bearer"
    error_of(locked.patch(f"/runs/{run_id}", json={"name": "after"}, headers={"Authorization": "Bearer no"}),
             403, "Authorization")
    assert locked.patch("/runs/nope", json={"colour": 1}).status_code == 401  # auth before anything else
    assert locked.get(f"/runs/{run_id}").json()["name"] == "before"
    assert locked.patch(f"/runs/{run_id}", json={"name": "after"}, headers=auth).json()["name"] == "after"


def test_patch_is_in_the_openapi_schema(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/runs/{run_id}"]["patch"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert operation["requestBody"]["required"] is True
    assert set(body["properties"]) == {"name", "notes", "tags", "archived"}
    assert body["additionalProperties"] is False and body["minProperties"] == 1
    assert {"200", "401", "404", "422"} <= set(operation["responses"])
    get = {p["name"]: p for p in spec["paths"]["/runs"]["get"]["parameters"]}
    assert get["archived"]["schema"]["enum"] == ["hide", "only", "all"] and get["q"]["schema"]["maxLength"] == 500
    assert "with_config" in get
    allow = client.options(f"/runs/{'0' * 16}").headers["allow"]
    assert "PATCH" in allow


# ---- search ---------------------------------------------------------------------------------------------------

def searched(client: TestClient, q: str, **params: Any) -> list[str]:
    r = client.get("/runs", params={"q": q, **params})
    assert r.status_code == 200, r.text
    return ids(r.json())


def set_results(db_url: str, run_id: str, **values: Any) -> None:
    with Session(get_engine(db_url)) as s, s.begin():
        s.execute(update(Run).where(Run.id == run_id).values(**values))


def test_search_by_fields_config_tags_and_words(client: TestClient, db_url: str) -> None:
    full = submit(client, config("amst_full", name="fusion study", seed=1, tags=["baseline"],
                                 optim={"lr": 0.01}))["id"]
    naive = submit(client, config("naive", name="plain", seed=0, optim={"lr": 0.001}, skip={"audio": 3}))["id"]
    set_results(db_url, full, best_val_acc=0.93)
    set_results(db_url, naive, best_val_acc=0.5, notes="Diverged at epoch 4")
    assert searched(client, "optim.lr=0.01") == [full] and searched(client, "optim.lr=1e-3") == [naive]
    assert searched(client, "best_val_acc>0.9") == [full]
    assert searched(client, "method=amst_full seed>=1") == [full]
    assert searched(client, "tag=baseline") == [full] and searched(client, "tag!=baseline") == [naive]
    assert searched(client, "fusion") == [full] and searched(client, "FUSION") == [full]
    assert searched(client, full[:6]) == [full]
    assert searched(client, "notes~diverged") == [naive] and searched(client, "skip.audio>2") == [naive]
    assert searched(client, '"fusion study"') == [full] and searched(client, 'name="plain"') == [naive]
    assert searched(client, "nothing-matches") == []
    assert searched(client, "seed>=0", method="naive") == [naive]  # with the SQL filters
    assert searched(client, "") == [naive, full]


def test_search_respects_archived(client: TestClient) -> None:
    shown, hidden = submit(client, config(tags=["x"]))["id"], submit(client, config(tags=["x"]))["id"]
    patch(client, hidden, {"archived": True})
    assert searched(client, "tag=x") == [shown]
    assert searched(client, "tag=x", archived="only") == [hidden]
    assert searched(client, "tag=x", archived="all") == [hidden, shown]


@pytest.mark.parametrize(("q", "says"), [
    ("best_val_acc>high", '"best_val_acc>high": best_val_acc > needs a number'),
    ('name="my run', '"name="my run": unterminated quote'),
    ("seed=>1", '"seed=>1": unknown operator =>'),
    ("=1", '"=1": = needs a field name'),
    ("name<3", '"name<3": name is text'),
    ("foo.bar=1", '"foo.bar=1": unknown key foo: use a run field (name, id,'),
    ("optim.lrr=1", '"optim.lrr=1": unknown key optim.lrr: optim has lr, momentum'),
])
def test_bad_query_is_a_422_naming_q(client: TestClient, q: str, says: str) -> None:
    message = error_of(client.get("/runs", params={"q": q}), 422, "q")
    assert message.startswith(f"q: {says}"), message


def test_bad_list_parameters(client: TestClient) -> None:
    assert "at most 500" in error_of(client.get("/runs", params={"q": "x" * 501}), 422, "q")
    assert error_of(client.get("/runs", params={"archived": "yes"}), 422, "archived")
    assert error_of(client.get("/runs", params={"with_config": "maybe"}), 422, "with_config")


def test_search_pages_through_many_batches(client: TestClient, db_url: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queries, "SEARCH_BATCH", 3)  # several SQL batches per page
    made = [submit(client, config(seed=i % 3, tags=["even"] if i % 2 == 0 else []))["id"] for i in range(16)]
    base = utcnow() - timedelta(hours=1)
    for i, run_id in enumerate(made):  # distinct, known order; runs 4 to 6 share a timestamp (the id breaks ties)
        set_results(db_url, run_id, created_at=base + timedelta(seconds=max(i, 4) if i < 7 else i))
    with Session(get_engine(db_url)) as s:
        order = list(s.scalars(select(Run.id).order_by(Run.created_at.desc(), Run.id.desc())))
    wanted = [r for r in order if made.index(r) % 2 == 0 and made.index(r) % 3 != 0]
    pages, cursor = [], None
    for _ in range(10):
        page = client.get("/runs", params={"q": "tag=even seed>=1", "limit": 2,
                                           **({"cursor": cursor} if cursor else {})}).json()
        pages.append(ids(page))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [i for p in pages for i in p] == wanted and len(wanted) == 5
    assert [len(p) for p in pages] == [2, 2, 1] and cursor is None


def test_search_scan_is_bounded_and_its_cursor_goes_on(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queries, "SEARCH_BATCH", 2)
    monkeypatch.setattr(queries, "SEARCH_SCAN", 3)
    target = submit(client, config(name="needle"))["id"]
    for _ in range(5):
        submit(client, config(name="hay"))
    pages, cursor = [], None
    for _ in range(10):
        page = client.get("/runs", params={"q": "needle", **({"cursor": cursor} if cursor else {})}).json()
        pages.append(ids(page))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [[], [target]]  # the first request read 3 runs, found nothing, and said where to go on


def test_with_config(client: TestClient) -> None:
    run = submit(client, config(optim={"lr": 0.02}))
    plain = client.get("/runs").json()["items"][0]
    assert plain["config"] is None
    item = client.get("/runs", params={"with_config": "true"}).json()["items"][0]
    assert item["config"] == client.get(f"/runs/{run['id']}").json()["config"]
    assert item["config"]["optim"]["lr"] == 0.02
    searched_item = client.get("/runs", params={"with_config": "true", "q": "optim.lr=0.02"}).json()["items"]
    assert [i["config"]["optim"]["lr"] for i in searched_item] == [0.02]
    metrics = client.get(f"/runs/{run['id']}/metrics").json()
    assert metrics["run"]["config"] is None


# ---- fuzz -----------------------------------------------------------------------------------------------------

SEARCH_PIECES = ["name", "optim.lr", "tag", "seed", "notes", "config.", "a.b.c", '"', "=", "!=", ">", ">=", "<",
                 "<=", "~", "==", "!", "x", "0.5", "-1e999", "true", " ", "\u0000", "\ud800", "é", "\n", "%"]


def test_no_patch_body_or_search_gives_a_500(app: FastAPI) -> None:
    rng = random.Random(20261202)
    client = TestClient(app, raise_server_exceptions=False, headers={"Content-Type": "application/json"})
    run_id = submit(client, config(tags=["t"]))["id"]
    fields = ["name", "notes", "tags", "archived", "bogus"]
    bodies = raw_bodies(rng, 60) + [json.dumps({rng.choice(fields): junk(rng) for _ in range(rng.randrange(1, 4))},
                                               ensure_ascii=True).encode() for _ in range(150)]
    for body in bodies:
        check(client.patch(f"/runs/{run_id}", content=body), f"PATCH {body[:80]!r}")
    for _ in range(200):
        q = "".join(rng.choice(SEARCH_PIECES) for _ in range(rng.randrange(1, 12)))
        params = [("q", q), ("archived", rng.choice(["hide", "only", "all", "x"])),
                  ("with_config", rng.choice(["true", "false", "1", "?"])), ("limit", str(rng.randrange(1, 4)))]
        url = f"/runs?{urlencode(params, errors='surrogatepass')}"  # a lone surrogate: invalid UTF-8 on the wire
        check(client.get(url), f"GET {url}")
