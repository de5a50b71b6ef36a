"""The worker's side of confinement: what the API checked at submission is checked again when a run reads its
data (a symlink may appear later), and a run's stored error never quotes a file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny import write_tiny_cremad

from amst_core.config import ConfigError, RunConfig
from amst_core.data.reference import SOURCES
from amst_core.datafiles import DataRoots, check_dataset
from worker.runner import failure_summary

SECRET = "TOP-SECRET-d4e5f6"


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    data, outside = tmp_path / "data", tmp_path / "outside"
    data.mkdir()
    outside.mkdir()
    monkeypatch.setenv("AMST_DATA_ROOT", str(data))
    monkeypatch.delenv("AMST_DATA_EXTRA_ROOTS", raising=False)
    return data, outside


def cremad_config(cache: bool = True) -> RunConfig:
    return RunConfig.model_validate({"method": "naive", "dataset": {"name": "cremad", "cache": cache},
                                     "model": {"frames": 1, "image_size": 16, "audio_frames": 40}})


def test_a_frame_linked_out_after_submission_is_refused_when_read(roots: tuple[Path, Path]) -> None:
    data, outside = roots
    folder = write_tiny_cremad(data)
    cfg = cremad_config(cache=False)  # files read per sample, every epoch
    check_dataset(cfg)  # what the API does at submission
    split = SOURCES["cremad"].split(cfg, "train", train=False)
    assert split[0]["visual"].shape == (3, 1, 16, 16)
    clip = folder / "IMAGE_KEPT_1_PER_SEC" / sorted(p.name for p in (folder / "IMAGE_KEPT_1_PER_SEC").iterdir())[0]
    (clip / "00001.jpg").rename(outside / "frame.jpg")
    (clip / "00001.jpg").symlink_to(outside / "frame.jpg")
    with pytest.raises(ConfigError, match="outside AMST_DATA_ROOT") as err:
        split[0]
    assert err.value.field == "dataset.root"
    # The sample cache sees the change (a new key) and refuses to decode the frame: the sample is named as bad.
    with pytest.raises(ConfigError, match="outside AMST_DATA_ROOT") as err:
        SOURCES["cremad"].split(cremad_config(), "train", train=False)
    assert err.value.field == "dataset.on_bad_sample"


def test_a_dataset_folder_linked_out_fails_before_training(roots: tuple[Path, Path]) -> None:
    data, outside = roots
    write_tiny_cremad(outside)
    (data / "cremad").symlink_to(outside / "cremad")
    with pytest.raises(ConfigError, match="outside AMST_DATA_ROOT"):
        SOURCES["cremad"].check(cremad_config())
    assert DataRoots(data, [outside]).dataset_dir(cremad_config().dataset) == (outside / "cremad").resolve()


def test_a_split_file_that_is_not_text_is_named_not_quoted(roots: tuple[Path, Path]) -> None:
    data, _ = roots
    folder = write_tiny_cremad(data)
    (folder / "10_test_cre.txt").write_bytes(b"\xff\xfe" + SECRET.encode())
    with pytest.raises(ConfigError) as err:
        check_dataset(cremad_config())
    assert "not UTF-8" in str(err.value) and SECRET not in str(err.value)
    np.save(folder / "10_test_cre.txt", np.zeros(3))  # binary garbage of another kind
    with pytest.raises(ConfigError):
        check_dataset(cremad_config())


def test_a_runs_error_is_one_short_line_without_the_traceback() -> None:
    def deep() -> None:
        raise ValueError(f"could not parse {SECRET * 50}\nsecond line {SECRET}")

    try:
        deep()
    except ValueError as err:
        summary = failure_summary(err)
    assert summary.startswith("ValueError: could not parse ")
    assert "second line" not in summary and len(summary) < 450
    assert "test_confinement.py" in summary and "in deep" in summary, "it says where"
