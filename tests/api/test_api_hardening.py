"""Issue 21: POST /sweeps as strict and safe as POST /runs (idempotency, broker outage, concurrency, bounded dataset
checks, refusals that name `grid.<key>` or `base.<field>`), tables that cannot inject formulas, an OpenAPI schema a
generated client can use, one rule for names and tags, the server's `sweep:` tags, and HEAD wherever GET is."""

from __future__ import annotations

import csv
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import api.runconfig
from amst_core.sweeps import to_csv, to_latex, to_markdown
from api.main import create_app
from api.settings import ApiSettings
from tests.kit.api import FakeDispatcher, config, counts, submit

BASE = {"method": "naive", "dataset": {"name": "synthetic"}, "device": "cpu", "epochs": 1}


def sweep(grid: dict[str, list[Any]] | None = None, **fields: Any) -> dict[str, Any]:
    return {"base": BASE, "grid": grid or {"seed": [0, 1]}, **fields}


def refused(resp: Any, field: str, *words: str, status: int = 422) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["field"] == field, error
    assert all(w in error["message"] for w in words), error
    return error


def nothing_stored(db_url: str) -> None:
    assert counts(db_url)["runs"] == 0


# ---------------------------------------------------------------- 6: concurrency and idempotency


def test_concurrent_sweeps_all_answer_and_none_fails_after_committing(app: FastAPI, db_url: str) -> None:
    """100 sweeps at once: SQLite's pool used to run out (QueuePool limit reached) and answer 500, some after
    the sweep was committed, so a client's retry duplicated it."""
    clients = 100
    start = threading.Barrier(clients)
    with TestClient(app, raise_server_exceptions=False, headers={"Content-Type": "application/json"}) as c:
        def post(i: int) -> Any:
            start.wait()
            return c.post("/sweeps", json=sweep(name=f"sweep {i}"))

        with ThreadPoolExecutor(clients) as pool:
            answers = list(pool.map(post, range(clients)))
        assert [r.status_code for r in answers] == [201] * clients, {r.text for r in answers if r.status_code != 201}
        assert len(c.get("/sweeps", params={"limit": 200}).json()["items"]) == clients
    assert counts(db_url)["runs"] == 2 * clients


def test_a_sweep_with_an_idempotency_key_is_replayed(client: TestClient, db_url: str,
                                                     dispatcher: FakeDispatcher) -> None:
    first = client.post("/sweeps", json=sweep(), headers={"Idempotency-Key": "sweep-1"})
    assert first.status_code == 201, first.text
    again = client.post("/sweeps", json=sweep(), headers={"Idempotency-Key": "sweep-1"})
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == f"/sweeps/{first.json()['id']}"
    assert counts(db_url)["runs"] == 2 and len(dispatcher.sent) == 2
    other = client.post("/sweeps", json=sweep({"seed": [0, 1, 2]}), headers={"Idempotency-Key": "sweep-1"})
    refused(other, "Idempotency-Key", "different", status=409)
    refused(client.post("/runs", json=config(), headers={"Idempotency-Key": "sweep-1"}), "Idempotency-Key",
            status=409)
    assert counts(db_url)["runs"] == 2


