"""The `amst` command line, called in-process through `amst_core.cli.main`."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import pytest
import torch
import yaml

from amst_core import sinks
from amst_core.cli import main
from amst_core.config import RunConfig, dump_config
from amst_core.metrics import MetricPoint

POINT_FIELDS = {"run_id", "attempt", "split", "component", "modality", "name", "epoch", "step", "value",
                "recorded_at"}
TINY = {
    "name": "tiny",
    "dataset": {"name": "synthetic", "synthetic": {"samples": {"train": 40, "val": 16, "test": 16}}},
    "method": "amst_alt",
    "skip": {"audio": 2},
    "epochs": 2,
    "batch_size": 16,
    "device": "cpu",
    "model": {"frames": 1, "width": 8},
}


def write(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()




@pytest.fixture
def data_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("AMST_DATA_ROOT", str(root))
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny synthetic run, trained once for the module."""
    base = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AMST_DATA_ROOT", str(base / "data"))
        config = write(base / "tiny.yaml", TINY)
        out = base / "run"
        code, stdout, stderr = run_cli(["train", str(config), "--out", str(out), "--no-progress"])
    assert code == 0, stderr
    return {"base": base, "config": config, "out": out, "stdout": stdout, "stderr": stderr}


# ---- amst config -------------------------------------------------------------------------------------------------


