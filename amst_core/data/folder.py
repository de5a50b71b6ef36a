"""The folder layout's samples (amst_core.layouts.folder), with features computed once into a cache.

Features (amst_core.data.media): audio as the reference's fbank (model.mel_bins x model.audio_frames, stored as
float16), visual as model.frames frames (1 per second of a video, or a frame folder's images) stored as uint8
squares a little larger than the crop (image_size x 8/7, as 256 for 224), text as token ids and mask of the text
model's tokenizer. The cache is keyed by every source file (path, size, modification time) and every feature
setting, so a changed file or setting builds a new one, and an unchanged dataset starts at once. It is built in a
temporary folder and renamed into place: two processes building it at once both end with one complete cache.
Samples that cannot be decoded are recorded there too (id, path, problem), for `dataset.on_bad_sample`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import transforms

from amst_core.config import ConfigError, cache_dir
from amst_core.data import media
from amst_core.data.base import Sample, SeededAugment
from amst_core.data.reference import IMAGENET_MEAN, IMAGENET_STD, pick_frames
from amst_core.datafiles import BadSample, DataRoots, bad_samples_error
from amst_core.layouts import folder as layout
from amst_core.layouts.folder import SPLITS, FolderSample, FolderScan

if TYPE_CHECKING:
    from amst_core.config import RunConfig

CACHE_VERSION = 1


def stored_size(image_size: int) -> int:
    return round(image_size * 8 / 7)


@dataclass(frozen=True)
class FeatureSpec:
    """Everything a cached feature depends on besides the source files."""

    modalities: tuple[str, ...]
    mel_bins: int
    audio_frames: int
    frames: int
    stored_size: int
    text_model: str
    text_max_length: int

    @classmethod
    def of(cls, cfg: RunConfig) -> FeatureSpec:
        m = cfg.model
        text = "text" in cfg.modalities
        return cls(tuple(cfg.modalities), m.mel_bins, m.audio_frames, m.frames, stored_size(m.image_size),
                   m.text_model if text else "", m.text_max_length if text else 0)


def cache_key(found: FolderScan, spec: FeatureSpec) -> str:
    """sha256 of the feature settings and of every source file's path, size and modification time."""
    h = hashlib.sha256(json.dumps([CACHE_VERSION, spec.__dict__]).encode())
    for split in SPLITS:
        for s in found.samples[split]:
            h.update(f"{s.key}\0".encode())
            for modality, path in sorted(s.files.items()):
                h.update(f"{modality}\0{fingerprint(path)}\0".encode())
    return h.hexdigest()[:32]


def fingerprint(path: Path) -> str:
    st = path.stat()
    if path.is_dir():  # a frame folder: its images
        return ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in media.image_files(path))
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


class SampleProblem(Exception):
    def __init__(self, path: str, problem: str):
        super().__init__(f"{path} {problem}")
        self.path, self.problem = path, problem


class FeatureExtractor:
    def __init__(self, spec: FeatureSpec):
        self.spec = spec
        self.tokenizer = None
        if "text" in spec.modalities:
            from amst_core.models.text import load_tokenizer

            self.tokenizer = load_tokenizer(spec.text_model)

    def sample(self, s: FolderSample) -> dict[str, np.ndarray]:
        """The features of one sample; SampleProblem (path and problem) when a file is missing or unusable."""
        out: dict[str, np.ndarray] = {}
        for modality in self.spec.modalities:
            path = s.files.get(modality)
            if path is None:
                raise SampleProblem(f"{Path(s.split) / s.label / s.sample_id}.*",
                                    f"has no {modality}: {layout.EXPECTED[modality]}")
            try:
                out.update(self.modality(modality, path))
            except media.MediaError as err:
                raise SampleProblem(str(path), str(err)) from None
        return out

    def modality(self, modality: str, path: Path) -> dict[str, np.ndarray]:
        spec = self.spec
        if modality == "audio":
            wave, rate = media.read_audio(path)
            return {"audio": media.fbank(wave, rate, spec.mel_bins, spec.audio_frames).astype(np.float16)}
        if modality == "visual":
            if path.is_dir():
                images = [media.open_image(p) for p in media.image_files(path)]
                if not images:
                    raise media.MediaError("holds no .jpg/.jpeg/.png frames")
            elif path.suffix.lower() in media.VIDEO_EXTENSIONS:
                images = media.video_frames(path, per_second=1)
            else:
                images = [media.open_image(path)]
            chosen = [images[i] for i in pick_frames(len(images), spec.frames)]
            return {"visual": np.stack([media.square(img, spec.stored_size) for img in chosen])}
        text = media.read_text_file(path)
        ids, mask = media.tokenize(self.tokenizer, [text], spec.text_max_length)
        return {"text": ids[0], "text_mask": mask[0]}


