"""The training pipeline, straightforward against fast, measured side by side (used by bench/trainer.py).

Data: a CREMA-D-shaped dataset written to a temporary folder in the reference layout (fbank 1024 x 128 float32
.npy, 3 JPEG frames of 480 x 360 per clip, decoded and cropped to 224 x 224; ResNet-18 encoders at the reference
width), or avdigits-shaped clips in the same layout (13 x 48 fbank, one 28 x 28 frame, width 8).

Configurations
    straightforward  what the reference does: every sample's JPEGs decoded and transformed per epoch with PIL on
                     the loader processes, fp32, NCHW tensors, faithful skipping, and a backward and an optimizer
                     step of head and encoders per loss
    fast             the sample cache (memory-mapped uint8 frames, float16 fbanks) with crops on the device,
                     channels-last, bf16 autocast where the device has it (a CUDA GPU from Ampere on; not on a
                     CPU, where bf16 convolutions are slow), fused SGD on a GPU, one encoder backward per batch,
                     `skip_mode: fast`, and `compile: true` when asked for (--compile)

Measured for each method and configuration, interleaved over repeats (medians): a training epoch of the unskipped
kind (epoch 0: every modality updated) and of the skipped kind (epoch 1: audio skipped, k_audio = 2), as samples/s
with data loading and the device work included (`Trainer.train_epoch`); the loader alone (batches fetched and made
model-ready, no model) and the step alone (`train_batch` on one batch already on the device), which show which of
the two bounds the epoch; and the share of a skipped epoch's cost predicted from FLOPs
(torch.utils.flop_counter on one step of each kind).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from amst_core.config import load_config
from amst_core.devices import native_bf16
from amst_core.engine import Trainer
from amst_core.metrics import EpochMeters

CLASSES = ("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad")
CONFIGURATIONS = ("straightforward", "fast")
UNSKIPPED, SKIPPED = 0, 1


@dataclass(frozen=True)
class PipelineShape:
    key: str
    fbank: tuple[int, int]  # (time, mel) on disk and in the model
    frame_size: tuple[int, int]  # (width, height) of the stored JPEGs
    frames: int
    image_size: int
    width: int
    note: str


PIPELINE_SHAPES = {
    "cremad": PipelineShape("cremad", (1024, 128), (480, 360), 3, 224, 64,
                            "CREMA-D shape: fbank 1024x128, 3 frames 480x360 JPEG -> 224x224, ResNet-18 width 64"),
    "avdigits": PipelineShape("avdigits", (48, 13), (28, 28), 1, 28, 8,
                              "avdigits shape: fbank 48x13, one 28x28 frame, ResNet-18 width 8"),
}


def write_dataset(root: Path, shape: PipelineShape, train: int, rng: np.random.Generator, held_out: int = 4,
                  signal: float = 0.0) -> None:
    """A reference-layout (CREMA-D) dataset of `train` training clips and `held_out` val and test clips each.
    `signal`: how much louder each class's own band of mel bins is, in noise standard deviations (0: nothing to
    learn, enough for speed; a test of what is learned needs some)."""
    folder = root / "cremad"
    (folder / "fbank").mkdir(parents=True)
    (folder / "stat_cre.txt").write_text("\n".join(CLASSES) + "\n")
    sizes = {"80_train_cre.txt": train, "10_val_cre.txt": held_out, "10_test_cre.txt": held_out}
    w, h = shape.frame_size
    base = np.add.outer(np.arange(h), np.arange(w)) % 256  # a gradient plus noise: JPEGs of realistic size
    for s, (file, n) in enumerate(sizes.items()):
        lines = []
        for i in range(n):
            clip = f"{s}{i:04d}_IEO_X_XX"
            lines.append(f"{clip}.flv {CLASSES[i % len(CLASSES)]}")
            fbank = rng.normal(size=shape.fbank)
            band = shape.fbank[1] // len(CLASSES)  # the class's own mel band louder (CLASSES sorted: label i % 6)
            fbank[:, (i % len(CLASSES)) * band:(i % len(CLASSES) + 1) * band] += signal
            np.save(folder / "fbank" / f"{clip}.npy", fbank.astype(np.float32))
            frames = folder / "IMAGE_KEPT_1_PER_SEC" / clip
            frames.mkdir(parents=True)
            for f in range(shape.frames):
                pixels = (base[..., None] + rng.integers(0, 40, size=(h, w, 3))) % 256
                Image.fromarray(pixels.astype(np.uint8)).save(frames / f"{f:05d}.jpg", quality=90)
        (folder / file).write_text("\n".join(lines) + "\n")


def config(shape: PipelineShape, method: str, configuration: str, device: torch.device, batch_size: int,
           compile_encoders: bool, skip_audio: int = 2) -> Any:
    fast = configuration == "fast"
    bf16 = fast and native_bf16(device)  # before Ampere bf16 is emulated, slower than fp32
    params = {"skip_mode": "fast" if fast else "faithful"} if method != "naive" else {}
    return load_config(base={
        "method": method, "method_params": params, "skip": {"audio": skip_audio},
        "dataset": {"name": "cremad", "cache": fast},
        "model": {"frames": shape.frames, "image_size": shape.image_size, "audio_frames": shape.fbank[0],
                  "mel_bins": shape.fbank[1], "width": shape.width,
                  # fast: channels-last on a CPU too (auto keeps a CPU in the default layout, for bitwise
                  # reference numerics; a width under 16 cannot have it there: Doc/benchmarks.md)
                  "channels_last": True if fast and shape.width >= 16 else "auto"},
        "batch_size": batch_size, "device": str(device), "precision": "bf16" if bf16 else "fp32",
        "compile": fast and compile_encoders, "epochs": 2})


def trainer_for(cfg: Any, configuration: str) -> Trainer:
    trainer = Trainer(cfg, progress=False)
    if configuration == "straightforward":  # the reference's step: NCHW, a backward and a step per loss
        trainer.method.one_encoder_backward = False
        for module in trainer.method.modules():
            module.to(memory_format=torch.contiguous_format)
        for trained in trainer.method.nets.values():  # and torch's default SGD, not the fused kernel
            for optimizer in trained.optimizers.values():
                for group in optimizer.param_groups:
                    group["fused"] = None
    return trainer


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, work: Callable[[], int]) -> float:
    """Samples per second of `work` (which returns how many samples it handled)."""
    sync(device)
    start = time.perf_counter()
    samples = work()
    sync(device)
    return samples / (time.perf_counter() - start)


def epoch_work(trainer: Trainer, epoch: int) -> Callable[[], int]:
    def work() -> int:
        trainer.method.train_mode(True)
        return trainer.train_epoch(epoch)[1]
    return work


def batch_loop(trainer: Trainer, epoch: int) -> tuple[EpochMeters, int]:
    """`Trainer.train_epoch` without its end (`Trainer.train_loop`): inside it no call may wait for the device
    (`torch.cuda.set_sync_debug_mode`); reading the meters afterwards copies the epoch's sums once."""
    return trainer.train_loop(epoch)


