"""Frame augmentation drawn on the GPU: the crop boxes follow torchvision's RandomResizedCrop rule with the
statistics the CPU test checks (tests/data/test_augment.py, the same check with a device), and a batch of cached
frames is augmented where it lies."""

from __future__ import annotations

import pytest
import torch

from amst_core.data.augment import FrameAugment, batch_generator
from tests.kit.augment import CROP_SHAPES, assert_crops_follow_torchvisions_rule

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize(("height", "width"), CROP_SHAPES)
def test_crops_drawn_on_the_device_follow_torchvisions_rule(device: torch.device, height: int, width: int) -> None:
    assert_crops_follow_torchvisions_rule(height, width, device)


def test_cached_frames_are_augmented_on_the_device_half_of_them_flipped(device: torch.device) -> None:
    ramp = torch.arange(64, device=device) * 2  # rises to the right: a flipped frame falls to the right
    frames = (ramp[None, :] + ramp[:, None]).to(torch.uint8).view(1, 1, 64, 64, 1).expand(200, 4, 64, 64, 3)
    out = FrameAugment(16)(frames, True, batch_generator(device, 0, 0, 0))
    assert out.device == frames.device and out.shape == (200, 3, 4, 16, 16) and out.dtype == torch.float32
    per_frame = out[:, 0].reshape(800, 16, 16)
    flipped = (per_frame[:, :, 0] > per_frame[:, :, -1]).float().mean().item()
    assert abs(flipped - 0.5) < 0.06
    again = FrameAugment(16)(frames, True, batch_generator(device, 0, 0, 0))
    assert torch.equal(out, again), "the same (seed, epoch, batch) draws the same crops on the device"
