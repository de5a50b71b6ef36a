"""A run checkpointed by the previous version (one parameter group for all encoders, `best` instead of
`selection`) resumes exactly as one checkpointed by this version."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from amst_core.engine import Trainer
from amst_core.runfolder import load_checkpoint, save_atomic
from amst_core.sinks import MemorySink
from tests.kit.tiny import tiny_config
from tests.kit.training import comparable


def as_version_1(state: dict) -> dict:
    old = copy.deepcopy(state)
    old["version"] = 1
    old["best"] = old.pop("selection")["fused"]
    old.pop("points")
    for net in old["method"]["nets"].values():
        groups = net["optimizers"]["encoders"]["param_groups"]
        merged = {k: v for k, v in groups[0].items() if k != "modality"}
        merged["params"] = [i for g in groups for i in g["params"]]
        net["optimizers"]["encoders"]["param_groups"] = [merged]
    old["method"].pop("extra")
    return old


def test_a_version_1_checkpoint_resumes_exactly(tmp_path: Path) -> None:
    cfg = tiny_config("amst_alt", epochs=3, skip={"audio": 2})
    first = tmp_path / "v2"
    Trainer(cfg.model_copy(update={"epochs": 2}), out_dir=first, progress=False).fit()
    state = load_checkpoint(first / "checkpoints" / "last.pt")
    old_dir = tmp_path / "v1"
    (old_dir / "checkpoints").mkdir(parents=True)
    save_atomic(as_version_1(state), old_dir / "checkpoints" / "last.pt")

    results = []
    for folder in (first, old_dir):
        sink = MemorySink()
        trainer = Trainer(cfg, out_dir=folder, sinks=[sink], progress=False)
        trainer.resume()
        groups = trainer.method.nets["model"].optimizers["encoders"].param_groups
        assert [g["modality"] for g in groups] == ["audio", "visual"]
        assert all(torch.is_tensor(v["momentum_buffer"]) for v in
                   trainer.method.nets["model"].optimizers["encoders"].state.values())
        trainer.fit()
        results.append(comparable([p for p in sink.points if p.epoch == 2]))
    assert results[0] == results[1]


def test_best_pt_holds_the_model_and_not_what_only_resume_needs(tmp_path: Path) -> None:
    """best.pt is for evaluation and download: weights, BatchNorm statistics and what a method predicts with
    (PMR's prototypes); the optimizers, schedulers, RNG states and unsaved points live in last.pt only."""
    Trainer(tiny_config("pmr", epochs=2), out_dir=tmp_path, progress=False).fit()
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert set(best) >= {"version", "epoch", "config", "classes", "method", "selection"}
    assert not set(best) & {"rng", "points", "plateau"}
    assert set(best["method"]["nets"]["model"]) == {"net"}, "no optimizer or scheduler state"
    assert best["method"]["extra"]["prototypes"] is not None
    if best["epoch"] == last["epoch"]:
        for name, value in last["method"]["nets"]["model"]["net"].items():
            assert torch.equal(value, best["method"]["nets"]["model"]["net"][name]), name
    sizes = {name: (tmp_path / "checkpoints" / name).stat().st_size for name in ("best.pt", "last.pt")}
    assert sizes["best.pt"] < 0.6 * sizes["last.pt"], sizes


def test_a_best_pt_of_the_previous_version_still_evaluates(tmp_path: Path) -> None:
    """best.pt used to be a copy of last.pt (optimizer state and all): such a file still evaluates, to the
    same metrics as the slim one."""
    from amst_core.evaluation import evaluate_run

    Trainer(tiny_config("amst_full", epochs=1), out_dir=tmp_path, progress=False).fit()
    slim = evaluate_run(tmp_path, split="val", which="best")
    save_atomic(load_checkpoint(tmp_path / "checkpoints" / "last.pt"), tmp_path / "checkpoints" / "best.pt")
    old = evaluate_run(tmp_path, split="val", which="best")
    assert [(p.component, p.modality, p.name, p.value) for p in old] == \
        [(p.component, p.modality, p.name, p.value) for p in slim]
