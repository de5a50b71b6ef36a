"""What a dataset's folder must hold, checked without torch: the API checks a run request against the real files
before it queues the run (a config that cannot work is a 422, not a failed run), and the worker checks again
before it trains.

Confinement, one rule: every path a run reads (`dataset.root`, split and class files, each media file, frame
folder and frame, every entry of a folder dataset, the text model's folder and each file in it) goes through
`DataRoots.confine`: resolved, symlinks included, it must lie inside AMST_DATA_ROOT (or a folder of
AMST_DATA_EXTRA_ROOTS, for an operator whose datasets sit on other disks). It is applied twice: at submission,
where the files are listed anyway (a directory listing says which entries are links, so only those cost a
resolve), and again where the worker opens each file (a link may be swapped in after submission). A refusal names
the field and the entry as it is named inside the data root, never the place it leads to nor what lies there, and
reads the same whether that place exists or not. The sample cache's entries are named by a hash under AMST_CACHE,
never by a request. `any_data_path()` lifts the rule for the CLI on the user's own machine.

`model.text_model` is a path when it looks like one (absolute, starting with `.` or `~`, or not a hub name) or
names something under AMST_DATA_ROOT, and is then confined like data; otherwise it is a Hugging Face hub name,
accepted when it is in the local Hugging Face cache or when the service may download (AMST_ALLOW_MODEL_DOWNLOADS,
and not offline). Messages name files, line numbers and what was expected; they never quote what a file holds,
because a run's error is readable by whoever can read the run.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from amst_core.config import ConfigError, data_root
from amst_core.datasets.base import REFERENCE_SPLIT
from amst_core.layouts import SPLITS, Layout, Media
from amst_core.limits import oversized
from amst_core.vocab import TRAIN

if TYPE_CHECKING:
    from amst_core.config import DatasetConfig, RunConfig
    from amst_core.datasets import DatasetSpec
    from amst_core.layouts.schemes import SplitCounts

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- confinement


_confined = True


@contextmanager
def any_data_path() -> Iterator[None]:
    """Inside, a dataset may lie anywhere (`amst train` on the user's own machine: an absolute dataset.root
    works). The service never uses this: its runs read only under AMST_DATA_ROOT."""
    global _confined
    before, _confined = _confined, False
    try:
        yield
    finally:
        _confined = before


def paths_confined() -> bool:
    """Whether the paths a run names are held to the service's folders (false inside `any_data_path`)."""
    return _confined


class PathRefused(ConfigError):
    """A path the confinement rule (or the size limit) refuses; `problem` says why without naming it, for a bad
    sample's line."""

    def __init__(self, field: str, what: str, shown: str, problem: str):
        super().__init__(field, f"{what} {shown} {problem}")
        self.problem = problem


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
        """`path` with every symlink resolved; a ConfigError naming `field` if that lies outside the roots (the
        same message whether or not the place exists)."""
        real = Path(os.path.realpath(path))
        if _confined and not any(real == root or real.is_relative_to(root) for root in self.allowed):
            raise PathRefused(field, what, self.shown(path), f"resolves to a place outside AMST_DATA_ROOT "
                                                             f"({self.root}); a run may read only the data under it")
        return real

    def confine_entry(self, entry: os.DirEntry, field: str, what: str) -> None:
        """An entry listed in a confined folder: only a symlink can lead out of it, and the listing says which
        entries are links (no system call for a regular one)."""
        if entry.is_symlink():
            self.confine(Path(entry.path), field, what)

    def listing(self, folder: Path, field: str, what: str) -> list[os.DirEntry]:
        """The entries of a confined folder, sorted by name, every link among them confined; hidden ones (a
        leading dot) are left out, as nothing reads them."""
        with os.scandir(folder) as entries:
            found = sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)
        for entry in found:
            self.confine_entry(entry, field, what)
        return found

    def sample_file(self, path: Path, field: str = "dataset.root", what: str = "the file") -> Path:
        """A file a sample reads, checked just before it is read: confined, and within the size limit (a stat,
        never a read)."""
        real = self.confine(path, field, what)
        problem = oversized(path, real.stat().st_size)
        if problem:
            raise PathRefused(field, what, self.shown(path), problem)
        return real

    def shown(self, path: Path) -> str:
        """A path as the user named it: relative to AMST_DATA_ROOT where it is below it."""
        for root in (self.root, self.allowed[0]):
            try:
                return str(Path(path).relative_to(root))
            except ValueError:
                continue
        return str(path)

    def dataset_dir(self, cfg: DatasetConfig) -> Path:
        folder = self.root / (cfg.root or cfg.name)
        if any(len(part.encode()) > 255 for part in folder.parts):
            raise ConfigError("dataset.root", "a folder name in it is longer than 255 bytes")
        return self.confine(folder, "dataset.root", "the dataset folder")


