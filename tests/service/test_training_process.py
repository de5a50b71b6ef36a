"""Each attempt trains in a process of its own (worker/attempt.py), watched by its worker (worker/child.py): a native
crash or a run over the memory limit ends that process and fails its run with the cause, and the worker trains
the next run. Real processes, embedded backend, one stack."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.kit.svc import CRASH_AT_THE_FIRST_BATCH, Service, service_env, submit_and_wait, tiny_run

MEMORY_LIMIT_MB = 1600  # a tiny run's training process stays below (about 900 MiB: torch and its libraries)


def grows_past_the_limit() -> dict:
    """A legal run whose synthetic data (audio only: 800 MiB, within AMST_MAX_SYNTHETIC_MB) takes its training
    process past MEMORY_LIMIT_MB while it is generated."""
    return tiny_run(name="grows", method="unimodal", dataset={"name": "synthetic", "synthetic": {
        "modalities": ["audio"], "audio_shape": [512, 512], "samples": {"train": 600, "val": 100, "test": 100}}},
        method_params={"modality": "audio"}, model={"width": 8}, batch_size=4, epochs=1)


def test_a_native_crash_and_a_run_over_the_memory_limit_fail_alone(tmp_path: Path) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(CRASH_AT_THE_FIRST_BATCH)
    env = service_env(tmp_path, AMST_CRASH_RETRIES="1", AMST_RUN_MEMORY_MB=str(MEMORY_LIMIT_MB))
    svc = Service(env, tmp_path)
    try:
        svc.start_api()
        svc.env = {**svc.env, "PYTHONPATH": str(hook)}
        worker = svc.start_worker()
        runs = submit_and_wait(svc, {"crash": tiny_run(name="segfaults", epochs=1), "grows": grows_past_the_limit(),
                                     "next": tiny_run(epochs=1)}, timeout=240)
        crash, grows, after = runs["crash"], runs["grows"], runs["next"]
        assert crash["status"] == "failed", (crash, svc.logs("worker"))
        assert crash["error"].startswith("the training process was killed by SIGSEGV (a native crash in PyTorch")
        assert "2 attempts in a row ended so: not retried again (AMST_CRASH_RETRIES=1)" in crash["error"]
        assert "Fatal Python error: Segmentation fault" in crash["error"], "the end of the run's log is quoted"
        assert [a["status"] for a in crash["attempts"]] == ["crashed", "crashed"]
        assert all("killed by SIGSEGV" in a["error"] for a in crash["attempts"])

        assert grows["status"] == "failed", (grows, svc.logs("worker"))
        assert grows["error"].startswith("out of memory: the training process used ")
        assert f"MiB, over AMST_RUN_MEMORY_MB ({MEMORY_LIMIT_MB} MiB)" in grows["error"]
        assert "not retried" in grows["error"] and len(grows["attempts"]) == 1

        assert after["status"] == "succeeded", svc.logs("worker")
        assert worker.poll() is None, "the worker lives on"
        log = httpx.get(f"{svc.url}/runs/{crash['id']}/logs", timeout=5).json()["text"]
        assert "the training process was killed by SIGSEGV" in log, "the worker's note in the run's log"
    finally:
        svc.stop()
