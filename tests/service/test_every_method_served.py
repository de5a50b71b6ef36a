"""Every method through the service: submitted with POST /runs, trained 2 epochs by a real worker on a tiny
avdigits, its own series in the store (embedded default: the backends' differences are covered elsewhere)."""

from __future__ import annotations

from pathlib import Path

import httpx

from amst_core.catalog import METHODS
from tests.kit.svc import Service, service_env, submit_and_wait, tiny_run

OWN = {"ogm_ge": ("train", "run", "audio", "ogm_coeff"), "pmr": ("val", "prototype", "visual", "acc"),
       "mla": ("test", "combo:entropy", None, "acc"), "mslr": ("train", "run", "visual", "lr"),
       "unimodal": ("val", "branch", "visual", "acc"), "amst_full": ("val", "joint_branch", "audio", "acc"),
       "amst_alt": ("train", "run", "audio", "skip"), "amst_joint": ("val", "branch", "audio", "acc"),
       "naive": ("val", "helper", "visual", "acc")}
PARAMS = {"unimodal": {"modality": "visual"}}


def test_every_method_runs_on_a_worker(tmp_path: Path) -> None:
    svc = Service(service_env(tmp_path), tmp_path)
    try:
        svc.start_api()
        svc.start_worker()
        bodies = {}
        for method in METHODS:
            body = tiny_run(method=method, epochs=2, method_params=PARAMS.get(method, {}))
            if method in ("amst_alt", "amst_joint", "amst_full"):
                body["skip"] = {"audio": 2}
            else:
                body.pop("skip")
            bodies[method] = body
        runs = submit_and_wait(svc, bodies)
        for method, run in runs.items():
            assert run["status"] == "succeeded", (method, run["error"], svc.logs("worker"))
            assert run["best_epoch"] in (0, 1) and run["epochs_done"] == 2
            series = httpx.get(f"{svc.url}/runs/{run['id']}/metrics", timeout=10).json()["series"]
            keys = {(s["split"], s["component"], s["modality"], s["name"]): s["epochs"] for s in series}
            assert keys.get(OWN[method]) == [0, 1], (method, OWN[method])
            if method == "mla":
                assert set(run["summary"]["selections"]) >= {"combo:a30_v70", "combo:entropy"}
    finally:
        svc.stop()
