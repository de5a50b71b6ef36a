"""Every dataset in a reference preprocessed layout (amst_method.md section 5), whatever its modalities: the layout
(`amst_core.layouts`) says where each modality's media lie, and one small reader per media kind turns them into
the tensors of `amst_core.data.base`:

  fbank   <id>.npy                  float32 (time, mel) -> audio (1, model.audio_frames, mel), zero-padded or cut
  frames  <id>/*.jpg                model.frames frames -> visual (3, frames, H, W)
  image   <id>.jpg                  one image -> visual (3, 1, H, W)
  tokens  <id>_token.pt, _pm.pt     ids and mask -> text (L,), text_mask (L,), L = model.text_max_length

Before training, every sample of a split is checked (its files exist and parse: array shape, image header, token
tensors); bad ones fail the run by id and path, or are dropped and counted (`dataset.on_bad_sample: skip`).

Deviation from the reference (decision 6): frames are picked from the SORTED file list, not from the
unsorted `os.listdir` order, so the chosen frames do not depend on the filesystem.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import transforms

from amst_core.config import ConfigError, cache_dir
from amst_core.data import cache, media
from amst_core.data.augment import IMAGENET_MEAN, IMAGENET_STD
from amst_core.data.base import Sample, SeededAugment
from amst_core.datafiles import (
    SPLITS,
    BadSample,
    ReferenceFiles,
    bad_samples_error,
    check_fbank_shape,
    read_class_file,
    read_split_file,
)
from amst_core.layouts import LAYOUTS, Layout, Media
from amst_core.vocab import AUDIO, TEXT, VISUAL

if TYPE_CHECKING:
    from amst_core.config import ModelConfig, RunConfig

log = logging.getLogger(__name__)
READ_ERRORS = (OSError, ValueError, RuntimeError, UnidentifiedImageError, EOFError, pickle.UnpicklingError)
__all__ = ["SPLITS", "Layout", "read_class_file", "read_split_file"]


# ---------------------------------------------------------------- media


def load_fbank(path: Path, audio_frames: int, mel_bins: int) -> torch.Tensor:
    """(1, audio_frames, mel_bins) float32; time is zero-padded or cut, as the reference preprocessing."""
    arr = np.load(path, allow_pickle=False)
    check_fbank_shape(path, arr.shape, mel_bins)
    return fit_time(np.asarray(arr, dtype=np.float32), audio_frames)


def fit_time(arr: np.ndarray, audio_frames: int) -> torch.Tensor:
    arr = arr[:audio_frames]
    out = torch.zeros(1, audio_frames, arr.shape[1], dtype=torch.float32)
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


def load_images(paths: list[Path], transform: Callable) -> torch.Tensor:
    """(3, len(paths), H, W) float32: channels first, then time, like the reference's C,T,H,W."""
    images = []
    for path in paths:
        with Image.open(path) as img:
            images.append(transform(img.convert("RGB")))
    return torch.stack(images, dim=1)


def load_frames(folder: Path, frames: int, transform: Callable, files: ReferenceFiles | None = None) -> torch.Tensor:
    paths = frame_files(folder, files)
    return load_images([paths[i] for i in pick_frames(len(paths), frames)], transform)