def loader_work(trainer: Trainer, epoch: int) -> Callable[[], int]:
    def work() -> int:
        samples = 0
        for index, batch in enumerate(trainer.loader("train", epoch, shuffle=True)):
            samples += len(trainer.model_batch(batch, "train", epoch, index)["label"])
        return samples
    return work


def step_work(trainer: Trainer, batch: dict[str, torch.Tensor], steps: int) -> Callable[[], int]:
    def work() -> int:
        trainer.method.train_mode(True)
        for _ in range(steps):
            trainer.method.train_batch(batch, UNSKIPPED)
        return steps * len(batch["label"])
    return work


def flops(trainer: Trainer, batch: dict[str, torch.Tensor], epoch: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        trainer.method.train_batch(batch, epoch)
    return float(counter.get_total_flops())


def measure(shape: PipelineShape, methods: list[str], device: torch.device, repeats: int, train_samples: int,
            batch_size: int, steps: int, compile_encoders: bool, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """One row per (method, configuration): medians over interleaved repeats."""
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp, env({"AMST_DATA_ROOT": f"{tmp}/data", "AMST_CACHE": f"{tmp}/cache"}):
        write_dataset(Path(tmp) / "data", shape, train_samples, rng)
        trainers = {(m, c): trainer_for(config(shape, m, c, device, batch_size, compile_encoders), c)
                    for m in methods for c in CONFIGURATIONS}
        batch = {}
        for (m, c), trainer in trainers.items():  # warm up every path once (cache built, kernels chosen)
            log(f"  warm-up {shape.key} {m} {c}")
            batch[(m, c)], _ = next(iter(trainer.batches("train", UNSKIPPED, "")))
            step_work(trainer, batch[(m, c)], 1)()
        share = {(m, c): flops(t, batch[(m, c)], SKIPPED) / flops(t, batch[(m, c)], UNSKIPPED)
                 for (m, c), t in trainers.items() if m != "naive"}
        samples: dict[tuple[str, str, str], list[float]] = {}
        for r in range(repeats):
            order = list(trainers.items())
            order = order[r % len(order):] + order[:r % len(order)]  # rotate: drifts hit every variant alike
            for (m, c), trainer in order:
                log(f"  repeat {r + 1}/{repeats}: {shape.key} {m} {c}")
                kinds = {"epoch_unskipped": epoch_work(trainer, UNSKIPPED),
                         "loader": loader_work(trainer, UNSKIPPED), "step": step_work(trainer, batch[(m, c)], steps)}
                if m != "naive":
                    kinds["epoch_skipped"] = epoch_work(trainer, SKIPPED)
                for kind, work in kinds.items():
                    samples.setdefault((m, c, kind), []).append(timed(device, work))
        rows = []
        for (m, c), trainer in trainers.items():
            got = {kind: statistics.median(v) for (mm, cc, kind), v in samples.items() if (mm, cc) == (m, c)}
            row = {"shape": shape.key, "method": m, "configuration": c, "samples_per_s": got["epoch_unskipped"],
                   "skipped_samples_per_s": got.get("epoch_skipped"), "loader_samples_per_s": got["loader"],
                   "step_samples_per_s": got["step"], "precision": trainer.cfg.precision,
                   "skip_mode": getattr(trainer.method, "skip_mode", "-"), "compile": trainer.cfg.compile,
                   "skipped_flops_share": share.get((m, c)), "device": str(device), "repeats": repeats,
                   "batch_size": batch_size, "train_samples": len(trainer.datasets["train"])}
            if row["skipped_samples_per_s"]:
                row["skipped_cost_share"] = row["samples_per_s"] / row["skipped_samples_per_s"]
            rows.append(row)
        for trainer in trainers.values():
            trainer.loaders.close()
    return rows


@contextlib.contextmanager
def env(values: dict[str, str]):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def report(rows: list[dict[str, Any]], note: str) -> list[str]:
    """A table per shape: samples/s of each configuration, fast / straightforward, and what bounds the epoch."""
    lines = [f"### Straightforward vs fast: {note}", "",
             "| method | configuration | epoch samples/s (unskipped) | x | skipped epoch samples/s | x | "
             "skipped cost / unskipped (FLOPs) | loader alone | step alone | bound by |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    base = {r["method"]: r for r in rows if r["configuration"] == "straightforward"}
    for r in rows:
        b = base[r["method"]]
        skipped, skipped_base = r["skipped_samples_per_s"], b["skipped_samples_per_s"]
        cost = (f"{r['skipped_cost_share']:.2f} ({r['skipped_flops_share']:.2f})"
                if r.get("skipped_cost_share") else "-")
        bound = "loader" if r["loader_samples_per_s"] < r["step_samples_per_s"] else "model step"
        lines.append(
            f"| {r['method']} | {r['configuration']} ({r['precision']}) | {r['samples_per_s']:.1f} | "
            f"{r['samples_per_s'] / b['samples_per_s']:.2f} | {f'{skipped:.1f}' if skipped else '-'} | "
            f"{f'{skipped / skipped_base:.2f}' if skipped else '-'} | {cost} | "
            f"{r['loader_samples_per_s']:.1f} | {r['step_samples_per_s']:.1f} | {bound} |")
    return [*lines, ""]
