"""The new datasets through the service, on a real worker (nothing downloaded: a tiny RoBERTa built from a config and
a tokenizer trained here, under AMST_DATA_ROOT):
- a tiny UR-FUNNY-layout dataset trains through POST /runs for amst_full (a skip factor per modality, text's too)
  and mla (its 3-modality weights), and the curves of audio, text and visual all arrive (the same two train
  on three modalities in-process in tests/data/test_text_layouts.py; the worker's path is the same for every method);
- a folder of generated WAV + PNG + TXT files trains; a missing image is a 422 naming the sample and its path, a
  corrupt WAV and an empty text file fail the run before training by id and path, and on_bad_sample: skip trains
  on the rest and says how many were dropped."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.kit.svc import Service, submit_and_wait
from tests.kit.tiny import folder_run, text_layout_run, write_tiny_folder, write_tiny_roberta, write_tiny_text_layout

ROBERTA = "models/tiny-roberta"  # under the data root: nothing is downloaded (the stack runs with HF_HUB_OFFLINE=1)


def data_root(svc: Service) -> Path:
    """The shared stack's data root, with the tiny RoBERTa in it (written by whichever test needs it first)."""
    data = Path(svc.env["AMST_DATA_ROOT"])
    if not (data / ROBERTA).exists():
        write_tiny_roberta(data / ROBERTA)
    return data


def run_ids(svc: Service) -> set[str]:
    return {r["id"] for r in httpx.get(f"{svc.url}/runs", params={"limit": 200}, timeout=10).json()["items"]}


def test_three_modality_runs_train_on_a_worker(stack: Service) -> None:
    data = data_root(stack)
    write_tiny_text_layout(data, "urfunny", data / ROBERTA)
    bodies = {}
    for method in ("amst_full", "mla"):
        bodies[method] = text_layout_run("urfunny", ROBERTA, method=method, epochs=1)  # one epoch: every curve
        if method.startswith("amst"):
            bodies[method]["skip"] = {"audio": 2, "text": 2}
    runs = submit_and_wait(stack, bodies)
    for method, run in runs.items():
        assert run["status"] == "succeeded", (method, run["error"], stack.logs("worker"))
        series = httpx.get(f"{stack.url}/runs/{run['id']}/metrics", params={"split": "val", "name": "acc"},
                           timeout=10).json()["series"]
        curves = {s["modality"]: s["epochs"] for s in series if s["modality"] and "helper" in s["component"]}
        assert curves == {"audio": [0], "text": [0], "visual": [0]}, (method, curves)
        if method == "mla":
            assert set(run["summary"]["selections"]) == {"combo:a35_t40_v25", "combo:entropy"}


def test_a_folder_dataset_trains_and_bad_files_are_named_before_training(stack: Service) -> None:
    data = data_root(stack)
    write_tiny_folder(data / "clean")
    bad = write_tiny_folder(data / "bad")
    (bad / "train/cat/cat_train_1.wav").write_bytes(b"RIFF not really a wav")
    (bad / "val/dog/dog_val_0.txt").write_text("")
    missing = write_tiny_folder(data / "missing")
    (missing / "train/dog/dog_train_2.png").unlink()

    def submit(root: str, **dataset) -> httpx.Response:
        body = folder_run(root, ROBERTA, dataset={"name": "folder", "root": root, **dataset})
        return httpx.post(f"{stack.url}/runs", json=body, timeout=10)

    before = run_ids(stack)
    refused = submit("missing")
    assert refused.status_code == 422, refused.text
    assert "'dog_train_2' (train split)" in refused.text and "missing/train/dog/dog_train_2.*" in refused.text
    assert run_ids(stack) == before, "nothing queued"

    runs = submit_and_wait(stack, {name: folder_run(root, ROBERTA, epochs=1, dataset={
        "name": "folder", "root": root, **extra}) for name, root, extra in [
            ("clean", "clean", {}), ("bad", "bad", {}), ("skip", "bad", {"on_bad_sample": "skip"})]})
    assert runs["clean"]["status"] == "succeeded", (runs["clean"]["error"], stack.logs("worker"))
    assert runs["clean"]["config"]["dataset"]["modalities_used"] == ["audio", "text", "visual"]
    assert runs["bad"]["status"] == "failed" and runs["bad"]["epochs_done"] == 0
    error = runs["bad"]["error"]
    assert "2 of 18 samples cannot be read" in error, error
    assert "'cat_train_1' (train split)" in error and "cat_train_1.wav" in error
    assert "'dog_val_0' (val split)" in error and "dog_val_0.txt is empty" in error
    assert runs["skip"]["status"] == "succeeded", runs["skip"]["error"]
    assert runs["skip"]["summary"]["dropped_samples"] == {"train": 1, "val": 1, "test": 0}
