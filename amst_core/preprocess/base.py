"""`amst preprocess`: an original release (or the user's folder) to the layout the loaders read.

A dataset module says what the release holds (`Plan`: classes, the samples of each split with label and text,
and one `Job` per sample: where its audio and frames come from); this module writes the class and split files,
then runs the jobs in a process pool with a progress bar. Every output is written to a temporary name and renamed
into place, so a sample whose outputs all exist is finished and a killed run started again skips it; a half-written
file never counts. Failures are collected and summarised (and written to preprocess_failures.txt), never fatal.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from amst_core.data import media
from amst_core.layouts import Layout
from amst_core.vocab import AUDIO, SPLITS, TEST, TEXT, TRAIN, VAL, VISUAL

REFERENCE_FRAMES = 1024  # fbank frames (10.24 s)
REFERENCE_MEL_BINS = 128
FRAME_SIZE = 224  # frames are stored at the size the reference's loader resizes to


@dataclass(frozen=True)
class Sample:
    sample_id: str
    label: str
    text: str = ""
    extra: str = ""  # what else the split-file line carries (IEMOCAP: start and end times)


@dataclass(frozen=True)
class Job:
    """The media outputs of one sample. `audio` and `video` are source files (audio may be a video); a time
    window (seconds) cuts an utterance out of a longer recording."""

    sample_id: str
    audio: Path | None = None
    video: Path | None = None
    image: Path | None = None
    start: float = 0.0
    end: float | None = None


@dataclass
class Plan:
    layout: Layout
    classes: tuple[str, ...]
    splits: dict[str, list[Sample]]
    jobs: list[Job]
    line: Callable[[Sample], str]
    frames_per_second: int = 1
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    done: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (sample id, why)
    seconds: float = 0.0


def atomic_save(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink() if tmp.is_file() else shutil.rmtree(tmp, ignore_errors=True)


def outputs(job: Job, layout: Layout) -> list[Path]:
    """What a finished job has written, relative to the output folder."""
    paths = []
    for modality, m in layout.media:
        if modality == AUDIO and job.audio is not None:
            paths.append(Path(m.folder) / m.entry(job.sample_id))
        if modality == VISUAL and (job.video is not None or job.image is not None):
            paths.append(Path(m.folder) / m.entry(job.sample_id))
    return paths


def clip(wave: np.ndarray, rate: int, start: float, end: float | None) -> np.ndarray:
    return wave[int(start * rate): None if end is None else int(end * rate)]


def run_job(job: Job, layout: Layout, out: Path, frames_per_second: int) -> str | None:
    """Write one sample's outputs; None when done, else why it failed (the message names the source file)."""
    try:
        for modality, m in layout.media:
            target = out / m.folder / m.entry(job.sample_id)
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if modality == AUDIO and job.audio is not None:
                wave, rate = media.read_audio(job.audio)
                features = media.fbank(clip(wave, rate, job.start, job.end), rate, REFERENCE_MEL_BINS,
                                       REFERENCE_FRAMES)
                atomic_save(target, lambda tmp, f=features: save_npy(tmp, f))
            elif modality == VISUAL and m.kind == "image" and job.image is not None:
                image = media.open_image(job.image)
                atomic_save(target, lambda tmp, img=image: img.save(tmp, format="JPEG", quality=95))
            elif modality == VISUAL and job.video is not None:
                frames = media.video_frames(job.video, frames_per_second, job.start, job.end)
                atomic_save(target, lambda tmp, fr=frames: write_frames(tmp, fr))
    except media.MediaError as err:
        source = job.audio if job.audio is not None else job.video or job.image
        return f"{source} {err}"
    except OSError as err:
        return f"{type(err).__name__}: {err.strerror or err}"
    return None


