"""The folder layout: the user's own WAV / PNG / MP4 / TXT files as a dataset, features cached once, bad files
named by id and path before training, a reproducible split when val/ is missing."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from amst_core.config import ConfigError, RunConfig
from amst_core.data import folder as folder_data
from amst_core.data import source_for
from amst_core.datafiles import check_dataset
from amst_core.layouts import folder as layout
from tests.kit.tiny import folder_run, model_sample, write_mp4, write_tiny_folder, write_tiny_roberta


@pytest.fixture(scope="module")
def roberta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_roberta(tmp_path_factory.mktemp("models") / "tiny-roberta")


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, roberta: Path) -> Path:
    monkeypatch.setenv("AMST_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("AMST_DATA_EXTRA_ROOTS", str(roberta.parent))
    monkeypatch.setenv("AMST_CACHE", str(tmp_path / "cache"))
    return tmp_path / "data"


def config(root: str, roberta: Path, **overrides) -> RunConfig:
    return RunConfig.model_validate(folder_run(root, roberta, **overrides))


def test_modalities_classes_and_files_are_found(data_root: Path, roberta: Path) -> None:
    write_tiny_folder(data_root / "mine")
    cfg = check_dataset(config("mine", roberta))
    assert cfg.modalities == ("audio", "text", "visual")
    source = source_for(cfg)
    assert source.classes(cfg) == ("cat", "dog")
    sample = model_sample(source.split(cfg, "train", train=True), 0, cfg.model.image_size, train=True)
    assert sample["audio"].shape == (1, 32, 16) and sample["visual"].shape == (3, 1, 16, 16)
    assert sample["text"].shape == (16,) and sample["text_mask"][0] == 1
    no_text = check_dataset(config("mine", roberta, dataset={"name": "folder", "root": "mine",
                                                             "modalities_used": ["audio", "visual"]}))
    assert no_text.modalities == ("audio", "visual")


def test_a_missing_val_split_is_stratified_reproducible_and_written_down(data_root: Path, roberta: Path) -> None:
    write_tiny_folder(data_root / "mine", splits=("train",), per_class=10)
    first, again = layout.scan(data_root / "mine"), layout.scan(data_root / "mine")
    assert first.generated == ("val", "test")
    ids = {split: [s.key for s in first.samples[split]] for split in ("train", "val", "test")}
    assert ids == {split: [s.key for s in again.samples[split]] for split in ("train", "val", "test")}
    assert {split: len(v) for split, v in ids.items()} == {"train": 16, "val": 2, "test": 2}
    assert sorted(s.label for s in first.samples["val"]) == ["cat", "dog"]  # one of each class
    assert not set(ids["train"]) & {k.replace("val/", "train/") for k in ids["val"]}
    cfg = check_dataset(config("mine", roberta))
    cache = folder_data.cached_features(cfg, progress=False)
    written = json.loads((cache / "split.json").read_text())
    assert written["val"] == [key.removeprefix("val/") for key in ids["val"]]


def test_features_are_computed_once_and_again_when_a_file_changes(data_root: Path, roberta: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    write_tiny_folder(data_root / "mine")
    cfg = check_dataset(config("mine", roberta))
    first = folder_data.cached_features(cfg, progress=False)
    built = []
    real_build = folder_data.build_cache
    monkeypatch.setattr(folder_data, "build_cache", lambda *a, **k: (built.append(1), real_build(*a, **k)))
    assert folder_data.cached_features(cfg, progress=False) == first and not built  # a second run starts at once
    audio = np.load(first / "train" / "audio.npy")
    assert audio.dtype == np.float16 and audio.shape == (6, 32, 16)
    assert np.load(first / "train" / "visual.npy").shape == (6, 1, 18, 18, 3)  # stored a little larger: 16 x 8/7
    (data_root / "mine/train/cat/cat_train_0.txt").write_text("a changed text")
    assert folder_data.cached_features(cfg, progress=False) != first and built
    bigger = check_dataset(config("mine", roberta, model={**cfg.model.model_dump(), "audio_frames": 40}))
    assert folder_data.cached_features(bigger, progress=False) not in (first,)


def test_two_processes_building_the_cache_at_once_both_get_it(data_root: Path, roberta: Path) -> None:
    write_tiny_folder(data_root / "mine")
    cfg = check_dataset(config("mine", roberta))
    results, errors = [], []

    def build() -> None:
        try:
            results.append(folder_data.cached_features(cfg, progress=False))
        except Exception as err:  # the test reports it
            errors.append(err)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1
    assert sorted(p.name for p in results[0].parent.iterdir()) == [results[0].name]  # no temporary folder left


def test_a_video_gives_audio_and_frames_and_a_frame_folder_gives_frames(data_root: Path, roberta: Path) -> None:

    root = write_tiny_folder(data_root / "mine", text=False)
    for wav in root.glob("train/cat/*.wav"):  # these samples come as videos with a soundtrack instead
        wav.unlink()
        wav.with_suffix(".png").unlink()
        write_mp4(wav.with_suffix(".mp4"), seconds=2, colour=(200, 30, 30))
    frames = root / "train/dog/dog_train_0"
    frames.mkdir()
    (root / "train/dog/dog_train_0.png").rename(frames / "00001.png")
    cfg = check_dataset(config("mine", None))
    assert cfg.modalities == ("audio", "visual")
    data = source_for(cfg).split(cfg, "train", train=False)
    assert len(data) == 6
    video_sample = model_sample(data, data.ids.index("cat_train_0"), cfg.model.image_size)
    assert video_sample["audio"].abs().sum() > 0
    assert video_sample["visual"][0].mean() > video_sample["visual"][2].mean()  # red frames from the video


def test_bad_files_are_named_before_training_or_skipped_and_counted(data_root: Path, roberta: Path) -> None:
    from amst_core.engine import Trainer

    root = write_tiny_folder(data_root / "mine")
    (root / "train/cat/cat_train_1.wav").write_bytes(b"RIFF not really a wav")
    (root / "train/dog/dog_train_2.png").unlink()
    (root / "val/dog/dog_val_0.txt").write_text("  \n")
    cfg = config("mine", roberta)
    with pytest.raises(ConfigError, match=r"(?s)dataset\.on_bad_sample: 1 of 18 samples lack a usable file.*"
                                          r"'dog_train_2'.*train/dog/dog_train_2\.\* has no visual"):
        check_dataset(cfg)  # the API's check: a missing file, found by listing alone
    skip = RunConfig.model_validate(folder_run("mine", roberta, dataset={"name": "folder", "root": "mine",
                                                                         "on_bad_sample": "skip"}))
    resolved = check_dataset(skip)
    failing = resolved.model_copy(update={"dataset": resolved.dataset.model_copy(update={"on_bad_sample": "fail"})})
    with pytest.raises(ConfigError) as err:
        source_for(failing).split(failing, "train", train=True)
    message = str(err.value)
    assert message.startswith("dataset.on_bad_sample: 3 of 18 samples cannot be read")
    for sample_id, where, problem in [("cat_train_1", "cat_train_1.wav", "not a readable audio file"),
                                      ("dog_train_2", "dog_train_2.*", "has no visual"),
                                      ("dog_val_0", "dog_val_0.txt", "is empty")]:
        line = next(x for x in message.splitlines() if f"'{sample_id}'" in x)
        assert where in line and problem in line, line
    summary = Trainer(skip, progress=False).fit()
    assert summary["dropped_samples"] == {"train": 2, "val": 1, "test": 0}


def test_a_folder_without_train_or_with_one_class_is_refused(data_root: Path, roberta: Path) -> None:
    (data_root / "empty").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"dataset\.root: .*has no train/ folder.*<root>/<split>/<label>"):
        check_dataset(config("empty", roberta))
    write_tiny_folder(data_root / "one", classes=("cat",))
    with pytest.raises(ConfigError, match=r"dataset\.root: .*1 label folder"):
        check_dataset(config("one", roberta))


def test_amst_cache_and_preprocess_folder_build_the_cache_a_run_then_uses(data_root: Path, roberta: Path,
                                                                           tmp_path: Path, capsys) -> None:
    from amst_core.cli import main

    root = write_tiny_folder(tmp_path / "elsewhere", text=False)  # outside AMST_DATA_ROOT: the CLI reads it
    model = ["model.frames=1", "model.image_size=16", "model.audio_frames=32", "model.mel_bins=16"]
    assert main(["preprocess", "folder", str(root), "--no-progress", *[f"--set={m}" for m in model]]) == 0
    assert "train 6, val 6, test 6" in capsys.readouterr().err
    built = list((tmp_path / "cache" / "features").iterdir())
    assert len(built) == 1
    cfg_args = ["--set=dataset.name=folder", f"--set=dataset.root={root}", *[f"--set={m}" for m in model]]
    assert main(["cache", "folder", *cfg_args[1:], "--no-progress"]) == 0
    assert list((tmp_path / "cache" / "features").iterdir()) == built, "the same settings: the same cache"


def write_tone(path: Path, rate: int, hz: float = 300.0, seconds: float = 0.3) -> np.ndarray:
    import soundfile

    wave = (0.3 * np.sin(2 * np.pi * hz * np.arange(int(seconds * rate)) / rate)).astype(np.float32)
    soundfile.write(path, wave, rate)
    return wave


def test_audio_of_mixed_rates_is_resampled_to_the_folders_most_common_rate(data_root: Path) -> None:
    from amst_core.data import media

    root = write_tiny_folder(data_root / "mine", text=False)  # every WAV at 8 kHz
    for k in (0, 1):  # the same tones as two 48 kHz files
        write_tone(root / f"train/cat/cat_train_{k}.wav", 48_000, hz=300 + 10 * k)
    cfg = check_dataset(config("mine", None))
    assert cfg.dataset.audio_rate == 8000, "the resolved config says the rate"
    data = source_for(cfg).split(cfg, "train", train=False)
    for k in (0, 1):
        native = media.fbank(write_tone(data_root / "tone.wav", 8000, hz=300 + 10 * k), 8000, 16, 32)
        cached = np.asarray(data.arrays["audio"][data.ids.index(f"cat_train_{k}")], dtype=np.float32)
        strong = native > native.max() - 10  # the tone's bins (silent bins differ by the resampler's floor)
        np.testing.assert_allclose(cached[strong], native[strong], atol=0.02)  # float16 storage
    higher = check_dataset(config("mine", None, dataset={"name": "folder", "root": "mine", "audio_rate": 16_000}))
    assert higher.dataset.audio_rate == 16_000
    assert folder_data.cached_features(higher, progress=False) != folder_data.cached_features(cfg, progress=False)
    with pytest.raises(ValueError, match="audio_rate applies to the folder layout only"):
        RunConfig.model_validate({"method": "naive", "dataset": {"name": "cremad", "audio_rate": 16_000}})


def test_a_file_that_cannot_be_resampled_is_a_bad_sample_named_by_id(data_root: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import soxr

    root = write_tiny_folder(data_root / "mine", text=False)
    write_tone(root / "train/dog/dog_train_1.wav", 44_100)
    cfg = check_dataset(config("mine", None))

    def refuse(wave: np.ndarray, rate: int, target: int, quality: str) -> np.ndarray:
        raise ValueError("no")

    monkeypatch.setattr(soxr, "resample", refuse)
    with pytest.raises(ConfigError) as err:
        source_for(cfg).split(cfg, "train", train=False)
    line = next(x for x in str(err.value).splitlines() if "'dog_train_1'" in x)
    assert "dog_train_1.wav cannot be resampled from 44100 Hz to 8000 Hz" in line