def plain_name(name: str) -> bool:
    """A sample id that names a file inside a media folder, never a path out of it."""
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..") and "\x00" not in name


# ---------------------------------------------------------------- the text model

TEXT_MODEL = "model.text_model"
HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")  # roberta-base, FacebookAI/roberta-base


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def offline() -> bool:
    return env_flag("HF_HUB_OFFLINE") or env_flag("TRANSFORMERS_OFFLINE")


def model_downloads_allowed() -> bool:
    """The service downloads a hub model only where the operator says so (AMST_ALLOW_MODEL_DOWNLOADS); the CLI on
    the user's own machine does, as `transformers` would. Never while offline."""
    return not offline() and (not _confined or env_flag("AMST_ALLOW_MODEL_DOWNLOADS"))


def looks_like_path(name: str) -> bool:
    return name.startswith((".", "~", "/")) or "\\" in name or ".." in name or not HUB_NAME.fullmatch(name)


def text_model_source(name: str, roots: DataRoots) -> Path | str:
    """What `model.text_model` names: a local folder (returned resolved, confined with every file in it), or a hub
    name (returned as it is). A relative path is under AMST_DATA_ROOT (the CLI also tries the working directory);
    a hub-like name is a path when something of that name is there."""
    path = Path(name).expanduser()
    candidates = [path] if path.is_absolute() else [roots.root / path, *([] if _confined else [path])]
    if not looks_like_path(name) and not any(os.path.lexists(c) for c in candidates):
        return name
    chosen = next((c for c in candidates if os.path.lexists(c)), candidates[0])
    real = roots.confine(chosen, TEXT_MODEL, "the text model")
    if not real.exists():
        raise ConfigError(TEXT_MODEL, f"the text model folder {roots.shown(chosen)} does not exist")
    if not real.is_dir():
        raise ConfigError(TEXT_MODEL, f"{roots.shown(chosen)} is a file; model.text_model names a folder written by "
                                      "save_pretrained (config.json, the weights and the tokenizer's files)")
    for folder, dirs, files in os.walk(real):  # links are not followed: each is confined instead
        for entry in (*dirs, *files):
            if os.path.islink(os.path.join(folder, entry)):
                roots.confine(chosen / Path(folder).relative_to(real) / entry, TEXT_MODEL, "the text model's file")
    return real


