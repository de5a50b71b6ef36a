"""Exports to TensorBoard and MLflow, read back with the tools' own readers: TensorBoard's EventAccumulator and
MLflow's client on a local sqlite store. After the fact (`amst export`), live (the mirror sinks), and every bad
target refused before anything is written."""

from __future__ import annotations

import http.server
import json
import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from amst_core import datafiles
from amst_core.cli import main
from amst_core.config import ConfigError
from amst_core.exporters import Mirror, check_exports, mirror_sinks
from amst_core.exporters.naming import tag_of
from amst_core.exporters.targets import tensorboard_folder, tracking_uri
from amst_core.metrics import MetricPoint
from amst_core.settings import get_settings
from amst_core.sinks import MemorySink
from tests.kit.tiny import tiny_config
from tests.kit.training import read_jsonl, write_config


@pytest.fixture(autouse=True)
def _on_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Targets anywhere, as `amst train` and `amst export` allow (the `export_root` fixture is the service's rule)."""
    monkeypatch.setattr(datafiles, "_confined", False)


# ---- names --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("point", "tag"), [
    (MetricPoint("val", "branch", "audio", "acc", 3, 0.5), "val/acc/audio/branch"),
    (MetricPoint("val", "fused", None, "acc", 3, 0.5), "val/acc/fused"),
    (MetricPoint("test", "alt_helper", "visual", "loss", 0, 1.0), "test/loss/visual/alt_helper"),
    (MetricPoint("val", "branch", None, "acc_gap", 0, 0.1), "val/acc_gap/branch"),
    (MetricPoint("train", "head", None, "lr", 0, 0.1), "train/lr/head"),
    (MetricPoint("train", "run", "audio", "skip", 0, 1.0), "run/skip/audio"),
    (MetricPoint("val", "run", "text", "epochs_to_plateau", 0, 2.0), "run/epochs_to_plateau/text"),
    (MetricPoint("train", "run", None, "epoch_time", 0, 2.0), "run/epoch_time"),
    (MetricPoint("val", "combo:entropy", "audio", "acc", 0, 0.5), "val/acc/audio/combo_entropy"),
])
def test_a_point_is_named_once_for_both_tools(point: MetricPoint, tag: str) -> None:
    assert tag_of(point) == tag


# ---- bad targets --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("uri", "said"), [
    ("file:///tmp/mlruns", "sqlite:///"),
    ("/tmp/mlruns", "file store"),
    ("ftp://host/x", "unknown scheme ftp://"),
    ("sqlite://", "names no database file"),
    ("sqlite://relative.db", "names no database file"),
])
def test_an_mlflow_uri_mlflow_cannot_write_is_refused_by_the_config(uri: str, said: str) -> None:
    with pytest.raises(ConfigError) as err:
        tiny_config(export={"mlflow": uri})
    assert "export.mlflow" in str(err.value) and said in str(err.value)


def test_an_mlflow_server_that_does_not_answer_fails_fast_naming_it() -> None:
    started = time.monotonic()
    with pytest.raises(ConfigError) as err:
        check_exports(tiny_config(export={"mlflow": "http://127.0.0.1:9"}))  # the discard port: nobody listens
    assert time.monotonic() - started < 6
    assert str(err.value).startswith("export.mlflow: ") and "http://127.0.0.1:9 does not answer" in str(err.value)


@pytest.fixture
def web_server() -> Iterator[str]:
    """A web server that is not MLflow: every path is a 404."""
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    server.RequestHandlerClass.log_message = lambda *args: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/nowhere"
    server.shutdown()
    server.server_close()


def test_a_server_that_is_not_mlflow_is_refused(web_server: str) -> None:
    with pytest.raises(ConfigError) as err:
        tracking_uri(web_server, "export.mlflow")
    assert "not as an MLflow tracking server (HTTP 404" in str(err.value)


def test_a_tensorboard_folder_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x")
    with pytest.raises(ConfigError) as err:
        check_exports(tiny_config(export={"tensorboard": str(tmp_path / "taken")}))
    assert str(err.value) == f"export.tensorboard: {tmp_path / 'taken'} is a file, not a folder"
    with pytest.raises(ConfigError, match=r"export\.mlflow: .*/taken is a file, not a folder"):
        check_exports(tiny_config(export={"mlflow": f"sqlite:///{tmp_path}/taken/mlflow.db"}))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in a read-only folder")
