"""No host synchronisation inside the training batch loop on the GPU, in the fast configuration (sample cache,
crops on the device, channels-last, bf16 where native, fused SGD, one encoder backward, fast skipping): the loop
(`Trainer.batches`, `train_batch`, the meters' update) runs under `torch.cuda.set_sync_debug_mode("error")`, so the
first call that waits for the GPU fails the test where it is made. The epoch's end reads the meters (one copy to
the host per epoch, allowed) outside it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pipeline
import pytest
import torch

from tests.kit.gpu import cuda_only

pytestmark = pytest.mark.gpu

# CREMA-D's layout and modalities at a size that takes seconds: 3 frames, an fbank of 128 mel bins
SHAPE = pipeline.PipelineShape("cremad-small", (128, 128), (64, 48), 3, 32, 8, "sync check")
CLIPS, BATCH = 24, 8


@pytest.mark.parametrize("method", ["naive", "amst_alt", "amst_joint", "amst_full"])
def test_the_fast_batch_loop_never_waits_for_the_gpu(device: torch.device, method: str) -> None:
    cuda_only(device, "torch.cuda.set_sync_debug_mode watches CUDA calls")
    pipeline.write_dataset(Path(os.environ["AMST_DATA_ROOT"]), SHAPE, CLIPS, np.random.default_rng(0))
    cfg = pipeline.config(SHAPE, method, "fast", device, BATCH, False, skip_audio=2)
    trainer = pipeline.trainer_for(cfg, "fast")
    try:
        for epoch in (0, 1):  # warm-up: the cache built, cuDNN's algorithms chosen, buffers allocated
            pipeline.epoch_work(trainer, epoch)()
        for epoch in (2, 3):  # an unskipped epoch and one that skips audio (naive: two unskipped)
            torch.cuda.set_sync_debug_mode("error")
            try:
                meters, samples = pipeline.batch_loop(trainer, epoch)
            finally:
                torch.cuda.set_sync_debug_mode("default")
            assert samples == CLIPS
            assert meters.points("train", epoch), "the epoch's end still reads its metrics"
    finally:
        trainer.loaders.close()
