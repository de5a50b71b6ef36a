"""Provenance (amst_core.provenance): what a run records, and `amst rerun`, which trains it again from that record
bit-exactly on a CPU, and refuses (or with --force warns) where the data changed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from amst_core import provenance
from amst_core.cli import main
from amst_core.config import ConfigError, load_config
from amst_core.runfolder import RunFolder, load_checkpoint
from tests.kit.tiny import tiny_config, write_tiny_avdigits
from tests.kit.training import comparable, read_jsonl

AVDIGITS = {"method": "naive", "dataset": {"name": "avdigits"}, "epochs": 2, "batch_size": 8, "device": "cpu",
            "model": {"width": 8}, "seed": 3}


@pytest.fixture
def data_root() -> Path:
    return Path(os.environ["AMST_DATA_ROOT"])


@pytest.fixture
def trained(tmp_path: Path, data_root: Path) -> Path:
    """A 2-epoch avdigits run trained by `amst train`."""
    write_tiny_avdigits(data_root)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(AVDIGITS))
    out = tmp_path / "run"
    assert main(["train", str(config), "--out", str(out), "--no-progress"]) == 0
    return out


def test_a_run_records_code_environment_data_and_config_in_its_folder_and_checkpoints(trained: Path) -> None:
    prov = json.loads(RunFolder(trained).provenance.read_text())
    assert prov["code"]["version"] != "unknown"
    assert prov["code"]["commit"] and isinstance(prov["code"]["dirty"], bool), "the tests run from a git checkout"
    env = prov["environment"]
    assert (env["torch"], env["device"], env["cudnn"]) == (torch.__version__, "cpu", None)
    assert env["device_name"] and env["host"]
    data = prov["data"]
    assert (data["dataset"], data["root"], data["files"]["count"]) == ("avdigits", "avdigits", 3)
    assert data["preprocessing"]["model"]["audio_frames"] == prov["config"]["model"]["audio_frames"]
    assert prov["digests"]["data"] == data["digest"]
    assert prov["config"] == load_config(base=AVDIGITS).model_dump(mode="json") | {"model": prov["config"]["model"]}
    assert prov["config"]["optim"]["lr"] is not None, "every default filled in"
    for which in ("best", "last"):
        assert load_checkpoint(RunFolder(trained).checkpoint(which))["provenance"] == prov


def test_a_rerun_from_the_record_alone_is_bit_exact_on_a_cpu(trained: Path, tmp_path: Path) -> None:
    (trained / "config.yaml").unlink()  # the record (provenance.json) is enough
    again = tmp_path / "again"
    assert main(["rerun", str(trained), "--out", str(again), "--no-progress"]) == 0
    first, second = (load_checkpoint(RunFolder(run).checkpoint("last")) for run in (trained, again))
    for key in ("epoch", "method", "selection", "plateau", "rng", "classes"):  # weights, optimizers, RNG states
        assert_identical(first[key], second[key], key)
    assert comparable(read_jsonl(again / "metrics.jsonl")) == comparable(read_jsonl(trained / "metrics.jsonl"))
    rerun = json.loads(RunFolder(again).provenance.read_text())
    assert rerun["config"]["data_fingerprint"] == rerun["digests"]["data"], "the re-run expected the recorded data"


def assert_identical(a, b, where: str) -> None:
    """Equal to the bit: tensors with torch.equal, containers item by item."""
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_identical(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_a_rerun_whose_data_changed_is_refused_saying_what_changed_and_force_goes_on_with_a_warning(
        trained: Path, tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture) -> None:
    train = data_root / "avdigits" / "train.npz"
    train.write_bytes(train.read_bytes() + b"\0")
    capsys.readouterr()
    assert main(["rerun", str(trained), "--out", str(tmp_path / "refused"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "data" in err and "changed since run was trained" in err and "--force" in err, err
    assert "bytes" in err, "it says what changed"
    assert not (tmp_path / "refused").exists(), "nothing trained"
    assert main(["rerun", str(trained), "--out", str(tmp_path / "forced"), "--force", "--no-progress"]) == 0
    assert "warning: re-running on changed data" in capsys.readouterr().err


def test_a_rerun_changes_only_where_it_runs(trained: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["rerun", str(trained), "--set", "epochs=5"]) == 2
    assert "epochs" in capsys.readouterr().err
    assert main(["rerun", str(trained), "--set", "device=gpu"]) == 2, "a refused value is an error, no traceback"
    assert "device" in capsys.readouterr().err
    assert main(["rerun", "no-such-run"]) == 2
    assert "neither a run folder nor the id of a run" in capsys.readouterr().err


def test_a_run_expecting_other_data_fails_before_training(tmp_path: Path, data_root: Path) -> None:
    from amst_core.execute import execute_run

    write_tiny_avdigits(data_root)
    with pytest.raises(ConfigError) as refused:
        execute_run(load_config(base={**AVDIGITS, "data_fingerprint": "deadbeef"}), tmp_path / "r", [], run_id="r")
    assert refused.value.field == "data_fingerprint" and "deadbeef" in str(refused.value)
    assert not (tmp_path / "r" / "metrics.jsonl").exists()


def test_data_changes_tell_a_copy_from_a_change_and_name_settings(data_root: Path) -> None:
    folder = write_tiny_avdigits(data_root)
    cfg = load_config(base=AVDIGITS)
    before = provenance.data_fingerprint(cfg)
    assert provenance.data_fingerprint(cfg) == before and provenance.data_changes(before, before) == []
    stat = (folder / "val.npz").stat()
    os.utime(folder / "val.npz", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert provenance.data_changes(before, provenance.data_fingerprint(cfg)) == [
        "the same files and sizes, with other modification times (copied or touched?)"]
    shutil.copy(folder / "val.npz", folder / "extra.npz")
    assert "held 3 files" in provenance.data_changes(before, provenance.data_fingerprint(cfg))[0]
    other = load_config(base={**AVDIGITS, "model": {"width": 8, "audio_frames": 40}})
    assert "model.audio_frames: " in " ".join(provenance.data_changes(before, provenance.data_fingerprint(other)))
    same_files_elsewhere = data_root.parent / "elsewhere"
    shutil.copytree(data_root, same_files_elsewhere, copy_function=shutil.copy2)
    moved = provenance.data_fingerprint(cfg, provenance.DataRoots(same_files_elsewhere))
    assert moved["files"] == provenance.data_fingerprint(cfg)["files"], "paths are relative to the dataset folder"


def test_a_reference_layouts_split_and_class_files_are_hashed(data_root: Path) -> None:
    from tests.kit.tiny import write_tiny_cremad

    folder = write_tiny_cremad(data_root)
    cfg = load_config(base={"method": "naive", "dataset": {"name": "cremad"}, "device": "cpu"})
    before = provenance.data_fingerprint(cfg)
    assert set(before["split_files"]) == {"train", "val", "test", "classes"}
    split = folder / "10_test_cre.txt"
    split.write_text(split.read_text().splitlines()[0] + "\n")
    assert "test file changed" in provenance.data_changes(before, provenance.data_fingerprint(cfg))


def record(commit: str, dirty: bool = False, torch_version: str = "2.11.0", data: str = "d1" * 8) -> dict:
    prov = {"code": {"version": "0.1.0", "commit": commit, "dirty": dirty},
            "environment": {"python": "3.12.1", "torch": torch_version, "cuda": "13.0", "cudnn": "91002",
                            "device_name": "NVIDIA H200", "host": "a"},
            "data": {"digest": data}}
    return {**prov, "digests": {"code": provenance.digest(prov["code"]),
                                "environment": provenance.digest(provenance.environment_key(prov)), "data": data}}


def test_differences_name_each_aspect_and_count_runs() -> None:
    a, b = record("3f2a1c0aaaa"), record("9e81b44bbbb", dirty=True)
    assert provenance.differences([a, a, {**a, "environment": {**a["environment"], "host": "other"}}]) == [], \
        "the host is not the environment"
    assert provenance.differences([a, a, b]) == ["code differs: 3f2a1c0 (2 runs), 9e81b44-dirty (1 run)"]
    c = record("3f2a1c0aaaa", torch_version="2.10.0", data="e2" * 8)
    assert provenance.differences([a, c, None]) == [
        "environment differs: torch 2.11.0, CUDA 13.0, NVIDIA H200 (1 run), torch 2.10.0, CUDA 13.0, NVIDIA H200 "
        "(1 run)", "data differs: data d1d1d1d1 (1 run), data e2e2e2e2 (1 run)",
        "1 run recorded no provenance (trained before it was recorded): not compared"]


def test_flat_gives_tags_without_the_config() -> None:
    flat = provenance.flat({**record("abc"), "config": {"seed": 1}})
    assert flat["code.commit"] == "abc" and flat["environment.torch"] == "2.11.0" and "config.seed" not in flat


def test_synthetic_data_have_a_fingerprint_of_their_settings() -> None:
    one, two = tiny_config(seed=0), tiny_config(dataset={"synthetic": {"samples": {"train": 50, "val": 24,
                                                                                    "test": 24}}})
    assert provenance.data_fingerprint(one)["files"] is None
    assert provenance.data_fingerprint(one)["digest"] != provenance.data_fingerprint(two)["digest"]


def test_the_fingerprint_follows_no_link_out_of_the_data_root_and_walks_a_link_loop_once(data_root: Path) -> None:
    folder = write_tiny_avdigits(data_root)
    cfg = load_config(base=AVDIGITS)
    before = provenance.data_fingerprint(cfg)
    outside = data_root.parent / f"{data_root.name}-outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "secret.bin").write_bytes(b"x" * 1000)
    (outside / "secret.txt").write_text("not data")
    os.symlink(outside, folder / "out")
    os.symlink(outside / "secret.txt", folder / "secret.txt")
    os.symlink(folder, folder / "loop")  # inside the root, but back to where the walk began
    (folder / "sub").mkdir()
    os.symlink(folder / "sub", folder / "sub" / "again")
    after = provenance.data_fingerprint(cfg)
    assert (after["files"]["count"], after["files"]["bytes"]) == (before["files"]["count"],
                                                                  before["files"]["bytes"])
    (outside / "deep" / "secret.bin").write_bytes(b"y" * 5000)
    assert provenance.data_fingerprint(cfg) == after, "files outside AMST_DATA_ROOT are no part of the data"


def test_a_class_file_linked_out_of_the_data_root_is_not_read(data_root: Path) -> None:
    from tests.kit.tiny import write_tiny_cremad

    folder = write_tiny_cremad(data_root)
    outside = data_root.parent / f"{data_root.name}-classes"
    outside.write_text((folder / "stat_cre.txt").read_text())
    (folder / "stat_cre.txt").unlink()
    os.symlink(outside, folder / "stat_cre.txt")
    cfg = load_config(base={"method": "naive", "dataset": {"name": "cremad"}, "device": "cpu"})
    assert provenance.data_fingerprint(cfg)["split_files"]["classes"] == "missing"


def test_a_gpu_runs_environment_names_the_card_and_cudnn(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA branch on a machine without a GPU: torch.cuda answering for an H200 (tests/kit/gpu.py)."""
    from tests.kit.gpu import fake_cards

    fake_cards(monkeypatch, [("NVIDIA H200", 150_000_000_000)])
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91002)
    env = provenance.environment("cuda:0")
    assert (env["device"], env["device_name"], env["cudnn"]) == ("cuda:0", "NVIDIA H200", "91002")
    assert provenance.environment("cpu")["cudnn"] is None, "a CPU run used no cuDNN"
