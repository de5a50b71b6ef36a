"""AMCo (adaptive mask co-optimization; Zhou et al., ICASSP 2023), as BalanceBenchmark's AMCo trainer does it.

Each epoch starts with progress l = 0 and no dependent modality. Per batch (k-th of epoch e), the mask ratio
p = sin(pi/2 * min(eps, l) / eps), then l += e * progress_rate. Inside the modulation window, if a modality is
dependent (the first one flagged, in sorted order: audio, text, visual), one mask over its embedding's D
features (shared by the batch's samples) zeroes N = int(p * D) features drawn at random, and the embedding is
multiplied by that mask and by 1 / (1 - p) (by 10 when |p - 1| <= 0.1). The loss is the fused CE plus each
modality's branch CE, all from the (masked) embeddings; one backward, one step. After the step, with
s_m = mean over the batch of the softmax mass on modality m's logits in the softmax of all branches' logits
concatenated, the first modality in sorted order with s_m >= sigma is flagged dependent for the rest of the
epoch (flags are never cleared within an epoch). Outside the window: the fused CE alone, nothing masked or
flagged. Logged per epoch (run-level, per modality): `amco_mask`, the mean share N / D of the modality's
features masked per batch.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from amst_core.distributed import share_rng_state, sum_across
from amst_core.methods.base import Embeddings, Method
from amst_core.methods.epoch_means import EpochMeans


def mask_ratio(progress: float, eps: float) -> float:
    """p = sin(pi/2 * min(eps, progress) / eps)."""
    return math.sin(math.pi / 2 * min(eps, progress) / eps)


def feature_mask(dim: int, ratio: float, device: torch.device | None = None) -> torch.Tensor:
    """A (dim,) multiplier: int(ratio * dim) features at random set to 0, the others to the rescaling
    1 / (1 - ratio) (10 when the ratio is within 0.1 of 1, as BalanceBenchmark's model)."""
    masked = int(ratio * dim)
    scale = 1 / (1 - ratio) if abs(ratio - 1) > 0.1 else 10.0
    mask = torch.full((dim,), scale, device=device)
    mask[torch.randperm(dim, device=device)[:masked]] = 0.0
    return mask


def dependence_shares(branches: list[torch.Tensor]) -> torch.Tensor:
    """Per modality, the softmax mass on its logits in the softmax of all branches' logits concatenated, summed over
    the batch (divide by the batch size for the mean)."""
    probs = F.softmax(torch.cat([b.float() for b in branches], dim=1), dim=1)
    return torch.stack([block.sum() for block in probs.split([b.shape[1] for b in branches], dim=1)])


def first_true(flags: torch.Tensor) -> torch.Tensor:
    """Only the first True of a boolean vector kept."""
    return flags & (flags.long().cumsum(0) == 1)


def flag_dependent(flags: torch.Tensor, shares: torch.Tensor, sigma: float) -> torch.Tensor:
    """The flags with the first modality whose mean share reaches sigma added."""
    return flags | first_true(shares >= sigma)


class Amco(Method):
    name = "amco"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # zero outside the window: the mean over every batch of the epoch, masked or not
        self.means = EpochMeans(self.modalities, self.device, per_modality=("amco_mask",))
        self.reset_epoch()

    def reset_epoch(self) -> None:
        """Every epoch starts afresh: no progress, no modality flagged (the means reset themselves)."""
        self.progress = 0.0
        self.dependent = torch.zeros(self.n, dtype=torch.bool, device=self.device)

    def before_epoch(self, epoch: int, data: Any) -> None:
        self.reset_epoch()

    def update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        trained, embs = self.nets["model"], embeddings["model"]
        p = self.params
        ratio = mask_ratio(self.progress, p.eps)
        self.progress += epoch * p.progress_rate
        self.means.batch()
        if not p.active(epoch):
            self.joint_update(trained, embs, labels, self.modalities)
            return
        masked = first_true(self.dependent)
        share_rng_state(self.device, self.ranks)  # one mask per global batch, the same on every rank
        masked_embs, shares = {}, []
        for i, m in enumerate(self.modalities):
            e = embs[m]
            mask = feature_mask(e.shape[1], ratio, self.device)
            masked_embs[m] = e * torch.where(masked[i], mask, torch.ones_like(mask)).to(e.dtype)
            shares.append(masked[i].double() * (int(ratio * e.shape[1]) / e.shape[1]))
        self.means.add("amco_mask", torch.stack(shares))
        head = trained.net.head
        with self.autocast():
            branches = head.branches(masked_embs)
            logits = head.combine(list(branches.values()))
        loss = self.loss(logits, labels) + sum(self.loss(b, labels) for b in branches.values())
        self.step(loss, trained, ("head", "encoders"))
        with torch.no_grad():
            count = torch.full((1,), len(labels), dtype=torch.float32, device=self.device)  # no host copy
            shares = sum_across(torch.cat([dependence_shares([b.detach() for b in branches.values()]), count]),
                                self.ranks)
            self.dependent = flag_dependent(self.dependent, shares[:-1] / shares[-1], p.sigma)
