"""bf16 and fp16 on the GPU learn what fp32 learns: AMST-FULL on cached CREMA-D-shaped data (the reference layout
bench/pipeline.py writes: fbank 1024 x 128, 3 JPEG frames per clip, through the sample cache and device
augmentation; frames at 112 px and width 32 to fit the tier's minutes), 3 epochs, the same seed: validation and
test accuracy within 1 point of fp32's. Each class's own mel band is louder: fp32 learns it within 3 epochs (on a
CPU at width 16, 384 clips in batches of 16 reached 100 % validation accuracy; 192 in batches of 32 did not)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pipeline
import pytest
import torch

from amst_core.config import load_config
from amst_core.devices import native_bf16
from amst_core.engine import Trainer
from tests.kit.gpu import cuda_only

pytestmark = pytest.mark.gpu

SHAPE = pipeline.PipelineShape("cremad-reduced", (1024, 128), (160, 120), 3, 112, 32,
                               "CREMA-D fbank and frame count; frames 112 px, ResNet-18 width 32")
TRAIN, HELD_OUT = 384, 200  # 1 point is 2 of 200 clips: one clip either way is within it


def summary_of(precision: str, device: torch.device) -> dict:
    cfg = load_config(base={
        "method": "amst_full", "dataset": {"name": "cremad", "cache": True}, "skip": {"audio": 2},
        "model": {"frames": SHAPE.frames, "image_size": SHAPE.image_size, "audio_frames": SHAPE.fbank[0],
                  "mel_bins": SHAPE.fbank[1], "width": SHAPE.width},
        "epochs": 3, "batch_size": 16, "device": str(device), "precision": precision, "seed": 0,
        "optim": {"lr": 0.02}})
    return Trainer(cfg, progress=False).fit()


def test_bf16_and_fp16_amst_full_reach_fp32s_accuracy_in_three_epochs(device: torch.device) -> None:
    cuda_only(device, "reduced-precision accuracy on a GPU (a CPU's bf16: tests/core/test_determinism_resume.py)")
    pipeline.write_dataset(Path(os.environ["AMST_DATA_ROOT"]), SHAPE, TRAIN, np.random.default_rng(0),
                           held_out=HELD_OUT, signal=2.0)
    precisions = ["fp32", "fp16"]
    if native_bf16(device):
        precisions.append("bf16")
    summaries = {p: summary_of(p, device) for p in precisions}
    reference = summaries["fp32"]
    assert reference["best_val_acc"] >= 0.9, f"fp32 did not learn the labelled fbanks: {reference['best_val_acc']}"
    for precision in precisions[1:]:
        for key in ("best_val_acc", "test_acc_at_best"):
            got = summaries[precision][key]
            assert abs(got - reference[key]) <= 0.01 + 1e-9, f"{precision} {key}: {got} against fp32's {reference[key]}"
