"""Every method, end to end on a CPU: trains 2 epochs through `amst train` on synthetic data and on a tiny
avdigits, writes its own series, resumes exactly, and refuses bad method_params naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from amst_core.catalog import METHODS
from amst_core.cli import main
from amst_core.config import ConfigError, load_config
from amst_core.engine import RunCancelled, Trainer
from amst_core.sinks import MemorySink
from tests.kit.tiny import tiny_config, write_tiny_avdigits
from tests.kit.training import PARAMS, comparable

Key = tuple[str, str, str | None, str]
OWN_SERIES: dict[str, set[Key]] = {
    "ogm_ge": {("train", "run", "audio", "ogm_coeff"), ("train", "run", "visual", "ogm_ratio")},
    "pmr": {("val", "prototype", "audio", "acc"), ("train", "prototype", "visual", "loss"),
            ("test", "prototype", "audio", "macro_f1")},
    "mla": {("val", "combo:a30_v70", None, "acc"), ("test", "combo:entropy", None, "acc"),
            ("val", "run", None, "best_val_acc@combo:a70_v30")},
    "mslr": {("train", "run", "audio", "lr"), ("train", "run", "visual", "lr")},
    "amst_full": {("val", "alt_branch", "audio", "acc"), ("val", "joint_helper", "visual", "acc")},
    "unimodal": {("val", "branch", "audio", "acc")},
}
EVERY_METHOD: set[Key] = {("val", "fused", None, "acc"), ("val", "run", None, "best_val_acc"),
                          ("val", "run", "audio", "epochs_to_plateau"), ("train", "run", "audio", "lr")}


def write_config(path: Path, body: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(body))
    return path


def body_for(method: str, dataset: str) -> dict[str, Any]:
    if dataset == "synthetic":
        return tiny_config(method, method_params=PARAMS.get(method, {})).model_dump(mode="json")
    return {"method": method, "dataset": {"name": "avdigits", "preset": "hard"}, "epochs": 2, "batch_size": 20,
            "device": "cpu", "model": {"audio_frames": 12, "width": 8}, "optim": {"lr": 0.05},
            "method_params": PARAMS.get(method, {})}


@pytest.mark.parametrize("dataset", ["synthetic", "avdigits"])
@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_two_epochs_through_amst_train(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           method: str, dataset: str) -> None:
    monkeypatch.setenv("AMST_DATA_ROOT", str(tmp_path / "data"))
    write_tiny_avdigits(tmp_path / "data")
    out = tmp_path / "run"
    config = write_config(tmp_path / "run.yaml", body_for(method, dataset))
    assert main(["train", str(config), "--out", str(out), "--no-progress"]) == 0
    points = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    keys = {(p["split"], p["component"], p["modality"], p["name"]) for p in points}
    expected = (EVERY_METHOD | OWN_SERIES.get(method, set()))
    if method == "unimodal":
        expected -= {("val", "run", "visual", "epochs_to_plateau")}
    assert expected <= keys, sorted(expected - keys)
    assert {p["epoch"] for p in points} == {0, 1}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == method and summary["best_epoch"] in (0, 1)
    if method == "mla":
        assert set(summary["selections"]) >= {"combo:a30_v70", "combo:entropy"}
    if method == "unimodal":
        assert not any(p["modality"] == "visual" for p in points), "the other modality is not even trained"


@pytest.mark.parametrize("method", list(METHODS))
def test_resume_is_exact_for_every_method(tmp_path: Path, method: str) -> None:
    """Stop in the middle of epoch 2, resume from the checkpoint of epoch 1, finish: the metrics of an
    uninterrupted run (PMR's prototypes, MSLR's history and learning rates, the plateau history included)."""
    cfg = tiny_config(method, epochs=3, skip={"audio": 2}, method_params=PARAMS.get(method, {}))
    reference = MemorySink()
    Trainer(cfg, sinks=[reference], progress=False).fit()

    calls = {"n": 0}

    def stop_in_the_last_epoch() -> bool:
        calls["n"] += 1
        return trainer.live.epoch == 2 and trainer.live.batch >= 1

    sink = MemorySink()
    trainer = Trainer(cfg, out_dir=tmp_path, sinks=[sink], should_stop=stop_in_the_last_epoch, progress=False)
    with pytest.raises(RunCancelled):
        trainer.fit()
    resumed = Trainer(cfg, out_dir=tmp_path, sinks=[sink], progress=False)
    resumed.resume()
    assert resumed.start_epoch == 2
    resumed.fit()
    assert comparable(sink.points) == comparable(reference.points)


@pytest.mark.parametrize(("body", "field"), [
    ({"method": "ogm_ge", "method_params": {"beta": 1}}, "method_params.beta"),
    ({"method": "ogm_ge", "method_params": {"alpha": -0.1}}, "method_params.alpha"),
    ({"method": "ogm_ge", "method_params": {"modulation_start": 10, "modulation_end": 5}},
     "method_params.modulation_end"),
    ({"method": "pmr", "method_params": {"factor": 0}}, "method_params.factor"),
    ({"method": "pmr", "dataset": {"name": "synthetic", "synthetic": {"modalities": ["audio", "text", "visual"]}}},
     "method"),
    ({"method": "mslr", "method_params": {"window": 0}}, "method_params.window"),
    ({"method": "unimodal"}, "method_params.modality"),
    ({"method": "unimodal", "method_params": {"modality": "text"}}, "method_params.modality"),
    ({"method": "mla", "fusion": "concat"}, "fusion"),
])
def test_bad_method_params_fail_before_training_naming_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(base={"dataset": {"name": "synthetic"}, **body})
    assert str(err.value).startswith(f"{field}: "), str(err.value)
