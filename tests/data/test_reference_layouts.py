"""The reference CREMA-D / AVE layout, on tiny fixtures built from the first lines of the real split files."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from amst_core.catalog import DATASETS
from amst_core.config import ConfigError, RunConfig
from amst_core.data.reference import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ReferenceSource,
    pick_frames,
    read_class_file,
    read_split_file,
)
from amst_core.data.reference import SOURCES as REFERENCE_SOURCES
from amst_core.layouts import LAYOUTS as ALL_LAYOUTS
from amst_core.layouts import Layout, Media

CREMAD_LAYOUT, AVE_LAYOUT = ALL_LAYOUTS["cremad"], ALL_LAYOUTS["ave"]
AUDIO_DIR, FRAMES_DIR = "fbank", "IMAGE_KEPT_1_PER_SEC"


def CremaD() -> ReferenceSource:  # noqa: N802 - reads as the dataset's name
    return REFERENCE_SOURCES["cremad"]


def AVE() -> ReferenceSource:  # noqa: N802
    return REFERENCE_SOURCES["ave"]


SPLITS = ("train", "val", "test")
REAL_FOLDERS = {"cremad": "CREMAD", "ave": "AVE"}
LAYOUTS = {"cremad": CREMAD_LAYOUT, "ave": AVE_LAYOUT}
SOURCES = {"cremad": CremaD, "ave": AVE}
LINES_PER_SPLIT = 6
FBANK_FRAMES = 40
FRAME_NAMES = ("00030.jpg", "00005.jpg", "00012.jpg", "00047.jpg", "00021.jpg")  # written unsorted
FRAME_REDS = (20, 70, 120, 170, 220)  # red value of the k-th frame in SORTED name order


def splits_dir() -> Path:
    # ../shared next to the checkout, or the workplace's copy when the checkout lies elsewhere (a CI clone)
    candidates = [Path(__file__).resolve().parents[3] / "shared/data/splits", Path("/work/shared/data/splits")]
    if os.environ.get("AMST_SPLITS_DIR"):
        candidates.append(Path(os.environ["AMST_SPLITS_DIR"]))
    for path in candidates:
        if (path / "CREMAD").is_dir() and (path / "AVE").is_dir():
            return path
    pytest.skip(f"real split files not found in {[str(p) for p in candidates]} (set AMST_SPLITS_DIR)")


def real_file(dataset: str, name: str) -> Path:
    return splits_dir() / REAL_FOLDERS[dataset] / name


def make_cfg(dataset: str, **overrides) -> RunConfig:
    model = {"frames": 3, "image_size": 16, "audio_frames": 64, "mel_bins": 128}
    model.update(overrides.pop("model", {}))
    data = {"dataset": {"name": dataset, "cache": False, **overrides}, "method": "naive", "model": model}
    return RunConfig.model_validate(data)


def write_frames(folder: Path, count: int) -> None:
    """`count` solid-colour frames, written in unsorted name order; colour encodes the sorted rank."""
    folder.mkdir(parents=True)
    names = FRAME_NAMES[:count]
    for name in names:
        rank = sorted(names).index(name)
        Image.new("RGB", (20, 20), (FRAME_REDS[rank], 0, 0)).save(folder / name, quality=100)


def write_fbank(path: Path, frames: int = FBANK_FRAMES, bins: int = 128) -> np.ndarray:
    arr = (np.arange(frames * bins, dtype=np.float32).reshape(frames, bins) + 1.0) / 100
    np.save(path, arr)
    return arr


def build(tmp_path: Path, dataset: str, root: str | None = None, n_frames: int = 5) -> Path:
    """A dataset folder: the real class file, the first lines of each real split file, tiny media."""
    layout = LAYOUTS[dataset]
    folder = tmp_path / (root or dataset)
    (folder / AUDIO_DIR).mkdir(parents=True)
    (folder / layout.class_file).write_text(real_file(dataset, layout.class_file).read_text())
    for split in SPLITS:
        name = layout.default_split_file(split)
        lines = real_file(dataset, name).read_text().splitlines()[:LINES_PER_SPLIT]
        (folder / name).write_text("\n".join(lines) + "\n")
        for line in lines:
            clip_id = line.split(layout.separator)[0].strip()
            if not (folder / AUDIO_DIR / f"{clip_id}.npy").exists():
                write_fbank(folder / AUDIO_DIR / f"{clip_id}.npy")
                write_frames(folder / FRAMES_DIR / clip_id, n_frames)
    return folder


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AMST_DATA_ROOT", str(tmp_path))
    return tmp_path


def first_ids(dataset: str, split: str) -> list[tuple[str, str]]:
    layout = LAYOUTS[dataset]
    lines = real_file(dataset, layout.default_split_file(split)).read_text().splitlines()[:LINES_PER_SPLIT]
    return [(a.strip(), b.strip()) for a, b in (line.split(layout.separator) for line in lines)]


def reds(visual: torch.Tensor) -> list[int]:
    """The red value (0-255) at the centre of each frame, undoing the ImageNet normalisation."""
    centre = visual[0, :, visual.shape[2] // 2, visual.shape[3] // 2]
    return [round(float(v) * IMAGENET_STD[0] * 255 + IMAGENET_MEAN[0] * 255) for v in centre]


# ---------------------------------------------------------------- classes and line parsing


def test_cremad_classes_are_sorted_and_match_catalog(data_root: Path) -> None:
    build(data_root, "cremad")
    classes = CremaD().classes(make_cfg("cremad"))
    assert classes == ("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad")
    assert classes == DATASETS["cremad"].classes


def test_ave_classes_sorted_with_commas(data_root: Path) -> None:
    build(data_root, "ave")
    classes = AVE().classes(make_cfg("ave"))
    assert len(classes) == 28
    assert classes == tuple(sorted(classes))
    assert classes[0] == "Accordion" and classes[-1] == "Violin, fiddle"
    assert classes.index("Church bell") == 8  # spec section 5 order
    assert "Male speech, man speaking" in classes


def test_class_file_skips_blank_lines_and_strips(tmp_path: Path) -> None:
    path = tmp_path / "stat.txt"
    path.write_text("  Sad\n\nAnger \n\n")
    assert read_class_file(path) == ("Anger", "Sad")


def test_parse_lines_with_commas_and_whitespace(tmp_path: Path) -> None:
    classes = ("Bark", "Male speech, man speaking", "Violin, fiddle")
    path = tmp_path / "split.txt"
    path.write_text("abc.mp4 Violin, fiddle\n  x-y_z.mp4   Male speech, man speaking  \nabc.mp4 Bark\n\n")
    assert read_split_file(path, AVE_LAYOUT, classes) == [("abc", 0), ("x-y_z", 1), ("abc", 0)]  # last label wins


def test_split_items_follow_file_order_and_sorted_class_index(data_root: Path) -> None:
    for dataset, source in SOURCES.items():
        build(data_root, dataset)
        cfg = make_cfg(dataset)
        classes = source().classes(cfg)
        for split in SPLITS:
            expected = [(clip_id, classes.index(label)) for clip_id, label in first_ids(dataset, split)]
            assert source().items(cfg, split) == expected


def test_duplicate_ids_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "split.txt"
    path.write_text("1001_DFA_ANG_XX.flv Anger\n1001_DFA_ANG_XX.flv Anger\n")
    assert len(read_split_file(path, CREMAD_LAYOUT, ("Anger",))) == 2


def test_duplicate_ids_take_the_last_label_like_the_reference(tmp_path: Path) -> None:
    path = tmp_path / "split.txt"
    path.write_text("x.mp4 Bark\ny.mp4 Bark\nx.mp4 Cat\n")
    assert read_split_file(path, AVE_LAYOUT, ("Bark", "Cat")) == [("x", 1), ("y", 0), ("x", 1)]


# ---------------------------------------------------------------- samples


@pytest.mark.parametrize("dataset", ["cremad", "ave"])
@pytest.mark.parametrize("train", [True, False])
def test_sample_shapes_and_dtypes(data_root: Path, dataset: str, train: bool) -> None:
    build(data_root, dataset)
    cfg = make_cfg(dataset)
    ds = SOURCES[dataset]().split(cfg, "train", train=train)
    assert len(ds) == LINES_PER_SPLIT
    sample = ds[0]
    assert set(sample) == {"audio", "visual", "label"}
    assert sample["audio"].shape == (1, 64, 128) and sample["audio"].dtype == torch.float32
    assert sample["visual"].shape == (3, 3, 16, 16) and sample["visual"].dtype == torch.float32
    assert isinstance(sample["label"], int)
    assert sample["label"] == SOURCES[dataset]().classes(cfg).index(first_ids(dataset, "train")[0][1])


def test_batches_through_a_dataloader(data_root: Path) -> None:
    build(data_root, "cremad")
    ds = CremaD().split(make_cfg("cremad"), "val", train=True)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["audio"].shape == (4, 1, 64, 128)
    assert batch["visual"].shape == (4, 3, 3, 16, 16)
    assert batch["label"].dtype == torch.int64


def test_audio_is_zero_padded(data_root: Path) -> None:
    folder = build(data_root, "cremad")
    clip_id = first_ids("cremad", "train")[0][0]
    arr = np.load(folder / "fbank" / f"{clip_id}.npy")
    audio = CremaD().split(make_cfg("cremad"), "train", train=False)[0]["audio"]
    assert torch.equal(audio[0, :FBANK_FRAMES], torch.from_numpy(arr))
    assert torch.count_nonzero(audio[0, FBANK_FRAMES:]) == 0


def test_audio_is_cut(data_root: Path) -> None:
    folder = build(data_root, "cremad")
    clip_id = first_ids("cremad", "train")[0][0]
    arr = np.load(folder / "fbank" / f"{clip_id}.npy")
    audio = CremaD().split(make_cfg("cremad", model={"audio_frames": 32}), "train", train=False)[0]["audio"]
    assert audio.shape == (1, 32, 128)
    assert torch.equal(audio[0], torch.from_numpy(arr[:32]))


def test_wrong_mel_bins_names_the_file(data_root: Path) -> None:
    build(data_root, "cremad")
    cfg = make_cfg("cremad", model={"mel_bins": 64})
    clip_id = first_ids("cremad", "train")[0][0]
    with pytest.raises(ConfigError, match=rf"model\.mel_bins: .*{clip_id}\.npy") as err:
        CremaD().split(cfg, "train", train=False)[0]
    assert "(40, 128)" in str(err.value)
    with pytest.raises(ConfigError, match=r"model\.mel_bins: .*\.npy"):
        CremaD().check(cfg)


def test_frames_from_sorted_list_with_stride(data_root: Path) -> None:
    build(data_root, "ave")
    ave = AVE()
    # 5 frames, 3 wanted: s = 1 -> sorted ranks 0, 1, 2
    visual = ave.split(make_cfg("ave"), "test", train=False)[0]["visual"]
    assert [abs(r - e) <= 3 for r, e in zip(reds(visual), FRAME_REDS[:3], strict=True)] == [True] * 3
    # 5 frames, 2 wanted: s = 2 -> sorted ranks 0, 2
    visual = ave.split(make_cfg("ave", model={"frames": 2}), "test", train=False)[0]["visual"]
    assert visual.shape == (3, 2, 16, 16)
    got = reds(visual)
    assert abs(got[0] - FRAME_REDS[0]) <= 3 and abs(got[1] - FRAME_REDS[2]) <= 3


def test_fewer_frames_than_wanted_repeat_the_first(data_root: Path) -> None:
    build(data_root, "cremad", n_frames=2)
    visual = CremaD().split(make_cfg("cremad"), "train", train=False)[0]["visual"]
    assert all(abs(r - FRAME_REDS[0]) <= 3 for r in reds(visual))
    assert torch.equal(visual[:, 0], visual[:, 2])


def test_non_jpg_files_are_ignored(data_root: Path) -> None:
    folder = build(data_root, "cremad")
    clip_id = first_ids("cremad", "train")[0][0]
    (folder / "IMAGE_KEPT_1_PER_SEC" / clip_id / "00000.txt").write_text("not a frame")
    visual = CremaD().split(make_cfg("cremad"), "train", train=False)[0]["visual"]
    assert abs(reds(visual)[0] - FRAME_REDS[0]) <= 3


def test_pick_frames() -> None:
    assert pick_frames(5, 3) == [0, 1, 2]
    assert pick_frames(10, 3) == [0, 3, 6]
    assert pick_frames(3, 3) == [0, 1, 2]
    assert pick_frames(2, 3) == [0, 0, 0]
    assert pick_frames(7, 1) == [0]


# ---------------------------------------------------------------- configuration


def test_split_files_override_and_custom_root(data_root: Path) -> None:
    folder = build(data_root, "cremad", root="sets/cre")
    custom = folder / "mine"
    custom.mkdir()
    lines = (folder / "80_train_cre.txt").read_text().splitlines()
    (custom / "tr.txt").write_text("\n".join(lines[:2]) + "\n")
    (custom / "va.txt").write_text(lines[2] + "\n")
    (custom / "te.txt").write_text(lines[3] + "\n")
    cfg = make_cfg("cremad", root="sets/cre",
                   split_files={"train": "mine/tr.txt", "val": "mine/va.txt", "test": "mine/te.txt"})
    source = CremaD()
    source.check(cfg)
    assert [len(source.split(cfg, s, train=False)) for s in SPLITS] == [2, 1, 1]
    assert source.items(cfg, "val")[0][0] == lines[2].split(".flv")[0]


def test_check_passes_on_complete_fixture(data_root: Path) -> None:
    for dataset, source in SOURCES.items():
        build(data_root, dataset)
        source().check(make_cfg(dataset))


def test_missing_root(data_root: Path) -> None:
    with pytest.raises(ConfigError, match=r"^dataset\.root: .*cremad.* does not exist") as err:
        CremaD().check(make_cfg("cremad"))
    assert err.value.field == "dataset.root"
    assert "fbank/<id>.npy" in str(err.value) and "IMAGE_KEPT_1_PER_SEC/<id>/*.jpg" in str(err.value)
    with pytest.raises(ConfigError, match=r"^dataset\.root: "):
        CremaD().split(make_cfg("cremad"), "train", train=True)


def test_missing_split_file(data_root: Path) -> None:
    folder = build(data_root, "ave")
    (folder / "my_val_ave.txt").unlink()
    expected = r"^dataset\.split_files: the val split file .*my_val_ave\.txt"
    with pytest.raises(ConfigError, match=expected) as err:
        AVE().check(make_cfg("ave"))
    assert err.value.field == "dataset.split_files"


def test_missing_class_file(data_root: Path) -> None:
    folder = build(data_root, "cremad")
    (folder / "stat_cre.txt").unlink()
    with pytest.raises(ConfigError, match=r"^dataset\.class_file: the class file .*stat_cre\.txt"):
        CremaD().check(make_cfg("cremad"))


def test_missing_fbank_names_the_sample(data_root: Path) -> None:
    folder = build(data_root, "cremad")
    victims = [first_ids("cremad", "val")[1][0], first_ids("cremad", "test")[0][0]]
    for clip_id in victims:
        (folder / "fbank" / f"{clip_id}.npy").unlink()
    with pytest.raises(ConfigError, match=r"^dataset\.root: 2 of \d+ samples") as err:
        CremaD().check(make_cfg("cremad"))
    assert f"{victims[0]!r} (val split) has no fbank/{victims[0]}.npy" in str(err.value)


def test_missing_frame_folder_names_the_sample(data_root: Path) -> None:
    folder = build(data_root, "ave")
    clip_id = first_ids("ave", "train")[3][0]
    for frame in (folder / "IMAGE_KEPT_1_PER_SEC" / clip_id).iterdir():
        frame.unlink()
    (folder / "IMAGE_KEPT_1_PER_SEC" / clip_id).rmdir()
    expected = rf"^dataset\.root: 1 of \d+ samples.*{clip_id}.*IMAGE_KEPT_1_PER_SEC/{clip_id}/"
    with pytest.raises(ConfigError, match=expected):
        AVE().check(make_cfg("ave"))


def test_unknown_label_names_file_and_line(data_root: Path) -> None:
    folder = build(data_root, "cremad")
    path = folder / "10_test_cre.txt"
    lines = path.read_text().splitlines()
    lines[2] = "1001_DFA_XXX_XX.flv Joy"
    path.write_text("\n".join(lines) + "\n")
    expected = r"^dataset\.split_files: .*10_test_cre\.txt line 3: the label is not one of the 6 classes"
    for call in (lambda: CremaD().check(make_cfg("cremad")),
                 lambda: CremaD().split(make_cfg("cremad"), "test", train=False)):
        with pytest.raises(ConfigError, match=expected) as err:
            call()
        assert "Joy" not in str(err.value) and "1001_DFA" not in str(err.value), "errors never quote a file"


def test_line_without_separator(tmp_path: Path) -> None:
    path = tmp_path / "split.txt"
    path.write_text("1001_DFA_ANG_XX.wav Anger\n")
    with pytest.raises(ConfigError, match=r"dataset\.split_files: .*line 1: expected a line like '1040_IOM_NEU_XX\.flv "):
        read_split_file(path, CREMAD_LAYOUT, ("Anger",))


def test_unknown_split_name(data_root: Path) -> None:
    build(data_root, "cremad")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        CremaD().split(make_cfg("cremad"), "dev", train=False)


def test_layout_is_a_frozen_value() -> None:
    assert isinstance(CremaD(), ReferenceSource) and isinstance(AVE(), ReferenceSource)
    with pytest.raises(AttributeError):
        CREMAD_LAYOUT.separator = ".mp4"  # type: ignore[misc]
    layout = Layout("x", "a", "b", "c", ".x", "s", media=(("audio", Media("fbank", "fbank")),))
    assert layout.modalities == ("audio",) and layout.media_of("audio").entry("id1") == "id1.npy"


# ---------------------------------------------------------------- the real split files


@pytest.mark.parametrize(("dataset", "sizes"), [("cremad", (5962, 742, 742)), ("ave", (3338, 402, 402))])
def test_real_split_files_parse_completely(dataset: str, sizes: tuple[int, int, int]) -> None:
    layout = LAYOUTS[dataset]
    classes = read_class_file(real_file(dataset, layout.class_file))
    assert len(classes) == (6 if dataset == "cremad" else 28)
    files = {s: real_file(dataset, layout.default_split_file(s)) for s in SPLITS}
    parsed = {s: read_split_file(path, layout, classes) for s, path in files.items()}
    assert tuple(len(parsed[s]) for s in SPLITS) == sizes
    for items in parsed.values():
        assert all(clip_id and " " not in clip_id and 0 <= label < len(classes) for clip_id, label in items)
    if dataset == "cremad":  # per-class train counts from spec section 5
        counts = Counter(classes[label] for _, label in parsed["train"])
        assert counts == {"Anger": 1015, "Disgust": 1017, "Fear": 1033, "Happy": 1031, "Neutral": 854,
                          "Sad": 1012}


def test_augmentation_does_not_depend_on_the_loader_processes(data_root: Path) -> None:
    """Each sample's crop and flip has its own seed (run seed, epoch, index): 0, 1 or 2 loader processes (and
    `num_workers: auto` on another machine) train on the very same batches."""
    from amst_core.engine import Trainer

    build(data_root, "cremad")

    def batches(workers, epoch: int) -> list[torch.Tensor]:
        cfg = make_cfg("cremad").model_copy(update={"num_workers": workers, "batch_size": 4, "device": "cpu"})
        trainer = Trainer(cfg, progress=False)
        return [b["visual"] for b in trainer.loader("train", epoch, shuffle=True)]

    first = batches(0, epoch=1)
    for workers in (2, "auto"):
        assert all(torch.equal(a, b) for a, b in zip(first, batches(workers, epoch=1), strict=True)), workers
    clips = SOURCES["cremad"]().split(make_cfg("cremad"), "train", train=True)

    def draw(epoch_seed: int, index: int) -> float:
        clips.epoch_seed = epoch_seed
        with clips.sample_rng(index):
            return torch.rand(1).item()

    assert draw(5, 0) == draw(5, 0) != draw(5, 1) != draw(6, 1)  # the same sample and epoch, the same crop


def test_num_workers_auto_loads_in_memory_data_in_the_main_process() -> None:
    from amst_core.data.base import TensorSamples, loader_processes

    in_memory = TensorSamples({"audio": torch.zeros(4, 1)}, torch.zeros(4))
    assert loader_processes("auto", in_memory, torch.device("cuda")) == 0
    assert loader_processes(3, in_memory, torch.device("cpu")) == 3
    on_disk = torch.utils.data.Dataset()
    cores = len(os.sched_getaffinity(0))
    assert loader_processes("auto", on_disk, torch.device("cuda")) == min(8, cores - 1)
    assert loader_processes("auto", on_disk, torch.device("cpu")) == min(8, cores // 2)


def test_num_workers_auto_stays_within_the_servers_limit(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from amst_core.engine import Trainer
    from amst_core.limits import get_limits

    build(data_root, "cremad")
    monkeypatch.setenv("AMST_MAX_NUM_WORKERS", "0")
    get_limits.cache_clear()  # the limits are read once per process
    try:
        trainer = Trainer(make_cfg("cremad").model_copy(update={"device": "cpu"}), progress=False)
        assert trainer.cfg.num_workers == "auto" and trainer.loader("train", 0, shuffle=True).num_workers == 0
    finally:
        monkeypatch.undo()
        get_limits.cache_clear()


# ---------------------------------------------------------------- the sample cache


def stored_frames(folder: Path, frames: int, size: int) -> np.ndarray:
    """What the cache must hold for one clip: the picked frames (sorted names) decoded and resized to a square."""
    from amst_core.data import media

    paths = sorted(folder.glob("*.jpg"))
    return np.stack([media.square(media.open_image(paths[i]), size) for i in pick_frames(len(paths), frames)])


@pytest.mark.parametrize("dataset", ["cremad", "ave"])
def test_the_sample_cache_reproduces_the_uncached_samples(data_root: Path, dataset: str) -> None:
    """Same ids and labels in the same order (duplicates kept), fbanks to float16, and the frames' pixels before
    augmentation; made model-ready they are the uncached evaluation tensors up to the resize."""
    from tests.kit.tiny import model_sample

    folder = build(data_root, dataset)
    plain, cached_cfg = make_cfg(dataset), make_cfg(dataset, cache=True)
    for split in SPLITS:
        uncached = SOURCES[dataset]().split(plain, split, train=False)
        cached = SOURCES[dataset]().split(cached_cfg, split, train=False)
        assert list(zip(cached.ids, cached.labels, strict=True)) == uncached.items
        for i, sample_id in enumerate(cached.ids):
            raw, reference = cached[i], uncached[i]
            assert raw["audio"].dtype == torch.float16 and torch.equal(raw["audio"], reference["audio"].half())
            assert raw["visual"].dtype == torch.uint8
            assert np.array_equal(raw["visual"].numpy(), stored_frames(folder / FRAMES_DIR / sample_id, 3, 18))
            ready = model_sample(cached, i, 16)
            assert ready["audio"].dtype == torch.float32 and ready["visual"].shape == reference["visual"].shape
            torch.testing.assert_close(ready["visual"], reference["visual"], atol=0.05, rtol=0)


def test_the_sample_cache_is_rebuilt_when_a_file_or_a_setting_changes(data_root: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from amst_core.data import cache

    build(data_root, "cremad")
    cfg = make_cfg("cremad", cache=True)
    builds: list[int] = []
    real = cache.write_arrays
    monkeypatch.setattr(cache, "write_arrays", lambda *a, **k: (builds.append(1), real(*a, **k))[1])
    first = CremaD().split(cfg, "train", train=True)
    assert len(builds) == 1
    again = CremaD().split(cfg, "train", train=True)
    assert len(builds) == 1 and np.array_equal(first.arrays["visual"], again.arrays["visual"])
    sample_id = first.ids[0]
    frame = sorted((data_root / "cremad" / FRAMES_DIR / sample_id).glob("*.jpg"))[0]
    Image.new("RGB", (20, 20), (0, 250, 0)).save(frame, quality=100)
    os.utime(frame, ns=(frame.stat().st_atime_ns, frame.stat().st_mtime_ns + 10**9))
    changed = CremaD().split(cfg, "train", train=True)
    assert len(builds) == 2 and changed[0]["visual"][0, 9, 9, 1] > 200  # the new green frame
    CremaD().split(make_cfg("cremad", cache=True, model={"image_size": 32}), "train", train=True)
    assert len(builds) == 3


def test_two_processes_building_one_sample_cache_at_once_both_get_it(data_root: Path) -> None:
    import threading

    build(data_root, "cremad")
    cfg = make_cfg("cremad", cache=True)
    got: list = []
    threads = [threading.Thread(target=lambda: got.append(CremaD().split(cfg, "val", train=False)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 3 and all(g.ids == got[0].ids for g in got)
    cache_root = Path(os.environ["AMST_CACHE"]) / "samples"
    assert [p.name for p in cache_root.iterdir() if ".tmp-" in p.name] == []  # no leftover temporary folder


def test_an_undecodable_frame_is_named_by_the_cache_or_skipped(data_root: Path) -> None:
    build(data_root, "cremad")
    items = read_split_file(data_root / "cremad" / CREMAD_LAYOUT.train_file, CREMAD_LAYOUT,
                            read_class_file(data_root / "cremad" / CREMAD_LAYOUT.class_file))
    bad_id = items[1][0]
    frame = sorted((data_root / "cremad" / FRAMES_DIR / bad_id).glob("*.jpg"))[2]
    frame.write_bytes(frame.read_bytes()[:40])  # a valid header, then nothing: only a full decode fails
    with pytest.raises(ConfigError, match=bad_id) as err:
        CremaD().split(make_cfg("cremad", cache=True), "train", train=True)
    assert err.value.field == "dataset.on_bad_sample"
    kept = CremaD().split(make_cfg("cremad", cache=True, on_bad_sample="skip"), "train", train=True)
    assert bad_id not in kept.ids and len(kept) == len(items) - 1
    assert [b.sample_id for b in kept.dropped] == [bad_id]


def test_amst_cache_decodes_every_split_of_a_reference_dataset(data_root: Path, capsys,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from amst_core.cli import main
    from amst_core.data import cache

    build(data_root, "cremad")
    overrides = ["--set", "model.image_size=16", "--set", "model.audio_frames=64"]
    assert main(["cache", "cremad", *overrides, "--no-progress"]) == 0
    assert "cremad" in capsys.readouterr().err
    monkeypatch.setattr(cache, "write_arrays", lambda *a, **k: pytest.fail("the cache was built again"))
    cfg = make_cfg("cremad", cache=True)
    assert [len(CremaD().split(cfg, s, train=False)) for s in SPLITS] == [LINES_PER_SPLIT] * 3