def build_cache(found: FolderScan, spec: FeatureSpec, folder: Path, progress: bool = True) -> None:
    """Every split's features as .npy arrays plus meta.json (ids, labels, bad samples), built in a temporary
    folder and renamed into `folder`."""
    from tqdm import tqdm

    extractor = FeatureExtractor(spec)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    tmp.mkdir(parents=True)
    total = sum(len(found.samples[s]) for s in SPLITS)
    bar = tqdm(total=total, desc="computing features (once)", unit="sample", disable=not progress, file=sys.stderr)
    meta: dict[str, Any] = {"version": CACHE_VERSION, "spec": spec.__dict__, "classes": list(found.classes),
                            "generated_splits": list(found.generated), "splits": {}}
    try:
        for split in SPLITS:
            good, arrays, bad = [], {}, []
            for s in found.samples[split]:
                try:
                    features = extractor.sample(s)
                except SampleProblem as err:
                    bad.append({"id": s.sample_id, "label": s.label, "path": err.path, "problem": err.problem})
                else:
                    good.append([s.sample_id, found.classes.index(s.label)])
                    for key, value in features.items():
                        arrays.setdefault(key, []).append(value)
                bar.update(1)
            (tmp / split).mkdir()
            for key, values in arrays.items():
                np.save(tmp / split / f"{key}.npy", np.stack(values))
            meta["splits"][split] = {"samples": good, "bad": bad}
        (tmp / "meta.json").write_text(json.dumps(meta))
        (tmp / "split.json").write_text(json.dumps({split: [f"{s.label}/{s.sample_id}" for s in found.samples[split]]
                                                    for split in SPLITS}, indent=1))
        try:
            os.rename(tmp, folder)
        except OSError:  # another process finished the same cache first: keep theirs
            if not (folder / "meta.json").exists():
                raise
    finally:
        bar.close()
        shutil.rmtree(tmp, ignore_errors=True)


def cached_features(cfg: RunConfig, roots: DataRoots | None = None, progress: bool | None = None) -> Path:
    """The cache folder of this dataset and these settings, built if missing."""
    roots = roots or DataRoots.from_env()
    # Missing files are recorded with the undecodable ones, so that one message names every bad sample.
    found = layout.check(roots.dataset_dir(cfg.dataset), cfg.dataset.modalities_used and tuple(cfg.modalities),
                         on_bad_sample="skip")
    spec = FeatureSpec.of(cfg)
    folder = cache_dir() / "features" / cache_key(found, spec)
    if not (folder / "meta.json").exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        build_cache(found, spec, folder, progress=sys.stderr.isatty() if progress is None else progress)
    return folder


class CachedFolder(SeededAugment, Dataset):
    """One split of a folder dataset, read from its memory-mapped feature cache."""

    def __init__(self, folder: Path, split: str, modalities: tuple[str, ...], image_size: int, train: bool):
        meta = json.loads((folder / "meta.json").read_text())["splits"][split]
        self.labels = [label for _, label in meta["samples"]]
        self.ids = [sample_id for sample_id, _ in meta["samples"]]
        keys = [*modalities, *(["text_mask"] if "text" in modalities else [])]
        self.arrays = {k: np.load(folder / split / f"{k}.npy", mmap_mode="r") for k in keys} if self.labels else {}
        self.augment = frame_augment(image_size, train)
        self.dropped: list[BadSample] = []

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Sample:
        sample: Sample = {"label": self.labels[i]}
        for key, array in self.arrays.items():
            value = torch.from_numpy(np.array(array[i]))
            if key == "audio":
                sample[key] = value.float()[None]
            elif key == "visual":  # (frames, S, S, 3) uint8 -> (3, frames, H, W), each frame its own crop
                frames = value.permute(0, 3, 1, 2).float() / 255
                with self.sample_rng(i):
                    sample[key] = torch.stack([self.augment(f) for f in frames], dim=1)
            else:
                sample[key] = value
        return sample


def frame_augment(image_size: int, train: bool) -> transforms.Compose:
    """The reference's per-frame transforms on a [0, 1] tensor: random resized crop and flip in training."""
    normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    if train:
        return transforms.Compose([transforms.RandomResizedCrop(image_size, antialias=True),
                                   transforms.RandomHorizontalFlip(), normalize])
    return transforms.Compose([transforms.Resize((image_size, image_size), antialias=True), normalize])


class Folder:
    """A `DatasetSource` for the user's own folder of files."""

    def check(self, cfg: RunConfig) -> None:
        from amst_core.datafiles import check_dataset

        check_dataset(cfg)

    def classes(self, cfg: RunConfig) -> tuple[str, ...]:
        return layout.scan(DataRoots.from_env().dataset_dir(cfg.dataset)).classes

    def split(self, cfg: RunConfig, split: str, train: bool) -> CachedFolder:
        folder = cached_features(cfg)
        meta = json.loads((folder / "meta.json").read_text())
        bad = [BadSample(s, b["id"], b["path"], b["problem"]) for s in SPLITS for b in meta["splits"][s]["bad"]]
        if bad and cfg.dataset.on_bad_sample == "fail":
            total = sum(len(meta["splits"][s]["samples"]) for s in SPLITS) + len(bad)
            raise bad_samples_error(bad, total)
        data = CachedFolder(folder, split, tuple(cfg.modalities), cfg.model.image_size, train)
        if not len(data):
            raise ConfigError("dataset.on_bad_sample", f"every sample of the {split} split is bad")
        data.dropped = [b for b in bad if b.split == split]
        return data
