"""Catalog, workers, health, OpenAPI, the reaper, and the promise that the API never imports torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from amst_core.catalog import DATASETS, METHODS
from amst_core.placement import Placement
from amst_core.store import lifecycle
from amst_core.store.db import get_engine
from amst_core.store.models import Run, RunStatus, Worker, utcnow
from api.main import create_app, reap_once
from api.settings import ApiSettings
from tests.kit.api import FakeDispatcher, FakeWorker, config, submit
from tests.kit.tiny import write_tiny_avdigits, write_tiny_folder


def test_methods(client: TestClient) -> None:
    methods = {m["name"]: m for m in client.get("/methods").json()}
    assert set(methods) == set(METHODS)
    full = methods["amst_full"]
    assert full["fusion_fixed"] and full["uses_skip"] and full["default_fusion"] == "concat"
    assert full["params_defaults"] == {"skip_mode": "faithful", "full_joint_update": "alt"}
    assert "full_joint_update" in full["params_schema"]["properties"]
    assert methods["naive"]["params_defaults"] == {} and not methods["naive"]["fusion_fixed"]


def test_vocabulary_serves_the_library_words_and_is_in_openapi(client: TestClient) -> None:
    """The dashboard takes its words from here: exactly amst_core.vocab's, typed in OpenAPI."""
    from amst_core import vocab

    served = client.get("/vocabulary")
    assert served.status_code == 200 and served.json() == vocab.vocabulary()
    words = served.json()
    assert words["modalities"] == ["audio", "text", "visual"] and words["splits"] == ["train", "val", "test"]
    assert words["components"]["families"]["branch"] == ["branch", "alt_branch", "joint_branch", "teacher_branch"]
    assert words["statuses"]["active"] == ["queued", "starting", "running", "stalled"]
    assert {"skip", "epoch_time"} <= {s["name"] for s in words["engine_series"]}
    spec = client.get("/openapi.json").json()
    ok = spec["paths"]["/vocabulary"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/VocabularyOut"}
    schemas = spec["components"]["schemas"]
    assert schemas["VocabularyOut"]["properties"]["modalities"]["items"]["enum"] == list(vocab.MODALITIES)
    assert schemas["RunSeriesOut"]["properties"]["kind"]["enum"] == ["bounded", "loss", "count", "quantity"]


def test_pairs_set_each_amst_run_against_a_baseline_of_its_dataset_and_seed(client: TestClient, db_url: str) -> None:
    """Compare's pairing, served (amst_core.sweeps.pair_baselines): a chosen baseline first, else the newest
    succeeded one, else the newest of any status; an AMST run is one whose method skips."""
    amst = submit(client, config("amst_full", seed=3))["id"]
    old_ok, failed = submit(client, config(seed=3))["id"], submit(client, config(seed=3))["id"]
    other_seed, ogm = submit(client, config(seed=4))["id"], submit(client, config("ogm_ge", seed=3))["id"]
    with Session(get_engine(db_url)) as s, s.begin():
        s.execute(update(Run).where(Run.id == old_ok).values(status=RunStatus.succeeded))
        s.execute(update(Run).where(Run.id == failed).values(status=RunStatus.failed))

    def pairs(*runs: str, **params: str) -> list[dict[str, str]]:
        r = client.get("/pairs", params={"run": list(runs), **params})
        assert r.status_code == 200, r.text
        return r.json()

    assert pairs(amst) == [{"run_id": amst, "baseline_id": old_ok}]
    assert pairs(amst, failed) == [{"run_id": amst, "baseline_id": failed}]  # the one chosen
    assert pairs(amst, baseline="ogm_ge") == [{"run_id": amst, "baseline_id": ogm}]
    assert pairs(amst, baseline="pmr") == [] and pairs(other_seed, old_ok) == []
    assert client.get("/pairs", params={"run": "nope"}).status_code == 404
    assert client.get("/pairs", params={"run": amst, "baseline": "nope"}).status_code == 422
    assert client.get("/pairs").status_code == 422


def test_datasets_say_whether_prepared(client: TestClient, data_root: Path) -> None:
    datasets = {d["name"]: d for d in client.get("/datasets").json()}
    assert set(datasets) == set(DATASETS)
    assert datasets["synthetic"]["prepared"] and not datasets["avdigits"]["prepared"]
    assert datasets["avdigits"]["prepare_command"] == "amst prepare avdigits"
    assert datasets["avdigits"]["modalities"] == ["audio", "visual"] and len(datasets["avdigits"]["classes"]) == 10
    assert "amst prepare avdigits" in datasets["avdigits"]["problem"]
    (data_root / "avdigits").mkdir()
    assert not {d["name"]: d for d in client.get("/datasets").json()}["avdigits"]["prepared"], "an empty folder"
    write_tiny_avdigits(data_root)
    now = {d["name"]: d for d in client.get("/datasets").json()}
    assert now["avdigits"]["prepared"] and now["avdigits"]["problem"] is None
    assert now["avdigits"]["sizes"] == {"train": 60, "val": 20, "test": 20}
    assert not now["folder"]["prepared"] and now["folder"]["folders"] == []
    write_tiny_folder(data_root / "my_clips", text=False)
    now = {d["name"]: d for d in client.get("/datasets").json()}
    assert now["folder"]["prepared"] and now["folder"]["folders"] == ["my_clips"]
    assert [d["name"] for d in now.values() if d["text"]] == ["avtdigits", "folder", "mvsa", "iemocap3", "urfunny"]


def test_workers(client: TestClient, db_url: str) -> None:
    with Session(get_engine(db_url)) as s, s.begin():
        lifecycle.register_worker(s, "gpu0@box", Placement("box", 11), "gpu", "cuda:0", [])
        lifecycle.register_worker(s, "cpu@box", Placement("box", 12), "cpu", "cpu", [])
        s.execute(update(Worker).where(Worker.id == "cpu@box").values(heartbeat_at=utcnow() - timedelta(hours=1)))
    workers = client.get("/workers").json()
    assert [w["id"] for w in workers] == ["gpu0@box", "cpu@box"]
    assert workers[0]["alive"] and workers[0]["queues"] == ["gpu"] and workers[0]["heartbeat_age_s"] < 60
    assert not workers[1]["alive"] and workers[1]["heartbeat_age_s"] > 3000


H100 = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_mib": 81_105}


def test_workers_say_where_they_run_their_gpus_and_what_they_train(client: TestClient, db_url: str) -> None:
    run = submit(client, config(name="skip-audio-2"))
    in_slurm = Placement("node07", 311, slurm_job_id="4242", slurm_job_name="amst-worker", slurm_partition="gpu")
    in_pod = Placement("amst-worker-0", 1, pod_name="amst-worker-0", pod_namespace="research")
    with Session(get_engine(db_url)) as s, s.begin():
        lifecycle.register_worker(s, "slurm", in_slurm, "gpu", "cuda:0", [H100, {**H100, "index": 1}])
        lifecycle.worker_heartbeat(s, "slurm", run["id"])
        lifecycle.register_worker(s, "pod", in_pod, "gpu", "cuda:0", [H100])
        lifecycle.worker_heartbeat(s, "pod", "a-deleted-run")
        lifecycle.register_worker(s, "gone", Placement("box", 2), "cpu", "cpu", [])
        lifecycle.worker_stopped(s, "gone")
        lifecycle.register_worker(s, "old", Placement("box", 3), "cpu", "cpu", [])
        s.execute(update(Worker).where(Worker.id == "old").values(gpus=None,  # registered before 0005
                                                                  heartbeat_at=utcnow() - timedelta(hours=1)))
    workers = {w["id"]: w for w in client.get("/workers").json()}
    slurm, pod, gone, old = workers["slurm"], workers["pod"], workers["gone"], workers["old"]
    assert slurm["slurm"] == {"job_id": "4242", "job_name": "amst-worker", "partition": "gpu"}
    assert slurm["pod"] is None and slurm["hostname"] == "node07" and slurm["pid"] == 311
    assert slurm["gpus"] == [H100, {**H100, "index": 1}]
    assert (slurm["current_run_id"], slurm["current_run_name"]) == (run["id"], "skip-audio-2")
    assert (slurm["state"], slurm["alive"]) == ("alive", True)
    assert pod["pod"] == {"name": "amst-worker-0", "namespace": "research"} and pod["slurm"] is None
    assert (pod["current_run_id"], pod["current_run_name"]) == ("a-deleted-run", None)
    assert (gone["state"], gone["alive"], gone["gpus"], gone["current_run_id"]) == ("stopped", False, [], None)
    assert (old["state"], old["alive"], old["gpus"]) == ("lost", False, None)
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"GpuOut", "SlurmJobOut", "PodOut"} <= set(schema)
    assert schema["WorkerOut"]["properties"]["state"]["enum"] == ["alive", "lost", "stopped"]


