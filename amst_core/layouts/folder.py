"""The user's own data, one file per sample and modality (torch-free: the API checks a request with it):

    <root>/<split>/<label>/<id>.<ext>

  audio    .wav .flac .mp3 .ogg
  visual   .jpg .jpeg .png, or a folder <id>/ of frames (name order)
  video    .mp4 .avi .mkv .webm .flv: its soundtrack (audio) and its frames (visual), unless the sample has its own
           audio file or images
  text     .txt (UTF-8)

A modality belongs to the dataset when any sample has its file; a sample without it is a bad sample (named before
training, or dropped with `dataset.on_bad_sample: skip`). Classes are the sorted label folder names of train/.
Without val/ (or test/), a stratified share of train/ becomes val (and test), drawn with a fixed seed from the
sorted ids: the same files always give the same split (the feature cache writes it down in split.json).
"""

from __future__ import annotations

import os
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from amst_core.config import ConfigError

SPLITS = ("train", "val", "test")
AUDIO = (".wav", ".flac", ".mp3", ".ogg")
IMAGE = (".jpg", ".jpeg", ".png")
VIDEO = (".mp4", ".avi", ".mkv", ".webm", ".flv")
TEXT = (".txt",)
EXPECTED = {"audio": "a .wav, .flac, .mp3 or .ogg file, or a video", "text": "a .txt file",
            "visual": "a .jpg, .jpeg or .png file, a folder of frames, or a video"}
SPLIT_SEED = 0
HELD_OUT = 0.1  # share of each class of train/ that becomes val (and test) when those folders are missing


@dataclass
class FolderSample:
    split: str
    label: str
    sample_id: str
    files: dict[str, Path] = field(default_factory=dict)  # modality -> its file (or frame folder)

    @property
    def key(self) -> str:
        return f"{self.split}/{self.label}/{self.sample_id}"


@dataclass
class FolderScan:
    root: Path
    classes: tuple[str, ...]
    modalities: tuple[str, ...]
    samples: dict[str, list[FolderSample]]  # split -> samples, sorted by (label, id)
    generated: tuple[str, ...]  # splits drawn from train/ (no folder of their own)

    def missing(self, modalities: tuple[str, ...]) -> list[tuple[FolderSample, str, str]]:
        """(sample, expected path, problem) for each sample that lacks one of `modalities`."""
        return [(s, f"{self.root / s.split / s.label / s.sample_id}.*", f"has no {m}: {EXPECTED[m]}")
                for split in SPLITS for s in self.samples[split] for m in modalities if m not in s.files]

    def sizes(self) -> dict[str, int]:
        return {split: len(items) for split, items in self.samples.items()}


def modalities_of(entry: os.DirEntry) -> tuple[str, ...]:
    suffix = Path(entry.name).suffix.lower()
    if entry.is_dir():
        return ("visual",)
    if suffix in AUDIO:
        return ("audio",)
    if suffix in IMAGE:
        return ("visual",)
    if suffix in VIDEO:
        return ("audio", "visual")
    if suffix in TEXT:
        return ("text",)
    return ()


def scan_label(folder: Path, split: str, label: str) -> list[FolderSample]:
    """The samples of one label folder: entries grouped by id (the name without its extension). A file of the
    modality itself wins over a video that also carries it."""
    by_id: dict[str, FolderSample] = {}
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            sample_id = entry.name if entry.is_dir() else Path(entry.name).stem
            sample = by_id.setdefault(sample_id, FolderSample(split, label, sample_id))
            is_video = Path(entry.name).suffix.lower() in VIDEO
            for modality in modalities_of(entry):
                if modality not in sample.files or not is_video:
                    sample.files[modality] = Path(entry.path)
    return [s for s in by_id.values() if s.files]


def label_dirs(split_dir: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))


def scan(root: Path) -> FolderScan:
    if not (root / "train").is_dir():
        raise ConfigError("dataset.root", f"{root} has no train/ folder; the folder layout is "
                                          "<root>/<split>/<label>/<id>.<ext> (Doc/datasets.md)")
    classes = tuple(label_dirs(root / "train"))
    if len(classes) < 2:
        raise ConfigError("dataset.root", f"{root / 'train'} has {len(classes)} label folder(s); a classifier needs "
                                          "at least 2")
    samples: dict[str, list[FolderSample]] = {}
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            continue
        unknown = sorted(set(label_dirs(split_dir)) - set(classes))
        if unknown:
            raise ConfigError("dataset.root", f"{split_dir} has label folder {unknown[0]!r}, which train/ does not "
                                              "have; every class must have training samples")
        samples[split] = [s for label in label_dirs(split_dir) for s in scan_label(split_dir / label, split, label)]
    if not samples["train"]:
        raise ConfigError("dataset.root", f"{root / 'train'} holds no sample files (audio, image, video or text)")
    generated = tuple(s for s in ("val", "test") if s not in samples)
    if generated:
        samples = held_out(samples, generated)
    modalities = tuple(sorted({m for items in samples.values() for s in items for m in s.files}))
    return FolderScan(root, classes, modalities, samples, generated)


def held_out(samples: dict[str, list[FolderSample]], missing: tuple[str, ...]) -> dict[str, list[FolderSample]]:
    """Stratified: per class, the sorted train ids shuffled with a fixed seed; HELD_OUT of them (at least one
    where the class has more than one per split) go to each missing split."""
    by_class: dict[str, list[FolderSample]] = defaultdict(list)
    for s in samples["train"]:
        by_class[s.label].append(s)
    out = {split: list(items) for split, items in samples.items()}
    out["train"] = []
    for split in missing:
        out[split] = []
    rng = random.Random(SPLIT_SEED)
    for label in sorted(by_class):
        items = sorted(by_class[label], key=lambda s: s.sample_id)
        rng.shuffle(items)
        take = max(1, round(HELD_OUT * len(items))) if len(items) > len(missing) else 0
        for split in missing:
            out[split].extend(FolderSample(split, s.label, s.sample_id, s.files) for s in items[:take])
            items = items[take:]
        out["train"].extend(items)
    for split in out:
        out[split].sort(key=lambda s: (s.label, s.sample_id))
    return out


def check(root: Path, modalities: tuple[str, ...] | None, on_bad_sample: str) -> FolderScan:
    """The scan, or a ConfigError naming what makes the folder unusable (missing files when they fail the run)."""
    found = scan(root)
    wanted = modalities or found.modalities
    absent = sorted(set(wanted) - set(found.modalities))
    if absent:
        raise ConfigError("dataset.modalities_used", f"{root} has no {absent[0]} files ({EXPECTED[absent[0]]})")
    missing = found.missing(tuple(wanted))
    if missing and on_bad_sample == "fail":
        total = sum(found.sizes().values())
        lines = [f"{len(missing)} of {total} samples lack a file; the first:",
                 *(f"  {s.sample_id!r} ({s.split} split): {path} {problem}" for s, path, problem in missing[:5]),
                 "add them, or set dataset.on_bad_sample: skip to train on the rest"]
        raise ConfigError("dataset.on_bad_sample", "\n".join(lines))
    for split, items in found.samples.items():
        if not items:
            raise ConfigError("dataset.root", f"the {split} split of {root} holds no samples")
    return found
