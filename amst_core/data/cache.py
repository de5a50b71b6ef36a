"""The sample cache: every sample decoded once into arrays that training reads memory-mapped.

  audio      (N, model.audio_frames, model.mel_bins) float16    the fbank, padded or cut
  visual     (N, frames, S, S, 3) uint8                          frames resized to a square S = image_size x 8/7
  text       (N, L) int64, text_mask (N, L) float32              token ids and mask, L = model.text_max_length

A cache folder holds these .npy arrays and a meta.json (ids, labels, the samples that could not be decoded and
why). Its name is a key over every setting a feature depends on (`FeatureSpec`) and every source file's path, size
and modification time, so a changed file or setting makes a new cache and an unchanged dataset starts at once. A
cache is built in a temporary folder and renamed into place, by one process of a machine at a time (the others
wait for it and read it); two machines building one at once both end with one complete cache. Augmentation happens later, on the run's device (`amst_core.data.augment`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from amst_core.data.base import Sample
from amst_core.datafiles import BadSample
from amst_core.vocab import AUDIO, TEXT

if TYPE_CHECKING:
    from amst_core.config import RunConfig

CACHE_VERSION = 2
Entry = TypeVar("Entry")


def stored_size(image_size: int) -> int:
    """Frames are stored a little larger than the crop (256 for 224), as the reference's resize-then-crop."""
    return round(image_size * 8 / 7)


@dataclass(frozen=True)
class FeatureSpec:
    """Everything a cached feature depends on besides the source files."""

    source: str  # the layout ("cremad", "folder", ...)
    modalities: tuple[str, ...]
    mel_bins: int
    audio_frames: int
    frames: int
    stored_size: int
    text_model: str  # the tokenizer (folder text); "" where tokens are given
    text_max_length: int
    audio_rate: int = 0  # Hz every audio file is resampled to (folder layout); 0: each file's own rate

    @classmethod
    def of(cls, cfg: RunConfig, tokenizer: bool = False) -> FeatureSpec:
        m = cfg.model
        text = TEXT in cfg.modalities
        return cls(cfg.dataset.name, tuple(cfg.modalities), m.mel_bins, m.audio_frames, m.frames,
                   stored_size(m.image_size), m.text_model if text and tokenizer else "",
                   m.text_max_length if text else 0, cfg.dataset.audio_rate or 0)

    def key_fields(self) -> dict[str, Any]:
        """The settings as the cache key hashes them: a rate of 0 (the reference layouts) is left out, so that
        their caches built before the field existed stay valid."""
        return {k: v for k, v in asdict(self).items() if k != "audio_rate" or v}


def file_fingerprint(path: Path) -> str:
    """path, size and modification time; for a folder (of frames), those of its files; 'missing' if absent."""
    try:
        st = path.stat()
        if path.is_dir():
            return ";".join(f"{e.name}:{e.stat().st_size}:{e.stat().st_mtime_ns}"
                            for e in sorted(os.scandir(path), key=lambda e: e.name) if e.is_file())
    except OSError:
        return f"{path}:missing"
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


def cache_key(spec: FeatureSpec, *parts: str, files: Iterable[tuple[str, Iterable[Path]]]) -> str:
    """sha256 of the settings, of `parts` and of every (sample, its source files)."""
    h = hashlib.sha256(json.dumps([CACHE_VERSION, spec.key_fields(), parts]).encode())
    for sample, paths in files:
        h.update(f"{sample}\0".encode())
        for path in paths:
            h.update(f"{file_fingerprint(path)}\0".encode())
    return h.hexdigest()[:32]


