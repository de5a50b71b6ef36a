"""CREMA-D and AVE in the reference's preprocessed layout (amst_method.md section 5).

Per dataset root (`dataset_dir(cfg.dataset)`):
  <class file>                      one class name a line; a label is its index in the SORTED lines
  <train/val/test split files>      `<id><sep><label>` a line, e.g. `1040_IOM_NEU_XX.flv Neutral`
  fbank/<id>.npy                    float32 (1024, 128) Kaldi log-mel fbank
  IMAGE_KEPT_1_PER_SEC/<id>/*.jpg   one frame per second

Deviation from the reference (decision 6): frames are picked from the SORTED file list, not from the
unsorted `os.listdir` order, so the chosen frames do not depend on the filesystem.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms

from amst_core.config import ConfigError, data_root, dataset_dir
from amst_core.data.base import Sample

if TYPE_CHECKING:
    from amst_core.config import ModelConfig, RunConfig

SPLITS = ("train", "val", "test")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AVLayout:
    """What differs between the reference audio-visual datasets: file names and the line separator."""

    name: str
    train_file: str
    val_file: str
    test_file: str
    separator: str  # splits a split-file line into id and label (the video extension)
    class_file: str
    frames_dir: str = "IMAGE_KEPT_1_PER_SEC"
    audio_dir: str = "fbank"

    def default_split_file(self, split: str) -> str:
        return {"train": self.train_file, "val": self.val_file, "test": self.test_file}[split]


CREMAD_LAYOUT = AVLayout(name="cremad", train_file="80_train_cre.txt", val_file="10_val_cre.txt",
                         test_file="10_test_cre.txt", separator=".flv", class_file="stat_cre.txt")
AVE_LAYOUT = AVLayout(name="ave", train_file="my_train_ave.txt", val_file="my_val_ave.txt",
                      test_file="my_test_ave.txt", separator=".mp4", class_file="stat_ave.txt")


# ---------------------------------------------------------------- text files


def read_class_file(path: Path) -> tuple[str, ...]:
    """Class names sorted alphabetically: the reference indexes labels by the sorted stat-file lines."""
    names = [line.strip() for line in path.read_text().splitlines()]
    return tuple(sorted(n for n in names if n))


def parse_line(line: str, layout: AVLayout) -> tuple[str, str] | None:
    """(id, label) of one split-file line, or None when the line has no separator."""
    clip_id, sep, label = line.partition(layout.separator)
    if not sep:
        return None
    return clip_id.strip(), label.strip()


def read_split_file(path: Path, layout: AVLayout, classes: tuple[str, ...]) -> list[tuple[str, int]]:
    """(id, class index) per line, in file order. Duplicate ids are kept (the reference keeps them), and every
    copy gets the label of the id's LAST line, as the reference's id -> label dictionary does (AVE has 27 train
    ids listed twice with different labels, amst_method.md 7.8)."""
    index = {name: i for i, name in enumerate(classes)}
    items: list[tuple[str, int]] = []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue  # a trailing blank line is not a sample
        parsed = parse_line(line, layout)
        if parsed is None or not parsed[0]:
            expected = f"'<id>{layout.separator} <label>'"
            raise ConfigError("dataset.split_files",
                              f"{path} line {lineno}: expected {expected}, got {line!r}")
        clip_id, label = parsed
        if label not in index:
            raise ConfigError("dataset.split_files",
                              f"{path} line {lineno}: unknown label {label!r} (id {clip_id!r}); "
                              f"the classes in {layout.class_file} are: {', '.join(classes)}")
        items.append((clip_id, index[label]))
    last_label = dict(items)
    return [(clip_id, last_label[clip_id]) for clip_id, _ in items]


# ---------------------------------------------------------------- media


def load_fbank(path: Path, audio_frames: int, mel_bins: int) -> torch.Tensor:
    """(1, audio_frames, mel_bins) float32; time is zero-padded or cut, as the reference preprocessing."""
    arr = np.load(path, allow_pickle=False)
    check_fbank_shape(path, arr.shape, mel_bins)
    arr = np.asarray(arr, dtype=np.float32)[:audio_frames]
    out = torch.zeros(1, audio_frames, mel_bins, dtype=torch.float32)
    out[0, : arr.shape[0]] = torch.from_numpy(np.ascontiguousarray(arr))
    return out


def check_fbank_shape(path: Path, shape: tuple[int, ...], mel_bins: int) -> None:
    """Frames may differ (they are padded or cut) but mel bins cannot: the encoder expects model.mel_bins."""
    if len(shape) != 2 or shape[1] != mel_bins:
        raise ConfigError("model.mel_bins",
                          f"{path} has shape {tuple(shape)}; expected (time, {mel_bins}) for model.mel_bins")


def frame_files(folder: Path) -> list[Path]:
    """The .jpg frames of one clip in sorted name order (names are zero-padded frame indices)."""
    try:
        names = sorted(n for n in os.listdir(folder) if n.lower().endswith(".jpg"))
    except FileNotFoundError:
        raise ConfigError("dataset.root", f"frame folder {folder} does not exist") from None
    if not names:
        raise ConfigError("dataset.root", f"frame folder {folder} holds no .jpg frames")
    return [folder / n for n in names]


def pick_frames(n_available: int, frames: int) -> list[int]:
    """Indices 0, s, 2s, ... with s = N // frames; too few frames repeat the first (as the reference)."""
    if n_available < frames:
        return [0] * frames
    step = n_available // frames
    return [i * step for i in range(frames)]


