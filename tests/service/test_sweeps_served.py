"""Sweeps through the service: POST /sweeps runs a grid on real workers, its matrix equals the statistics of the
runs' own metrics, a bad grid queues nothing, and cancelling a sweep ends all its runs."""

from __future__ import annotations

import statistics

import httpx
import pytest

from tests.kit.svc import Service, wait_until

TERMINAL = {"succeeded", "failed", "cancelled", "lost"}
BASE = {"method": "naive", "dataset": {"name": "synthetic", "synthetic": {"samples": {"train": 32, "val": 16,
                                                                                      "test": 16}}},
        "model": {"frames": 1, "width": 8}, "epochs": 2, "batch_size": 16, "device": "cpu", "optim": {"lr": 0.05}}


def sweep(svc: Service, sweep_id: str) -> dict:
    resp = httpx.get(f"{svc.url}/sweeps/{sweep_id}", timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def last(series: list[dict], split: str, component: str, modality: str | None, name: str) -> float:
    (s,) = [s for s in series if (s["split"], s["component"], s["modality"], s["name"]) ==
            (split, component, modality, name)]
    return s["values"][-1]


def at_epoch(series: list[dict], split: str, component: str, modality: str, epoch: int) -> float:
    (s,) = [s for s in series if (s["split"], s["component"], s["modality"], s["name"]) ==
            (split, component, modality, "acc")]
    return s["values"][s["epochs"].index(epoch)]


def ids(svc: Service, what: str) -> set[str]:
    """The ids of every run or sweep of the shared stack (its other tests' too)."""
    return {item["id"] for item in httpx.get(f"{svc.url}/{what}", params={"limit": 200}, timeout=10).json()["items"]}


def test_a_sweep_runs_its_grid_and_its_matrix_is_the_runs_own_statistics(stack: Service) -> None:
    service = stack
    grid = {"method": ["naive", "amst_full"], "optim.lr": [0.05, 0.1], "seed": [0, 1]}
    resp = httpx.post(f"{service.url}/sweeps", json={"name": "grid", "base": BASE, "grid": grid,
                                                     "baseline": {"method": "naive", "optim.lr": 0.05}}, timeout=30)
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert created["progress"]["total"] == 8 and len(created["runs"]) == 8
    assert all("sweep:" + created["id"] in r["tags"] for r in created["runs"])
    done = wait_until(lambda: (d := sweep(service, created["id"]))["status"] in ("succeeded", "finished") and d,
                      timeout=400, interval=1, message="the sweep's runs")
    assert done["status"] == "succeeded" and done["progress"]["succeeded"] == 8, done["progress"]
    by_cell: dict[tuple, list[dict]] = {}
    for run, cell in zip(done["runs"], done["cells"], strict=True):
        series = httpx.get(f"{service.url}/runs/{run['id']}/metrics", timeout=10).json()["series"]
        best = int(last(series, "val", "run", None, "best_epoch"))
        helper = "helper" if cell["method"] == "naive" else "alt_helper"
        by_cell.setdefault((cell["method"], cell["optim.lr"]), []).append({
            "best_val_acc": last(series, "val", "run", None, "best_val_acc"),
            "test_acc_at_best": last(series, "val", "run", None, "test_acc_at_best"),
            "helper:audio": at_epoch(series, "test", helper, "audio", best)})
    assert len(done["matrix"]) == 4
    for row in done["matrix"]:
        runs = by_cell[(row["cell"]["method"], row["cell"]["optim.lr"])]
        for measure in ("best_val_acc", "test_acc_at_best", "helper:audio"):
            values = [r[measure] for r in runs]
            stat = row["stats"][measure]
            assert stat["count"] == 2 and stat["mean"] == pytest.approx(statistics.fmean(values), abs=1e-9)
            assert stat["std"] == pytest.approx(statistics.stdev(values), abs=1e-9)
    paired = [row for row in done["matrix"] if row["paired"]]
    assert len(paired) == 3 and all(not r["paired"]["best_val_acc"]["meaningful"] for r in paired)
    table = httpx.get(f"{service.url}/sweeps/{created['id']}/table", params={"format": "md"}, timeout=10)
    assert table.status_code == 200 and table.text.startswith("| method | optim.lr | n | val acc |")
    assert created["id"] in ids(service, "sweeps")


def test_a_bad_grid_queues_nothing_and_cancel_ends_every_run(stack: Service) -> None:
    service = stack
    runs_before, sweeps_before = ids(service, "runs"), ids(service, "sweeps")
    bad = httpx.post(f"{service.url}/sweeps", json={"base": BASE, "grid": {"method": ["naive", "amst_full"],
                                                                           "skip.audio": [1, 0]}}, timeout=30)
    assert bad.status_code == 422, bad.text
    error = bad.json()["error"]
    assert error["field"] == "grid.skip.audio" and "method=amst_full, skip.audio=0" in error["message"]
    assert ids(service, "runs") == runs_before and ids(service, "sweeps") == sweeps_before, "nothing queued"
    for body, field in (({"base": BASE, "grid": {"seed": [0]}, "baseline": {"method": "mla"}}, "baseline"),
                        ({"base": BASE, "grid": {"seed": []}}, "grid.seed"),
                        ({"base": BASE}, "grid")):
        resp = httpx.post(f"{service.url}/sweeps", json=body, timeout=30)
        assert resp.status_code == 422 and resp.json()["error"]["field"] == field, resp.text

    long = {**BASE, "epochs": 50}
    resp = httpx.post(f"{service.url}/sweeps", json={"base": long, "grid": {"seed": [0, 1, 2, 3]},
                                                     "max_concurrent": 1}, timeout=30)
    assert resp.status_code == 201, resp.text
    sweep_id = resp.json()["id"]
    wait_until(lambda: sweep(service, sweep_id)["progress"]["by_status"].get("running"), timeout=120,
               message="a running run")
    cancelled = httpx.post(f"{service.url}/sweeps/{sweep_id}/cancel", json={}, timeout=10)
    assert cancelled.status_code == 200, cancelled.text
    done = wait_until(lambda: (d := sweep(service, sweep_id))["progress"]["done"] == 4 and d, timeout=60,
                      message="every run of the sweep to end")
    assert done["status"] == "cancelled" and done["progress"]["by_status"] == {"cancelled": 4}
