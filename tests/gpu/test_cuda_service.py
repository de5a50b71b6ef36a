"""The service on the GPU, end to end: `amst up` (API, one worker that sees the GPUs and trains on cuda:0, embedded
SQLite), a run posted for cuda:0 trains there and its curves and GPU series arrive through the API; a run whose
label is out of range trips a device-side assert, fails alone, its worker exits and is restarted by `amst up`, and
the next run trains on the fresh worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from tests.kit.gpu import cuda_only
from tests.kit.svc import tiny_run, wait_until
from tests.kit.tiny import write_tiny_avdigits
from tests.kit.up import TERMINAL, Up, child_of, start_up

pytestmark = pytest.mark.gpu
GPU_SERIES = {"gpu_util", "gpu_mem_gib"}


@pytest.fixture
def amst_up(tmp_path: Path) -> Iterator[Up]:
    """`amst up` in an empty folder, tiny avdigits, fast lifecycle (as in tests/service/test_amst_up.py)."""
    with start_up(tmp_path) as server:
        yield server


def post(stack: Up, body: dict) -> str:
    resp = httpx.post(f"{stack.url}/runs", json=body, timeout=10)
    assert resp.status_code == 201, resp.text
    stack.record_tree()
    return resp.json()["id"]


def ended(stack: Up, run_id: str, timeout_s: float = 300) -> dict:
    wait_until(lambda: stack.get(f"/runs/{run_id}")["status"] in TERMINAL, timeout_s, message=f"run {run_id} to end")
    return stack.get(f"/runs/{run_id}")


def test_a_run_through_amst_up_trains_on_the_gpu_and_its_curves_and_gpu_series_arrive(amst_up: Up,
                                                                                       device: torch.device) -> None:
    up = amst_up
    run = ended(up, post(up, tiny_run(device=str(device), epochs=2)))
    assert run["status"] == "succeeded", up.logs()
    if device.type == "cuda":
        assert run["device"].startswith("cuda:0"), run["device"]
    series = {(s["split"], s["component"], s["modality"], s["name"]): s for s in
              up.get(f"/runs/{run['id']}/metrics")["series"]}
    for key in (("val", "fused", None, "acc"), ("train", "fused", None, "loss"), ("val", "alt_branch", "audio", "acc"),
                ("val", "joint_helper", "visual", "acc")):  # tiny_run: AMST-FULL
        assert series[key]["epochs"] == [0, 1], (key, sorted(series))
    gpu = {key[3]: s for key, s in series.items() if key[1] == "run" and key[2] is None and key[3] in GPU_SERIES}
    if device.type == "cuda":
        assert set(gpu) == GPU_SERIES, sorted(series)
        assert all(s["epochs"] == [0, 1] and all(v is not None for v in s["values"]) for s in gpu.values())
    else:
        assert not gpu, "a CPU run has no GPU series"


def with_a_label_out_of_range(data_root: Path) -> str:
    """An avdigits copy under data_root whose first training label is 10 (10 classes: 0..9); its dataset.root."""
    folder = write_tiny_avdigits(data_root / "bad")
    arrays = dict(np.load(folder / "train.npz"))
    arrays["label"] = arrays["label"].copy()
    arrays["label"][0] = 10
    np.savez(folder / "train.npz", **arrays)
    return "bad/avdigits"


def test_a_device_side_assert_fails_its_run_and_a_restarted_worker_trains_the_next(amst_up: Up, device: torch.device,
                                                                                  tmp_path: Path) -> None:
    cuda_only(device, "a device-side assert breaks a CUDA context; on a CPU a bad label is an ordinary error")
    up = amst_up
    broken_worker = child_of(up, "worker")
    root = with_a_label_out_of_range(tmp_path / "data")  # the `up` fixture's data root
    bad = ended(up, post(up, tiny_run(device=str(device), epochs=1, dataset={"name": "avdigits", "root": root})))
    assert bad["status"] == "failed", up.logs()
    assert "cuda" in (bad.get("error") or "").lower(), bad.get("error")
    wait_until(lambda: "worker exited" in up.log.read_text(), 60, message="the broken worker to exit")
    wait_until(lambda: "worker restarted" in up.log.read_text(), 60, message="amst up to restart it")
    assert not broken_worker.alive
    assert child_of(up, "worker").pid != broken_worker.pid
    good = ended(up, post(up, tiny_run(device=str(device), epochs=1)))
    assert good["status"] == "succeeded", up.logs()
    assert good["attempt"] == 1 and good["epochs_done"] == 1