def fit_tokens(ids: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (int64) and mask (float) padded with id 1 / mask 0 (RoBERTa's pad) or cut to `length`."""
    ids, mask = ids.reshape(-1).long()[:length], mask.reshape(-1).float()[:length]
    if len(ids) < length:
        ids = torch.cat([ids, torch.ones(length - len(ids), dtype=torch.long)])
        mask = torch.cat([mask, torch.zeros(length - len(mask))])
    return ids, mask


def load_tokens(token_file: Path, mask_file: Path, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.load(token_file, weights_only=True)
    mask = torch.load(mask_file, weights_only=True)
    if not (isinstance(ids, torch.Tensor) and isinstance(mask, torch.Tensor)) or ids.numel() != mask.numel():
        raise ValueError("token ids and mask must be tensors of one length")
    return fit_tokens(ids, mask, length)


# ---------------------------------------------------------------- reading and checking a sample


class MediaReader:
    """Reads one modality of a sample from its media entry (a confined path)."""

    def __init__(self, modality: str, media: Media, model: ModelConfig, train: bool, files: ReferenceFiles):
        self.modality, self.media, self.model, self.files = modality, media, model, files
        self.transform = frame_transform(model.image_size, train)

    def path(self, sample_id: str) -> Path:
        return self.files.media(self.media.folder, self.media.entry(sample_id))

    def tokens(self, sample_id: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and mask, each file confined (the mask file is a media entry of its own)."""
        ids_file, mask_file = (self.files.media(self.media.folder, name) for name in self.media.files(sample_id))
        return load_tokens(ids_file, mask_file, self.model.text_max_length)

    def read(self, sample_id: str, sample: Sample) -> None:
        path, kind = self.path(sample_id), self.media.kind
        if kind == "fbank":
            sample[AUDIO] = load_fbank(path, self.model.audio_frames, self.model.mel_bins)
        elif kind == "frames":
            sample[VISUAL] = load_frames(path, self.model.frames, self.transform, self.files)
        elif kind == "image":
            sample[VISUAL] = load_images([path], self.transform)
        else:
            sample[TEXT], sample["text_mask"] = self.tokens(sample_id)

    def problem(self, sample_id: str) -> tuple[str, str] | None:
        """(path, what is wrong) when the sample's media are missing or do not parse; cheap (headers only)."""
        try:
            path = self.path(sample_id)
        except ConfigError as err:
            return str(self.files.root() / self.media.folder / self.media.entry(sample_id)), str(err)
        try:
            if self.media.kind == "fbank":
                shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
                if len(shape) == 2 and shape[0] > 0:  # every frame count works; mel bins must fit the model
                    check_fbank_shape(path, shape, self.model.mel_bins)
                else:
                    return str(path), f"has shape {tuple(shape)}; expected (time, {self.model.mel_bins})"
            elif self.media.kind in ("frames", "image"):
                paths = frame_files(path, self.files) if self.media.kind == "frames" else [path]
                for frame in paths:
                    with Image.open(frame) as img:
                        img.verify()
            else:
                self.tokens(sample_id)
        except FileNotFoundError:
            return str(path), "does not exist"
        except ConfigError as err:
            if err.field != "dataset.root":
                raise  # a config that fits no sample (model.mel_bins), not a bad sample
            return str(path), str(err).removeprefix("dataset.root: ")
        except READ_ERRORS as err:
            return str(path), f"cannot be read ({type(err).__name__})"
        return None

    def source_files(self, sample_id: str) -> list[Path]:
        """The files this modality of a sample is read from (a frame folder counts as one), for the cache key."""
        try:
            return [self.files.media(self.media.folder, name) for name in self.media.files(sample_id)]
        except ConfigError:
            return [self.files.root() / self.media.folder / f"refused:{self.media.entry(sample_id)}"]

    def features(self, sample_id: str, stored: int) -> dict[str, np.ndarray]:
        """The sample as the cache stores it (amst_core.data.cache); SampleProblem when it cannot be decoded."""
        try:
            return self.decode(sample_id, stored)
        except ConfigError as err:
            if err.field != "dataset.root":
                raise
        except READ_ERRORS:
            pass
        path, problem = self.problem(sample_id) or (str(self.path(sample_id)), "cannot be decoded")
        raise cache.SampleProblem(path, problem)

    def decode(self, sample_id: str, stored: int) -> dict[str, np.ndarray]:
        path, kind = self.path(sample_id), self.media.kind
        if kind == "fbank":
            fbank = load_fbank(path, self.model.audio_frames, self.model.mel_bins)
            return {AUDIO: fbank[0].numpy().astype(np.float16)}
        if kind in ("frames", "image"):
            paths = frame_files(path, self.files) if kind == "frames" else [path]
            chosen = [paths[i] for i in pick_frames(len(paths), self.model.frames)] if kind == "frames" else paths
            return {VISUAL: np.stack([media.square(media.open_image(p), stored) for p in chosen])}
        ids, mask = self.tokens(sample_id)
        return {TEXT: ids.numpy(), "text_mask": mask.numpy()}


class LayoutClips(SeededAugment, Dataset):
    """One split of a reference layout: the run's modalities read lazily per sample, every file confined."""

    def __init__(self, readers: list[MediaReader], items: list[tuple[str, int]]):
        self.readers, self.items = readers, items
        self.dropped: list[BadSample] = []

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Sample:
        sample_id, label = self.items[i]
        sample: Sample = {"label": label}
        with self.sample_rng(i):
            for reader in self.readers:
                reader.read(sample_id, sample)
        return sample


def screen(split: str, items: list[tuple[str, int]], readers: list[MediaReader],
           on_bad_sample: str) -> tuple[list[tuple[str, int]], list[BadSample]]:
    """The items whose media all parse, and the bad ones; `fail` raises naming the first bad samples."""
    bad: list[BadSample] = []
    checked: dict[str, BadSample | None] = {}
    for sample_id, _ in items:
        if sample_id not in checked:
            found = next((p for r in readers if (p := r.problem(sample_id)) is not None), None)
            checked[sample_id] = BadSample(split, sample_id, *found) if found else None
            if found:
                bad.append(checked[sample_id])
    if bad and on_bad_sample == "fail":
        raise bad_samples_error(bad, len(checked))
    return [item for item in items if checked[item[0]] is None], bad


def split_key(spec: cache.FeatureSpec, files: ReferenceFiles, readers: list[MediaReader], split: str,
              items: list[tuple[str, int]]) -> str:
    """The name of a split's cache folder: over its samples (in order, with their labels) and their files, so a
    drawn split (`dataset.split_scheme`, its seed or session) has its own and the reference split keeps its."""
    return cache.cache_key(spec, files.layout.name, split, str(files.root()),
                           files=((f"{sample_id}\0{label}", [p for r in readers for p in r.source_files(sample_id)])
                                  for sample_id, label in items))


def cached_split(cfg: RunConfig, files: ReferenceFiles, readers: list[MediaReader], split: str,
                 progress: bool | None = None) -> tuple[cache.CachedSamples, list[BadSample]]:
    """The split from its cache folder (AMST_CACHE/samples/<key>), decoded now if missing; bad samples fail the run
    or are dropped as `dataset.on_bad_sample` says."""
    items = files.items(split)
    spec = cache.FeatureSpec.of(cfg)
    folder = cache_dir() / "samples" / split_key(spec, files, readers, split, items)
    if not (folder / "meta.json").exists():
        def build(tmp: Path) -> None:
            def extract(item: tuple[str, int]) -> dict[str, np.ndarray]:
                return {k: v for r in readers for k, v in r.features(item[0], spec.stored_size).items()}

            with cache.progress_bar(len(items), progress, f"decoding the {split} split (once)") as bar:
                good, bad = cache.write_arrays(tmp, items, extract, lambda: bar.update(1), cache.decode_threads())
            meta = {"version": cache.CACHE_VERSION, "spec": spec.__dict__, "split": split,
                    **cache.split_meta(items, good, bad)}
            (tmp / "meta.json").write_text(json.dumps(meta))

        cache.build_atomically(folder, build)
    meta = json.loads((folder / "meta.json").read_text())
    bad = cache.bad_of(split, meta)
    if bad and cfg.dataset.on_bad_sample == "fail":
        raise bad_samples_error(bad, len(meta["samples"]) + len(bad))
    return cache.CachedSamples(folder, meta, cfg.modalities), bad


# ---------------------------------------------------------------- the source


class ReferenceSource:
    """A `DatasetSource` for one reference layout; the files are found by `ReferenceFiles`."""

    def __init__(self, layout: Layout):
        self.layout = layout

    def files(self, cfg: RunConfig) -> ReferenceFiles:
        return ReferenceFiles(self.layout, cfg)

    def classes(self, cfg: RunConfig) -> tuple[str, ...]:
        return self.files(cfg).classes()

    def items(self, cfg: RunConfig, split: str) -> list[tuple[str, int]]:
        return self.files(cfg).items(split)

    def split(self, cfg: RunConfig, split: str, train: bool,
              progress: bool | None = None) -> LayoutClips | cache.CachedSamples:
        """The split's samples: from the sample cache (built on first use) unless `dataset.cache` is false."""
        files = self.files(cfg)
        readers = [MediaReader(m, media, cfg.model, train, files) for m, media in files.used_media]
        if cfg.dataset.cache:
            data, bad = cached_split(cfg, files, readers, split, progress)
        else:
            items, bad = screen(split, files.items(split), readers, cfg.dataset.on_bad_sample)
            data = LayoutClips(readers, items)
        if not len(data):
            raise ConfigError("dataset.on_bad_sample", f"every sample of the {split} split is bad; the first: "
                                                       f"{bad[0]}")
        for b in bad[:5]:
            log.warning("dropped bad sample %s", b)
        data.dropped = bad
        return data

    def check(self, cfg: RunConfig) -> None:
        self.files(cfg).check()


SOURCES = {name: ReferenceSource(layout) for name, layout in LAYOUTS.items()}