def save_npy(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as f:  # a file object: np.save would append .npy to a temporary name
        np.save(f, array)


def write_frames(folder: Path, frames: list) -> None:
    folder.mkdir()
    for i, frame in enumerate(frames):
        frame.convert("RGB").resize((FRAME_SIZE, FRAME_SIZE)).save(folder / f"{i:05d}.jpg", quality=95)


def remove_leftovers(layout: Layout, out: Path) -> None:
    """What a killed run left half-written (temporary names, never counted as finished): removed before a new
    run starts."""
    for _, m in layout.media:
        folder = out / m.folder
        for leftover in folder.glob(".*.tmp-*") if folder.is_dir() else ():
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink(missing_ok=True)


def write_tokens(plan: Plan, out: Path, text_model: str, max_length: int) -> None:
    """Token ids and masks of every sample's text, with the text model's own tokenizer (in this process: fast)."""
    import torch

    from amst_core.models.text import load_tokenizer

    m = plan.layout.media_of(TEXT)
    folder = out / m.folder
    folder.mkdir(parents=True, exist_ok=True)
    todo = {s.sample_id: s.text for items in plan.splits.values() for s in items
            if not (folder / m.entry(s.sample_id)).exists()}
    if not todo:
        return
    tokenizer = load_tokenizer(text_model)
    ids_list = list(todo)
    for start in range(0, len(ids_list), 256):
        chunk = ids_list[start:start + 256]
        ids, mask = media.tokenize(tokenizer, [todo[i] or " " for i in chunk], max_length)
        for k, sample_id in enumerate(chunk):
            atomic_save(folder / f"{sample_id}_pm.pt", lambda t, v=mask[k]: torch.save(torch.from_numpy(v), t))
            atomic_save(folder / f"{sample_id}_token.pt", lambda t, v=ids[k]: torch.save(torch.from_numpy(v), t))


def write_text_files(plan: Plan, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / plan.layout.class_file).write_text("\n".join(plan.classes) + "\n")
    for split, items in plan.splits.items():
        lines = "".join(plan.line(s) + "\n" for s in items)
        atomic_save(out / plan.layout.default_split_file(split), lambda tmp, t=lines: tmp.write_text(t))


def execute(plan: Plan, out: Path, workers: int, text_model: str | None = None, text_max_length: int = 128,
            progress: bool = True, log: Callable[[str], None] = print) -> Report:
    """Everything of `plan` into `out`; finished samples are skipped."""
    from tqdm import tqdm

    started = time.perf_counter()
    write_text_files(plan, out)
    remove_leftovers(plan.layout, out)
    report = Report()
    todo = [job for job in plan.jobs if not all((out / p).exists() for p in outputs(job, plan.layout))]
    report.skipped = len(plan.jobs) - len(todo)
    if report.skipped:
        log(f"{report.skipped} of {len(plan.jobs)} samples already done; {len(todo)} to go")
    bar = tqdm(total=len(todo), desc=f"preprocessing {plan.layout.name}", unit="sample", disable=not progress,
               file=sys.stderr)
    for sample_id, problem in run_pool(todo, plan, out, workers):
        if problem is None:
            report.done += 1
        else:
            report.failed.append((sample_id, problem))
        bar.update(1)
    bar.close()
    if TEXT in plan.layout.modalities:
        write_tokens(plan, out, text_model or "roberta-base", text_max_length)
    report.seconds = time.perf_counter() - started
    failures = out / "preprocess_failures.txt"
    if report.failed:
        failures.write_text("".join(f"{i}\t{why}\n" for i, why in report.failed))
    elif failures.exists():
        failures.unlink()
    return report


SAMPLES_PER_WORKER = 200  # a spawned worker takes seconds to start (it imports torch): below this, fewer workers


def run_pool(jobs: list[Job], plan: Plan, out: Path, workers: int) -> Iterable[tuple[str, str | None]]:
    workers = min(workers, len(jobs) // SAMPLES_PER_WORKER)
    if workers <= 1:
        for job in jobs:
            yield job.sample_id, run_job(job, plan.layout, out, plan.frames_per_second)
        return
    # Spawned, not forked: a child forked from a process whose torch thread pool has run deadlocks in its first
    # torch call (the fbank); each worker uses one thread, the pool supplies the parallelism.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=one_thread) as pool:
        futures = {pool.submit(run_job, job, plan.layout, out, plan.frames_per_second): job for job in jobs}
        for future in as_completed(futures):
            yield futures[future].sample_id, future.result()


def one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def stratified(samples: list[Sample], shares: tuple[float, float, float] = (0.8, 0.1, 0.1),
               seed: int = 0) -> dict[str, list[Sample]]:
    """Per class, ids sorted then shuffled with `seed`, cut 80/10/10 (the reference's IEMOCAP rule); a class of
    three or more samples has at least one in val and one in test."""
    import random

    rng = random.Random(seed)
    out: dict[str, list[Sample]] = {split: [] for split in SPLITS}
    for label in sorted({s.label for s in samples}):
        items = sorted((s for s in samples if s.label == label), key=lambda s: s.sample_id)
        rng.shuffle(items)
        n_val = max(1, round(shares[1] * len(items))) if len(items) >= 3 else 0
        n_test = max(1, round(shares[2] * len(items))) if len(items) >= 3 else 0
        n_train = len(items) - n_val - n_test
        out[TRAIN] += items[:n_train]
        out[VAL] += items[n_train:n_train + n_val]
        out[TEST] += items[n_train + n_val:]
    return out


def reference_splits(folder: Path | None, layout: Layout, samples: dict[str, Sample]) -> dict[str, list[Sample]] | None:
    """The reference's own split files (e.g. ../shared/data/splits/CREMAD), when given: the ids they list, in their
    order, among the samples found in the release."""
    if folder is None:
        return None
    out: dict[str, list[Sample]] = {}
    for split in SPLITS:
        path = folder / layout.default_split_file(split)
        if not path.is_file():
            raise FileNotFoundError(f"--splits {folder}: no {path.name}")
        out[split] = [samples[p[0]] for line in path.read_text().splitlines()
                      if line.strip() and (p := layout.parse_line(line)) and p[0] in samples]
    return out
