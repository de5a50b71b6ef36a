"""The crop-rule check of frame augmentation, run on the CPU (tests/data) and on a GPU (tests/gpu)."""

from __future__ import annotations

import math

import torch
from torchvision import transforms

from amst_core.data.augment import batch_generator, crop_boxes

DRAWS = 20_000


def torchvision_boxes(n: int, height: int, width: int) -> torch.Tensor:
    torch.manual_seed(0)
    image = torch.zeros(3, height, width)
    return torch.tensor([transforms.RandomResizedCrop.get_params(image, (0.08, 1.0), (3 / 4, 4 / 3))
                         for _ in range(n)], dtype=torch.float64)


CROP_SHAPES = [(256, 256), (18, 18), (60, 200)]


def assert_crops_follow_torchvisions_rule(height: int, width: int, device: torch.device) -> None:
    """Area share and aspect ratio of boxes drawn on `device` have torchvision's distribution (means, spread,
    quantiles), every box lies in the image, and the rule's fallback (nothing fits in 10 tries) matches too (a wide
    image falls back often). tests/gpu runs it on a GPU."""
    boxes = crop_boxes(DRAWS, height, width, batch_generator(device, 0, 0, 0), device)
    assert all(t.device.type == device.type for t in boxes), "drawn on the device"
    top, left, h, w = (t.double().cpu() for t in boxes)
    ref = torchvision_boxes(DRAWS, height, width)
    assert bool(((top >= 0) & (left >= 0) & (top + h <= height) & (left + w <= width) & (h >= 1) & (w >= 1)).all())
    ours = {"area": h * w / (height * width), "log_aspect": torch.log(w / h), "top": top / height}
    theirs = {"area": ref[:, 2] * ref[:, 3] / (height * width), "log_aspect": torch.log(ref[:, 3] / ref[:, 2]),
              "top": ref[:, 0] / height}
    for name in ours:
        a, b = ours[name], theirs[name]
        assert abs(a.mean() - b.mean()) < 0.01 + 4 * b.std() / math.sqrt(DRAWS), name
        assert abs(a.std() - b.std()) < 0.01 + 0.05 * b.std(), name
        for q in (0.1, 0.5, 0.9):
            assert abs(torch.quantile(a, q) - torch.quantile(b, q)) < 0.02 + 0.05 * abs(torch.quantile(b, q)), name
