"""The new datasets through the service, on a real worker (nothing downloaded: a tiny RoBERTa built from a config and
a tokenizer trained here, under AMST_DATA_ROOT):
- a tiny UR-FUNNY-layout dataset trains through POST /runs for amst_full, amst_alt, naive and mla (its 3-modality
  weights), and the curves of audio, text and visual all arrive;
- a folder of generated WAV + PNG + TXT files trains; a missing image is a 422 naming the sample and its path, a
  corrupt WAV and an empty text file fail the run before training by id and path, and on_bad_sample: skip trains
  on the rest and says how many were dropped."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.kit.svc import Service, service_env, submit_and_wait
from tests.kit.tiny import folder_run, text_layout_run, write_tiny_folder, write_tiny_roberta, write_tiny_text_layout


def test_three_modality_runs_train_on_a_worker(tmp_path: Path) -> None:
    env = service_env(tmp_path, HF_HUB_OFFLINE="1")
    data = Path(env["AMST_DATA_ROOT"])
    write_tiny_roberta(data / "models" / "tiny-roberta")
    write_tiny_text_layout(data, "urfunny", data / "models" / "tiny-roberta")
    svc = Service(env, tmp_path)
    try:
        svc.start_api()
        svc.start_worker()
        bodies = {}
        for method in ("amst_full", "amst_alt", "naive", "mla"):
            bodies[method] = text_layout_run("urfunny", "models/tiny-roberta", method=method)  # under the data root
            if method.startswith("amst"):
                bodies[method]["skip"] = {"audio": 2, "text": 2}
        runs = submit_and_wait(svc, bodies)
        for method, run in runs.items():
            assert run["status"] == "succeeded", (method, run["error"], svc.logs("worker"))
            series = httpx.get(f"{svc.url}/runs/{run['id']}/metrics", params={"split": "val", "name": "acc"},
                               timeout=10).json()["series"]
            curves = {s["modality"]: s["epochs"] for s in series if s["modality"] and "helper" in s["component"]}
            assert curves == {"audio": [0, 1], "text": [0, 1], "visual": [0, 1]}, (method, curves)
            if method == "mla":
                assert set(run["summary"]["selections"]) == {"combo:a35_t40_v25", "combo:entropy"}
    finally:
        svc.stop()


def test_a_folder_dataset_trains_and_bad_files_are_named_before_training(tmp_path: Path) -> None:
    env = service_env(tmp_path, HF_HUB_OFFLINE="1")
    data = Path(env["AMST_DATA_ROOT"])
    write_tiny_roberta(data / "models" / "tiny-roberta")
    write_tiny_folder(data / "clean")
    bad = write_tiny_folder(data / "bad")
    (bad / "train/cat/cat_train_1.wav").write_bytes(b"RIFF not really a wav")
    (bad / "val/dog/dog_val_0.txt").write_text("")
    missing = write_tiny_folder(data / "missing")
    (missing / "train/dog/dog_train_2.png").unlink()
    svc = Service(env, tmp_path)
    try:
        svc.start_api()
        svc.start_worker()

        def submit(root: str, **dataset) -> httpx.Response:
            body = folder_run(root, "models/tiny-roberta", dataset={"name": "folder", "root": root, **dataset})
            return httpx.post(f"{svc.url}/runs", json=body, timeout=10)

        refused = submit("missing")
        assert refused.status_code == 422, refused.text
        assert "'dog_train_2' (train split)" in refused.text and "missing/train/dog/dog_train_2.*" in refused.text
        assert httpx.get(f"{svc.url}/runs", timeout=5).json()["items"] == [], "nothing queued"

        runs = submit_and_wait(svc, {name: folder_run(root, "models/tiny-roberta", dataset={
            "name": "folder", "root": root, **extra}) for name, root, extra in [
                ("clean", "clean", {}), ("bad", "bad", {}), ("skip", "bad", {"on_bad_sample": "skip"})]})
        assert runs["clean"]["status"] == "succeeded", (runs["clean"]["error"], svc.logs("worker"))
        assert runs["clean"]["config"]["dataset"]["modalities_used"] == ["audio", "text", "visual"]
        assert runs["bad"]["status"] == "failed" and runs["bad"]["epochs_done"] == 0
        error = runs["bad"]["error"]
        assert "2 of 18 samples cannot be read" in error, error
        assert "'cat_train_1' (train split)" in error and "cat_train_1.wav" in error
        assert "'dog_val_0' (val split)" in error and "dog_val_0.txt is empty" in error
        assert runs["skip"]["status"] == "succeeded", runs["skip"]["error"]
        assert runs["skip"]["summary"]["dropped_samples"] == {"train": 1, "val": 1, "test": 0}
    finally:
        svc.stop()
