"""A run checkpointed by the previous version (one parameter group for all encoders, `best` instead of
`selection`) resumes exactly as one checkpointed by this version."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from test_determinism_resume import comparable
from tiny import tiny_config

from amst_core.engine import Trainer, load_checkpoint, save_atomic
from amst_core.sinks import MemorySink


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
