"""CREMA-D and AVE in the reference's preprocessed layout (amst_method.md section 5).

Per dataset root (found and confined by `amst_core.datafiles.ReferenceFiles`):
  <class file>                      one class name a line; a label is its index in the SORTED lines
  <train/val/test split files>      `<id><sep><label>` a line, e.g. `1040_IOM_NEU_XX.flv Neutral`
  fbank/<id>.npy                    float32 (1024, 128) Kaldi log-mel fbank
  IMAGE_KEPT_1_PER_SEC/<id>/*.jpg   one frame per second

Deviation from the reference (decision 6): frames are picked from the SORTED file list, not from the
unsorted `os.listdir` order, so the chosen frames do not depend on the filesystem.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms

from amst_core.config import ConfigError
from amst_core.data.base import Sample
from amst_core.datafiles import (
    AVE_LAYOUT,
    CREMAD_LAYOUT,
    SPLITS,
    AVLayout,
    ReferenceFiles,
    check_fbank_shape,
    parse_line,
    read_class_file,
    read_split_file,
)

if TYPE_CHECKING:
    from amst_core.config import ModelConfig, RunConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
__all__ = ["AVE_LAYOUT", "CREMAD_LAYOUT", "SPLITS", "AVLayout", "parse_line", "read_class_file", "read_split_file"]


# ---------------------------------------------------------------- media


def load_fbank(path: Path, audio_frames: int, mel_bins: int) -> torch.Tensor:
    """(1, audio_frames, mel_bins) float32; time is zero-padded or cut, as the reference preprocessing."""
    arr = np.load(path, allow_pickle=False)
    check_fbank_shape(path, arr.shape, mel_bins)
    arr = np.asarray(arr, dtype=np.float32)[:audio_frames]
    out = torch.zeros(1, audio_frames, mel_bins, dtype=torch.float32)
    out[0, : arr.shape[0]] = torch.from_numpy(np.ascontiguousarray(arr))
    return out


def frame_files(folder: Path, files: ReferenceFiles | None = None) -> list[Path]:
    """The .jpg frames of one clip in sorted name order (names are zero-padded frame indices), each confined to
    the data root when `files` is given."""
    try:
        names = sorted(n for n in os.listdir(folder) if n.lower().endswith(".jpg"))
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError("dataset.root", f"frame folder {folder} does not exist") from None
    if not names:
        raise ConfigError("dataset.root", f"frame folder {folder} holds no .jpg frames")
    if files is None:
        return [folder / n for n in names]
    return [files.roots.confine(folder / n, "dataset.root", "the frame") for n in names]


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


def load_frames(folder: Path, frames: int, transform: transforms.Compose,
                files: ReferenceFiles | None = None) -> torch.Tensor:
    """(3, frames, H, W) float32: channels first, then time, like the reference's C,T,H,W."""
    paths = frame_files(folder, files)
    images = []
    for i in pick_frames(len(paths), frames):
        with Image.open(paths[i]) as img:
            images.append(transform(img.convert("RGB")))
    return torch.stack(images, dim=1)


class AVClips(Dataset):
    """One split: audio fbank plus sampled video frames per clip id, read lazily from disk (every file confined
    to the data root)."""

    def __init__(self, files: ReferenceFiles, items: list[tuple[str, int]], model: ModelConfig, train: bool,
                 modalities: tuple[str, ...] = ("audio", "visual")):
        self.files = files
        self.modalities = modalities
        self.layout = files.layout
        self.items = items
        self.frames = model.frames
        self.audio_frames = model.audio_frames
        self.mel_bins = model.mel_bins
        self.transform = frame_transform(model.image_size, train)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Sample:
        """The run's modalities only (a unimodal run reads no other file)."""
        clip_id, label = self.items[i]
        sample: Sample = {"label": label}
        if "audio" in self.modalities:
            fbank = self.files.media(self.layout.audio_dir, f"{clip_id}.npy")
            sample["audio"] = load_fbank(fbank, self.audio_frames, self.mel_bins)
        if "visual" in self.modalities:
            folder = self.files.media(self.layout.frames_dir, clip_id)
            sample["visual"] = load_frames(folder, self.frames, self.transform, self.files)
        return sample


# ---------------------------------------------------------------- the source


class ReferenceAV:
    """A `DatasetSource` for one reference audio-visual layout; the files are found by `ReferenceFiles`."""

    def __init__(self, layout: AVLayout):
        self.layout = layout

    def files(self, cfg: RunConfig) -> ReferenceFiles:
        return ReferenceFiles(self.layout, cfg)

    def classes(self, cfg: RunConfig) -> tuple[str, ...]:
        return self.files(cfg).classes()

    def items(self, cfg: RunConfig, split: str) -> list[tuple[str, int]]:
        return self.files(cfg).items(split)

    def split(self, cfg: RunConfig, split: str, train: bool) -> Dataset:
        files = self.files(cfg)
        return AVClips(files, files.items(split), cfg.model, train, cfg.modalities)

    def check(self, cfg: RunConfig) -> None:
        self.files(cfg).check()


class CremaD(ReferenceAV):
    def __init__(self) -> None:
        super().__init__(CREMAD_LAYOUT)


class AVE(ReferenceAV):
    def __init__(self) -> None:
        super().__init__(AVE_LAYOUT)
