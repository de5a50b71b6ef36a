"""The user's own data, one file per sample and modality (torch-free: the API checks a request with it):

    <root>/<split>/<label>/<id>.<ext>

  audio    .wav .flac .mp3 .ogg
  visual   .jpg .jpeg .png, or a folder <id>/ of frames (name order)
  video    .mp4 .avi .mkv .webm .flv: its soundtrack (audio) and its frames (visual), unless the sample has its own
           audio file or images
  text     .txt (UTF-8)

A modality belongs to the dataset when any sample has its file; a sample without it, or with a file over the size
limit (AMST_MAX_SAMPLE_MB, AMST_MAX_TEXT_SAMPLE_MB: known from the listing, never read), is a bad sample (named
before training, or dropped with `dataset.on_bad_sample: skip`). Every entry (split and label folders, files, frame
folders and their frames) is confined to the data root as it is listed (`amst_core.datafiles`): a link out of it is
refused by its name inside the root. Classes are the sorted label folder names of train/.
Audio is resampled to one rate, `dataset.audio_rate` (default: the most common rate among up to RATE_SAMPLE audio
files spread over the sorted samples, read from their headers; ties go to the higher rate), so that every fbank's
mel bins span the same frequencies.

Without val/ (or test/), a stratified share of train/ becomes val (and test), drawn with a fixed seed from the
sorted ids: the same files always give the same split (the feature cache writes it down in split.json).
"""

from __future__ import annotations

import os
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from amst_core import vocab
from amst_core.config import ConfigError
from amst_core.datafiles import DataRoots
from amst_core.limits import oversized
from amst_core.vocab import EVAL_SPLITS, SPLITS

AUDIO = (".wav", ".flac", ".mp3", ".ogg")
IMAGE = (".jpg", ".jpeg", ".png")
VIDEO = (".mp4", ".avi", ".mkv", ".webm", ".flv")
TEXT = (".txt",)
EXPECTED = {vocab.AUDIO: "a .wav, .flac, .mp3 or .ogg file, or a video", vocab.TEXT: "a .txt file",
            vocab.VISUAL: "a .jpg, .jpeg or .png file, a folder of frames, or a video"}
FIELD = "dataset.root"
RATE_SAMPLE = 100  # audio headers read to find a folder's most common rate (an API request reads them)
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
    too_large: dict[Path, str] = field(default_factory=dict)  # file -> why it may not be read

    def missing(self, modalities: tuple[str, ...]) -> list[tuple[FolderSample, str, str]]:
        """(sample, path, problem) for each sample that lacks one of `modalities` or whose file of one is over
        the size limit."""
        return [problem for split in SPLITS for s in self.samples[split] for m in modalities
                for problem in self.problems(s, m)]

    def problems(self, s: FolderSample, modality: str) -> list[tuple[FolderSample, str, str]]:
        path = s.files.get(modality)
        if path is None:
            return [(s, f"{self.root / s.split / s.label / s.sample_id}.*", f"has no {modality}: {EXPECTED[modality]}")]
        return [(s, str(big), why) for big, why in self.too_large.items() if big == path or big.parent == path]

    def sizes(self) -> dict[str, int]:
        return {split: len(items) for split, items in self.samples.items()}


def modalities_of(entry: os.DirEntry) -> tuple[str, ...]:
    suffix = Path(entry.name).suffix.lower()
    if entry.is_dir():
        return (vocab.VISUAL,)
    if suffix in AUDIO:
        return (vocab.AUDIO,)
    if suffix in IMAGE:
        return (vocab.VISUAL,)
    if suffix in VIDEO:
        return (vocab.AUDIO, vocab.VISUAL)
    if suffix in TEXT:
        return (vocab.TEXT,)
    return ()


def scan_label(folder: Path, split: str, label: str, roots: DataRoots,
               too_large: dict[Path, str]) -> list[FolderSample]:
    """The samples of one label folder: entries grouped by id (the name without its extension). A file of the
    modality itself wins over a video that also carries it. Files over the size limit go into `too_large`."""
    by_id: dict[str, FolderSample] = {}
    for entry in roots.listing(folder, FIELD, "the entry"):
        modalities = modalities_of(entry)
        if not modalities:
            continue
        sample_id = entry.name if entry.is_dir() else Path(entry.name).stem
        sample = by_id.setdefault(sample_id, FolderSample(split, label, sample_id))
        is_video = Path(entry.name).suffix.lower() in VIDEO
        for modality in modalities:
            if modality not in sample.files or not is_video:
                sample.files[modality] = Path(entry.path)
        files = [f for f in roots.listing(Path(entry.path), FIELD, "the frame") if f.is_file()] if entry.is_dir() \
            else [entry]
        for file in files:
            problem = oversized(file.name, file.stat().st_size)
            if problem:
                too_large[Path(file.path)] = problem
    return list(by_id.values())


