"""LFM (learning the modality gap; Yang et al., NeurIPS 2024; the authors' CREMA-D script, heuristic strategy).

Per batch: L = w_e * L_align + (1 - w_e) * CE(fused logits, y), with the epoch's weight
w_e = clip(exp(-decay * e), min_weight, max_weight) (e the 0-based epoch: 0.95, 0.74, 0.55, ... down to 0.05).
L_align is the mean over the pairs (i < j, sorted modalities) of
- `contrastive` (the paper): with E_i, E_j L2-normalised per sample and S = E_i E_j^T / temperature,
  (CE(S, diag) + CE(S^T, diag)) / 2, the other samples of the batch as negatives;
- `js` (the script as it runs: its last definition of `Alignment`): with p = softmax(E_i), q = softmax(E_j) over
  the embedding dimension and m = (p + q) / 2, (KL(m || p) + KL(m || q)) / 2 averaged over the batch (F.kl_div's
  argument order, as written).
One backward and a step of the head and the encoders. Logged per epoch (run-level): `lfm_weight`, w_e, and
`lfm_align_loss`, the mean L_align of the epoch's batches.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from amst_core.methods.base import Embeddings, Method
from amst_core.methods.epoch_means import EpochMeans
from amst_core.metrics import MetricPoint


def alignment_weight(epoch: int, decay: float, low: float, high: float) -> float:
    """The alignment loss's weight in `epoch`: exp(-decay * epoch) clipped to [low, high]."""
    return min(max(math.exp(-decay * epoch), low), high)


def contrastive_loss(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE between two batches of embeddings (row i of each is sample i)."""
    a, b = F.normalize(a.float(), dim=-1), F.normalize(b.float(), dim=-1)
    similarity = a @ b.T / temperature
    target = torch.arange(a.shape[0], device=a.device)
    return (F.cross_entropy(similarity, target) + F.cross_entropy(similarity.T, target)) / 2


def js_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The authors' `Alignment`: (KL(m || p) + KL(m || q)) / 2 with p, q the softmaxed embeddings, m their mean."""
    log_p, log_q = F.log_softmax(a.float(), dim=-1), F.log_softmax(b.float(), dim=-1)  # log(softmax) is -inf
    m = (log_p.exp() + log_q.exp()) / 2  # where a probability underflows
    return (F.kl_div(log_p, m, reduction="batchmean") + F.kl_div(log_q, m, reduction="batchmean")) / 2


def alignment_loss(embs: Embeddings, modalities: tuple[str, ...], kind: str, temperature: float) -> torch.Tensor:
    """The mean alignment loss over the pairs of modalities."""
    pairs = [(mi, mj) for i, mi in enumerate(modalities) for mj in modalities[i + 1:]]
    losses = [contrastive_loss(embs[mi], embs[mj], temperature) if kind == "contrastive"
              else js_loss(embs[mi], embs[mj]) for mi, mj in pairs]
    return torch.stack(losses).mean()


class Lfm(Method):
    name = "lfm"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.means = EpochMeans(self.modalities, self.device, scalars=("lfm_align_loss",))

    def weight(self, epoch: int) -> float:
        p = self.params
        return alignment_weight(epoch, p.decay, p.min_weight, p.max_weight)

    def update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        trained, embs = self.nets["model"], embeddings["model"]
        w = self.weight(epoch)
        with self.autocast():
            ce = self.loss(trained.net.head(embs), labels)
        # The pairs' loss in float32 (normalising and exponentiating half-precision embeddings loses too much).
        align = alignment_loss(embs, self.modalities, self.params.alignment, self.params.temperature)
        self.means.add("lfm_align_loss", align.detach())
        self.means.batch()
        # The negatives are this rank's samples; on several ranks weighted by its share, as the CE is.
        self.step(w * self.scaled(align) + (1 - w) * ce, trained, ("head", "encoders"))

    def after_validation(self, epoch: int, points: list[MetricPoint]) -> list[MetricPoint]:
        return [MetricPoint("train", "run", None, "lfm_weight", epoch, self.weight(epoch)),
                *super().after_validation(epoch, points)]
