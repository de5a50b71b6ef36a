"""POST /sweeps refuses what cannot run with the field named (a grid key or the base), never a 500, and sends the
first runs' messages (the rest are held back)."""

from __future__ import annotations

import csv
import io

import httpx
import pytest
from fastapi.testclient import TestClient

from amst_core.store.models import RunStatus
from tests.kit.api import FakeDispatcher
from tests.kit.seeded import seed_run, seed_sweep

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


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # a rendering of stored numbers: one backend says it
def test_the_table_comes_as_numeric_csv_and_a_compact_markdown_and_latex_against_the_sweeps_baseline(
        client: TestClient, db_url: str) -> None:
    runs = [(seed_run(db_url, method, 3, 3, RunStatus.succeeded, seed=seed),
             {"method": method, "skip.audio": 2 if method == "amst_full" else "-", "seed": seed})
            for method in ("naive", "amst_full") for seed in (0, 1)]
    sweep_id = seed_sweep(db_url, "study", {"method": ["naive", "amst_full"], "skip.audio": [2], "seed": [0, 1]},
                          runs, {"method": "naive"})

    def table(fmt: str, **params: str) -> httpx.Response:
        resp = client.get(f"/sweeps/{sweep_id}/table", params={"format": fmt, **params})
        assert resp.status_code == 200, resp.text
        return resp

    numeric = table("csv")
    assert numeric.headers["content-type"].startswith("text/csv") and f"{sweep_id}.csv" in \
        numeric.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(numeric.text)))
    assert [r["method"] for r in rows] == ["naive", "amst_full"] and rows[0]["skip.audio"] == "-"
    assert float(rows[1]["best_val_acc t p"]) >= 0 and int(rows[1]["best_val_acc pairs"]) == 2  # a number, no '*'
    assert [r["best_val_acc significance"] for r in rows] == ["baseline", "too few seeds"]

    markdown = table("markdown").text
    assert table("md").text == markdown and markdown.startswith("| method | skip.audio | n | val acc | test acc |")
    assert "| Δ val acc | p (val acc) |" in markdown and "baseline cell (method=naive, skip.audio=-)" in markdown
    assert markdown.count("**") >= 2  # the best of a column, bold

    latex = table("latex")
    assert latex.headers["content-type"].startswith("application/x-latex") and table("tex").text == latex.text
    assert "\\toprule" in latex.text and "\\textbf{" in latex.text and "$\\Delta$ val acc" in latex.text

    alone = table("markdown", baseline="").text  # empty: no baseline, no paired columns
    assert "Δ" not in alone.splitlines()[0]
    assert client.get(f"/sweeps/{sweep_id}/table", params={"format": "xlsx"}).status_code == 422