def frame_transform(image_size: int, train: bool) -> transforms.Compose:
    """Per-frame transform: each frame gets its own random crop and flip in training, as in the reference."""
    normalize = [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if train:
        augment = [transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip()]
        return transforms.Compose([*augment, *normalize])
    return transforms.Compose([transforms.Resize((image_size, image_size)), *normalize])


def load_frames(folder: Path, frames: int, transform: transforms.Compose) -> torch.Tensor:
    """(3, frames, H, W) float32: channels first, then time, like the reference's C,T,H,W."""
    files = frame_files(folder)
    images = []
    for i in pick_frames(len(files), frames):
        with Image.open(files[i]) as img:
            images.append(transform(img.convert("RGB")))
    return torch.stack(images, dim=1)


class AVClips(Dataset):
    """One split: audio fbank plus sampled video frames per clip id, read lazily from disk."""

    def __init__(self, root: Path, layout: AVLayout, items: list[tuple[str, int]], model: ModelConfig,
                 train: bool):
        self.root = root
        self.layout = layout
        self.items = items
        self.frames = model.frames
        self.audio_frames = model.audio_frames
        self.mel_bins = model.mel_bins
        self.transform = frame_transform(model.image_size, train)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Sample:
        clip_id, label = self.items[i]
        fbank = self.root / self.layout.audio_dir / f"{clip_id}.npy"
        audio = load_fbank(fbank, self.audio_frames, self.mel_bins)
        visual = load_frames(self.root / self.layout.frames_dir / clip_id, self.frames, self.transform)
        return {"audio": audio, "visual": visual, "label": label}


# ---------------------------------------------------------------- the source


class ReferenceAV:
    """A `DatasetSource` for one reference audio-visual layout."""

    def __init__(self, layout: AVLayout):
        self.layout = layout

    def root(self, cfg: RunConfig) -> Path:
        root = dataset_dir(cfg.dataset)
        if not root.is_dir():
            raise ConfigError(
                "dataset.root",
                f"{root} does not exist (AMST_DATA_ROOT={data_root()}); expected the {self.layout.name} "
                f"preprocessed layout there: {self.layout.class_file}, the split files, "
                f"{self.layout.audio_dir}/<id>.npy and {self.layout.frames_dir}/<id>/*.jpg",
            )
        return root

    def split_path(self, cfg: RunConfig, split: str) -> Path:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        custom = cfg.dataset.split_files
        name = getattr(custom, split) if custom is not None else self.layout.default_split_file(split)
        return self._existing(self.root(cfg) / name, f"the {split} split file")

    def _existing(self, path: Path, what: str) -> Path:
        if not path.is_file():
            raise ConfigError("dataset.split_files", f"{what} {path} does not exist")
        return path

    def classes(self, cfg: RunConfig) -> tuple[str, ...]:
        path = self._existing(self.root(cfg) / self.layout.class_file, "the class file")
        names = read_class_file(path)
        if not names:
            raise ConfigError("dataset.split_files", f"the class file {path} lists no classes")
        return names

    def items(self, cfg: RunConfig, split: str) -> list[tuple[str, int]]:
        return read_split_file(self.split_path(cfg, split), self.layout, self.classes(cfg))

    def split(self, cfg: RunConfig, split: str, train: bool) -> Dataset:
        return AVClips(self.root(cfg), self.layout, self.items(cfg, split), cfg.model, train)

    def check(self, cfg: RunConfig) -> None:
        """Every text file parses and every clip of every split has its fbank file and frame folder."""
        root = self.root(cfg)
        classes = self.classes(cfg)
        ids: dict[str, str] = {}  # id -> first split naming it, in file order
        for split in SPLITS:
            path = self.split_path(cfg, split)
            items = read_split_file(path, self.layout, classes)
            if not items:
                raise ConfigError("dataset.split_files", f"the {split} split file {path} lists no samples")
            for clip_id, _ in items:
                ids.setdefault(clip_id, split)
        # One directory listing per media folder instead of two stat calls per clip: fast on network storage.
        have_audio = self._listing(root / self.layout.audio_dir)
        have_frames = self._listing(root / self.layout.frames_dir)
        gaps = {clip_id: self._gaps(clip_id, have_audio, have_frames) for clip_id in ids}
        missing = [clip_id for clip_id, lacks in gaps.items() if lacks]
        if missing:
            first = missing[0]
            raise ConfigError(
                "dataset.root",
                f"{len(missing)} of {len(ids)} clips lack their fbank file or frame folder under {root}; "
                f"first: {first!r} ({ids[first]} split) has no {' and no '.join(gaps[first])}",
            )
        # Memory-mapped: reads only the header, so a wrong model.mel_bins fails here and not mid-epoch.
        fbank = root / self.layout.audio_dir / f"{next(iter(ids))}.npy"
        check_fbank_shape(fbank, np.load(fbank, mmap_mode="r", allow_pickle=False).shape, cfg.model.mel_bins)

    def _gaps(self, clip_id: str, have_audio: set[str], have_frames: set[str]) -> list[str]:
        """The media paths (relative to the root) one clip lacks."""
        lacks = []
        if f"{clip_id}.npy" not in have_audio:
            lacks.append(f"{self.layout.audio_dir}/{clip_id}.npy")
        if clip_id not in have_frames:
            lacks.append(f"{self.layout.frames_dir}/{clip_id}/")
        return lacks

    def _listing(self, folder: Path) -> set[str]:
        try:
            return set(os.listdir(folder))
        except FileNotFoundError:
            raise ConfigError("dataset.root", f"{folder} does not exist; every clip needs a file or "
                                              "folder there") from None


class CremaD(ReferenceAV):
    def __init__(self) -> None:
        super().__init__(CREMAD_LAYOUT)


class AVE(ReferenceAV):
    def __init__(self) -> None:
        super().__init__(AVE_LAYOUT)
