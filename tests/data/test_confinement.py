"""The worker's side of confinement: what the API checked at submission is checked again when a run reads its
data (a symlink may appear later), and a run's stored error never quotes a file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from amst_core.config import ConfigError, RunConfig
from amst_core.data import source_for
from amst_core.data.reference import SOURCES
from amst_core.datafiles import DataRoots, any_data_path, check_dataset
from amst_core.models.text import load_tokenizer
from tests.kit.tiny import (
    folder_run,
    text_layout_run,
    write_tiny_cremad,
    write_tiny_folder,
    write_tiny_roberta,
    write_tiny_text_layout,
)
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


# ---------------------------------------------------------------- the folder layout (issue 21)


def folder_config(text_model: str | None = None, **dataset) -> RunConfig:
    return RunConfig.model_validate(folder_run("mine", text_model, dataset={"name": "folder", "root": "mine",
                                                                            **dataset}))


def outside_tree(outside: Path) -> Path:
    """A label folder's worth of real files beside the data root, with names a leak would show."""
    folder = outside / "private"
    write_tiny_folder(outside / "tree", splits=("train",), classes=("cat", "dog"), text=False)
    shutil.copytree(outside / "tree" / "train" / "cat", folder)
    (folder / f"{SECRET}.txt").write_text(SECRET)
    return folder


@pytest.mark.parametrize("entry", ["file", "label folder", "frame folder", "frame", "split folder"])
def test_a_folder_entry_linked_out_is_refused_at_submission_by_its_name_inside(roots: tuple[Path, Path],
                                                                            entry: str) -> None:
    data, outside = roots
    root = write_tiny_folder(data / "mine", text=False)
    private = outside_tree(outside)
    named = {"file": "train/cat/leak.wav", "label folder": "train/evil", "frame folder": "train/dog/clip",
             "frame": "train/dog/clip/00002.png", "split folder": "test"}[entry]
    if entry == "frame":
        (root / "train/dog/clip").mkdir()
        (root / "train/dog/dog_train_0.png").rename(root / "train/dog/clip/00001.png")
    if entry == "split folder":
        shutil.rmtree(root / "test")
        private = private.parent / "split"
        (private / "cat").mkdir(parents=True)
        shutil.copytree(outside / "private", private / "cat", dirs_exist_ok=True)
    target = private / "cat_train_0.wav" if entry == "file" else \
        private / "cat_train_0.png" if entry == "frame" else private
    (root / named).symlink_to(target)
    with pytest.raises(ConfigError) as err:
        check_dataset(folder_config())
    message = str(err.value)
    assert err.value.field == "dataset.root", message
    assert f"mine/{named}" in message and "outside AMST_DATA_ROOT" in message
    assert str(outside) not in message and SECRET not in message and "cat_train_1" not in message


