"""Data Remixing (Ma, Chen and Deng, "Improving Multimodal Learning Balance and Sufficiency through Data
Remixing", ICML 2025; the authors' train.py).

Warm-up (epochs < warmup_epochs): loss = fused CE + warmup_weight * sum over modalities of the branch CE.
Afterwards, per batch: from the no-grad pass over the detached embeddings, each sample's branch prediction
p_m = softmax(o_m) gives KL_m = sum_c p_m,c * log2(p_m,c * C) (p clipped to [1e-9, 1]), its divergence from
the uniform prediction; the sample is assigned to the modality with the smallest KL, the one that has learnt it
least (ties to the later modality in sorted order: the authors' `KL_audio < KL_video` else video). Then for each
modality in sorted order with samples assigned (in the global batch), one unimodal step on those samples alone:
the other modalities' embeddings are zeroed, loss = fused CE + unimodal_weight * the modality's branch CE (means
over the assigned samples; the batch's other samples masked out of it), one backward and one optimizer step of
head and encoders (only the assigned modality's encoder gets a gradient). Logged per epoch (run-level, per
modality): `remix_share`, the share of the epoch's samples assigned to the modality (1 for every modality in
warm-up).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from amst_core.distributed import sum_across
from amst_core.methods.base import Embeddings, Method
from amst_core.metrics import MetricPoint


def kl_to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """Per sample, KL(softmax(logits) || uniform) in bits, the probabilities clipped to [1e-9, 1]."""
    p = F.softmax(logits.float(), dim=1).clamp(1e-9, 1.0)
    return (p * torch.log2(p * logits.shape[1])).sum(dim=1)


def assign(kl: torch.Tensor) -> torch.Tensor:
    """(modalities, batch) KL -> per sample the index of the smallest; ties to the last of them."""
    n = kl.shape[0]
    return n - 1 - kl.flip(0).argmin(dim=0)


class DataRemixing(Method):
    name = "data_remixing"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reset_epoch()

    def reset_epoch(self) -> None:
        self.assigned = [0] * self.n
        self.samples = 0

    def before_epoch(self, epoch: int, data: Any) -> None:
        self.reset_epoch()

    def remixing(self, epoch: int) -> bool:
        return epoch >= self.params.warmup_epochs

    def update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        trained, embs = self.nets["model"], embeddings["model"]
        head = trained.net.head
        if not self.remixing(epoch):
            with self.autocast():
                branches = head.branches(embs)
                logits = head.combine(list(branches.values()))
            loss = self.loss(logits, labels) + self.params.warmup_weight * sum(
                self.loss(b, labels) for b in branches.values())
            self.step(loss, trained, ("head", "encoders"))
            return
        with torch.no_grad(), self.autocast():
            branches = head.branches({m: e.detach() for m, e in embs.items()})
            owner = assign(torch.stack([kl_to_uniform(branches[m]) for m in self.modalities]))
        chosen = torch.stack([owner == i for i in range(self.n)])  # (modalities, batch)
        # The global batch's counts decide which modalities step (every rank takes the same steps): one host sync.
        counts = [int(c) for c in sum_across(chosen.sum(dim=1).float(), self.ranks).tolist()]
        self.samples += sum(counts)
        for i, m in enumerate(self.modalities):
            self.assigned[i] += counts[i]
            if counts[i] == 0:
                continue
            # The whole batch with the other modalities' embeddings zeroed, the loss masked to the assigned samples
            # (no gather of their indices: no host sync).
            sub = {o: embs[o] if o == m else torch.zeros_like(embs[o]) for o in self.modalities}
            with self.autocast():
                fused = head(sub)
                branch = head.branch(m, sub[m])
            loss = self.subset_loss(fused, labels, chosen[i], counts[i]) + self.params.unimodal_weight * \
                self.subset_loss(branch, labels, chosen[i], counts[i])
            self.step(loss, trained, ("head", "encoders"))

    def subset_loss(self, logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, total: int) -> torch.Tensor:
        """Mean CE over the `total` samples of the global batch that `mask` selects; on several ranks this rank's
        sum scaled so that the averaged gradients are those of the global mean."""
        per_sample = F.cross_entropy(logits.float(), labels, reduction="none")
        loss = torch.where(mask, per_sample, torch.zeros_like(per_sample)).sum() / total
        return loss * self.ranks.world if self.ranks.distributed else loss

    def after_validation(self, epoch: int, points: list[MetricPoint]) -> list[MetricPoint]:
        if self.remixing(epoch):
            if not self.samples:
                return []
            shares = [a / self.samples for a in self.assigned]
        else:
            shares = [1.0] * self.n
        return [MetricPoint("train", "run", m, "remix_share", epoch, shares[i]) for i, m in enumerate(self.modalities)]
