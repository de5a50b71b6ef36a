"""`amst serve worker --gpus 0,1` through the service: one-GPU runs train side by side, one on each GPU, a two-GPU
run waits for them and then trains alone on both, and never do two runs hold one GPU at once.

This machine has no GPU: a hook makes the worker processes announce the GPUs CUDA_VISIBLE_DEVICES names (16 GB
each) and lets a run of two 'GPUs' start its ranks, which train on the CPU (device: auto); every training
process writes when it starts and ends and which GPUs it was given. What the test checks is the sharing: the
workers, their queues and their locks are the real ones."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.kit.svc import Service, tiny_run, wait_until

HOOK = '''
import os
import time

import amst_core.execute as execute
import amst_core.gpu as gpu
import amst_core.ranks as ranks


def visible_gpus():
    ids = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    return [gpu.GpuInfo(index=i, name="Fake GPU", memory_mib=16384) for i in range(len(ids))]


gpu.visible_gpus = visible_gpus
ranks.check_devices = lambda cfg: None  # its ranks train on the CPU here
real = execute.execute_run


def execute_run(cfg, *args, **kwargs):
    if os.environ.get("RANK", "0") != "0":
        return real(cfg, *args, **kwargs)
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    with open(os.environ["GPU_USE_LOG"], "a") as log:
        log.write(f"{cfg.name} start {time.time()} {gpus}\\n")
    try:
        return real(cfg, *args, **kwargs)
    finally:
        with open(os.environ["GPU_USE_LOG"], "a") as log:
            log.write(f"{cfg.name} end {time.time()} {gpus}\\n")


execute.execute_run = execute_run
'''


def uses(log: Path) -> dict[str, tuple[float, float, set[str]]]:
    """{run name: (start, end, GPUs)} from the training processes' lines."""
    found: dict[str, dict] = {}
    for line in log.read_text().splitlines():
        name, event, at, *gpus = line.split()
        found.setdefault(name, {})[event] = float(at)
        found[name]["gpus"] = set(gpus[0].split(",")) if gpus else set()
    return {name: (u["start"], u["end"], u["gpus"]) for name, u in found.items() if "end" in u}


def test_one_gpu_runs_share_out_the_gpus_and_a_two_gpu_run_waits_for_them(service: Service, tmp_path: Path) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    log = tmp_path / "gpu-use.log"
    service.env.update(PYTHONPATH=str(hook), GPU_USE_LOG=str(log), AMST_GPU_LOCK_DIR=str(tmp_path / "locks"))
    service.start_api()
    service.start_worker("worker", "--gpus", "0,1")

    def submit(name: str, gpus: int, epochs: int) -> str:
        body = tiny_run(name=name, device="auto", epochs=epochs, resources={"gpus": gpus})
        resp = httpx.post(f"{service.url}/runs", json=body, timeout=10)
        assert resp.status_code == 201, resp.text
        assert resp.json()["queue"] == ("gpu" if gpus == 1 else f"gpu-x{gpus}")
        return resp.json()["id"]

    ids = [submit("one-a", 1, 8), submit("one-b", 1, 8)]
    wait_until(lambda: log.exists() and log.read_text().count(" start ") == 2, 180,
               message=f"both one-GPU runs to train\n{service.logs('worker')}")
    ids += [submit("two", 2, 2)]
    time.sleep(1)  # the two-GPU run is waiting: a one-GPU run submitted now starts after it, not before
    ids += [submit("one-c", 1, 2)]

    def ended() -> list[dict] | None:
        runs = [httpx.get(f"{service.url}/runs/{i}", timeout=5).json() for i in ids]
        return runs if all(r["status"] in ("succeeded", "failed", "cancelled", "lost") for r in runs) else None

    runs = wait_until(ended, 400, interval=1, message="every run to end")
    for run in runs:
        assert run["status"] == "succeeded", (run["name"], run["error"], service.logs("worker"))
    used = uses(log)
    assert used["one-a"][2] | used["one-b"][2] == {"0", "1"}  # one GPU each ...
    assert used["one-a"][0] < used["one-b"][1] and used["one-b"][0] < used["one-a"][1]  # ... at the same time
    assert used["two"][2] == {"0", "1"}
    assert used["two"][0] > max(used["one-a"][1], used["one-b"][1])  # it waited for them
    assert used["one-c"][0] > used["two"][1]  # submitted while it waited: after it
    for a, (start_a, end_a, gpus_a) in used.items():  # never two runs on one GPU
        for b, (start_b, end_b, gpus_b) in used.items():
            if a < b and start_a < end_b and start_b < end_a:
                assert not gpus_a & gpus_b, (a, b, used)