def test_a_folder_file_linked_out_after_submission_is_refused_where_it_is_read(
        roots: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from amst_core.data import media
    from amst_core.data.cache import FeatureSpec, SampleProblem
    from amst_core.data.folder import FeatureExtractor
    from amst_core.layouts import folder as layout

    data, outside = roots
    root = write_tiny_folder(data / "mine", text=False)
    cfg = check_dataset(folder_config())  # what the API does at submission
    scanned = layout.scan(root)  # what the worker lists before it decodes
    write_tiny_folder(outside / "tree", splits=("train",), text=False)
    (root / "train/cat/cat_train_1.wav").unlink()
    (root / "train/cat/cat_train_1.wav").symlink_to(outside / "tree/train/cat/cat_train_1.wav")
    opened: list[Path] = []
    read_audio = media.read_audio
    monkeypatch.setattr(media, "read_audio", lambda path: (opened.append(path), read_audio(path))[1])
    with pytest.raises(ConfigError, match=r"train/cat/cat_train_1\.wav resolves to a place outside") as err:
        source_for(cfg).split(cfg, "train", train=False)  # the worker lists the folder again
    assert err.value.field == "dataset.root" and str(outside) not in str(err.value)
    # Swapped in between the worker's listing and the decoding: refused where the file is opened.
    extractor = FeatureExtractor(FeatureSpec.of(cfg, tokenizer=True), DataRoots.from_env())
    with pytest.raises(SampleProblem) as problem:
        extractor.sample(next(s for s in scanned.samples["train"] if s.sample_id == "cat_train_1"))
    assert problem.value.path.endswith("mine/train/cat/cat_train_1.wav")
    assert problem.value.problem.startswith("resolves to a place outside AMST_DATA_ROOT")
    assert not opened, "the linked file was never opened"


# ---------------------------------------------------------------- the text model (issue 21)


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_roberta(tmp_path_factory.mktemp("models") / "tiny-roberta")


@pytest.fixture
def text_folder(roots: tuple[Path, Path], tiny_roberta: Path) -> Path:
    """A folder dataset with text, and the tiny RoBERTa copied under the data root (models/tiny-roberta)."""
    data, _ = roots
    shutil.copytree(tiny_roberta, data / "models" / "tiny-roberta")
    return write_tiny_folder(data / "mine")


def text_model_refused(text_model: str) -> str:
    cfg = folder_config(text_model)
    with pytest.raises(ConfigError) as at_submission:
        check_dataset(cfg)
    assert at_submission.value.field == "model.text_model", str(at_submission.value)
    with pytest.raises(ConfigError) as on_the_worker:
        load_tokenizer(text_model)
    assert str(on_the_worker.value) == str(at_submission.value)
    return str(at_submission.value)


def test_a_text_model_under_the_data_root_is_used(text_folder: Path) -> None:
    cfg = check_dataset(folder_config("models/tiny-roberta"))
    assert cfg.modalities == ("audio", "text", "visual")
    assert load_tokenizer("models/tiny-roberta")("one two")["input_ids"][0] == 0


def test_a_text_model_outside_the_data_root_is_refused_at_submission_alike_whether_it_exists(
        roots: tuple[Path, Path], text_folder: Path, tiny_roberta: Path) -> None:
    data, outside = roots
    (outside / "config.json").write_text((tiny_roberta / "config.json").read_text())
    exists = text_model_refused(str(outside / "config.json"))  # a file: today parsed on the worker
    missing = text_model_refused(str(outside / "missing.json"))
    assert exists.replace("config.json", "X") == missing.replace("missing.json", "X"), "no existence oracle"
    assert "outside AMST_DATA_ROOT" in exists
    for name in (str(tiny_roberta), "/etc", "../outside", "~/models"):
        assert "outside AMST_DATA_ROOT" in text_model_refused(name), name
    (data / "models" / "linked").symlink_to(tiny_roberta)
    assert "outside AMST_DATA_ROOT" in text_model_refused("models/linked")


def test_a_file_linked_out_of_a_text_model_folder_is_refused(roots: tuple[Path, Path], text_folder: Path,
                                                              tiny_roberta: Path) -> None:
    data, outside = roots
    config_json = data / "models" / "tiny-roberta" / "config.json"
    config_json.unlink()
    shutil.copy(tiny_roberta / "config.json", outside / "config.json")
    config_json.symlink_to(outside / "config.json")
    message = text_model_refused("models/tiny-roberta")
    assert "models/tiny-roberta/config.json" in message and "outside AMST_DATA_ROOT" in message


def test_a_hub_name_is_refused_at_submission_unless_cached_or_downloads_are_allowed(
        roots: tuple[Path, Path], text_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("AMST_ALLOW_MODEL_DOWNLOADS", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for name in ("roberta-base", "some-org/some-model"):
        with pytest.raises(ConfigError, match=r"model\.text_model: .*not in the local Hugging Face cache.*"
                                              r"AMST_ALLOW_MODEL_DOWNLOADS.*save_pretrained"):
            check_dataset(folder_config(name))
    monkeypatch.setenv("AMST_ALLOW_MODEL_DOWNLOADS", "1")
    check_dataset(folder_config("roberta-base"))  # the worker downloads it
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # ... unless the machine is offline
    with pytest.raises(ConfigError, match=r"model\.text_model: .*offline"):
        check_dataset(folder_config("roberta-base"))
    snapshot = tmp_path / "hub" / "models--some-org--some-model" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    check_dataset(folder_config("some-org/some-model"))  # in the local cache: no download needed
    monkeypatch.delenv("AMST_ALLOW_MODEL_DOWNLOADS")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with any_data_path():  # the CLI on the user's own machine may download as before
        check_dataset(folder_config("roberta-base"))


def test_a_token_mask_file_linked_out_after_submission_is_refused_when_read(roots: tuple[Path, Path],
                                                                             tiny_roberta: Path) -> None:
    data, outside = roots
    shutil.copytree(tiny_roberta, data / "models" / "tiny-roberta")
    folder = write_tiny_text_layout(data, "urfunny", tiny_roberta)
    body = text_layout_run("urfunny", "models/tiny-roberta", method="naive")
    cfg = RunConfig.model_validate({**body, "dataset": {"name": "urfunny", "cache": False}})
    check_dataset(cfg)
    mask = next(folder.rglob("train000_pm.pt"))
    shutil.move(mask, outside / "mask.pt")
    mask.symlink_to(outside / "mask.pt")
    with pytest.raises(ConfigError) as err:
        SOURCES["urfunny"].split(cfg, "train", train=False)
    line = next(x for x in str(err.value).splitlines() if "'train000'" in x)
    assert "train000_pm.pt resolves to a place outside AMST_DATA_ROOT" in line and str(outside) not in line


# ---------------------------------------------------------------- the size of a sample file (issue 21)


@pytest.mark.parametrize(("name", "setting"), [("cat_train_0.txt", "AMST_MAX_TEXT_SAMPLE_MB"),
                                                ("cat_train_0.wav", "AMST_MAX_SAMPLE_MB")])
def test_a_sample_file_over_the_size_limit_is_named_at_submission_and_never_read(
        text_folder: Path, monkeypatch: pytest.MonkeyPatch, name: str, setting: str) -> None:
    from amst_core import limits
    from amst_core.data import media

    monkeypatch.setattr(limits, "get_limits", lambda: limits.Limits(sample_mb=1))  # text: 1 MiB by default
    big = text_folder / "train" / "cat" / name
    os.truncate(big, 3 * limits.MB)  # sparse: no disk used, but a reader would hold it all
    with pytest.raises(ConfigError) as err:
        check_dataset(folder_config("models/tiny-roberta"))
    line = next(x for x in str(err.value).splitlines() if "'cat_train_0'" in x)
    assert err.value.field == "dataset.on_bad_sample"
    assert f"mine/train/cat/{name} is 3 MiB, over {setting} (1 MiB on this server)" in line
    # dataset.on_bad_sample: skip passes the check; the worker drops the sample, named by id, without reading it
    cfg = check_dataset(folder_config("models/tiny-roberta", on_bad_sample="skip"))
    opened: list[Path] = []
    for reader in ("read_audio", "read_text_file"):
        real = getattr(media, reader)
        monkeypatch.setattr(media, reader, lambda path, real=real: (opened.append(path), real(path))[1])
    data = source_for(cfg).split(cfg, "train", train=False)
    assert [(b.sample_id, b.problem) for b in data.dropped] == [
        ("cat_train_0", f"is 3 MiB, over {setting} (1 MiB on this server)")]
    assert opened and all(p.name != name for p in opened)


def test_a_text_file_grown_after_submission_is_a_bad_sample_named_by_id(text_folder: Path) -> None:
    from amst_core.data.cache import FeatureSpec, SampleProblem
    from amst_core.data.folder import FeatureExtractor
    from amst_core.layouts import folder as layout

    cfg = check_dataset(folder_config("models/tiny-roberta"))
    scanned = layout.scan(text_folder)
    os.truncate(text_folder / "train/cat/cat_train_1.txt", 1024**3)  # the 1 GB sparse .txt
    with pytest.raises(ConfigError) as err:
        source_for(cfg).split(cfg, "train", train=False)
    assert "'cat_train_1' (train split)" in str(err.value) and "is 1,024 MiB, over AMST_MAX_TEXT_SAMPLE_MB" in \
        str(err.value)
    extractor = FeatureExtractor(FeatureSpec.of(cfg, tokenizer=True), DataRoots.from_env())
    with pytest.raises(SampleProblem, match=r"cat_train_1\.txt is 1,024 MiB, over AMST_MAX_TEXT_SAMPLE_MB"):
        extractor.sample(next(s for s in scanned.samples["train"] if s.sample_id == "cat_train_1"))