def test_config_prints_resolved_yaml(tmp_path, capsys):
    path = write(tmp_path / "c.yaml", {"dataset": {"name": "avdigits"}, "method": "amst_full", "skip": {"audio": 3}})
    assert main(["config", str(path), "--set", "optim.lr=0.05"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["method"] == "amst_full"
    assert printed["skip"] == {"audio": 3, "visual": 1, "text": 1, "auto": None}
    # What the file leaves out: avdigits' recipe (lr_step 15, 20 epochs), then the reference's (momentum, ...).
    assert printed["optim"] == {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "lr_step": 15, "lr_gamma": 0.1}
    assert printed["method_params"] == {"skip_mode": "faithful", "full_joint_update": "alt"}
    assert printed["epochs"] == 20 and printed["recipe"] == "dataset"
    assert printed["model"]["frames"] == 1  # avdigits: one MNIST frame, its own default
    cfg = RunConfig.model_validate(printed)
    assert cfg.optim.lr == 0.05


@pytest.mark.parametrize(("data", "field"), [
    ({"dataset": {"name": "avdigits"}, "method": "amst_nope"}, "method"),
    ({"dataset": {"name": "avdigits"}, "method": "amst_alt", "skip": {"audio": 0}}, "skip.audio"),
    ({"dataset": {"name": "nope"}, "method": "naive"}, "dataset.name"),
])
@pytest.mark.parametrize("command", ["config", "train"])
def test_config_errors_exit_2_and_name_the_field(tmp_path, capsys, data_root, data, field, command):
    path = write(tmp_path / "c.yaml", data)
    argv = [command, str(path)] + (["--out", str(tmp_path / "run")] if command == "train" else [])
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert f"{field}:" in captured.err
    assert captured.err.startswith("error:")
    assert captured.out == ""
    assert not (tmp_path / "run").exists()


def test_config_missing_file(tmp_path, capsys):
    assert main(["config", str(tmp_path / "absent.yaml")]) == 2
    assert "absent.yaml" in capsys.readouterr().err


def test_set_without_equals(tmp_path, capsys):
    path = write(tmp_path / "c.yaml", {"dataset": {"name": "avdigits"}, "method": "naive"})
    assert main(["config", str(path), "--set", "epochs"]) == 2
    assert "epochs" in capsys.readouterr().err


def test_missing_dataset_hints_prepare(tmp_path, capsys, data_root):
    path = write(tmp_path / "c.yaml", {"dataset": {"name": "avdigits"}, "method": "amst_alt",
                                       "model": {"mel_bins": 13, "frames": 1, "image_size": 28}})
    out = tmp_path / "run"
    assert main(["train", str(path), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "dataset.root" in err
    assert "amst prepare avdigits" in err
    assert not (out / "metrics.jsonl").exists()


def test_train_without_config(capsys):
    assert main(["train"]) == 2
    assert "config" in capsys.readouterr().err


def test_resume_folder_without_config(tmp_path, capsys):
    folder = tmp_path / "empty"
    folder.mkdir()
    assert main(["train", "--resume", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err
    assert "config.yaml" in err


@pytest.mark.parametrize("override", ["optim.lr=0.1", "lr=0.1", "seed=3", "skip.audio=3"])
def test_resume_refuses_changes_other_than_epochs_device_workers(tmp_path, capsys, override):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.yaml").write_text(dump_config(RunConfig.model_validate(TINY)))
    assert main(["train", "--resume", str(folder), "--set", override]) == 2
    err = capsys.readouterr().err
    key = override.partition("=")[0]
    assert f"{key}:" in err
    assert "epochs" in err  # lists what may change


def test_resume_without_checkpoint(tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.yaml").write_text(dump_config(RunConfig.model_validate(TINY)))
    assert main(["train", "--resume", str(folder), "--set", "epochs=3"]) == 2
    assert "last.pt" in capsys.readouterr().err


def test_prepare_other_dataset_refused(capsys):
    assert main(["prepare", "cremad"]) == 2
    assert "dataset" in capsys.readouterr().err


# ---- amst train ----------------------------------------------------------------------------------------------------


def test_train_writes_config(trained):
    saved = yaml.safe_load((trained["out"] / "config.yaml").read_text())
    assert RunConfig.model_validate(saved) == RunConfig.model_validate(TINY)
    assert saved["epochs"] == 2
    assert saved["method_params"] == {"skip_mode": "faithful"}


def test_train_prints_summary_json(trained):
    printed = json.loads(trained["stdout"].strip().splitlines()[-1])
    summary = json.loads((trained["out"] / "summary.json").read_text())
    assert printed == {k: summary[k] for k in ("best_epoch", "best_val_acc", "test_acc_at_best")}


def test_train_metrics_jsonl(trained):
    lines = (trained["out"] / "metrics.jsonl").read_text().splitlines()
    points = [json.loads(line) for line in lines]
    assert points
    for p in points:
        assert set(p) >= POINT_FIELDS, p
        assert p["run_id"] == "run"
        assert p["attempt"] == 1
        assert p["split"] in ("train", "val", "test")
        assert p["epoch"] in (0, 1)
    keys = {(p["split"], p["component"], p["modality"], p["name"], p["epoch"]) for p in points}
    assert len(keys) == len(points)  # no duplicates
    for epoch in (0, 1):
        for split in ("train", "val"):
            assert (split, "fused", None, "acc", epoch) in keys
            for component in ("branch", "helper"):
                for m in ("audio", "visual"):
                    for name in ("loss", "acc", "acc_prob", "macro_f1"):
                        assert (split, component, m, name, epoch) in keys
    skip = {(p["modality"], p["epoch"]): p["value"] for p in points if p["name"] == "skip"}
    assert skip == {("audio", 0): 1.0, ("visual", 0): 1.0, ("audio", 1): 0.0, ("visual", 1): 1.0}
    assert ("test", "fused", None, "acc", 0) in keys  # epoch 0 always improves on "no best yet"
    # step = batches done so far: ceil(40 / 16) = 3 per epoch
    assert {p["epoch"]: p["step"] for p in points} == {0: 3, 1: 6}


def test_train_summary(trained):
    summary = json.loads((trained["out"] / "summary.json").read_text())
    assert summary["best_epoch"] in (0, 1)
    assert 0.0 <= summary["best_val_acc"] <= 1.0
    assert 0.0 <= summary["test_acc_at_best"] <= 1.0
    for component in ("branch", "helper"):
        assert set(summary["final"]["val"][component]) == {"audio", "visual"}
        assert all(0.0 <= v <= 1.0 for v in summary["final"]["val"][component].values())
    points = [json.loads(line) for line in (trained["out"] / "metrics.jsonl").read_text().splitlines()]
    val_acc = {p["epoch"]: p["value"] for p in points
               if (p["split"], p["component"], p["name"]) == ("val", "fused", "acc")}
    assert summary["best_val_acc"] == max(val_acc.values())
    assert val_acc[summary["best_epoch"]] == summary["best_val_acc"]
    test_acc = {p["epoch"]: p["value"] for p in points
                if (p["split"], p["component"], p["name"]) == ("test", "fused", "acc")}
    assert summary["test_acc_at_best"] == test_acc[summary["best_epoch"]]
    assert summary["skipped_epochs"] == {"audio": [1], "visual": []}


def test_train_checkpoints(trained):
    ckpts = trained["out"] / "checkpoints"
    assert (ckpts / "last.pt").is_file()
    assert (ckpts / "best.pt").is_file()
    last = torch.load(ckpts / "last.pt", map_location="cpu", weights_only=True)
    best = torch.load(ckpts / "best.pt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 1
    summary = json.loads((trained["out"] / "summary.json").read_text())
    assert best["epoch"] == summary["best_epoch"]


def test_train_into_existing_run_refused(trained, capsys, data_root):
    metrics = trained["out"] / "metrics.jsonl"
    before = metrics.read_bytes()
    assert main(["train", str(trained["config"]), "--out", str(trained["out"]), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--out" in err
    assert "--resume" in err
    assert metrics.read_bytes() == before


def test_train_epoch_lines_go_to_current_stderr(trained):
    assert "epoch 1/2" in trained["stderr"]
    assert "epoch 2/2" in trained["stderr"]


def test_console_sink_default_stream_is_current_stderr(capsys):
    sink = sinks.ConsoleSink(epochs=2)
    sink.begin(0)
    sink.write([MetricPoint("val", "fused", None, "acc", 0, 0.625)])
    assert "epoch 1/2  val acc 0.625" in capsys.readouterr().err


# ---- amst evaluate -------------------------------------------------------------------------------------------------


def test_evaluate_table(trained, capsys, data_root):
    assert main(["evaluate", str(trained["out"]), "--split", "test"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    assert header == ["component", "modality", "acc", "loss", "macro_f1", "acc_prob"]
    rows = {tuple(line.split()[:2]): [float(v) for v in line.split()[2:]] for line in lines[1:]}
    assert set(rows) == {("fused", "-"), ("branch", "audio"), ("branch", "visual"), ("helper", "audio"),
                         ("helper", "visual")}
    assert all(len(v) == 4 for v in rows.values())
    # best.pt on the test split reproduces the test accuracy recorded at the best epoch
    summary = json.loads((trained["out"] / "summary.json").read_text())
    assert rows[("fused", "-")][0] == pytest.approx(summary["test_acc_at_best"], abs=1e-4)


def test_evaluate_json(trained, capsys, data_root):
    assert main(["evaluate", str(trained["out"]), "--split", "val", "--checkpoint", "last", "--json"]) == 0
    points = json.loads(capsys.readouterr().out)
    assert points
    assert all(set(p) >= POINT_FIELDS for p in points)
    assert {p["split"] for p in points} == {"val"}
    assert {p["epoch"] for p in points} == {1}
    ids = {(p["component"], p["modality"], p["name"]) for p in points}
    assert ("fused", None, "acc") in ids
    assert {("branch", "audio", "acc"), ("helper", "visual", "macro_f1")} <= ids
    # the last checkpoint on val gives the val metrics logged for the last epoch
    logged = {(p["component"], p["modality"], p["name"]): p["value"]
              for line in (trained["out"] / "metrics.jsonl").read_text().splitlines()
              if (p := json.loads(line))["split"] == "val" and p["epoch"] == 1}
    for p in points:
        key = (p["component"], p["modality"], p["name"])
        if p["name"] in ("acc", "macro_f1", "acc_prob", "loss"):
            assert p["value"] == pytest.approx(logged[key], abs=1e-4), key


def test_evaluate_says_when_the_runs_data_is_gone(tmp_path, capsys, data_root):
    """The trainer trusts its caller to have checked the data: `amst evaluate` checks it too, and a run whose
    files went answers like `amst train` would (the field, what to do), not with a traceback."""
    from tests.kit.tiny import write_tiny_avdigits

    folder = write_tiny_avdigits(data_root)
    config = write(tmp_path / "run.yaml", {"method": "naive", "dataset": {"name": "avdigits"}, "epochs": 1,
                                           "batch_size": 8, "device": "cpu", "model": {"width": 8}})
    assert main(["train", str(config), "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    for npz in folder.glob("*.npz"):
        npz.unlink()
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "dataset.root" in err and "amst prepare avdigits" in err


def test_evaluate_missing_checkpoint(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "best.pt" in capsys.readouterr().err


def test_amst_sweep_trains_a_grid_here_writes_its_tables_and_continues_where_it_stopped(tmp_path: Path,
                                                                                        monkeypatch, capsys) -> None:
    from amst_core import study
    from tests.kit.tiny import tiny_config

    config = tmp_path / "base.yaml"
    config.write_text(yaml.safe_dump(tiny_config("naive", epochs=1).model_dump(mode="json")))
    out = tmp_path / "study"
    args = ["sweep", str(config), "--grid", "method=naive,amst_full", "--grid", "seed=0,1", "--baseline",
            "method=naive", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("| method | n | val acc |")
    assert sorted(p.name for p in out.iterdir()) == ["matrix.csv", "matrix.md", "matrix.tex", "method-amst_full_seed-0",
                                                     "method-amst_full_seed-1", "method-naive_seed-0",
                                                     "method-naive_seed-1"]
    rows = list(csv.reader(io.StringIO((out / "matrix.csv").read_text())))
    assert [r[0] for r in rows[1:]] == ["naive", "amst_full"] and rows[1][3] == "2"
    monkeypatch.setattr("amst_core.execute.execute_run", lambda *a, **k: pytest.fail("trained again"))
    assert main([*args, "--table", "latex"]) == 0  # every run already has its summary: nothing is trained again
    assert (out / "matrix.md").read_text().strip() == printed.strip()
    assert capsys.readouterr().out.strip() == (out / "matrix.tex").read_text().strip()  # the table asked for
    assert "Warning" not in printed, "runs of one checkout agree"
    record = out / "method-naive_seed-1" / "provenance.json"  # as if trained by a modified tree
    prov = json.loads(record.read_text())
    prov["digests"]["code"] = "0" * 16
    prov["code"] = {**prov["code"], "dirty": True}
    record.write_text(json.dumps(prov))
    assert main(args) == 0
    assert "warning: the runs' code differs: " in capsys.readouterr().err
    assert "Warning: the runs' code differs: " in (out / "matrix.md").read_text()
    assert study.parse_grid(["skip.audio=1,2,auto"]) == {"skip.audio": [1, 2, "auto"]}
    assert main(["sweep", str(config), "--grid", "skip.audio=0", "--grid", "method=amst_alt", "--out",
                 str(tmp_path / "bad")]) == 2
    assert "cell skip.audio=0, method=amst_alt: skip.audio" in capsys.readouterr().err


def test_amst_reproduce_reads_the_datasets_study(tmp_path: Path, monkeypatch, capsys) -> None:
    from tests.kit.tiny import write_tiny_avdigits

    monkeypatch.setenv("AMST_DATA_ROOT", str(tmp_path / "data"))
    write_tiny_avdigits(tmp_path / "data")
    out = tmp_path / "reproduce"
    assert main(["reproduce", "avdigits", "--grid", "method=naive,amst_full", "--grid", "seed=0", "--set",
                 "epochs=1", "--set", "model.width=8", "--out", str(out), "--no-progress"]) == 0
    table = (out / "matrix.md").read_text().splitlines()
    rows = [line for line in table[2:] if line.startswith("|")]  # the notes follow the table
    assert [line.split(" | ")[0].strip("| ") for line in rows] == ["naive", "amst_full"]
    assert "Δ val acc" in table[0]  # paired with naive, as the study file says
    assert main(["reproduce", "nosuch"]) == 2
    assert "no reproduce.yaml for nosuch; known: avdigits, ave, cremad" in capsys.readouterr().err
