"""The dataset check is decided in one place per process: the API at submission, `execute_run` where a run is
executed (the CLI and the worker); the trainer trusts its caller. A bad dataset still fails before training,
with the check's message."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from amst_core.config import ConfigError, load_config
from amst_core.datasets import DATASETS
from amst_core.engine import Trainer
from amst_core.execute import execute_run
from amst_core.sinks import MemorySink
from tests.kit.tiny import tiny_config


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The synthetic dataset's check, counted."""
    calls: list[str] = []
    spec = DATASETS["synthetic"]

    def counted(cfg, roots):
        calls.append(cfg.dataset.name)
        return spec.check(cfg, roots)

    monkeypatch.setitem(DATASETS, "synthetic", dataclasses.replace(spec, check=counted))
    return calls


def test_a_run_is_checked_once_where_it_is_executed(tmp_path: Path, checks: list[str]) -> None:
    execute_run(tiny_config(epochs=1), tmp_path / "run", [MemorySink()], run_id="once", progress=False)
    assert checks == ["synthetic"]


def test_the_trainer_trusts_its_caller(checks: list[str]) -> None:
    Trainer(tiny_config(epochs=1), progress=False)
    assert checks == []


def test_a_missing_dataset_fails_before_training_naming_the_field(tmp_path: Path) -> None:
    cfg = load_config(base={"method": "naive", "dataset": {"name": "avdigits"}, "epochs": 1, "device": "cpu"})
    sink = MemorySink()
    with pytest.raises(ConfigError, match=r"dataset\.root: .*amst prepare avdigits"):
        execute_run(cfg, tmp_path / "run", [sink], run_id="missing", progress=False)
    assert sink.points == []