def test_concurrent_sweeps_with_one_key_make_one_sweep(client: TestClient, db_url: str) -> None:
    clients = 10
    start = threading.Barrier(clients)

    def post(_: int) -> Any:
        start.wait()
        return client.post("/sweeps", json=sweep(), headers={"Idempotency-Key": "double-click"})

    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(post, range(clients)))
    assert sorted(r.status_code for r in answers) == [200] * (clients - 1) + [201], [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    assert counts(db_url)["runs"] == 2


def test_a_bad_idempotency_key_on_a_sweep_is_refused(client: TestClient, db_url: str) -> None:
    refused(client.post("/sweeps", json=sweep(), headers={"Idempotency-Key": " x"}), "Idempotency-Key")
    nothing_stored(db_url)


# ---------------------------------------------------------------- 7: dataset checks, bounded


@pytest.fixture
def dataset_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every dataset check the API makes, by the class file it was asked about (each passes)."""
    seen: list[str] = []

    def check(cfg: Any, _roots: Any) -> Any:
        seen.append(str(cfg.dataset.class_file))
        return cfg

    monkeypatch.setattr(api.runconfig, "check_dataset", check)
    return seen


CREMAD = {"method": "naive", "dataset": {"name": "cremad"}, "device": "cpu", "epochs": 1}


def test_a_sweep_checks_each_distinct_dataset_once(client: TestClient, dataset_checks: list[str]) -> None:
    grid = {"dataset.class_file": ["a.txt", "b.txt"], "seed": [0, 1, 2], "optim.lr": [0.1, 0.01]}
    resp = client.post("/sweeps", json={"base": CREMAD, "grid": grid})
    assert resp.status_code == 201, resp.text
    assert sorted(dataset_checks) == ["a.txt", "b.txt"]


def test_a_sweep_over_many_datasets_is_refused_before_any_check(make_settings: Any, dispatcher: FakeDispatcher,
                                                                 dataset_checks: list[str], db_url: str) -> None:
    """1,000 class files over a large folder made 1,000 folder scans in one request: now a bounded number."""
    app = create_app(make_settings(sweep_max_dataset_checks=5))
    app.state.dispatcher = dispatcher
    files = [f"classes-{i}.txt" for i in range(6)]
    with TestClient(app, headers={"Content-Type": "application/json"}) as c:
        resp = c.post("/sweeps", json={"base": CREMAD, "grid": {"dataset.class_file": files}})
        refused(resp, "grid.dataset.class_file", "6 distinct datasets", "AMST_SWEEP_MAX_DATASET_CHECKS")
        assert dataset_checks == []
        assert c.post("/sweeps", json={"base": CREMAD, "grid": {"dataset.class_file": files[:5]}}).status_code == 201
    assert len(dataset_checks) == 5


def test_a_sweep_checks_the_model_shapes_against_each_cells_data(client: TestClient, data_root: Path,
                                                                 db_url: str) -> None:
    """The data check reads model.mel_bins too: a grid over it must be checked per value, not per dataset."""
    (data_root / "avdigits").mkdir()
    for split in ("train", "val", "test"):
        (data_root / "avdigits" / f"{split}.npz").write_bytes(b"")
    base = {"method": "naive", "dataset": {"name": "avdigits"}, "device": "cpu", "epochs": 1}
    resp = client.post("/sweeps", json={"base": base, "grid": {"model.mel_bins": [13, 64]}})
    refused(resp, "grid.model.mel_bins", "cell model.mel_bins=64", "13 MFCC")
    nothing_stored(db_url)


# ---------------------------------------------------------------- 8: tables


FORMULAS = ["=1+2", "+SUM(1,1)", "-1+2", "@SUM(A1)", '=HYPERLINK("http://evil","x")', "\t=1", "\r=1"]


def test_csv_cells_cannot_be_formulas_but_numbers_stay_numbers() -> None:
    text = to_csv(["method", "=key"], [[f, "-0.5"] for f in FORMULAS] + [["+3", "1e-3"]])
    assert text.startswith("method,'=key\n")
    rows = list(csv.reader(io.StringIO(text, newline="")))[1:]
    assert [r[0] for r in rows[:len(FORMULAS)]] == ["'" + f.replace("\r", "\n") for f in FORMULAS]
    assert all(r[1] == "-0.5" for r in rows[:len(FORMULAS)])
    assert rows[-1] == ["+3", "1e-3"]


def test_markdown_cells_are_escaped() -> None:
    text = to_markdown(["a|b", "c"], [["<img src=x onerror=alert(1)>", "x|y\nz"], ["*bold* [l](javascript:x)", "`c`"]])
    assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "x\\|y z" in text and "a\\|b" in text
    assert "*bold* \\[l\\](javascript:x)" in text and "\\`c\\`" in text
    assert len(text.splitlines()) == 4


def test_latex_cells_are_escaped() -> None:
    text = to_latex(["k_1"], [["\\input{/etc/passwd} $x$ & # ^ _ % ~ {}"]])
    assert "\\input" not in text and "\\textbackslash{}input\\{/etc/passwd\\}" in text
    assert "\\$x\\$ \\& \\# \\textasciicircum{} \\_ \\% \\textasciitilde{} \\{\\}" in text
    assert "k\\_1" in text


# ---------------------------------------------------------------- 9: an honest OpenAPI


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("schema")
    app = create_app(ApiSettings(database_url=f"sqlite:///{folder / 'amst.db'}", broker_url="memory://",
                                 api_token="", data_root=folder, artifacts=folder / "artifacts"))
    return app.openapi()


def test_non_json_responses_declare_their_media_types(schema: dict[str, Any]) -> None:
    config_200 = schema["paths"]["/runs/{run_id}/config"]["get"]["responses"]["200"]["content"]
    assert set(config_200) == {"application/json", "application/yaml"}
    assert all(media["schema"] == {"$ref": "#/components/schemas/RunConfig"} for media in config_200.values())
    table_200 = schema["paths"]["/sweeps/{sweep_id}/table"]["get"]["responses"]["200"]["content"]
    assert set(table_200) == {"text/csv", "text/markdown", "application/x-latex"}
    assert all(media["schema"] == {"type": "string"} for media in table_200.values())
    errors = schema["paths"]["/sweeps/{sweep_id}/table"]["get"]["responses"]["404"]["content"]
    assert set(errors) == {"application/json"}


def test_dataset_dependent_defaults_are_not_promised_by_the_schema(schema: dict[str, Any]) -> None:
    """A generated client sends the defaults the schema states: mel_bins 128 on avdigits is a 422."""
    model = schema["components"]["schemas"]["ModelConfig"]["properties"]
    for name in ("mel_bins", "image_size", "frames", "audio_frames", "width"):
        assert "default" not in model[name], name
        assert "the dataset's own" in model[name]["description"], name
    assert model["text_trainable_layers"].get("default") == 5 or "the dataset's own" in \
        model["text_trainable_layers"]["description"]
    dataset = schema["components"]["schemas"]["DatasetConfig"]["properties"]
    assert "default" not in dataset["root"] and "the dataset's own" in dataset["root"]["description"]


def test_configs_in_responses_are_typed(schema: dict[str, Any]) -> None:
    ref = {"$ref": "#/components/schemas/RunConfig"}
    assert schema["components"]["schemas"]["RunDetail"]["properties"]["config"] == ref
    summary = schema["components"]["schemas"]["RunSummary"]["properties"]["config"]
    assert ref in summary["anyOf"]


def test_a_generated_clients_model_section_runs_on_avdigits(client: TestClient, data_root: Path) -> None:
    from tests.kit.tiny import write_tiny_avdigits

    write_tiny_avdigits(data_root)
    run = submit(client, {"method": "naive", "dataset": {"name": "avdigits"}, "model": {"width": 8}})
    assert run["config"]["model"]["mel_bins"] == 13 and run["config"]["model"]["width"] == 8


# ---------------------------------------------------------------- 10: a strict sweep body


@pytest.mark.parametrize(("body", "field"), [
    (sweep(max_concurent=3), "max_concurent"),
    (sweep(basline={"seed": 0}), "basline"),
    (sweep(max_concurrent="2"), "max_concurrent"),
    (sweep(name=5), "name"),
    (sweep({"seed": "0"}), "grid.seed"),
])
def test_a_sweep_body_is_strict(client: TestClient, db_url: str, body: dict[str, Any], field: str) -> None:
    refused(client.post("/sweeps", json=body), field)
    nothing_stored(db_url)


@pytest.mark.parametrize(("body", "field", "words"), [
    (sweep({"epochs": [1, 20_000]}), "grid.epochs", ("cell epochs=20000", "epochs")),
    (sweep({"seed": [0], "tags": [["a"], [f"t{i}" for i in range(60)]]}), "grid.tags", ("cell seed=0, tags=",)),
    ({"base": {**BASE, "tags": [f"t{i}" for i in range(60)]}, "grid": {"seed": [0]}}, "base.tags", ("at most",)),
    ({"base": CREMAD, "grid": {"seed": [0, 1]}}, "base.dataset.root", ("cell seed=0", "does not exist")),
    ({"base": BASE, "grid": {"dataset.name": ["synthetic", "cremad"]}}, "grid.dataset.name",
     ("cell dataset.name=cremad",)),
    ({"base": {**BASE, "name": "\u202e"}, "grid": {"seed": [0]}}, "base.name", ()),
])
def test_sweep_refusals_name_the_grid_key_or_the_base_field(client: TestClient, db_url: str, body: dict[str, Any],
                                                            field: str, words: tuple[str, ...]) -> None:
    refused(client.post("/sweeps", json=body), field, *words)
    nothing_stored(db_url)


# ---------------------------------------------------------------- 11: names, tags, HEAD, outage


INVISIBLE = ["a\u0085b", "a\u009fb", "x\u2028y", "x\u2029y", "\u202eevil", "a\u202ab", "\u2066x\u2069",
             "\u200b", "\ufeff", "\u200b\u200d", " \u200b "]


@pytest.mark.parametrize("text", INVISIBLE)
def test_names_and_tags_must_be_visible_text(client: TestClient, text: str) -> None:
    run = submit(client)
    refused(client.patch(f"/runs/{run['id']}", json={"name": text}), "name")
    refused(client.patch(f"/runs/{run['id']}", json={"tags": ["ok", text]}), "tags.1")
    refused(client.post("/runs", json=config(name=text)), "name")
    refused(client.post("/runs", json=config(tags=[text])), "tags.0")
    refused(client.post("/sweeps", json=sweep(name=text)), "name")
    assert client.get(f"/runs/{run['id']}").json()["tags"] == []


def test_visible_names_with_unicode_are_fine(client: TestClient) -> None:
    run = submit(client, config(name="café \u00e9t\u00e9 \u05e9\u05dc\u05d5\u05dd", tags=["\u65e5\u672c"]))
    assert run["name"] == "café \u00e9t\u00e9 \u05e9\u05dc\u05d5\u05dd"
    resp = client.patch(f"/runs/{run['id']}", json={"name": "a\u200bb"})  # zero-width inside visible text
    assert resp.status_code == 200, resp.text


def test_the_sweep_tag_namespace_is_the_servers(client: TestClient) -> None:
    run = submit(client)
    refused(client.patch(f"/runs/{run['id']}", json={"tags": ["sweep:abc"]}), "tags.0", "sweep:")
    refused(client.post("/runs", json=config(tags=["x", "sweep:abc"])), "tags.1", "sweep:")
    refused(client.post("/sweeps", json={"base": {**BASE, "tags": ["sweep:x"]}, "grid": {"seed": [0]}}),
            "base.tags.0", "sweep:")
    created = client.post("/sweeps", json=sweep()).json()
    member = created["runs"][0]
    own = f"sweep:{created['id']}"
    assert own in member["tags"]
    assert "tags" not in client.get(f"/runs/{member['id']}/config").json() or \
        own not in client.get(f"/runs/{member['id']}/config").json()["tags"], "a re-run must not join the sweep"
    resp = client.patch(f"/runs/{member['id']}", json={"tags": ["mine"]})  # the sweep's tag stays
    assert resp.status_code == 200 and sorted(resp.json()["tags"]) == ["mine", own], resp.text
    resp = client.patch(f"/runs/{member['id']}", json={"tags": [own, "mine"]})  # its own: accepted, no change
    assert resp.status_code == 200 and sorted(resp.json()["tags"]) == ["mine", own], resp.text
    refused(client.patch(f"/runs/{run['id']}", json={"tags": [own]}), "tags.0", "sweep:")


def test_head_is_answered_wherever_get_is(client: TestClient) -> None:
    run = submit(client)
    created = client.post("/sweeps", json=sweep()).json()
    for path in ("/runs", f"/runs/{run['id']}", f"/runs/{run['id']}/config?format=yaml", "/sweeps",
                 f"/sweeps/{created['id']}/table?format=md", "/methods", "/health", "/openapi.json"):
        got, head = client.get(path), client.head(path)
        assert head.status_code == got.status_code, (path, head.status_code, head.text)
        assert head.content == b"" and head.headers["content-type"] == got.headers["content-type"], path
    assert client.head("/runs/nope").status_code == 404
    cancel = client.head(f"/runs/{run['id']}/cancel")
    assert cancel.status_code == 405 and "HEAD" not in cancel.headers["allow"]
    assert "HEAD" in client.options("/runs").headers["allow"]


def test_head_of_a_live_event_stream_ends(client: TestClient) -> None:
    run = submit(client)
    resp = client.head(f"/runs/{run['id']}/events")
    assert resp.status_code == 200 and resp.content == b""
    assert resp.headers["content-type"].startswith("text/event-stream")


def test_a_sweep_during_a_broker_outage_is_a_503_and_stores_nothing(client: TestClient, db_url: str,
                                                                     dispatcher: FakeDispatcher) -> None:
    dispatcher.fail = "broker unreachable"
    resp = client.post("/sweeps", json=sweep(), headers={"Idempotency-Key": "outage"})
    refused(resp, None, "broker unreachable", status=503)  # type: ignore[arg-type]
    nothing_stored(db_url)
    assert client.get("/sweeps").json()["items"] == []
    dispatcher.fail = None
    again = client.post("/sweeps", json=sweep(), headers={"Idempotency-Key": "outage"})
    assert again.status_code == 201, again.text


def test_a_pool_that_stays_busy_is_a_503_not_a_500(app: FastAPI) -> None:
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    from api.deps import db_session

    def busy() -> Any:
        raise PoolTimeout("QueuePool limit of size 1 overflow 0 reached")

    app.dependency_overrides[db_session] = busy
    with TestClient(app, raise_server_exceptions=False) as c:
        refused(c.get("/runs"), None, "busy", status=503)  # type: ignore[arg-type]
