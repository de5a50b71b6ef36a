"""Tiny run configs shared by the tests (importable: tests/ is on sys.path via the root conftest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from amst_core.config import RunConfig, load_config


def tiny_config(method: str = "naive", **fields: Any) -> RunConfig:
    """A synthetic run small enough to train in well under a second per epoch on a CPU."""
    base: dict[str, Any] = {
        "method": method,
        "dataset": {"name": "synthetic", "synthetic": {"samples": {"train": 48, "val": 24, "test": 24}}},
        "model": {"frames": 1, "width": 8},
        "epochs": 2,
        "batch_size": 16,
        "device": "cpu",
        "optim": {"lr": 0.05},
    }
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return load_config(base=base)


def write_tiny_avdigits(root: Path, per_class: tuple[int, int, int] = (6, 2, 2), frames: int = 12) -> Path:
    """A few avdigits-format samples whose audio and image both carry the label (tests build their own data)."""
    rng = np.random.default_rng(0)
    out = root / "avdigits"
    out.mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "val", "test"), per_class, strict=True):
        labels = np.repeat(np.arange(10), n)
        audio = rng.normal(size=(len(labels), frames, 13)).astype(np.float32) + labels[:, None, None] * 0.3
        image = (rng.uniform(0, 60, size=(len(labels), 28, 28)) + labels[:, None, None] * 15).astype(np.uint8)
        np.savez(out / f"{split}.npz", audio=audio, lengths=np.full(len(labels), frames), image=image, label=labels,
                 audio_index=np.arange(len(labels)), image_index=np.arange(len(labels)))
    return out


CREMAD_CLASSES = ("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad")


def write_tiny_cremad(root: Path, name: str = "cremad", per_split: int = 2) -> Path:
    """A CREMA-D folder in the reference layout with a few made-up clips (ids of the real form)."""
    from PIL import Image

    out = root / name
    (out / "fbank").mkdir(parents=True, exist_ok=True)
    (out / "stat_cre.txt").write_text("\n".join(CREMAD_CLASSES) + "\n")
    for s, file in enumerate(("80_train_cre.txt", "10_val_cre.txt", "10_test_cre.txt")):
        lines = []
        for i in range(per_split):
            clip = f"10{s}{i}_IEO_{CREMAD_CLASSES[i % 6][:3].upper()}_XX"
            lines.append(f"{clip}.flv {CREMAD_CLASSES[i % 6]}")
            np.save(out / "fbank" / f"{clip}.npy", np.full((40, 128), 0.5, dtype=np.float32))
            frames = out / "IMAGE_KEPT_1_PER_SEC" / clip
            frames.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (16, 16), (40 * i, 0, 0)).save(frames / "00001.jpg")
        (out / file).write_text("\n".join(lines) + "\n")
    return out
