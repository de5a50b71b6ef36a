"""Methods through the service: submitted with POST /runs, trained 2 epochs by a real worker on a tiny avdigits,
their own series and summary in the store. Two methods stand for all on the worker's path: MLA (its selections in
the summary, its `combo:*` components) and OGM-GE (run-level series per modality, declared by the method); every
method trains through the CLI in tests/core/test_every_method.py."""

from __future__ import annotations

import httpx

from tests.kit.svc import Service, submit_and_wait, tiny_run

OWN = {"ogm_ge": ("train", "run", "audio", "ogm_coeff"), "mla": ("test", "combo:entropy", None, "acc")}


def test_methods_run_on_a_worker_and_write_their_own_series(stack: Service) -> None:
    bodies = {}
    for method in OWN:
        body = tiny_run(method=method, epochs=2)
        body.pop("skip")
        bodies[method] = body
    runs = submit_and_wait(stack, bodies)
    for method, run in runs.items():
        assert run["status"] == "succeeded", (method, run["error"], stack.logs("worker"))
        assert run["best_epoch"] in (0, 1) and run["epochs_done"] == 2
        series = httpx.get(f"{stack.url}/runs/{run['id']}/metrics", timeout=10).json()["series"]
        keys = {(s["split"], s["component"], s["modality"], s["name"]): s["epochs"] for s in series}
        assert keys.get(OWN[method]) == [0, 1], (method, OWN[method])
        if method == "mla":
            assert set(run["summary"]["selections"]) >= {"combo:a30_v70", "combo:entropy"}
