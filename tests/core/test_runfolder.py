"""The run folder (amst_core/runfolder.py): every path of a run said once, atomic writes, the checkpoint format's
versions, RNG states; and the one per-epoch line the console and the run's log share."""

from __future__ import annotations

import io
import logging
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from amst_core.engine import Trainer
from amst_core.runfolder import CHECKPOINT_VERSION, RunFolder, rng_state, set_rng_state, upgraded
from amst_core.sinks import ConsoleSink, MemorySink
from tests.kit.tiny import tiny_config

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("amst_core", "api", "worker", "launch", "ui")
RUN_FOLDER_PATH = re.compile(r'"last\.pt"|"best\.pt"|checkpoints/|"(config\.yaml|metrics\.jsonl|summary\.json)"')


def test_run_folder_paths_are_spelled_only_in_runfolder() -> None:
    """A run folder's file names are spelled in runfolder.py alone (they were in the engine, execute_run, the CLI,
    the sweep's local runs, artifacts and the API's checkpoint route)."""
    files = [path for package in PRODUCT for path in sorted((ROOT / package).rglob("*.py"))
             if path.name != "runfolder.py"]
    spelled = [f"{path.relative_to(ROOT)}:{number}" for path in files
               for number, line in enumerate(path.read_text().splitlines(), 1) if RUN_FOLDER_PATH.search(line)]
    assert spelled == [], "use amst_core.runfolder.RunFolder: " + ", ".join(spelled)


def test_paths_do_not_import_torch() -> None:
    """The API serves checkpoints through RunFolder and never imports torch."""
    code = ("import sys; from amst_core.runfolder import RunFolder; f = RunFolder('r'); "
            "paths = [f.config, f.metrics, f.summary, f.log, f.checkpoint('best'), f.checkpoint('last')]; "
            "f.can_resume(); f.temporary_files(); sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_the_layout(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "r1")
    assert folder.name == "r1"
    relative = {name: str(getattr(folder, name).relative_to(folder.path))
                for name in ("config", "metrics", "summary", "log", "checkpoints")}
    assert relative == {"config": "config.yaml", "metrics": "metrics.jsonl", "summary": "summary.json",
                        "log": "logs/output.log", "checkpoints": "checkpoints"}
    assert folder.checkpoint("best") == folder.checkpoints / "best.pt"
    assert folder.checkpoint() == folder.checkpoints / "last.pt"
    assert not folder.can_resume() and not folder.holds_run() and not folder.path.exists(), "nothing created"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "r")
    folder.write_json(folder.summary, {"epochs": 1})
    with pytest.raises(TypeError):
        folder.write_json(folder.summary, {"epochs": object()})  # fails half-way, as a crash would
    assert folder.summary.read_text() == '{\n  "epochs": 1\n}'
    assert sorted(p.name for p in folder.path.iterdir()) == ["summary.json"]


def test_checkpoints_round_trip_and_a_crashed_write_is_a_temporary_file(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "r")
    folder.save_checkpoint("last", {"version": CHECKPOINT_VERSION, "epoch": 3, "selection": {"fused": {}},
                                    "w": torch.arange(3)})
    state = folder.load_checkpoint("last")
    assert state["epoch"] == 3 and torch.equal(state["w"], torch.arange(3)) and folder.can_resume()
    (folder.checkpoints / "best.pt.tmp").write_bytes(b"half")
    assert folder.temporary_files() == [folder.checkpoints / "best.pt.tmp"]
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        folder.load_checkpoint("best")


def test_a_version_1_checkpoint_reads_with_todays_fields() -> None:
    """Version 1 kept the fused prediction's record as `best` and saved neither points nor the plateau."""
    record = {"epoch": 4, "val_acc": 0.5, "test_acc": 0.4}
    old = upgraded({"version": 1, "epoch": 4, "best": record})
    assert old["selection"] == {"fused": record} and old["points"] == [] and old["plateau"] == {}
    today = {"version": CHECKPOINT_VERSION, "selection": {"fused": record}, "points": [{"epoch": 4}],
             "plateau": {"audio": 1}}
    assert upgraded(today) == today


def test_rng_states_restore_every_generator() -> None:
    state = rng_state(torch.device("cpu"))
    first = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(state, torch.device("cpu"))
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]


def test_the_console_and_the_runs_log_print_the_same_epoch_line(caplog: pytest.LogCaptureFixture) -> None:
    """One function formats the per-epoch line: what `amst train` prints is what a worker's run log holds."""
    console = io.StringIO()
    cfg = tiny_config("amst_alt", epochs=2)
    with caplog.at_level(logging.INFO, logger="amst.engine"):
        Trainer(cfg, sinks=[MemorySink(), ConsoleSink(cfg.epochs, console)], progress=False).fit()
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    printed = console.getvalue().splitlines()
    assert len(printed) == 2 and logged == printed
    assert re.fullmatch(r"epoch 1/2  train acc [\d.]+ loss [\d.]+  val acc [\d.]+ \(audio [\d.]+ · visual [\d.]+\) "
                        r"loss [\d.]+  test acc [\d.]+ loss [\d.]+  [\d.]+ s", printed[0]), printed[0]
