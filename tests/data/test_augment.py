"""Frame augmentation on the device: torchvision's RandomResizedCrop and flip rule, batched, per frame, seeded."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from amst_core.data.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    FrameAugment,
    batch_generator,
    finish_batch,
    resized_crops,
)
from tests.kit.augment import CROP_SHAPES, assert_crops_follow_torchvisions_rule

CPU = torch.device("cpu")


@pytest.mark.parametrize(("height", "width"), CROP_SHAPES)
def test_crops_follow_torchvisions_rule(height: int, width: int) -> None:
    assert_crops_follow_torchvisions_rule(height, width, CPU)


def test_flips_half_the_frames_and_each_frame_has_its_own_crop() -> None:
    ramp = torch.arange(64) * 2  # rises to the right and downwards
    frames = (ramp[None, :] + ramp[:, None]).to(torch.uint8).view(1, 1, 64, 64, 1).expand(200, 4, 64, 64, 3)
    out = FrameAugment(16)(frames, True, batch_generator(CPU, 0, 0, 0))
    assert out.shape == (200, 3, 4, 16, 16)
    per_frame = out[:, 0].reshape(800, -1)
    assert len({tuple(row.tolist()) for row in per_frame}) > 790  # (almost) every frame cropped its own way
    flipped = (per_frame.reshape(800, 16, 16)[:, :, 0] > per_frame.reshape(800, 16, 16)[:, :, -1]).float().mean()
    assert abs(flipped - 0.5) < 0.06


def test_a_box_is_cropped_and_resized_like_torchvision() -> None:
    image = torch.rand(1, 3, 40, 40) * 255
    box = [torch.tensor([v]) for v in (5.0, 8.0, 30.0, 20.0)]
    ours = resized_crops(image, *box, flip=torch.tensor([False]), size=24)
    theirs = TF.resized_crop(image, 5, 8, 30, 20, [24, 24], antialias=False)
    torch.testing.assert_close(ours[..., 1:-1, 1:-1], theirs[..., 1:-1, 1:-1], atol=1e-3, rtol=0)  # edges: see doc
    whole = [torch.tensor([v]) for v in (0.0, 0.0, 40.0, 40.0)]
    torch.testing.assert_close(resized_crops(image, *whole, flip=torch.tensor([True]), size=40), image.flip(-1),
                               atol=1e-3, rtol=0)


def test_the_same_seed_draws_the_same_crops_and_another_batch_others() -> None:
    frames = torch.randint(0, 256, (4, 3, 18, 18, 3), dtype=torch.uint8)
    augment = FrameAugment(16)
    a = augment(frames, True, batch_generator(CPU, 7, 2, 5))
    assert torch.equal(a, augment(frames, True, batch_generator(CPU, 7, 2, 5)))
    for other in (batch_generator(CPU, 7, 2, 6), batch_generator(CPU, 7, 3, 5), batch_generator(CPU, 8, 2, 5),
                  batch_generator(CPU, 7, 2, 5, stream=1)):
        assert not torch.equal(a, augment(frames, True, other))


def test_evaluation_resizes_and_normalises_without_randomness() -> None:
    colour = torch.tensor([200, 100, 50], dtype=torch.uint8)
    frames = colour.view(1, 1, 1, 1, 3).expand(2, 3, 18, 18, 3).contiguous()
    batch = finish_batch({"visual": frames, "audio": torch.ones(2, 1, 4, 4, dtype=torch.float16)}, FrameAugment(16),
                         train=False, generator=None)
    assert batch["audio"].dtype == torch.float32 and batch["visual"].shape == (2, 3, 3, 16, 16)
    expected = [(c / 255 - m) / s for c, m, s in zip(colour.tolist(), IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    torch.testing.assert_close(batch["visual"].mean(dim=(0, 2, 3, 4)), torch.tensor(expected), atol=1e-4, rtol=0)
    ready = {"visual": torch.zeros(2, 3, 1, 16, 16)}
    assert finish_batch(dict(ready), None, train=True, generator=None)["visual"] is ready["visual"]  # model form
