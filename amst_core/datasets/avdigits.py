"""avdigits: spoken digits (FSDD MFCCs) paired by label with MNIST images, built by `amst prepare avdigits`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from amst_core.datasets.base import DatasetSpec
from amst_core.vocab import AUDIO, SPLITS, VISUAL

if TYPE_CHECKING:
    from amst_core.config import RunConfig
    from amst_core.datafiles import DataRoots

FILES = {s: f"{s}.npz" for s in SPLITS}
MFCC = 13  # coefficients per frame in the FSDD recordings
DIGITS = tuple(str(d) for d in range(10))
AV_KNOBS = ("preset", "image_pca_energy", "audio_noise")  # the difficulty knobs, set alone or by a preset
PRESETS: dict[str, dict[str, float]] = {
    # Clean pairs: both modalities are easy.
    "easy": {"image_pca_energy": 0.0, "audio_noise": 0.0},
    # Audio clearly beats visual alone and learns much faster (20 epochs alone: about 0.91 vs 0.80 val accuracy;
    # visual is still at chance after 6), as audio does on CREMA-D: the image components holding 95% of the
    # energy are removed (AV-MNIST style) and the MFCCs get noise of one standard deviation. Doc/results.md.
    "hard": {"image_pca_energy": 0.95, "audio_noise": 1.0},
}


def data_dir(cfg: RunConfig, roots: DataRoots | None = None) -> Path:
    """Its folder, each file in it confined to the data roots."""
    from amst_core.datafiles import DataRoots

    roots = roots or DataRoots.from_env()
    root = roots.dataset_dir(cfg.dataset)
    for name in FILES.values():
        roots.confine(root / name, "dataset.root", "the avdigits file")
    return root


def check(cfg: RunConfig, roots: DataRoots) -> None:
    from amst_core.config import ConfigError

    root = data_dir(cfg, roots)
    missing = [f for f in FILES.values() if not (root / f).is_file()]
    if missing:
        raise ConfigError("dataset.root", f"{roots.root / (cfg.dataset.root or cfg.dataset.name)} has no avdigits "
                                          f"data (missing {', '.join(missing)}); run `amst prepare avdigits` first")
    if cfg.model.mel_bins != MFCC:
        raise ConfigError("model.mel_bins", f"avdigits audio has {MFCC} MFCC coefficients, not "
                                            f"{cfg.model.mel_bins}; leave model.mel_bins out or set it to 13")


def sizes(cfg: RunConfig, roots: DataRoots) -> dict[str, int]:
    import numpy as np

    root = data_dir(cfg, roots)
    return {split: int(np.load(root / f, mmap_mode="r")["label"].shape[0]) for split, f in FILES.items()}


# One 28x28 MNIST frame, FSDD recordings of up to 48 MFCC frames of 13 coefficients; inputs that small need no
# more than a quarter-width ResNet-18 (11x faster on a CPU).
MODEL = {"frames": 1, "image_size": 28, "audio_frames": 48, "mel_bins": MFCC, "width": 16}
# UMT and G2D train their unimodal teachers first: the recipe's 20 epochs for them, then as many for the student
# (configs/avdigits/umt.yaml); 20 in all would leave the student none.
TEACHERS_FIRST = {"epochs": 40, "method_params": {"teacher_epochs": 20}}

SPEC = DatasetSpec(
    "avdigits", "spoken digits (FSDD MFCC) paired with MNIST images by label", (AUDIO, VISUAL),
    check=check, sizes=sizes, source="amst_core.data.avdigits:AVDigits", classes=DIGITS, knobs=AV_KNOBS,
    prepare="amst_core.data.avdigits:prepare", defaults={"model": MODEL},
    recipe={"dataset": {"preset": "hard"}, "skip": {AUDIO: 3}, "optim": {"lr": 0.01, "lr_step": 15},
                 "epochs": 20},
    method_recipes={"umt": TEACHERS_FIRST, "g2d": TEACHERS_FIRST},
)