class SampleProblem(Exception):
    """A sample that cannot be decoded: the file and what is wrong with it."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path} {problem}")
        self.path, self.problem = path, problem


def decode_threads() -> int:
    """Threads that decode samples into a cache: every core, at most 16 (JPEG decoding, resizing and file reads
    release the GIL, so threads scale with cores; past 16 the disk is the limit); AMST_CACHE_THREADS sets it (a
    shared node)."""
    if os.environ.get("AMST_CACHE_THREADS", "").strip():
        try:
            return max(1, int(os.environ["AMST_CACHE_THREADS"]))
        except ValueError:
            raise ValueError(f"AMST_CACHE_THREADS={os.environ['AMST_CACHE_THREADS']!r} is not a whole number of "
                             "threads") from None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(16, cores))


def write_arrays(folder: Path, entries: Sequence[Entry], extract: Callable[[Entry], dict[str, np.ndarray]],
                 on_done: Callable[[], None], threads: int = 1) -> tuple[list[int], list[tuple[int, SampleProblem]]]:
    """Each entry's features as rows of <key>.npy in `folder`, written straight to memory-mapped files (a large
    dataset never sits in memory), decoded by `threads` threads and written in the entries' order; returns the
    indices of the decoded entries and the problems of the others."""
    good: list[int] = []
    bad: list[tuple[int, SampleProblem]] = []
    arrays: dict[str, np.ndarray] = {}
    for index, features in enumerate(decoded(entries, extract, threads)):
        if isinstance(features, SampleProblem):
            bad.append((index, features))
        else:
            for key, value in features.items():
                if key not in arrays:  # shapes and types from the first decoded sample
                    arrays[key] = np.lib.format.open_memmap(folder / f"{key}.npy", mode="w+", dtype=value.dtype,
                                                            shape=(len(entries), *value.shape))
                arrays[key][len(good)] = value
            good.append(index)
        on_done()
    for key, array in arrays.items():
        array.flush()
        if len(good) < len(entries):  # rows of undecodable samples were never written: cut them off
            np.save(folder / f"{key}.tmp.npy", np.asarray(array[:len(good)]))
            os.replace(folder / f"{key}.tmp.npy", folder / f"{key}.npy")
    return good, bad


def decoded(entries: Sequence[Entry], extract: Callable[[Entry], dict[str, np.ndarray]],
            threads: int) -> Iterator[dict[str, np.ndarray] | SampleProblem]:
    """extract(entry) of each entry in order (a SampleProblem in place of its features), at most 4 x `threads`
    decoded ahead of the writer, so memory stays bounded whatever the dataset's size."""
    def attempt(entry: Entry) -> dict[str, np.ndarray] | SampleProblem:
        try:
            return extract(entry)
        except SampleProblem as err:
            return err

    if threads <= 1:
        yield from map(attempt, entries)
        return
    pool = ThreadPoolExecutor(threads, thread_name_prefix="cache-decode")
    try:
        pending: deque[Future] = deque()
        for entry in entries:
            pending.append(pool.submit(attempt, entry))
            if len(pending) >= 4 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:  # a failure or Ctrl-C: the samples queued ahead are not decoded for nothing
        pool.shutdown(cancel_futures=True)


def build_atomically(folder: Path, build: Callable[[Path], None]) -> None:
    """Run `build` into a temporary folder beside `folder`, then rename it into place. Processes of one machine
    (a run's ranks, runs side by side on one worker machine) build a cache one at a time: the others wait for it
    and find it built (`builder_lock`, released by the kernel if its builder dies). Across machines sharing
    the folder, when another process finished the same cache first, its cache is kept."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with builder_lock(folder):
        if not (folder / "meta.json").exists():
            build_into_place(folder, build)


@contextlib.contextmanager
def builder_lock(folder: Path) -> Iterator[None]:
    """One builder of `folder` on this machine at a time: a lock file named by the folder's path in the machine's
    temporary folder (none in the cache, whose folders are the caches themselves)."""
    locks = Path(tempfile.gettempdir()) / f"amst-cache-locks-{os.getuid()}"
    locks.mkdir(mode=0o700, exist_ok=True)
    name = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:32]
    fd = os.open(locks / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def build_into_place(folder: Path, build: Callable[[Path], None]) -> None:
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    tmp.mkdir()
    try:
        build(tmp)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / "meta.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def progress_bar(total: int, progress: bool | None, desc: str = "decoding samples (once)") -> Any:
    from tqdm import tqdm

    shown = sys.stderr.isatty() if progress is None else progress
    return tqdm(total=total, desc=desc, unit="sample", disable=not shown, file=sys.stderr)


def split_meta(entries: Sequence[tuple[str, int]], good: list[int], bad: list[tuple[int, SampleProblem]],
               labels: Callable[[int], Any] | None = None) -> dict[str, Any]:
    """meta.json's part for one split: [id, label] of each decoded sample, {id, label, path, problem} of the
    others."""
    label_of = labels or (lambda index: entries[index][1])
    return {"samples": [[entries[i][0], entries[i][1]] for i in good],
            "bad": [{"id": entries[i][0], "label": label_of(i), "path": p.path, "problem": p.problem}
                    for i, p in bad]}


def bad_of(split: str, meta: dict[str, Any]) -> list[BadSample]:
    return [BadSample(split, b["id"], b["path"], b["problem"]) for b in meta["bad"]]


class CachedSamples(Dataset):
    """One split read from a cache folder: samples as stored (float16 audio, uint8 frames), made model-ready on
    the run's device by `amst_core.data.augment.finish_batch`. Nothing here is random, so loader processes may
    live across epochs."""

    def __init__(self, folder: Path, meta: dict[str, Any], modalities: Sequence[str]):
        self.ids = [sample_id for sample_id, _ in meta["samples"]]
        self.labels = [label for _, label in meta["samples"]]
        keys = [*modalities, *(["text_mask"] if TEXT in modalities else [])]
        self.arrays = {k: np.load(folder / f"{k}.npy", mmap_mode="r") for k in keys} if self.labels else {}
        self.dropped: list[BadSample] = []

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Sample:
        sample: Sample = {"label": self.labels[i]}
        for key, array in self.arrays.items():
            value = torch.from_numpy(np.array(array[i]))
            sample[key] = value[None] if key == AUDIO else value  # audio (1, T, F) like the uncached path
        return sample