def test_a_tensorboard_folder_under_a_read_only_folder_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    with pytest.raises(ConfigError, match=r"export\.tensorboard: cannot write in"):
        check_exports(tiny_config(export={"tensorboard": str(locked / "tb")}))


def test_a_folder_on_a_read_only_file_system_is_refused() -> None:
    """/sys refuses new folders even to root."""
    with pytest.raises(ConfigError, match=r"export.tensorboard: cannot write in /sys/amst-tb"):
        tensorboard_folder("/sys/amst-tb", "export.tensorboard")


@pytest.fixture
def export_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The service's rule: export targets only inside AMST_EXPORT_ROOT (tests run confined, as the service)."""
    root = tmp_path / "exports"
    monkeypatch.setenv("AMST_EXPORT_ROOT", str(root))
    monkeypatch.setattr(datafiles, "_confined", True)
    get_settings.cache_clear()
    yield root
    get_settings.cache_clear()


@pytest.mark.parametrize("field", ["tensorboard", "mlflow"])
@pytest.mark.parametrize("where", ["../elsewhere", "/tmp/amst-outside"])
def test_the_service_writes_exports_only_under_the_export_root(export_root: Path, field: str, where: str) -> None:
    target = where if field == "tensorboard" else f"sqlite:///{where}/mlflow.db"
    with pytest.raises(ConfigError) as err:
        check_exports(tiny_config(export={field: target}))
    assert f"export.{field}: " in str(err.value) and "lies outside AMST_EXPORT_ROOT" in str(err.value)
    assert not Path("/tmp/amst-outside").exists() and not (export_root.parent / "elsewhere").exists()


def test_a_relative_target_on_the_service_lies_under_the_export_root(export_root: Path) -> None:
    assert tensorboard_folder("tb", "export.tensorboard") == export_root.resolve() / "tb"
    assert tracking_uri("sqlite:///ml/mlflow.db", "export.mlflow") == f"sqlite:///{export_root.resolve()}/ml/mlflow.db"


def test_a_symlink_out_of_the_export_root_is_refused(export_root: Path, tmp_path: Path) -> None:
    export_root.mkdir()
    (export_root / "out").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(ConfigError, match="lies outside AMST_EXPORT_ROOT"):
        tensorboard_folder("out/tb", "export.tensorboard")


def test_the_command_line_writes_where_its_user_says(export_root: Path, tmp_path: Path) -> None:
    with datafiles.any_data_path():
        assert tensorboard_folder(tmp_path / "anywhere", "--to tensorboard") == tmp_path / "anywhere"


# ---- the tools' readers -------------------------------------------------------------------------------------------


def scalars(folder: Path) -> dict[str, dict[int, float]]:
    """Every scalar TensorBoard reads back: tag -> step -> value."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def texts(folder: Path) -> dict[str, str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    events.Reload()
    return {tag.removesuffix("/text_summary"): events.Tensors(tag)[-1].tensor_proto.string_val[0].decode()
            for tag in events.Tags()["tensors"] if tag.startswith("amst/")}


def by_tag(points: list[dict[str, Any]] | list[MetricPoint]) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for p in points:
        point = MetricPoint(**p) if isinstance(p, dict) else p
        out.setdefault(tag_of(point), {})[point.epoch] = point.value
    return out


def same_values(got: dict[str, dict[int, float]], want: dict[str, dict[int, float]], rel: float) -> None:
    assert set(got) == set(want)
    for tag, steps in want.items():
        assert set(got[tag]) == set(steps), tag
        for step, value in steps.items():
            assert got[tag][step] == pytest.approx(value, rel=rel, abs=1e-7, nan_ok=True), (tag, step)


def mlflow_client(db: Path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{db}")


def mlflow_runs(db: Path, run_id: str, experiment: str = "amst") -> list[Any]:
    client = mlflow_client(db)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], f"tags.`amst.run_id` = '{run_id}'") if found else []


def mlflow_metrics(db: Path, mlflow_run: str) -> dict[str, dict[int, float]]:
    client = mlflow_client(db)
    keys = client.get_run(mlflow_run).data.metrics
    out: dict[str, dict[int, float]] = {}
    for key in keys:
        history = client.get_metric_history(mlflow_run, key)
        steps = [m.step for m in history]
        assert len(steps) == len(set(steps)), f"{key}: a step logged twice"
        out[key] = {m.step: m.value for m in history}
    return out


# ---- amst export --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch AMST-FULL run (two modules, branches, helpers, skip and learning-rate series) from `amst train`."""
    folder = tmp_path_factory.mktemp("trained")
    config = write_config(folder / "run.yaml", tiny_config("amst_full", name="tiny full", skip={"audio": 2}))
    assert main(["train", str(config), "--out", str(folder / "run"), "--no-progress"]) == 0
    return folder / "run"