def test_health(client: TestClient, db_url: str) -> None:
    body = client.get("/health").json()
    backend = "postgresql" if db_url.startswith("postgresql") else "sqlite"
    assert body["status"] == "ok"
    assert body["database"] | {"latency_ms": 0} == {"backend": backend, "reachable": True, "error": None,
                                                    "latency_ms": 0}
    assert body["broker"]["backend"] == "memory" and body["broker"]["reachable"]


def test_health_without_database(make_settings: Callable[..., ApiSettings]) -> None:
    app = create_app(make_settings(database_url="postgresql://postgres@127.0.0.1:1/nothing_listens_here"))
    with TestClient(app) as c:  # the API still starts, and says what is wrong
        r = c.get("/health")
    assert r.status_code == 503 and r.json()["status"] == "unavailable" and not r.json()["database"]["reachable"]
    assert r.json()["database"]["error"] == "OperationalError"


@pytest.mark.parametrize("broker", ["redis://127.0.0.1:1/0", "sqla+sqlite:////nonexistent-dir/x/broker.db"])
def test_health_says_when_the_broker_is_down(make_settings: Callable[..., ApiSettings], broker: str) -> None:
    """The database answers but runs cannot be queued: degraded, 503, and the broker named as the culprit."""
    with TestClient(create_app(make_settings(broker_url=broker))) as c:
        r = c.get("/health")
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["status"] == "degraded" and body["database"]["reachable"] and not body["broker"]["reachable"]
    assert "127.0.0.1" not in r.text and "nonexistent" not in r.text, "no address in an open route"


