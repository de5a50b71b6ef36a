"""What a dataset's folder must hold, checked without torch: the API checks a run request against the real files
before it queues the run (a config that cannot work is a 422, not a failed run), and the worker checks again
before it trains.

Confinement: every path a request names (`dataset.root`, `dataset.split_files`) and every file a layout reads is
resolved, symlinks included, and must lie inside AMST_DATA_ROOT (or a folder of AMST_DATA_EXTRA_ROOTS, for an
operator whose datasets sit on other disks). Messages name files, line numbers and what was expected; they never
quote what a file holds, because a run's error is readable by whoever can read the run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from amst_core.config import ConfigError, data_root

if TYPE_CHECKING:
    from amst_core.config import DatasetConfig, RunConfig

SPLITS = ("train", "val", "test")


# ---------------------------------------------------------------- confinement


class DataRoots:
    """The folders a run may read data from: AMST_DATA_ROOT, plus AMST_DATA_EXTRA_ROOTS (os.pathsep-separated)."""

    def __init__(self, root: Path | str, extra: Sequence[Path | str] = ()):
        self.root = Path(root)
        self.allowed = tuple(Path(os.path.realpath(p)) for p in (root, *extra))

    @classmethod
    def from_env(cls) -> DataRoots:
        extra = [p for p in os.environ.get("AMST_DATA_EXTRA_ROOTS", "").split(os.pathsep) if p.strip()]
        return cls(data_root(), extra)

    def confine(self, path: Path, field: str, what: str) -> Path:
        """`path` with every symlink resolved; a ConfigError naming `field` if that lies outside the roots."""
        real = Path(os.path.realpath(path))
        if not any(real == root or real.is_relative_to(root) for root in self.allowed):
            raise ConfigError(field, f"{what} {self.shown(path)} resolves to a place outside AMST_DATA_ROOT "
                                     f"({self.root}); a run may read only the data under it")
        return real

    def shown(self, path: Path) -> str:
        """A path as the user named it: relative to AMST_DATA_ROOT where it is below it."""
        try:
            return str(Path(path).relative_to(self.root))
        except ValueError:
            return str(path)

    def dataset_dir(self, cfg: DatasetConfig) -> Path:
        folder = self.root / (cfg.root or cfg.name)
        return self.confine(folder, "dataset.root", "the dataset folder")


def plain_name(name: str) -> bool:
    """A sample id that names a file inside a media folder, never a path out of it."""
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..") and "\x00" not in name


# ---------------------------------------------------------------- the reference audio-visual layouts


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


def read_class_file(path: Path) -> tuple[str, ...]:
    """Class names sorted alphabetically: the reference indexes labels by the sorted stat-file lines."""
    names = [line.strip() for line in read_text(path, "dataset.split_files").splitlines()]
    return tuple(sorted(n for n in names if n))


def read_text(path: Path, field: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(field, f"{path} is not UTF-8 text") from None
    except OSError as err:
        raise ConfigError(field, f"{path} cannot be read ({err.strerror or type(err).__name__})") from None


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
    for lineno, line in enumerate(read_text(path, "dataset.split_files").splitlines(), start=1):
        if not line.strip():
            continue  # a trailing blank line is not a sample
        parsed = parse_line(line, layout)
        where = f"{path} line {lineno}"
        if parsed is None or not parsed[0]:
            raise ConfigError("dataset.split_files", f"{where}: expected '<id>{layout.separator} <label>'")
        clip_id, label = parsed
        if not plain_name(clip_id):
            raise ConfigError("dataset.split_files", f"{where}: the id is not a plain file name (no '/', '..')")
        if label not in index:
            raise ConfigError("dataset.split_files", f"{where}: the label is not one of the {len(classes)} "
                                                     f"classes of {layout.class_file}")
        items.append((clip_id, index[label]))
    last_label = dict(items)
    return [(clip_id, last_label[clip_id]) for clip_id, _ in items]


def check_fbank_shape(path: Path, shape: tuple[int, ...], mel_bins: int) -> None:
    """Frames may differ (they are padded or cut) but mel bins cannot: the encoder expects model.mel_bins."""
    if len(shape) != 2 or shape[1] != mel_bins:
        raise ConfigError("model.mel_bins",
                          f"{path} has shape {tuple(shape)}; expected (time, {mel_bins}) for model.mel_bins")


class ReferenceFiles:
    """The files of one reference audio-visual layout under a run's dataset folder, every path confined."""

    def __init__(self, layout: AVLayout, cfg: RunConfig, roots: DataRoots | None = None):
        self.layout, self.cfg = layout, cfg
        self.roots = roots or DataRoots.from_env()

    def root(self) -> Path:
        root = self.roots.dataset_dir(self.cfg.dataset)
        if not root.is_dir():
            layout = self.layout
            raise ConfigError(
                "dataset.root",
                f"{self.roots.root / (self.cfg.dataset.root or self.cfg.dataset.name)} does not exist "
                f"(AMST_DATA_ROOT={self.roots.root}); expected the {layout.name} preprocessed layout there: "
                f"{layout.class_file}, the split files, {layout.audio_dir}/<id>.npy and "
                f"{layout.frames_dir}/<id>/*.jpg",
            )
        return root

    def existing_file(self, name: str, what: str) -> Path:
        path = self.root() / name
        real = self.roots.confine(path, "dataset.split_files", what)
        if not real.is_file():
            raise ConfigError("dataset.split_files", f"{what} {path} does not exist")
        return real

    def split_path(self, split: str) -> Path:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        custom = self.cfg.dataset.split_files
        name = getattr(custom, split) if custom is not None else self.layout.default_split_file(split)
        return self.existing_file(name, f"the {split} split file")

    def classes(self) -> tuple[str, ...]:
        path = self.existing_file(self.layout.class_file, "the class file")
        names = read_class_file(path)
        if not names:
            raise ConfigError("dataset.split_files", f"the class file {path} lists no classes")
        return names

    def items(self, split: str) -> list[tuple[str, int]]:
        return read_split_file(self.split_path(split), self.layout, self.classes())

    def media(self, *parts: str) -> Path:
        """A file or folder a sample reads, confined (a symlink out of the data root is refused)."""
        return self.roots.confine(self.root().joinpath(*parts), "dataset.root", "the media file")

    def check(self) -> None:
        """Every text file parses and every clip of every split has its fbank file and frame folder."""
        root, classes = self.root(), self.classes()
        ids: dict[str, str] = {}  # id -> first split naming it, in file order
        for split in SPLITS:
            path = self.split_path(split)
            items = read_split_file(path, self.layout, classes)
            if not items:
                raise ConfigError("dataset.split_files", f"the {split} split file {path} lists no samples")
            for clip_id, _ in items:
                ids.setdefault(clip_id, split)
        # One directory listing per media folder instead of two stat calls per clip: fast on network storage. Only
        # the run's modalities: a unimodal run needs no other file.
        used = self.cfg.modalities
        have_audio = self.listing(self.layout.audio_dir) if "audio" in used else None
        have_frames = self.listing(self.layout.frames_dir) if "visual" in used else None
        gaps = {clip_id: self.gaps(clip_id, have_audio, have_frames) for clip_id in ids}
        missing = [clip_id for clip_id, lacks in gaps.items() if lacks]
        if missing:
            first = missing[0]
            raise ConfigError(
                "dataset.root",
                f"{len(missing)} of {len(ids)} clips lack their fbank file or frame folder under {root}; "
                f"first: {first!r} ({ids[first]} split) has no {' and no '.join(gaps[first])}",
            )
        if have_audio is not None:  # memory-mapped: reads only the header, so a wrong mel_bins fails now
            fbank = self.media(self.layout.audio_dir, f"{next(iter(ids))}.npy")
            check_fbank_shape(fbank, npy_shape(fbank), self.cfg.model.mel_bins)

    def gaps(self, clip_id: str, have_audio: set[str] | None, have_frames: set[str] | None) -> list[str]:
        """The media paths (relative to the root) one clip lacks (None: a modality the run does not read)."""
        lacks = []
        if have_audio is not None and f"{clip_id}.npy" not in have_audio:
            lacks.append(f"{self.layout.audio_dir}/{clip_id}.npy")
        if have_frames is not None and clip_id not in have_frames:
            lacks.append(f"{self.layout.frames_dir}/{clip_id}/")
        return lacks

    def listing(self, name: str) -> set[str]:
        """Names in one media folder; an entry that is a symlink must resolve inside the data root."""
        folder = self.media(name)
        try:
            with os.scandir(folder) as entries:
                found = list(entries)
        except (FileNotFoundError, NotADirectoryError):
            raise ConfigError("dataset.root", f"{self.root() / name} does not exist; every clip needs a file or "
                                              "folder there") from None
        for entry in found:
            if entry.is_symlink():  # d_type from the listing: no extra system call for a regular entry
                self.roots.confine(Path(entry.path), "dataset.root", "the media file")
        return {entry.name for entry in found}


