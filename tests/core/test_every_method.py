"""Every method, end to end on a CPU, each trained once: 3 epochs through `amst train` on a tiny avdigits with
audio skipped in epoch 1, whose outputs every check below shares (its own series, the summary, the epochs); exact
resume once per family of resume state, against that same run; bad method_params refused naming the field.

Resume families (what a method carries from one epoch to the next besides weights, optimizers, schedulers, the
scaler, the skip schedule, RNG states and the plateau history, which every method shares):
- amst_full: two networks (ALT and JOINT), both update rules, the skip schedule: covers amst_alt and amst_joint,
  whose state is a subset (and tests/core/test_determinism_resume.py resumes those two through the CLI and mid-epoch);
- ogm_ge: gradient noise drawn from the global RNG in every batch (the restored RNG state must be the one saved);
- pmr: its prototypes (`extra_state`);
- mslr: its validation history and per-modality learning rates (`extra_state`, schedulers);
- mla: model selection per fusion combination (`selection` in the checkpoint, `best_val_acc@combo:*` series).
naive and unimodal carry nothing of their own: one network, one joint update, as amst_full's JOINT half.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from amst_core.catalog import METHODS
from amst_core.cli import main
from amst_core.config import ConfigError, load_config
from amst_core.engine import RunCancelled, Trainer
from amst_core.methods import method_class
from amst_core.methods.base import Method
from amst_core.sinks import MemorySink
from tests.kit.tiny import write_tiny_avdigits
from tests.kit.training import PARAMS, comparable, read_jsonl

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
EPOCHS = 3
RESUME_FAMILIES = ("amst_full", "ogm_ge", "pmr", "mslr", "mla")
# Every method that carries state of its own between epochs (`extra_state`) beyond these families resumes too.
RESUMED = (*RESUME_FAMILIES, *(m for m in METHODS if m not in RESUME_FAMILIES and m not in ("pmr", "mslr")
                               and method_class(m).extra_state is not Method.extra_state))


def declared_series(method: str) -> set[Key]:
    """The run-level series the method's spec declares, for the tiny run's two modalities."""
    return {(s.split, "run", m, s.name) for s in METHODS[method].series
            for m in (("audio", "visual") if s.per_modality else (None,))}


@pytest.fixture(scope="module")
def avdigits_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny avdigits for every run of the module."""
    return write_tiny_avdigits(tmp_path_factory.mktemp("data"))


@pytest.fixture(autouse=True)
def _shared_data_root(avdigits_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test of the module reads the module's avdigits (a run may read only data under AMST_DATA_ROOT)."""
    monkeypatch.setenv("AMST_DATA_ROOT", str(avdigits_root.parent))


def body_for(method: str) -> dict[str, Any]:
    return {"method": method, "dataset": {"name": "avdigits", "preset": "hard"},
            "epochs": EPOCHS, "skip": {"audio": 2}, "batch_size": 20, "device": "cpu",
            "model": {"audio_frames": 12, "width": 8}, "optim": {"lr": 0.05}, "method_params": PARAMS.get(method, {})}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict]:
    """Each method trained once through `amst train`, when a test first asks for it: its folder, config, points
    and summary."""
    runs: dict[str, dict] = {}

    def train(method: str) -> dict:
        if method not in runs:
            base = tmp_path_factory.mktemp(method)
            config, out = base / "run.yaml", base / "run"
            config.write_text(yaml.safe_dump(body_for(method)))
            assert main(["train", str(config), "--out", str(out), "--no-progress"]) == 0
            runs[method] = {"out": out, "config": load_config(config), "points": read_jsonl(out / "metrics.jsonl"),
                            "summary": json.loads((out / "summary.json").read_text())}
        return runs[method]

    return train


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_writes_its_series_through_amst_train(trained: Callable[[str], dict], method: str) -> None:
    points = trained(method)["points"]
    keys = {(p["split"], p["component"], p["modality"], p["name"]) for p in points}
    expected = EVERY_METHOD | OWN_SERIES.get(method, set()) | declared_series(method)
    assert expected <= keys, sorted(expected - keys)
    assert {p["epoch"] for p in points} == set(range(EPOCHS))
    if method == "unimodal":
        assert not any(p["modality"] == "visual" for p in points), "the other modality is not even trained"


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_summarises_its_run(trained: Callable[[str], dict], method: str) -> None:
    summary = trained(method)["summary"]
    assert summary["method"] == method and summary["best_epoch"] in range(EPOCHS)
    if method == "mla":
        assert set(summary["selections"]) >= {"combo:a30_v70", "combo:entropy"}


@pytest.mark.parametrize("method", RESUMED)
def test_resume_is_exact_once_per_family(trained: Callable[[str], dict], method: str, tmp_path: Path) -> None:
    """Stop in the middle of epoch 2, resume from the checkpoint of epoch 1, finish: the metrics of the
    uninterrupted run (PMR's prototypes, MSLR's history and learning rates, MLA's selections, OGM-GE's noise, the
    plateau history included). Families: the module's docstring."""
    cfg = trained(method)["config"]

    def stop_in_the_last_epoch() -> bool:
        return trainer.live.epoch == 2 and trainer.live.batch >= 1

    sink = MemorySink()
    trainer = Trainer(cfg, out_dir=tmp_path, sinks=[sink], should_stop=stop_in_the_last_epoch, progress=False)
    with pytest.raises(RunCancelled):
        trainer.fit()
    resumed = Trainer(cfg, out_dir=tmp_path, sinks=[sink], progress=False)
    resumed.resume()
    assert resumed.start_epoch == 2
    resumed.fit()
    assert comparable(sink.points) == comparable(trained(method)["points"])


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