def test_openapi_documents_every_route(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert paths >= {("POST", "/runs"), ("GET", "/runs"), ("GET", "/runs/{run_id}"),
                     ("GET", "/runs/{run_id}/metrics"), ("GET", "/runs/{run_id}/events"),
                     ("POST", "/runs/{run_id}/cancel"), ("POST", "/runs/{run_id}/retry"),
                     ("DELETE", "/runs/{run_id}"), ("GET", "/runs/{run_id}/checkpoint"), ("GET", "/methods"),
                     ("GET", "/datasets"), ("GET", "/workers"), ("GET", "/health")}
    body = spec["paths"]["/runs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/RunConfig"}
    schemas = spec["components"]["schemas"]
    assert {"RunConfig", "SkipFactors", "DatasetConfig"} <= set(schemas)
    assert client.get("/docs").status_code == 200


def test_shared_settings_are_accepted(db_url: str, tmp_path: Path) -> None:
    app = create_app(ApiSettings(database_url=db_url, broker_url="memory://", api_token="t", data_root=tmp_path))
    assert app.state.settings.api_token == "t" and app.state.settings.sse_keepalive_s == 15.0
    assert TestClient(app).get("/health").status_code == 200


def test_unexpected_errors_are_json_500(app: FastAPI) -> None:
    def boom() -> None:
        raise RuntimeError("bug")

    app.add_api_route("/boom", boom)
    r = TestClient(app, raise_server_exceptions=False).get("/boom")
    assert r.status_code == 500 and r.json()["error"]["message"].startswith("internal error")


def test_reaper_requeues_a_lost_run(app: FastAPI, client: TestClient, dispatcher: FakeDispatcher,
                                    db_url: str) -> None:
    run_id = submit(client)["id"]
    FakeWorker(db_url, run_id).start().go_silent()
    assert reap_once(app) == [run_id]
    assert dispatcher.sent[-1] == (run_id, "cpu")
    detail = client.get(f"/runs/{run_id}").json()
    assert detail["status"] == "queued" and detail["restarts"] == 1 and "stopped heartbeating" in detail["error"]
    assert reap_once(app) == []  # dispatched once, not on every pass


def test_reaper_does_not_judge_heartbeats_right_after_a_database_outage(app: FastAPI, client: TestClient,
                                                                       db_url: str) -> None:
    """The workers could not write their heartbeats while the database was gone: their runs are not lost."""
    run_id = submit(client)["id"]
    FakeWorker(db_url, run_id).start().go_silent(seconds=60)
    app.state.reaper_clock = lifecycle.ReaperClock(app.state.settings.lost_after_s)
    app.state.reaper_clock.failed()  # a pass failed a moment ago
    assert reap_once(app) == [] and client.get(f"/runs/{run_id}").json()["status"] == "running"
    app.state.reaper_clock.unsure_since -= app.state.settings.lost_after_s + 1  # a lost_after_s later
    assert reap_once(app) == [run_id]


def test_reaper_resends_a_message_only_an_idle_worker_could_have_lost(
        app: FastAPI, client: TestClient, dispatcher: FakeDispatcher, db_url: str) -> None:
    waiting = submit(client)["id"]
    with Session(get_engine(db_url)) as s, s.begin():
        s.execute(update(Run).where(Run.id == waiting).values(updated_at=utcnow() - timedelta(days=1)))
        lifecycle.register_worker(s, "busy", Placement("box", 1), "cpu,gpu", "cpu", [])
        lifecycle.worker_heartbeat(s, "busy", "another-run")
    assert reap_once(app) == []  # the only worker is training: the run is simply waiting its turn
    with Session(get_engine(db_url)) as s, s.begin():
        lifecycle.register_worker(s, "idle", Placement("box", 2), "cpu", "cpu", [])
    assert reap_once(app) == [waiting]
    assert dispatcher.sent[-1] == (waiting, "cpu")
    assert reap_once(app) == []  # updated_at moved: not again on the next pass


def test_lifespan_runs_the_reaper(make_settings: Callable[..., ApiSettings], dispatcher: FakeDispatcher,
                                  db_url: str) -> None:
    app = create_app(make_settings(reaper_s=0.05))
    app.state.dispatcher = dispatcher
    app.state.reaper_clock = lifecycle.ReaperClock.sure(app.state.settings.lost_after_s)
    with TestClient(app) as c:
        run_id = submit(c)["id"]
        FakeWorker(db_url, run_id).start().go_silent()
        deadline = time.monotonic() + 5
        while len(dispatcher.sent) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert dispatcher.sent == [(run_id, "cpu"), (run_id, "cpu")]


def test_api_never_imports_torch(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import sys
        from fastapi.testclient import TestClient
        from amst_core.store.migrate import upgrade
        from api.main import create_app
        from api.settings import ApiSettings, Settings
        url = "sqlite:///{tmp_path}/amst.db"
        upgrade(url)
        app = create_app(ApiSettings(database_url=url, broker_url="memory://", data_root="{tmp_path}"))
        app.state.dispatcher.send = lambda run_id, queue: "t"
        c = TestClient(app)
        run = c.post("/runs", json={{"method": "amst_full", "dataset": {{"name": "synthetic"}}}}).json()
        for path in ("/runs", "/runs/" + run["id"], "/runs/" + run["id"] + "/metrics", "/methods", "/datasets",
                     "/workers", "/health", "/openapi.json"):
            assert c.get(path).status_code == 200, path
        heavy = ("amst_core.engine", "amst_core.methods", "amst_core.models", "amst_core.data", "amst_core.metrics")
        loaded = [m for m in sys.modules if m.split(".")[0] == "torch" or m in heavy
                  or m.startswith(tuple(h + "." for h in heavy))]
        sys.exit(f"imported {{loaded}}" if loaded else 0)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_dataset_recipe_is_a_valid_run_config_and_what_a_bare_request_gets(client: TestClient) -> None:
    """The New run form starts from `recipes[method]` (or `reference[method]`); POST /runs fills in the same: a
    valid RunConfig fragment for every dataset and method, and exactly what a request that names only the dataset
    and the method is given (issue 23: the form trained lr 0.01, the API 0.001)."""
    from amst_core.config import ConfigError, load_config
    from amst_core.recipes import flatten

    for d in client.get("/datasets").json():
        for mode in ("recipes", "reference"):
            for method, fields in d[mode].items():
                bare = {"dataset": {"name": d["name"]}, "method": method,
                        **({"recipe": "reference"} if mode == "reference" else {})}
                try:
                    full = load_config(base=bare).model_dump(mode="json")
                except ConfigError:  # a method that does not fit the dataset (pmr: two modalities), or unimodal
                    continue
                from_form = load_config(base={**fields, **bare, "dataset": {**fields.get("dataset", {}),
                                                                            "name": d["name"]}})
                assert from_form.model_dump(mode="json") == full, (d["name"], mode, method)
                assert all(flatten(full)[k] == v for k, v in flatten(fields).items()), (d["name"], method)
    avdigits = next(d for d in client.get("/datasets").json() if d["name"] == "avdigits")
    assert avdigits["recipes"]["amst_full"]["model"]["image_size"] == 28  # MNIST frames, not the 224 default
    assert avdigits["recipes"]["amst_full"]["optim"]["lr"] == 0.01
    assert "skip" not in avdigits["recipes"]["naive"]  # naive skips nothing: no skip factor in its config
    assert "optim" not in avdigits["reference"]["amst_full"]  # the reference's lr 1e-3 is RunConfig's own


def test_openapi_enums_come_from_the_catalog(client: TestClient) -> None:
    from amst_core.catalog import DATASETS, METHODS

    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert schemas["RunConfig"]["properties"]["method"]["enum"] == list(METHODS)
    assert schemas["DatasetConfig"]["properties"]["name"]["enum"] == list(DATASETS)
    list_runs = {p["name"]: p["schema"] for p in spec["paths"]["/runs"]["get"]["parameters"]}
    assert list(METHODS) == list_runs["method"]["items"]["enum"]
    events = {p["name"]: p["schema"] for p in spec["paths"]["/runs/{run_id}/events"]["get"]["parameters"]}
    assert events["Last-Event-ID"]["type"] == "string", "a header is a string or absent, never null"


def test_openapi_declares_auth_only_when_the_server_requires_it(client: TestClient,
                                                                make_settings: Callable[..., ApiSettings]) -> None:
    open_spec = client.get("/openapi.json").json()
    assert "securitySchemes" not in open_spec["components"]
    assert not [op for ops in open_spec["paths"].values() for op in ops.values() if "security" in op]
    assert open_spec["paths"]["/runs/{run_id}/cancel"]["post"]["requestBody"]["required"], "JSON is required"
    with TestClient(create_app(make_settings(api_token="t"))) as locked:
        spec = locked.get("/openapi.json").json()
    secured = {(m, p) for p, ops in spec["paths"].items() for m, op in ops.items() if op.get("security")}
    assert secured == {("post", "/runs"), ("post", "/runs/{run_id}/cancel"), ("post", "/runs/{run_id}/retry"),
                       ("post", "/runs/{run_id}/rerun"),
                       ("delete", "/runs/{run_id}"), ("patch", "/runs/{run_id}"), ("post", "/sweeps"),
                       ("post", "/sweeps/{sweep_id}/cancel")}
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


@pytest.mark.parametrize(("path", "allowed"), [("/runs", "GET, HEAD, OPTIONS, POST"),
                                               ("/runs/abc", "DELETE, GET, HEAD, OPTIONS, PATCH"),
                                               ("/runs/abc/cancel", "OPTIONS, POST"),
                                               ("/health", "GET, HEAD, OPTIONS")])
def test_allow_lists_every_method_of_the_path(client: TestClient, path: str, allowed: str) -> None:
    r = client.options(path)
    assert r.status_code == 204 and r.headers["allow"] == allowed
    r = client.request("PUT", path)
    assert r.status_code == 405 and r.headers["allow"] == allowed and "PUT is not allowed" in r.text
