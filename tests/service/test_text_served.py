"""Three modalities through the service: a tiny UR-FUNNY-layout dataset (token files from a tokenizer the test
trains, a tiny RoBERTa built from a config under AMST_DATA_ROOT; nothing downloaded) trains through POST /runs on a
real worker for amst_full, amst_alt, naive and mla (its 3-modality weights), and the curves of audio, text and
visual all arrive."""

from __future__ import annotations

from pathlib import Path

import httpx
from svc import Service, service_env, wait_until
from tiny import text_layout_run, write_tiny_roberta, write_tiny_text_layout

TERMINAL = {"succeeded", "failed", "cancelled", "lost"}


def test_three_modality_runs_train_on_a_worker(tmp_path: Path) -> None:
    env = service_env(tmp_path, HF_HUB_OFFLINE="1")
    data = Path(env["AMST_DATA_ROOT"])
    write_tiny_roberta(data / "models" / "tiny-roberta")
    write_tiny_text_layout(data, "urfunny", data / "models" / "tiny-roberta")
    svc = Service(env, tmp_path)
    try:
        svc.start_api()
        svc.start_worker()
        ids = {}
        for method in ("amst_full", "amst_alt", "naive", "mla"):
            body = text_layout_run("urfunny", "models/tiny-roberta", method=method)  # relative to AMST_DATA_ROOT
            if method.startswith("amst"):
                body["skip"] = {"audio": 2, "text": 2}
            resp = httpx.post(f"{svc.url}/runs", json=body, timeout=10)
            assert resp.status_code == 201, (method, resp.text)
            ids[method] = resp.json()["id"]

        def ended() -> bool:
            return all(httpx.get(f"{svc.url}/runs/{r}", timeout=5).json()["status"] in TERMINAL for r in ids.values())

        wait_until(ended, 600, interval=1, message="the 3-modality runs to end")
        for method, run_id in ids.items():
            run = httpx.get(f"{svc.url}/runs/{run_id}", timeout=5).json()
            assert run["status"] == "succeeded", (method, run["error"], svc.logs("worker"))
            series = httpx.get(f"{svc.url}/runs/{run_id}/metrics", params={"split": "val", "name": "acc"},
                               timeout=10).json()["series"]
            curves = {s["modality"]: s["epochs"] for s in series if s["modality"] and "helper" in s["component"]}
            assert curves == {"audio": [0, 1], "text": [0, 1], "visual": [0, 1]}, (method, curves)
            if method == "mla":
                assert set(run["summary"]["selections"]) == {"combo:a35_t40_v25", "combo:entropy"}
    finally:
        svc.stop()
