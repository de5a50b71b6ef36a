"""Frame augmentation on the run's device, batched: what the reference does per frame with PIL on CPU workers.

Cached datasets hand over frames as stored: uint8 (B, T, S, S, 3), S a little larger than model.image_size. Here,
on the device, in training every frame gets its own random resized crop (torchvision's RandomResizedCrop rule:
area share in [0.08, 1], aspect ratio in [3/4, 4/3] drawn log-uniformly, up to 10 tries, else the whole image),
a horizontal flip with probability 1/2, a bilinear resize to image_size, and ImageNet normalisation; in
evaluation a resize of the whole frame. One `grid_sample` does crop, flip and resize of every frame of the batch.

The draws come from a generator on the device seeded by (run seed, epoch, batch index, stream), so a run is the
same whatever the loader processes, and a resumed run draws what an uninterrupted one would have: there is no
generator state to save. Differences from the CPU path (documented in Doc/training.md): the crop is taken from the
stored square, not from the original frame, and the resize is bilinear without antialiasing (a crop is at most
S/image_size = 8/7 larger than the output, where antialiasing changes little).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from amst_core.vocab import AUDIO, VISUAL

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
TRIES = 10


def batch_generator(device: torch.device, seed: int, epoch: int, index: int, stream: int = 0) -> torch.Generator:
    g = torch.Generator(device=device)
    # Reduced to the generator's 64 bits: a large config seed (up to 2^31 - 1) overflowed them, and every seed
    # that fitted before keeps its draws (a resumed run draws what it drew before).
    g.manual_seed((((seed * 1_000_003 + epoch) * 7 + stream) * 1_000_003 + index) % 2**64)
    return g


def crop_boxes(n: int, height: int, width: int, generator: torch.Generator,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(top, left, h, w) of n crops, each drawn by torchvision's RandomResizedCrop.get_params rule, vectorised: the
    first of 10 candidates that fits, else the whole image clamped to the ratio range (a centre crop)."""
    area = height * width
    u = torch.rand(n, TRIES, 2, generator=generator, device=device)
    target = area * (SCALE[0] + u[..., 0] * (SCALE[1] - SCALE[0]))
    log_lo, log_hi = math.log(RATIO[0]), math.log(RATIO[1])
    aspect = torch.exp(log_lo + u[..., 1] * (log_hi - log_lo))
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.int().argmax(dim=1, keepdim=True)  # the first candidate that fits (0 when none does)
    w, h, found = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0], fits.any(dim=1)
    in_ratio = width / height  # the fallback: whole image, cut to the ratio range, centred
    fw, fh = ((width, round(width / RATIO[0])) if in_ratio < RATIO[0] else
              (round(height * RATIO[1]), height) if in_ratio > RATIO[1] else (width, height))
    w = torch.where(found, w, torch.full_like(w, fw))
    h = torch.where(found, h, torch.full_like(h, fh))
    offsets = torch.rand(n, 2, generator=generator, device=device)
    top = torch.where(found, torch.floor(offsets[:, 0] * (height - h + 1)), torch.full_like(h, (height - fh) // 2))
    left = torch.where(found, torch.floor(offsets[:, 1] * (width - w + 1)), torch.full_like(w, (width - fw) // 2))
    return top, left, h, w


def resized_crops(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, h: torch.Tensor, w: torch.Tensor,
                  flip: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, size, size): each image's box [top, top+h) x [left, left+w) resized bilinearly, mirrored where
    `flip`. An affine grid maps output pixel centres onto the box (align_corners=False convention)."""
    n, _, height, width = images.shape
    theta = torch.zeros(n, 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = (w / width) * torch.where(flip, -1.0, 1.0)
    theta[:, 0, 2] = (2 * left + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * top + h) / height - 1
    grid = F.affine_grid(theta, [n, images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class FrameAugment:
    """Stored uint8 frames (B, T, S, S, 3) -> normalised float frames (B, 3, T, size, size) on their device."""

    def __init__(self, image_size: int):
        self.size = image_size
        self.normalisers: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def normaliser(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) in the 0-255 scale, made once per device (a copy to the GPU per batch would sync)."""
        if device not in self.normalisers:
            self.normalisers[device] = (torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1) * 255,
                                        torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1) * 255)
        return self.normalisers[device]

    def __call__(self, frames: torch.Tensor, train: bool, generator: torch.Generator | None,
                 part: tuple[int, int] | None = None) -> torch.Tensor:
        """`part` (first, total): these frames are samples first.. of a global batch of `total` split between
        ranks; the draws are the whole batch's, and these samples get theirs (as in one process)."""
        b, t, height, width, c = frames.shape
        images = frames.reshape(b * t, height, width, c).permute(0, 3, 1, 2).float()
        if train:
            assert generator is not None, "training draws its crops from the batch's generator"
            first, total = part or (0, b)
            rows = slice(first * t, (first + b) * t)
            top, left, h, w = (x[rows] for x in crop_boxes(total * t, height, width, generator, frames.device))
            flip = (torch.rand(total * t, generator=generator, device=frames.device) < 0.5)[rows]
            out = resized_crops(images, top, left, h, w, flip, self.size)
        else:
            out = F.interpolate(images, size=(self.size, self.size), mode="bilinear", antialias=True,
                                align_corners=False)
        mean, std = self.normaliser(out.device)
        out = (out - mean) / std
        return out.reshape(b, t, c, self.size, self.size).transpose(1, 2)


def finish_batch(batch: dict[str, torch.Tensor], augment: FrameAugment | None, train: bool,
                 generator: torch.Generator | None, part: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
    """A batch on its device as the model takes it: cached audio (float16) widened to float32, stored frames
    (uint8) augmented or resized and normalised; batches already in model form pass unchanged."""
    audio = batch.get(AUDIO)
    if audio is not None and audio.dtype == torch.float16:
        batch[AUDIO] = audio.float()
    visual = batch.get(VISUAL)
    if visual is not None and visual.dtype == torch.uint8:
        assert augment is not None, "stored frames need the run's FrameAugment"
        batch[VISUAL] = augment(visual, train, generator, part)
    return batch