def test_tensorboard_reads_back_every_point_of_a_run(trained_run: Path, tmp_path: Path, capsys) -> None:
    assert main(["export", str(trained_run), "--to", "tensorboard", str(tmp_path / "tb")]) == 0
    assert capsys.readouterr().out.strip() == f"run -> {tmp_path / 'tb' / 'run'}"
    points = read_jsonl(trained_run / "metrics.jsonl")
    got = scalars(tmp_path / "tb" / "run")
    same_values(got, by_tag(points), rel=1e-6)  # event files hold float32
    assert {"val/acc/audio/joint_branch", "run/skip/audio", "train/lr/head", "val/acc/fused"} <= set(got)
    written = texts(tmp_path / "tb" / "run")
    assert "method: amst_full" in written["amst/config"]
    assert json.loads(written["amst/provenance"])["digests"] == json.loads((trained_run / "provenance.json")
                                                                           .read_text())["digests"]
    assert json.loads(written["amst/summary"])["best_epoch"] == json.loads((trained_run / "summary.json")
                                                                          .read_text())["best_epoch"]


def test_tensorboard_refuses_a_run_exported_before_unless_replaced(trained_run: Path, tmp_path: Path,
                                                                   capsys) -> None:
    target = tmp_path / "tb"
    assert main(["export", str(trained_run), "--to", "tensorboard", str(target)]) == 0
    assert main(["export", str(trained_run), "--to", "tensorboard", str(target)]) == 2
    assert "already holds the TensorBoard events of run; --replace writes them anew" in capsys.readouterr().err
    (target / "run" / "notes.txt").write_text("mine")
    assert main(["export", str(trained_run), "--to", "tensorboard", str(target), "--replace"]) == 0
    assert len(list((target / "run").glob("events.out.tfevents.*"))) == 1  # the old file is gone: no duplicates
    assert (target / "run" / "notes.txt").read_text() == "mine"  # nothing else is touched
    same_values(scalars(target / "run"), by_tag(read_jsonl(trained_run / "metrics.jsonl")), rel=1e-6)


def test_mlflow_reads_back_metrics_params_and_tags(trained_run: Path, tmp_path: Path, capsys) -> None:
    db = tmp_path / "mlflow.db"
    assert main(["export", str(trained_run), "--to", "mlflow", f"sqlite:///{db}", "--experiment", "paper"]) == 0
    assert "(experiment paper, sqlite:///" in capsys.readouterr().out
    (found,) = mlflow_runs(db, "run", "paper")
    same_values(mlflow_metrics(db, found.info.run_id), by_tag(read_jsonl(trained_run / "metrics.jsonl")), rel=0)
    config = yaml.safe_load((trained_run / "config.yaml").read_text())
    params = found.data.params
    assert params["optim.lr"] == str(config["optim"]["lr"]) and params["method"] == "amst_full"
    assert params["skip.audio"] == "2" and params["dataset.name"] == "synthetic"
    provenance = json.loads((trained_run / "provenance.json").read_text())
    tags = found.data.tags
    assert tags["amst.digests.data"] == provenance["digests"]["data"]
    assert tags["amst.environment.torch"] == provenance["environment"]["torch"]
    assert tags["amst.code.version"] == provenance["code"]["version"]
    summary = json.loads((trained_run / "summary.json").read_text())
    assert tags["amst.summary.best_val_acc"] == json.dumps(summary["best_val_acc"])
    assert tags["mlflow.runName"] == "tiny full" and found.info.status == "FINISHED"


def test_mlflow_refuses_a_run_exported_before_unless_replaced(trained_run: Path, tmp_path: Path, capsys) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["export", str(trained_run), "--to", "mlflow", uri]) == 0
    (first,) = mlflow_runs(tmp_path / "mlflow.db", "run")
    assert main(["export", str(trained_run), "--to", "mlflow", uri]) == 2
    assert f"run is already in MLflow ({uri}, experiment amst, run {first.info.run_id})" in capsys.readouterr().err
    assert main(["export", str(trained_run), "--to", "mlflow", uri, "--replace"]) == 0
    (second,) = mlflow_runs(tmp_path / "mlflow.db", "run")
    assert second.info.run_id != first.info.run_id
    assert mlflow_client(tmp_path / "mlflow.db").get_run(first.info.run_id).info.lifecycle_stage == "deleted"


