"""Training helpers shared by the CPU and GPU tiers: metrics compared without wall-clock fields, a run stopped and
resumed through the CLI, a method built on a tiny config with a few batches, and the method parameters that the
every-method tests pass."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import yaml

from amst_core.cli import main
from amst_core.data import make_loader, source_for
from amst_core.engine import Trainer
from amst_core.methods import build_method
from amst_core.methods.base import Method
from tests.kit.tiny import tiny_config

# Methods whose tiny run needs a parameter of its own.
PARAMS: dict[str, dict[str, Any]] = {
    "unimodal": {"modality": "audio"},
    "mslr": {"window": 1},
    "arl": {"start": 0},
    "reconboost": {"stage_epochs": 1, "correct_epochs": 1},
    "relearning": {"diagnose_every": 1, "kmeans_restarts": 2},
    "umt": {"teacher_epochs": 1},
    "g2d": {"teacher_epochs": 1},
    "opm": {"modulation_start": 1},
    "amco": {"modulation_start": 1},
    "data_remixing": {"warmup_epochs": 1},
    "gblending": {"super_epoch": 3},
}


TIMING = {"epoch_time", "train_time", "samples_per_s"}


def comparable(points) -> list[tuple]:
    """Everything but wall-clock measures, attempt and timestamps."""
    rows = []
    for p in points:
        d = p if isinstance(p, dict) else p.to_dict()
        if d["name"] not in TIMING:  # NaN as a word: two runs that both diverge at one point are equal there
            value = "nan" if isinstance(d["value"], float) and math.isnan(d["value"]) else d["value"]
            rows.append((d["split"], d["component"], d["modality"], d["name"], d["epoch"], d["step"], value))
    return sorted(rows, key=lambda r: tuple("" if v is None else str(v) for v in r))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_config(path: Path, cfg) -> Path:
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return path


def stopped_and_resumed(tmp_path: Path, cfg, stop: int) -> tuple[dict, dict]:
    """Train `cfg` through, and again stopped after `stop` epochs then resumed (the CLI); asserts equal metrics,
    returns both summaries."""
    config = write_config(tmp_path / "run.yaml", cfg)
    full, split = tmp_path / "full", tmp_path / "split"
    assert main(["train", str(config), "--out", str(full), "--no-progress"]) == 0
    assert main(["train", str(config), "--out", str(split), "--set", f"epochs={stop}", "--no-progress"]) == 0
    assert main(["train", "--resume", str(split), "--set", f"epochs={cfg.epochs}", "--no-progress"]) == 0
    assert comparable(read_jsonl(split / "metrics.jsonl")) == comparable(read_jsonl(full / "metrics.jsonl"))
    return (json.loads((full / "summary.json").read_text()), json.loads((split / "summary.json").read_text()))


def batches(cfg, n: int = 3):
    data = source_for(cfg).split(cfg, "train", train=True)
    loader = make_loader(data, cfg.batch_size, shuffle=True, seed=cfg.seed)
    return [b for _, b in zip(range(n), loader, strict=False)]


def method_for(name: str, **fields) -> Method:
    cfg = tiny_config(name, **fields)
    torch.manual_seed(0)
    return build_method(cfg, cfg.dataset.synthetic.num_classes, torch.device("cpu"))


def one_update(method: Method, batch: dict, epoch: int = 0) -> None:
    """The method's own update on one batch, from a train-mode forward of every modality (no helper step)."""
    method.train_mode(True)
    net = method.nets["model"].net
    method.update({"model": net.embed(batch, method.modalities)}, batch["label"], epoch)


def assert_same_weights(a: Method, b: Method, atol: float = 1e-7) -> None:
    """Both methods' networks hold the same weights (a rule that does nothing: the neutral case of a method)."""
    for (name, p), q in zip(a.nets["model"].net.named_parameters(), b.nets["model"].net.parameters(), strict=True):
        assert torch.allclose(p, q, atol=atol), name


def optimizer_flags(trainer: Trainer) -> set:
    return {g.get("fused") for t in trainer.method.nets.values() for o in t.optimizers.values()
            for g in o.param_groups}