def npy_shape(path: Path) -> tuple[int, ...]:
    try:
        return tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape)
    except (OSError, ValueError) as err:
        raise ConfigError("dataset.root", f"{path} is not a readable .npy array ({type(err).__name__})") from None


# ---------------------------------------------------------------- avdigits

AVDIGITS_FILES = {s: f"{s}.npz" for s in SPLITS}
AVDIGITS_MFCC = 13  # coefficients per frame in the FSDD recordings


def avdigits_dir(cfg: RunConfig, roots: DataRoots | None = None) -> Path:
    roots = roots or DataRoots.from_env()
    root = roots.dataset_dir(cfg.dataset)
    for name in AVDIGITS_FILES.values():
        roots.confine(root / name, "dataset.root", "the avdigits file")
    return root


def check_avdigits(cfg: RunConfig, roots: DataRoots) -> None:
    root = avdigits_dir(cfg, roots)
    missing = [f for f in AVDIGITS_FILES.values() if not (root / f).is_file()]
    if missing:
        raise ConfigError("dataset.root", f"{roots.root / (cfg.dataset.root or cfg.dataset.name)} has no avdigits "
                                          f"data (missing {', '.join(missing)}); run `amst prepare avdigits` first")
    if cfg.model.mel_bins != AVDIGITS_MFCC:
        raise ConfigError("model.mel_bins", f"avdigits audio has {AVDIGITS_MFCC} MFCC coefficients, not "
                                            f"{cfg.model.mel_bins}; leave model.mel_bins out or set it to 13")


# ---------------------------------------------------------------- the registry

Check = Callable[["RunConfig", DataRoots], None]
CHECKS: dict[str, Check] = {
    "avdigits": check_avdigits,
    "synthetic": lambda cfg, roots: None,  # generated: nothing to find on disk
    "cremad": lambda cfg, roots: ReferenceFiles(CREMAD_LAYOUT, cfg, roots).check(),
    "ave": lambda cfg, roots: ReferenceFiles(AVE_LAYOUT, cfg, roots).check(),
}


def check_dataset(cfg: RunConfig, roots: DataRoots | None = None) -> None:
    """Raise ConfigError (naming the field) unless the run's data are there, readable, confined and fit the
    config's shapes."""
    CHECKS[cfg.dataset.name](cfg, roots or DataRoots.from_env())
