"""Exactness on the GPU: `compile: true` resumes exactly (2 epochs straight against 1 + a resumed 1: equal
metrics and equal checkpoints), and `deterministic: true` run twice gives equal checkpoints, PMR (index_add_) and a
text dataset (the text encoder's attention backward) included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from amst_core.config import RunConfig
from amst_core.engine import Trainer
from amst_core.runfolder import load_checkpoint
from amst_core.sinks import MemorySink
from tests.kit.tiny import text_layout_run, tiny_config, write_tiny_roberta, write_tiny_text_layout
from tests.kit.training import comparable, stopped_and_resumed

pytestmark = pytest.mark.gpu
SAME_IN_BOTH = ("epoch", "method", "selection", "plateau", "rng")  # not "points": they hold wall-clock times


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Where two checkpoint trees differ (tensors bit for bit)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype \
            and a.shape == b.shape and torch.equal(a, b)
        return [] if same else [where]
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where} keys {sorted(map(str, a.keys() ^ b.keys()))}"]
        return [d for k in a for d in differences(a[k], b[k], f"{where}/{k}")]
    if isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [where]


def assert_same_checkpoints(a: Path, b: Path) -> None:
    left, right = load_checkpoint(a), load_checkpoint(b)
    found = [d for key in SAME_IN_BOTH for d in differences(left[key], right[key], key)]
    assert not found, f"{len(found)} differences, first: {found[:5]}"


@pytest.mark.parametrize("method", ["naive", "amst_full"])
def test_compiled_encoders_resume_exactly(device: torch.device, tmp_path: Path, method: str) -> None:
    """amst_full: the alternating update (a backward into the embedding, then one through the encoders) under
    compile as well."""
    cfg = tiny_config(method, device=str(device), compile=True, deterministic=True, epochs=2, skip={"audio": 2})
    stopped_and_resumed(tmp_path, cfg, stop=1)  # asserts equal metrics
    assert_same_checkpoints(tmp_path / "full" / "checkpoints" / "last.pt",
                            tmp_path / "split" / "checkpoints" / "last.pt")


def twice(cfg: RunConfig, tmp_path: Path) -> None:
    """Train `cfg` twice from scratch; equal metrics and checkpoints."""
    metrics = []
    for run in ("a", "b"):
        sink = MemorySink()
        Trainer(cfg, out_dir=tmp_path / run, sinks=[sink], progress=False).fit()
        metrics.append(comparable(sink.points))
    assert metrics[0] == metrics[1]
    assert_same_checkpoints(tmp_path / "a" / "checkpoints" / "last.pt", tmp_path / "b" / "checkpoints" / "last.pt")


@pytest.mark.parametrize("method", ["pmr", "amst_full"])
def test_deterministic_runs_are_equal(device: torch.device, tmp_path: Path, method: str) -> None:
    twice(tiny_config(method, device=str(device), deterministic=True, skip={"audio": 2}), tmp_path)


def test_a_deterministic_text_run_is_equal(device: torch.device, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMST_DATA_ROOT", str(tmp_path / "data"))
    roberta = write_tiny_roberta(tmp_path / "data" / "models" / "tiny-roberta")
    write_tiny_text_layout(tmp_path / "data", "urfunny", roberta)
    body = text_layout_run("urfunny", roberta, method="amst_full", device=str(device), deterministic=True,
                           skip={"audio": 2, "text": 2})
    twice(RunConfig.model_validate(body), tmp_path)
