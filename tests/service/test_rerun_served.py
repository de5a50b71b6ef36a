"""Provenance and the exact re-run through the real service: the worker records what the run ran on, the API
serves it, and POST /runs/{id}/rerun trains the same weights again on a CPU; changed data refuse it."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import httpx
import torch

from tests.kit.svc import Service, tiny_run, wait_until

TERMINAL = {"succeeded", "failed", "cancelled", "lost"}
TIMING = {"epoch_time", "train_time", "samples_per_s"}


def ended(svc: Service, run_id: str) -> dict[str, Any]:
    def run() -> dict[str, Any] | None:
        found = httpx.get(f"{svc.url}/runs/{run_id}", timeout=5).json()
        return found if found["status"] in TERMINAL else None

    found = wait_until(run, 300, interval=0.5, message=f"run {run_id} to end")
    assert found["status"] == "succeeded", (found["error"], svc.logs("worker")[-3000:])
    return found


def weights(svc: Service, run_id: str) -> dict[str, Any]:
    body = httpx.get(f"{svc.url}/runs/{run_id}/checkpoint", params={"which": "last"}, timeout=30)
    assert body.status_code == 200, body.text
    return torch.load(io.BytesIO(body.content), map_location="cpu", weights_only=False)["method"]


def same_tensors(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(map(same_tensors, a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return a == b


def curves(svc: Service, run_id: str) -> dict[tuple, list]:
    series = httpx.get(f"{svc.url}/runs/{run_id}/metrics", timeout=10).json()["series"]
    return {(s["split"], s["component"], s["modality"], s["name"]): s["values"] for s in series
            if s["name"] not in TIMING}


def test_the_worker_records_provenance_and_a_rerun_trains_the_same_weights(stack: Service) -> None:
    data_root = Path(stack.env["AMST_DATA_ROOT"])
    shutil.copytree(data_root / "avdigits", data_root / "avdigits-rerun", dirs_exist_ok=True)  # ours to change
    body = tiny_run(method="naive", name="traced", dataset={"name": "avdigits", "root": "avdigits-rerun"})
    first = httpx.post(f"{stack.url}/runs", json=body, timeout=10).json()
    run = ended(stack, first["id"])
    prov = run["provenance"]
    assert prov is not None, "the worker recorded no provenance"
    assert prov["environment"]["device"] == "cpu" and prov["environment"]["torch"] == torch.__version__
    assert prov["data"]["dataset"] == "avdigits" and prov["data"]["files"]["count"] == 3
    assert prov["digests"]["data"] == prov["data"]["digest"] and prov["config"]["seed"] == run["config"]["seed"]

    r = httpx.post(f"{stack.url}/runs/{run['id']}/rerun", json={}, timeout=30)
    assert r.status_code == 201, r.text
    assert r.json()["warnings"] == [] and r.json()["config"]["data_fingerprint"] == prov["digests"]["data"]
    again = ended(stack, r.json()["id"])
    assert again["rerun_of"] == run["id"] and again["provenance"]["digests"]["data"] == prov["digests"]["data"]
    assert same_tensors(weights(stack, again["id"]), weights(stack, run["id"])), "the re-run trained other weights"
    assert curves(stack, again["id"]) == curves(stack, run["id"])

    (data_root / "avdigits-rerun" / "test.npz").write_bytes(b"not the data it trained on")
    r = httpx.post(f"{stack.url}/runs/{run['id']}/rerun", json={}, timeout=30)
    assert r.status_code == 409 and "the data changed since run" in r.json()["error"]["message"], r.text
