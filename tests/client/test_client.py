"""amst_client.Client against the API in this process: every method, the error type with the API's message and
field, idempotent submits, and curves read incrementally."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy.orm import Session

from amst_client import ApiError, ApiUnavailable, Client, Curves, SeriesKey, types
from amst_core.placement import Placement
from amst_core.runlog import log_path
from amst_core.store import lifecycle
from amst_core.store.db import get_engine
from amst_core.vocab import MODALITIES, TERMINAL, RunStatus
from api.settings import ApiSettings
from tests.kit.api import IN_PROCESS_URL as URL
from tests.kit.api import FakeDispatcher, FakeWorker, config

ROOT = Path(__file__).resolve().parents[2]


def test_the_server_describes_itself(client: Client) -> None:
    assert client.health()["status"] == "ok"
    words = client.vocabulary()
    assert words["modalities"] == list(MODALITIES)
    assert words["statuses"]["terminal"] == [str(s) for s in TERMINAL]
    assert "amst_alt" in {m["name"] for m in client.methods()}
    assert "synthetic" in {d["name"] for d in client.datasets()}
    assert client.workers() == []


def test_workers_say_where_they_run_and_what_they_train(client: Client, settings: ApiSettings) -> None:
    run = client.submit(config("naive", name="on-the-cluster"))
    with Session(get_engine(settings.db_url)) as s, s.begin():
        lifecycle.register_worker(s, "w1", Placement("node07", 9, slurm_job_id="4242"), "gpu", "cuda:0",
                                  [{"index": 0, "name": "NVIDIA L4", "memory_mib": 22_488}])
        lifecycle.worker_heartbeat(s, "w1", run["id"])
    [worker] = client.workers()
    assert worker["slurm"] == {"job_id": "4242", "job_name": None, "partition": None} and worker["pod"] is None
    assert worker["gpus"] == [{"index": 0, "name": "NVIDIA L4", "memory_mib": 22_488}]
    assert (worker["current_run_name"], worker["state"]) == ("on-the-cluster", "alive")


def test_submit_get_and_list_runs_with_filters(client: Client) -> None:
    first = client.submit(config("naive", tags=["ablation"]))
    second = client.submit(config("amst_alt", seed=3))
    assert (first["status"], first["method"], first["tags"]) == ("queued", "naive", ["ablation"])
    assert client.run(second["id"])["seed"] == 3
    assert [r["id"] for r in client.runs()] == [second["id"], first["id"]]  # newest first
    assert [r["id"] for r in client.runs(method="naive")] == [first["id"]]
    assert [r["id"] for r in client.runs(method=["naive", "amst_alt"], tag="ablation")] == [first["id"]]
    assert [r["id"] for r in client.runs(q="seed=3")] == [second["id"]]
    assert [r["id"] for r in client.runs(limit=1)] == [second["id"]]
    assert client.runs()[0]["config"] is None and client.runs(with_config=True)[0]["config"]["seed"] == 3


def test_runs_follows_the_cursor_across_pages(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("amst_client.client.PAGE", 2)  # pages of two, so three runs take two requests
    ids = [client.submit(config(seed=i))["id"] for i in range(3)]
    before = client.calls
    assert [r["id"] for r in client.runs(limit=10)] == ids[::-1]
    assert client.calls - before == 2


def test_an_idempotency_key_makes_a_repeated_submit_return_the_first_run(client: Client,
                                                                          dispatcher: FakeDispatcher) -> None:
    run = client.submit(config(), idempotency_key="try-1")
    assert client.submit(config(), idempotency_key="try-1")["id"] == run["id"]
    assert len(client.runs()) == 1 and len(dispatcher.sent) == 1
    with pytest.raises(ApiError) as err:
        client.submit(config(seed=9), idempotency_key="try-1")
    assert (err.value.status, err.value.field) == (409, "Idempotency-Key")


def test_a_refusal_is_an_api_error_with_the_apis_message_and_field(client: Client, transport) -> None:
    with pytest.raises(ApiError) as err:
        client.submit(config(epochs=0))
    assert (err.value.status, err.value.field) == (422, "epochs")
    assert str(err.value) == err.value.message and err.value.message.startswith("epochs: ")
    with pytest.raises(ApiError) as err:
        client.run("nosuchrun")
    assert (err.value.status, err.value.field) == (404, "run_id")
    with pytest.raises(ApiError) as err:
        Client(URL, transport=transport).submit(config())  # no token
    assert (err.value.status, err.value.field) == (401, "Authorization")


def test_no_answer_is_api_unavailable_and_safe_requests_are_repeated(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    monkeypatch.setattr("amst_client.client.time.sleep", lambda seconds: None)

    def refused(request: httpx.Request) -> httpx.Response:
        sent.append(request.method)
        raise httpx.ConnectError("refused", request=request)

    client = Client(URL, transport=httpx.MockTransport(refused), retries=1)
    with pytest.raises(ApiUnavailable, match=r"Cannot reach the AMST API at http://amst\.test"):
        client.health()
    with pytest.raises(ApiUnavailable):
        client.submit(config())  # no key: never repeated (it may have been queued)
    with pytest.raises(ApiUnavailable):
        client.submit(config(), idempotency_key="k")
    assert sent == ["GET", "GET", "POST", "POST", "POST"]


def test_wait_reports_progress_until_the_run_ends(client: Client, settings: ApiSettings) -> None:
    run_id = client.submit(config(epochs=2))["id"]
    worker = FakeWorker(settings.db_url, run_id)
    seen: list[tuple[str, int]] = []

    def on_progress(run) -> None:  # each report moves the fake worker on, so the next poll sees a change
        seen.append((run["status"], run["epochs_done"]))
        if run["status"] == "queued":
            worker.start()
        elif run["epochs_done"] < 2:
            worker.epoch(run["epochs_done"])
        elif run["status"] == "running":
            worker.finish()

    ended = client.wait(run_id, on_progress, every_s=0.01)
    assert ended["status"] == RunStatus.succeeded and ended["epochs_done"] == 2
    assert seen == [("queued", 0), ("running", 0), ("running", 1), ("running", 2), ("succeeded", 2)]
    with pytest.raises(TimeoutError, match="still queued"):
        client.wait(client.submit(config())["id"], every_s=0.01, timeout_s=0.05)


def test_curves_are_read_incrementally_and_again_after_a_retry(client: Client, settings: ApiSettings) -> None:
    run_id = client.submit(config(epochs=5))["id"]
    worker = FakeWorker(settings.db_url, run_id).start()
    worker.epoch(0, 0.5)
    worker.epoch(1, 0.5)
    curves = client.curves(run_id)
    audio = SeriesKey("val", "branch", "audio", "acc")
    assert curves[audio].epochs == [0, 1] and curves.next_since_epoch == 1
    assert curves[audio].values == pytest.approx([0.5, 0.51])
    worker.epoch(2, 0.5)
    asked: list[int] = []
    client.http.event_hooks["request"].append(
        lambda r: asked.append(int(r.url.params["since_epoch"])) if r.url.path.endswith("/metrics") else None)
    assert client.curves(run_id, since=curves) is curves
    assert asked == [1] and curves[audio].epochs == [0, 1, 2]
    assert set(curves.select(split="val", name="acc")) >= {audio, SeriesKey("val", "fused", None, "acc")}
    assert curves[("train", "run", None, "epoch_time")].last() == 1.5

    worker.finish(RunStatus.failed, "boom")
    client.retry(run_id)  # attempt 2 resumes from its checkpoint: what was held may be rewritten
    FakeWorker(settings.db_url, run_id).start(start_epoch=1).epoch(1, 0.7)
    asked.clear()
    assert client.curves(run_id, since=curves) is curves
    assert asked == [2, 0], "the epochs the new attempt replaced (from 1, where it resumed) are read again"
    assert curves.run["attempt"] == 2 and curves[audio].epochs == [0, 1]
    assert curves[audio].values == pytest.approx([0.5, 0.71]), "epoch 2 of attempt 1 is gone, epoch 1 replaced"
    assert isinstance(client.curves(run_id, split="test"), Curves)
    assert {k.split for k in client.curves(run_id, split="test")} == {"test"}
    assert client.metrics(run_id, since_epoch=0)["next_since_epoch"] == 1


def test_cancel_retry_update_and_delete(client: Client, settings: ApiSettings) -> None:
    run_id = client.submit(config())["id"]
    assert client.cancel(run_id)["status"] == "cancelled"
    assert client.retry(run_id)["status"] == "queued"
    renamed = client.update_run(run_id, name="renamed", tags=["kept"], notes="why")
    assert (renamed["name"], renamed["tags"], renamed["notes"]) == ("renamed", ["kept"], "why")
    live = client.submit(config(seed=1))["id"]
    FakeWorker(settings.db_url, live).start()
    with pytest.raises(ApiError) as err:
        client.delete(live)  # running: cancel it first
    assert (err.value.status, err.value.field) == (409, "run_id")
    client.delete(run_id)
    assert [r["id"] for r in client.runs()] == [live]


def test_rerun_and_differences(client: Client, settings: ApiSettings) -> None:
    run_id = client.submit(config(name="once", seed=5))["id"]
    again = client.rerun(run_id)
    assert (again["name"], again["rerun_of"], again["config"]["seed"]) == ("once (re-run)", run_id, 5)
    assert "recorded no provenance" in again["warnings"][0]  # it never trained: nothing to check its data against
    assert client.run(again["id"])["rerun_of"] == run_id and client.rerun(run_id, force=True)["rerun_of"] == run_id
    assert client.differences([run_id, again["id"]]) == []  # nothing recorded by either: nothing compared
    with pytest.raises(ApiError) as err:
        client.differences(["0123456789abcdef"])
    assert (err.value.status, err.value.field) == (404, "run")


def test_logs_config_and_checkpoints(client: Client, settings: ApiSettings, tmp_path: Path) -> None:
    run_id = client.submit(config(seed=4))["id"]
    assert client.logs(run_id)["size"] == 0
    log = log_path(settings.run_dir(run_id))
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("line one\nline two\n")
    assert client.logs(run_id)["text"] == "line one\nline two\n"
    assert client.logs(run_id, offset=9)["text"] == "line two\n"
    assert yaml.safe_load(client.config_yaml(run_id))["seed"] == 4
    with pytest.raises(ApiError) as err:
        client.checkpoint(run_id)
    assert (err.value.status, err.value.field) == (404, "which")
    with pytest.raises(ApiError):
        client.download_checkpoint(run_id, tmp_path / "best.pt")
    assert not list(tmp_path.glob("best.pt*")), "a failed download leaves no file"
    best = settings.run_dir(run_id) / "checkpoints" / "best.pt"
    best.parent.mkdir(parents=True)
    best.write_bytes(b"\x00\x01" * 50_000)
    assert client.checkpoint(run_id) == best.read_bytes()
    assert client.download_checkpoint(run_id, tmp_path / "best.pt").read_bytes() == best.read_bytes()


def test_sweeps(client: Client, settings: ApiSettings) -> None:
    base = config()
    sweep = client.create_sweep(base, {"method": ["naive", "amst_alt"], "seed": [0, 1]}, name="grid",
                                baseline={"method": "naive"}, max_concurrent=2, idempotency_key="sweep-1")
    assert (sweep["name"], sweep["progress"]["total"], sweep["max_concurrent"]) == ("grid", 4, 2)
    assert client.create_sweep(base, {"method": ["naive", "amst_alt"], "seed": [0, 1]}, name="grid",
                               baseline={"method": "naive"}, max_concurrent=2,
                               idempotency_key="sweep-1")["id"] == sweep["id"]
    assert [s["id"] for s in client.sweeps()] == [sweep["id"]]
    detail = client.sweep(sweep["id"])
    assert len(detail["runs"]) == 4 and detail["base"]["method"] == "naive"
    worker = FakeWorker(settings.db_url, detail["runs"][0]["id"]).start()  # one run succeeds: one row
    worker.epoch(0)
    worker.finish()
    assert client.sweep_table(sweep["id"], "md").startswith(b"| method | n | val acc |")
    assert client.sweep_table(sweep["id"], "markdown") == client.sweep_table(sweep["id"], "md")
    assert b"\\toprule" in client.sweep_table(sweep["id"], "latex")
    assert client.sweep_table(sweep["id"]).startswith(b"method,best_val_acc mean,best_val_acc std,best_val_acc n,")
    assert client.sweep(sweep["id"])["matrix"][0]["cell"] == {"method": "naive"}
    with pytest.raises(ApiError) as err:
        client.create_sweep(base, {"epochs": [0]})
    assert err.value.status == 422 and err.value.field and "epochs" in err.value.field
    assert client.cancel_sweep(sweep["id"])["status"] in ("cancelled", "cancelling")
    polls: list[str] = []
    ended = client.wait_sweep(sweep["id"], lambda s: polls.append(s["status"]), every_s=0.01)
    assert ended["progress"]["done"] == 4 and polls[-1] == "cancelled"
    assert ended["progress"]["succeeded"] == 1


@pytest.mark.parametrize(("answer", "schema"), [
    (types.Run, "RunDetail"), (types.Live, "LiveOut"), (types.Latest, "LatestOut"), (types.Attempt, "AttemptOut"),
    (types.Metrics, "MetricsOut"), (types.SeriesPoints, "SeriesOut"), (types.Log, "LogOut"),
    (types.Sweep, "SweepDetail"), (types.Method, "MethodOut"), (types.Dataset, "DatasetOut"),
    (types.Worker, "WorkerOut"), (types.Gpu, "GpuOut"), (types.SlurmJob, "SlurmJobOut"), (types.Pod, "PodOut"),
    (types.Health, "HealthOut"), (types.Vocabulary, "VocabularyOut"), (types.Rerun, "RerunOut"),
    (types.Differences, "DifferencesOut")])
def test_the_typed_answers_have_the_apis_fields(app, answer, schema: str) -> None:
    fields = app.openapi()["components"]["schemas"][schema]["properties"]
    assert set(answer.__required_keys__ | answer.__optional_keys__) == set(fields)


def test_the_client_imports_nothing_else_of_ours_and_the_library_talks_no_http() -> None:
    loaded = subprocess.run([sys.executable, "-c", "import sys, amst_client; print(' '.join(sys.modules))"],
                            capture_output=True, text=True, check=True, cwd=ROOT).stdout.split()
    ours = {m.split(".")[0] for m in loaded} & {"amst_core", "api", "worker", "ui", "launch", "torch"}
    assert not ours, f"amst_client imported {ours}"
    talking = [str(path.relative_to(ROOT)) for path in (ROOT / "amst_core").rglob("*.py")
               if {"httpx", "amst_client"} & imported_roots(path)]
    assert talking == [], "amst_core must not talk HTTP (the API's clients: amst_client)"


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots
