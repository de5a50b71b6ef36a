"""Fake CREMA-D and IEMOCAP folders whose sample ids say who speaks, for the drawn splits (`dataset.split_scheme`)
and the per-split counts of GET /datasets; and where the real split files are."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SPLITS = ("train", "val", "test")
EMOTIONS = {"ANG": "Anger", "DIS": "Disgust", "FEA": "Fear", "HAP": "Happy", "NEU": "Neutral", "SAD": "Sad"}
IEMOCAP_CLASSES = ("ang", "exc", "fru", "neu", "sad")
CREMAD_FILES = ("80_train_cre.txt", "10_val_cre.txt", "10_test_cre.txt")
IEMOCAP_FILES = ("iemocap_train.txt", "iemocap_valid.txt", "iemocap_test.txt")


def deal(lines: list[str]) -> dict[str, list[str]]:
    """8:1:1 by position, as the reference's random split: every speaker ends up in every split."""
    return {"train": [x for i, x in enumerate(lines) if i % 10 not in (1, 2)], "val": lines[1::10],
            "test": lines[2::10]}


def write_cremad(folder: Path, actors: int = 20, clips: int = 3, media: bool = False) -> list[str]:
    """A CREMA-D folder whose split files list `clips` clips of every emotion per actor (1001, 1002, ...), dealt
    8:1:1; with `media`, a tiny fbank and two frames per clip, so that it passes a run's check."""
    folder.mkdir(parents=True)
    (folder / "stat_cre.txt").write_text("\n".join(EMOTIONS.values()) + "\n")
    lines = [f"{1001 + a}_S{c:02d}_{code}_XX.flv {name}" for a in range(actors) for code, name in EMOTIONS.items()
             for c in range(clips)]
    for split, name in zip(SPLITS, CREMAD_FILES, strict=True):
        (folder / name).write_text("\n".join(deal(lines)[split]) + "\n")
    if media:
        for line in lines:
            write_clip(folder, line.split(".flv")[0])
    return lines


def write_clip(folder: Path, clip_id: str) -> None:
    (folder / "fbank").mkdir(exist_ok=True)
    np.save(folder / "fbank" / f"{clip_id}.npy", np.full((40, 128), 0.5, dtype=np.float32))
    frames = folder / "IMAGE_KEPT_1_PER_SEC" / clip_id
    frames.mkdir(parents=True)
    for k in range(2):
        Image.new("RGB", (20, 20), (40 * k, 0, 0)).save(frames / f"{k:05d}.jpg")


def write_iemocap(folder: Path, per_speaker: int = 10) -> list[str]:
    """An IEMOCAP folder (split files only): 5 sessions, two speakers each (the utterance's letter), every class,
    dealt 8:1:1."""
    folder.mkdir(parents=True)
    (folder / "stat_iemocap.txt").write_text("\n".join(IEMOCAP_CLASSES))
    lines = [f"Ses{s:02d}F_impro0{k % 3}_{g}{k:03d}, {IEMOCAP_CLASSES[k % 5]}, 1.0, 2.0 ### words"
             for s in range(1, 6) for g in "FM" for k in range(per_speaker)]
    for split, name in zip(SPLITS, IEMOCAP_FILES, strict=True):
        (folder / name).write_text("\n".join(deal(lines)[split]) + "\n")
    return lines


def listed_ids(folder: Path, name: str, separator: str) -> list[tuple[str, str]]:
    """(id, label) of each line of a split file, as written."""
    return [(a.strip(), b.strip().split(",")[0]) for a, b in
            (line.split(separator, 1) for line in (folder / name).read_text().splitlines() if line.strip())]


def real_splits_dir() -> Path:
    """The reference's split files (../shared next to the checkout, the workplace's copy, or AMST_SPLITS_DIR);
    the test is skipped without them."""
    candidates = [Path(__file__).resolve().parents[3] / "shared/data/splits", Path("/work/shared/data/splits")]
    if os.environ.get("AMST_SPLITS_DIR"):
        candidates.append(Path(os.environ["AMST_SPLITS_DIR"]))
    for path in candidates:
        if (path / "CREMAD").is_dir() and (path / "IEMOCAP").is_dir():
            return path
    pytest.skip(f"real split files not found in {[str(p) for p in candidates]} (set AMST_SPLITS_DIR)")