def label_dirs(split_dir: Path, roots: DataRoots) -> list[str]:
    return [e.name for e in roots.listing(split_dir, FIELD, "the label folder") if e.is_dir()]


def split_dir(root: Path, split: str, roots: DataRoots) -> Path | None:
    """<root>/<split>, when it is a folder (a link to one inside the data root counts)."""
    path = root / split
    if not os.path.lexists(path):
        return None
    roots.confine(path, FIELD, "the split folder")
    return path if path.is_dir() else None


def scan(root: Path, roots: DataRoots | None = None) -> FolderScan:
    """The samples under `root` (a confined dataset folder), every entry confined as it is listed."""
    roots = roots or DataRoots.from_env()
    train = split_dir(root, "train", roots)
    if train is None:
        raise ConfigError(FIELD, f"{root} has no train/ folder; the folder layout is "
                                 "<root>/<split>/<label>/<id>.<ext> (Doc/datasets.md)")
    classes = tuple(label_dirs(train, roots))
    if len(classes) < 2:
        raise ConfigError(FIELD, f"{train} has {len(classes)} label folder(s); a classifier needs at least 2")
    samples: dict[str, list[FolderSample]] = {}
    too_large: dict[Path, str] = {}
    for split in SPLITS:
        folder = split_dir(root, split, roots)
        if folder is None:
            continue
        labels = label_dirs(folder, roots)
        unknown = sorted(set(labels) - set(classes))
        if unknown:
            raise ConfigError(FIELD, f"{folder} has label folder {unknown[0]!r}, which train/ does not have; every "
                                     "class must have training samples")
        samples[split] = [s for label in labels for s in scan_label(folder / label, split, label, roots, too_large)]
    if not samples["train"]:
        raise ConfigError(FIELD, f"{train} holds no sample files (audio, image, video or text)")
    generated = tuple(s for s in EVAL_SPLITS if s not in samples)
    if generated:
        samples = held_out(samples, generated)
    modalities = tuple(sorted({m for items in samples.values() for s in items for m in s.files}))
    return FolderScan(root, classes, modalities, samples, generated, too_large)


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


def check(root: Path, modalities: tuple[str, ...] | None, on_bad_sample: str,
          roots: DataRoots | None = None) -> FolderScan:
    """The scan, or a ConfigError naming what makes the folder unusable (missing or too large files when they
    fail the run)."""
    found = scan(root, roots)
    wanted = modalities or found.modalities
    absent = sorted(set(wanted) - set(found.modalities))
    if absent:
        raise ConfigError("dataset.modalities_used", f"{root} has no {absent[0]} files ({EXPECTED[absent[0]]})")
    missing = found.missing(tuple(wanted))
    if missing and on_bad_sample == "fail":
        total = sum(found.sizes().values())
        lines = [f"{len({s.key for s, _, _ in missing})} of {total} samples lack a usable file; the first:",
                 *(f"  {s.sample_id!r} ({s.split} split): {path} {problem}" for s, path, problem in missing[:5]),
                 "add them, or set dataset.on_bad_sample: skip to train on the rest"]
        raise ConfigError("dataset.on_bad_sample", "\n".join(lines))
    for split, items in found.samples.items():
        if not items:
            raise ConfigError("dataset.root", f"the {split} split of {root} holds no samples")
    return found


def common_rate(found: FolderScan, roots: DataRoots) -> int | None:
    """The most common sample rate of the folder's audio (files and video soundtracks), from the headers of up to
    RATE_SAMPLE of them evenly spread over the sorted samples; None when none can be read (those samples are
    named as bad when they are decoded)."""
    sources = sorted({s.files[vocab.AUDIO] for split in SPLITS for s in found.samples[split] if vocab.AUDIO in s.files})
    step = max(1, len(sources) // RATE_SAMPLE)
    rates = Counter(rate for path in sources[::step][:RATE_SAMPLE] if (rate := header_rate(path, roots)))
    return max(rates, key=lambda rate: (rates[rate], rate)) if rates else None


def header_rate(path: Path, roots: DataRoots) -> int | None:
    """An audio file's or a video's first audio stream's sample rate, from its header (the file is confined and
    size-checked first, like every file a run opens)."""
    try:
        real = roots.sample_file(path)
        if path.suffix.lower() in VIDEO:
            import av

            with av.open(str(real)) as container:
                return int(container.streams.audio[0].rate) if container.streams.audio else None
        import soundfile

        return int(soundfile.info(str(real)).samplerate)
    except Exception:  # unreadable, refused, or no PyAV: the sample is named as bad when it is decoded
        return None