def in_hub_cache(name: str) -> bool:
    """The hub model's config is in the local Hugging Face cache (a lookup on disk, no network)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except (ValueError, OSError):  # HFValidationError is a ValueError
        return False


def hub_model_unavailable(name: str) -> ConfigError:
    why = "this machine is offline (HF_HUB_OFFLINE)" if offline() else \
        "this server downloads no model (AMST_ALLOW_MODEL_DOWNLOADS is off)"
    return ConfigError(TEXT_MODEL, f"{name!r} is not a folder under AMST_DATA_ROOT and not in the local Hugging "
                                   f"Face cache, and {why}; save it with save_pretrained into a folder under "
                                   "AMST_DATA_ROOT and set model.text_model to that folder, or download it once "
                                   f"into this machine's Hugging Face cache (`hf download {name}`)")


def check_text_model(name: str, roots: DataRoots) -> None:
    """A run's text model can be read: a confined local folder, or a hub name that is cached or may be
    downloaded."""
    if isinstance(text_model_source(name, roots), str) and not model_downloads_allowed() and not in_hub_cache(name):
        raise hub_model_unavailable(name)


# ---------------------------------------------------------------- the reference layouts


def line_format(layout: Layout) -> str:
    return f"'{layout.line_example}'" if layout.line_example else f"'<id>{layout.separator}<label>'"


def read_class_file(path: Path) -> tuple[str, ...]:
    """Class names sorted alphabetically: the reference indexes labels by the sorted stat-file lines."""
    names = [line.strip() for line in read_text(path, "dataset.class_file").splitlines()]
    return tuple(sorted(n for n in names if n))


def read_text(path: Path, field: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(field, f"{path} is not UTF-8 text") from None
    except OSError as err:
        raise ConfigError(field, f"{path} cannot be read ({err.strerror or type(err).__name__})") from None


def read_split_file(path: Path, layout: Layout, classes: tuple[str, ...],
                    class_file: str | None = None) -> list[tuple[str, int]]:
    """(id, class index) per line, in file order. Duplicate ids are kept (the reference keeps them), and every
    copy gets the label of the id's LAST line, as the reference's id -> label dictionary does (AVE has 27 train
    ids listed twice with different labels, amst_method.md 7.8)."""
    return [(sample_id, label) for sample_id, label, _ in read_split_lines(path, layout, classes, class_file)]


def read_split_lines(path: Path, layout: Layout, classes: tuple[str, ...],
                     class_file: str | None = None) -> list[tuple[str, int, str]]:
    """(id, class index, text) per line (text: what follows '###', empty where the layout has none)."""
    index = {name: i for i, name in enumerate(classes)}
    items: list[tuple[str, int, str]] = []
    for lineno, line in enumerate(read_text(path, "dataset.split_files").splitlines(), start=1):
        if not line.strip():
            continue  # a trailing blank line is not a sample
        parsed = layout.parse_line(line)
        where = f"{path} line {lineno}"
        if parsed is None or not parsed[0]:
            raise ConfigError("dataset.split_files", f"{where}: expected a line like {line_format(layout)}")
        sample_id, label, text = parsed
        if not plain_name(sample_id):
            raise ConfigError("dataset.split_files", f"{where}: the id is not a plain file name (no '/', '..')")
        if label not in index:
            raise ConfigError("dataset.split_files", f"{where}: the label is not one of the {len(classes)} "
                                                     f"classes of {class_file or layout.class_file}")
        items.append((sample_id, index[label], text))
    last_label = {sample_id: label for sample_id, label, _ in items}
    return [(sample_id, last_label[sample_id], text) for sample_id, _, text in items]


def check_fbank_shape(path: Path, shape: tuple[int, ...], mel_bins: int) -> None:
    """Frames may differ (they are padded or cut) but mel bins cannot: the encoder expects model.mel_bins."""
    if len(shape) != 2 or shape[1] != mel_bins:
        raise ConfigError("model.mel_bins",
                          f"{path} has shape {tuple(shape)}; expected (time, {mel_bins}) for model.mel_bins")


@dataclass(frozen=True)
class BadSample:
    """A sample whose media are missing or unreadable: reported by id and path before training starts."""

    split: str
    sample_id: str
    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.sample_id!r} ({self.split} split): {self.path} {self.problem}"


def bad_samples_error(bad: Sequence[BadSample], total: int, shown: int = 5) -> ConfigError:
    lines = [f"{len(bad)} of {total} samples cannot be read; the first:", *(f"  {b}" for b in bad[:shown]),
             "fix or remove them, or set dataset.on_bad_sample: skip to train on the rest"]
    return ConfigError("dataset.on_bad_sample", "\n".join(lines))


class ReferenceFiles:
    """The files of one reference layout under a run's dataset folder, every path confined."""

    def __init__(self, layout: Layout, cfg: RunConfig, roots: DataRoots | None = None):
        self.layout, self.cfg = layout, cfg
        self.roots = roots or DataRoots.from_env()

    @property
    def used_media(self) -> list[tuple[str, Media]]:
        """The media of the run's modalities only (a unimodal run reads no other file)."""
        return [(m, media) for m, media in self.layout.media if m in self.cfg.modalities]

    def root(self) -> Path:
        root = self.roots.dataset_dir(self.cfg.dataset)
        if not root.is_dir():
            media = ", ".join(media.pattern() for _, media in self.layout.media)
            raise ConfigError(
                "dataset.root",
                f"{self.roots.root / (self.cfg.dataset.root or self.cfg.dataset.name)} does not exist "
                f"(AMST_DATA_ROOT={self.roots.root}); expected the {self.layout.name} preprocessed layout there: "
                f"{self.class_file_name}, the split files and {media} (amst preprocess {self.layout.name} RAW_DIR "
                "writes it)",
            )
        return root

    @property
    def class_file_name(self) -> str:
        return self.cfg.dataset.class_file or self.layout.class_file

    def existing_file(self, name: str, what: str, field: str = "dataset.split_files") -> Path:
        path = self.root() / name
        real = self.roots.confine(path, field, what)
        if not real.is_file():
            raise ConfigError(field, f"{what} {path} does not exist")
        return real

    def split_path(self, split: str) -> Path:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        custom = self.cfg.dataset.split_files
        name = getattr(custom, split) if custom is not None else self.layout.default_split_file(split)
        return self.existing_file(name, f"the {split} split file")

    def classes(self) -> tuple[str, ...]:
        path = self.existing_file(self.class_file_name, "the class file", "dataset.class_file")
        names = read_class_file(path)
        if not names:
            raise ConfigError("dataset.class_file", f"the class file {path} lists no classes")
        return names

    def items(self, split: str) -> list[tuple[str, int]]:
        """The split's (id, class index): its split file's lines, or its part of a drawn split
        (`dataset.split_scheme`)."""
        if self.cfg.dataset.split_scheme in (None, REFERENCE_SPLIT):
            return self.listed(split)
        return self.drawn[split]

    def listed(self, split: str) -> list[tuple[str, int]]:
        return read_split_file(self.split_path(split), self.layout, self.classes(), self.class_file_name)

    @cached_property
    def drawn(self) -> dict[str, list[tuple[str, int]]]:
        """Every split of a drawn split scheme, drawn once over the samples the split files list."""
        from amst_core.layouts.schemes import draw

        return draw(self.cfg.dataset, self.layout, {split: self.listed(split) for split in SPLITS})

    def media(self, *parts: str) -> Path:
        """A file or folder a sample reads, confined (a symlink out of the data root is refused)."""
        return self.roots.confine(self.root().joinpath(*parts), "dataset.root", "the media file")

    def check(self) -> None:
        """Every text file parses, and (unless bad samples are to be skipped) every sample of every split has its
        media entries. Cheap: one directory listing per media folder, so the API can afford it per request."""
        root, classes = self.root(), self.classes()
        ids: dict[str, str] = {}  # id -> first split naming it, in file order
        for split in SPLITS:
            path = self.split_path(split)
            items = read_split_file(path, self.layout, classes, self.class_file_name)
            if not items:
                raise ConfigError("dataset.split_files", f"the {split} split file {path} lists no samples")
            for sample_id, _ in items:
                ids.setdefault(sample_id, split)
        if self.cfg.dataset.split_scheme not in (None, REFERENCE_SPLIT):
            self.items(TRAIN)  # a split that cannot be drawn from these files says why now
        listings = {m: self.listing(media.folder) for m, media in self.used_media}
        if self.cfg.dataset.on_bad_sample == "skip":
            return  # the loaders drop (and count) what is missing
        gaps = {sample_id: self.gaps(sample_id, listings) for sample_id in ids}
        missing = [sample_id for sample_id, lacks in gaps.items() if lacks]
        if missing:
            first = missing[0]
            raise ConfigError(
                "dataset.root",
                f"{len(missing)} of {len(ids)} samples lack media under {root}; first: {first!r} "
                f"({ids[first]} split) has no {' and no '.join(gaps[first])} (dataset.on_bad_sample: skip trains on "
                "the rest)",
            )
        for _, media in self.used_media:  # memory-mapped: reads only the header, so a wrong mel_bins fails now
            if media.kind == "fbank":
                fbank = self.media(media.folder, media.entry(next(iter(ids))))
                check_fbank_shape(fbank, npy_shape(fbank), self.cfg.model.mel_bins)

    def gaps(self, sample_id: str, listings: dict[str, set[str]]) -> list[str]:
        """The media paths (relative to the root) one sample lacks."""
        return [f"{media.folder}/{name}" + ("/" if media.kind == "frames" else "") for m, media in self.used_media
                for name in media.files(sample_id) if name not in listings[m]]

    def listing(self, name: str) -> set[str]:
        """Names in one media folder; an entry that is a symlink must resolve inside the data root."""
        folder = self.media(name)
        try:
            with os.scandir(folder) as entries:
                found = list(entries)
        except (FileNotFoundError, NotADirectoryError):
            raise ConfigError("dataset.root", f"{self.root() / name} does not exist; every sample needs a file or "
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


# ---------------------------------------------------------------- the check a run gets


def check_data(cfg: RunConfig, roots: DataRoots) -> RunConfig:
    """The dataset's own files (what GET /datasets calls ready), without the run's text model: its spec's check
    (amst_core.datasets; every registered spec has one)."""
    from amst_core.datasets import DATASETS

    return DATASETS[cfg.dataset.name].check(cfg, roots) or cfg


def check_dataset(cfg: RunConfig, roots: DataRoots | None = None) -> RunConfig:
    """The run's config resolved against its data (a folder dataset's modalities and audio rate are those its files
    have), or a ConfigError (naming the field) unless the data and the text model are there, readable, confined
    and fit the config's shapes."""
    roots = roots or DataRoots.from_env()
    cfg = check_data(cfg, roots)
    if "text" in cfg.modalities:
        check_text_model(cfg.model.text_model, roots)
    return cfg


# ---------------------------------------------------------------- what the server holds (GET /datasets)


@dataclass
class DatasetState:
    ready: bool
    problem: str | None = None  # why it is not ready (the check's message)
    sizes: dict[str, int] | None = None  # samples per split, when the data say
    counts: dict[str, SplitCounts] | None = None  # per split: class counts and speakers, where its spec counts
    classes: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()  # folder layout: the folders under AMST_DATA_ROOT that hold a train/


def describe_dataset(name: str, roots: DataRoots) -> DatasetState:
    """Whether a dataset is ready on this server (its default folder under AMST_DATA_ROOT passes the check a run
    gets, unless its spec describes itself), with its sizes and classes as its files say. A spec's function that
    fails otherwise than with a ConfigError (a plugin's bug) marks that dataset not ready, by the error's kind;
    the other datasets are still listed."""
    from amst_core.datasets import DATASETS

    spec = DATASETS[name]
    try:
        return spec.describe(spec, roots) if spec.describe is not None else checked_state(spec, roots)
    except ConfigError as err:
        return DatasetState(ready=False, problem=str(err), classes=spec.classes, modalities=spec.modalities)
    except Exception as err:  # the kind only: its message may name what lies on the server
        log.exception("dataset %s: describing it failed", name)
        return DatasetState(ready=False, problem=f"its check failed on this server ({type(err).__name__}); the "
                                                 "server's log says where", classes=spec.classes,
                            modalities=spec.modalities)


def checked_state(spec: DatasetSpec, roots: DataRoots) -> DatasetState:
    """Ready when a run of it with every default passes its check; its sizes as its spec reads them."""
    from amst_core.config import RunConfig

    cfg = check_data(RunConfig.model_validate({"method": "naive", "dataset": {"name": spec.name}}), roots)
    sizes = spec.sizes(cfg, roots) if spec.sizes is not None else None
    counts = spec.counts(cfg, roots) if spec.counts is not None else None
    return DatasetState(ready=True, sizes=sizes, counts=counts, classes=spec.classes, modalities=spec.modalities)
