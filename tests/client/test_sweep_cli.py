"""`amst sweep --api URL`: the grid submitted to a server through amst_client (here the in-process app, reached
through the network layer that httpx would use), with an Idempotency-Key per call so that a POST /sweeps sent
again after a lost answer does not queue the grid twice."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml

from launch.cli import main
from tests.kit.api import IN_PROCESS_URL as URL
from tests.kit.api import TOKEN, FakeWorker, config


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch, transport: httpx.BaseTransport) -> list[httpx.Request]:
    """Every request any httpx client sends over the network goes to the in-process app instead; the list
    records them."""
    requests: list[httpx.Request] = []

    def handle(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return transport.handle_request(request)

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", handle)
    monkeypatch.setenv("AMST_API_TOKEN", TOKEN)
    return requests


@pytest.fixture
def base(tmp_path: Path) -> Path:
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(config()))
    return path


def sweeps_posted(requests: list[httpx.Request]) -> list[httpx.Request]:
    return [r for r in requests if r.method == "POST" and r.url.path == "/sweeps"]


def test_sweep_api_sends_an_idempotency_key_per_call(sent, base: Path, capsys) -> None:
    args = ["sweep", str(base), "--grid", "seed=0,1", "--api", URL, "--name", "seeds"]
    assert main(args) == 0
    assert main(args) == 0
    first, second = (json.loads(line)["sweep"] for line in capsys.readouterr().out.splitlines())
    keys = [r.headers.get("Idempotency-Key") for r in sweeps_posted(sent)]
    assert all(keys) and keys[0] != keys[1], "each call is a new sweep, with a key of its own"
    assert first != second


def test_a_sweep_post_whose_answer_was_lost_is_sent_again_and_queues_one_sweep(sent, base: Path, transport,
                                                                               monkeypatch, capsys) -> None:
    lost = []

    def answer_lost_once(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        sent.append(request)
        response = transport.handle_request(request)  # the server did queue it ...
        if request.url.path == "/sweeps" and request.method == "POST" and not lost:
            lost.append(response)
            raise httpx.ReadTimeout("the answer never came", request=request)  # ... but no answer came back
        return response

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", answer_lost_once)
    monkeypatch.setattr("amst_client.client.time.sleep", lambda seconds: None)
    assert main(["sweep", str(base), "--grid", "seed=0,1", "--api", URL]) == 0
    posts = sweeps_posted(sent)
    assert len(posts) == 2 and posts[0].headers["Idempotency-Key"] == posts[1].headers["Idempotency-Key"]
    created = json.loads(capsys.readouterr().out)["sweep"]
    assert created == lost[0].json()["id"]
    with httpx.Client(transport=transport, base_url=URL) as check:
        assert [s["id"] for s in check.get("/sweeps").json()["items"]] == [created], "one sweep, not two"


@pytest.mark.parametrize(("table", "starts", "both_seeds"), [
    ([], "| n | val acc |", "| 2 | 0.500 ± 0.000 |"),
    (["--table", "csv"], "best_val_acc mean,", "\n0.5,0,2,"),
    (["--table", "latex"], "% Mean ± standard deviation", "2 & 0.500 $\\pm$ 0.000"),
], ids=["markdown", "csv", "latex"])
def test_sweep_api_wait_prints_progress_and_the_table(sent, base: Path, transport, settings, monkeypatch,
                                                       capsys, table: list[str], starts: str, both_seeds: str) -> None:
    def finish_every_run(seconds: float) -> None:  # the CLI's pause between polls: the runs end meanwhile
        with httpx.Client(transport=transport, base_url=URL) as api:
            for run in api.get("/runs").json()["items"]:
                if run["status"] == "queued":
                    worker = FakeWorker(settings.db_url, run["id"]).start()
                    worker.epoch(0)
                    worker.finish()

    monkeypatch.setattr("time.sleep", finish_every_run)
    assert main(["sweep", str(base), "--grid", "seed=0,1", "--api", URL, "--wait", *table]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(starts) and both_seeds in out, out  # the one cell: both seeds' runs
    assert "2 runs queued on http://amst.test" in err and "2/2 ended (2 succeeded)" in err


def test_sweep_api_refusal_names_the_field(sent, base: Path, capsys) -> None:
    assert main(["sweep", str(base), "--grid", "epochs=0", "--api", URL]) == 2
    assert "epochs" in capsys.readouterr().err


def test_the_librarys_own_command_line_talks_no_http(base: Path, capsys) -> None:
    from amst_core.cli import main as library_main

    assert library_main(["sweep", str(base), "--grid", "seed=0,1", "--api", URL]) == 2
    assert "--api: this command line has no API client" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        library_main(["gc", "--dry-run"])  # a service operation: `amst gc` (launch.cli)


def test_rerun_api_asks_the_server_and_says_what_changed_or_what_it_let_go(sent, settings, capsys) -> None:
    """`amst rerun RUN_ID --api URL`: POST /runs/{id}/rerun with a key of its own; the server's 409 (the data the
    run recorded are not those it holds now) is one line naming what to do, --force queues it with the warning."""
    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from amst_client import Client
    from amst_core import provenance
    from amst_core.config import RunConfig
    from amst_core.store.db import get_engine
    from amst_core.store.models import Run

    with Client(URL, token=TOKEN) as client:
        run = client.submit(config(name="paper"))
    cfg = RunConfig.model_validate(run["config"])
    other_data = {**provenance.data_fingerprint(cfg, settings.data_roots), "digest": "5eed5eed5eed5eed"}
    with Session(get_engine(settings.database_url)) as s, s.begin():
        s.execute(update(Run).where(Run.id == run["id"]).values(provenance=provenance.collect(cfg, "cpu", other_data)))
    assert main(["rerun", run["id"], "--api", URL]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: force: the data changed since run {run['id']} trained") and "force" in err, err
    assert main(["rerun", run["id"], "--api", URL, "--force"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["run"] != run["id"]
    assert f"warning: the data changed since run {run['id']} trained" in err, err
    posts = [r for r in sent if r.method == "POST" and r.url.path == f"/runs/{run['id']}/rerun"]
    assert len(posts) == 2 and all(r.headers.get("Idempotency-Key") for r in posts)
    assert main(["rerun", run["id"], "--api", URL, "--set", "device=cpu"]) == 2
    assert "no --set or --out with --api" in capsys.readouterr().err