def test_a_long_config_value_is_cut_and_said(tmp_path: Path) -> None:
    from amst_core.exporters.mlflow import PARAM_LIMIT, export_run
    from amst_core.exporters.record import RunRecord

    record = RunRecord("long", {"method": "naive", "note": "x" * 2000}, [MetricPoint("val", "fused", None, "acc", 0,
                                                                                     0.5)])
    export_run(record, f"sqlite:///{tmp_path / 'mlflow.db'}", "amst", replace=False)
    (found,) = mlflow_runs(tmp_path / "mlflow.db", "long")
    assert len(found.data.params["note"]) == PARAM_LIMIT and found.data.params["note"].endswith("[cut]")
    assert found.data.tags["amst.cut"] == "note" and found.info.status == "KILLED"  # no summary: it never ended


def test_a_service_run_is_exported_from_the_run_store(trained_run: Path, tmp_path: Path, sqlite_template: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's run folder has no metrics.jsonl: its points come from the store, by the run's id."""
    import shutil

    from amst_core.config import load_config
    from amst_core.store.db import session_scope
    from amst_core.store.lifecycle import create_run
    from amst_core.store.writer import DbSink
    from tests.kit.db import sqlite_copy

    url = sqlite_copy(sqlite_template, tmp_path)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("AMST_ARTIFACTS", str(tmp_path / "artifacts"))
    get_settings.cache_clear()
    try:
        with session_scope(url) as s:
            run_id = create_run(s, load_config(trained_run / "config.yaml")).id
        points = [MetricPoint(**p) for p in read_jsonl(trained_run / "metrics.jsonl")]
        sink = DbSink(run_id, url)
        sink.begin(0)
        for epoch in (0, 1):
            sink.write([p for p in points if p.epoch == epoch])
        sink.close()
        folder = tmp_path / "artifacts" / "runs" / run_id
        shutil.copytree(trained_run, folder, ignore=shutil.ignore_patterns("metrics.jsonl", "checkpoints"))
        assert main(["export", run_id, "--to", "tensorboard", str(tmp_path / "tb")]) == 0
    finally:
        get_settings.cache_clear()
    same_values(scalars(tmp_path / "tb" / run_id), by_tag(points), rel=1e-6)


def test_bad_runs_and_tools_are_one_clear_line(trained_run: Path, tmp_path: Path, capsys) -> None:
    assert main(["export", str(trained_run), "--to", "wandb", "x"]) == 2
    assert "error: --to: unknown tool 'wandb'; known: tensorboard, mlflow" in capsys.readouterr().err
    assert main(["export", str(trained_run), str(tmp_path / "nothing"), "--to", "tensorboard",
                 str(tmp_path / "tb")]) == 2
    assert "neither a run folder nor the id of a run" in capsys.readouterr().err
    assert not (tmp_path / "tb").exists()  # the good run was not written either
    assert main(["export", str(trained_run), "--to", "mlflow", "http://127.0.0.1:9"]) == 2
    assert "error: --to mlflow: the MLflow tracking server http://127.0.0.1:9 does not answer" in \
        capsys.readouterr().err
    assert main(["export", str(trained_run), "--to", "mlflow", f"file://{tmp_path / 'mlruns'}"]) == 2
    assert "error: --to mlflow: " in (err := capsys.readouterr().err) and "file store" in err, err


# ---- the live mirror ----------------------------------------------------------------------------------------------


def epoch_points(epoch: int, shift: float = 0.0) -> list[MetricPoint]:
    return [MetricPoint("val", "fused", None, "acc", epoch, 0.25 + epoch / 10 + shift),
            MetricPoint("val", "branch", "audio", "acc", epoch, 0.5 + shift),
            MetricPoint("train", "run", "visual", "skip", epoch, float(epoch % 2)),
            MetricPoint("val", "combo:entropy", "audio", "loss", epoch, math.nan)]


def test_the_mirror_writes_each_epoch_as_it_comes_and_a_resume_leaves_no_duplicate(tmp_path: Path) -> None:
    cfg = tiny_config(export={"tensorboard": str(tmp_path / "tb"), "mlflow": f"sqlite:///{tmp_path / 'ml.db'}"})
    provenance = {"code": {"version": "9.9", "commit": "abc", "dirty": False}, "digests": {"data": "d1"}}
    sinks = mirror_sinks(cfg, provenance, "live-1")
    assert len(sinks) == 2
    for sink in sinks:
        sink.begin(0)
        sink.write(epoch_points(0))
    assert scalars(tmp_path / "tb" / "live-1")["val/acc/fused"] == {0: 0.25}  # there before the run ends
    for sink in sinks:
        sink.write(epoch_points(1))  # then the process dies before its checkpoint of epoch 1
    resumed = mirror_sinks(cfg, provenance, "live-1")
    for sink in resumed:
        sink.begin(1)
        sink.write(epoch_points(1, shift=0.01))
        sink.write(epoch_points(2, shift=0.01))
        sink.close()
    want = by_tag(epoch_points(0) + epoch_points(1, 0.01) + epoch_points(2, 0.01))
    same_values(scalars(tmp_path / "tb" / "live-1"), want, rel=1e-6)
    (found,) = mlflow_runs(tmp_path / "ml.db", "live-1")  # epochs 0 moved to a new MLflow run, the old deleted
    same_values(mlflow_metrics(tmp_path / "ml.db", found.info.run_id), want, rel=0)
    assert found.data.tags["amst.code.commit"] == "abc" and found.info.status == "FINISHED"
    assert found.data.params["dataset.name"] == "synthetic"


def test_a_resume_that_repeats_no_epoch_goes_on_in_the_same_mlflow_run(tmp_path: Path) -> None:
    cfg = tiny_config(export={"mlflow": f"sqlite:///{tmp_path / 'ml.db'}"})
    (sink,) = mirror_sinks(cfg, None, "steady")
    sink.begin(0)
    sink.write(epoch_points(0))
    (first,) = mlflow_runs(tmp_path / "ml.db", "steady")
    (sink,) = mirror_sinks(cfg, None, "steady")
    sink.begin(1)
    sink.write(epoch_points(1))
    sink.close()
    (found,) = mlflow_runs(tmp_path / "ml.db", "steady")
    assert found.info.run_id == first.info.run_id
    same_values(mlflow_metrics(tmp_path / "ml.db", found.info.run_id), by_tag(epoch_points(0) + epoch_points(1)),
                rel=0)


def test_a_retry_from_epoch_zero_replaces_the_mlflow_run(tmp_path: Path) -> None:
    cfg = tiny_config(export={"mlflow": f"sqlite:///{tmp_path / 'ml.db'}"})
    for shift in (0.0, 0.1):
        (sink,) = mirror_sinks(cfg, None, "again")
        sink.begin(0)
        sink.write(epoch_points(0, shift))
        sink.close()
    (found,) = mlflow_runs(tmp_path / "ml.db", "again")
    assert mlflow_metrics(tmp_path / "ml.db", found.info.run_id)["val/acc/fused"] == {0: pytest.approx(0.35)}


def test_no_export_no_mirror() -> None:
    assert mirror_sinks(tiny_config(), None, "r") == []


def test_a_failing_mirror_never_fails_the_run(caplog: pytest.LogCaptureFixture) -> None:
    class Failing(MemorySink):
        def write(self, points: Any) -> None:
            raise OSError("disk gone")

    inner = Failing()
    mirror = Mirror(inner, "TensorBoard (/x)")
    mirror.begin(0)
    with caplog.at_level(logging.WARNING):
        mirror.write(epoch_points(0))
        mirror.write(epoch_points(1))
        mirror.close()
    (record,) = caplog.records
    assert "the live export to TensorBoard (/x) failed at write (OSError: disk gone) and stops" in record.message


def test_a_training_mirrors_live_and_checks_its_targets_first(tmp_path: Path, capsys) -> None:
    cfg = tiny_config(epochs=2, export={"tensorboard": str(tmp_path / "tb"),
                                        "mlflow": f"sqlite:///{tmp_path / 'ml.db'}"})
    config = write_config(tmp_path / "run.yaml", cfg)
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    want = by_tag(read_jsonl(tmp_path / "run" / "metrics.jsonl"))
    same_values(scalars(tmp_path / "tb" / "run"), want, rel=1e-6)
    (found,) = mlflow_runs(tmp_path / "ml.db", "run")
    same_values(mlflow_metrics(tmp_path / "ml.db", found.info.run_id), want, rel=0)
    (tmp_path / "taken").write_text("x")
    assert main(["train", str(config), "--out", str(tmp_path / "run2"), "--no-progress",
                 "--set", f"export.tensorboard={tmp_path / 'taken'}"]) == 2
    assert "export.tensorboard" in capsys.readouterr().err and not (tmp_path / "run2" / "metrics.jsonl").exists()
