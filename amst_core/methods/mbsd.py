"""MBSD (BalanceBenchmark's MBSD_trainer.py: unimodal losses and a sample-level distillation between modalities).

Per batch, o_m the modality's branch logits, p_m = softmax(o_m), p_m[y] the probability of the true class. Inside
the window [modulation_start, modulation_end] the loss is
    CE(fused, y) + sum_m CE(o_m, y) + mean over pairs (a, b) of (1/B) sum_i w_i (RS_i + KL_i),
and outside it CE(fused, y) alone. For each sample i and pair (a, b), as the trainer computes them:
- w_i = |p_a[y_i] - p_b[y_i]| when either modality predicts y_i (argmax), else 0: the more confident modality
  teaches the other in proportion to their gap;
- RS_i = (1/C) sum_c (o_a - o_b)_ic^2 (C classes) with two modalities; with more, on probabilities (p_a - p_b);
- KL_i = kl_div(input=ps_i, target=pw_i) = pw_i * (log pw_i - ps_i) with ps_i / pw_i the larger / smaller of
  p_a[y_i] and p_b[y_i] (torch's kl_div on these scalars, as the trainer calls it);
gradients flow through w, RS and KL alike (nothing detached, as in the trainer). Pairs: the one pair of two
modalities; with three, all three, averaged. Run-level series per modality, every epoch: `mbsd_weight`, the mean
over samples of w_i where the modality is the more confident of the pair (averaged over pairs; 0 outside the
window), and `mbsd_confident`, the share of samples in which it gives the true class the highest probability.
"""

from __future__ import annotations

from itertools import combinations

import torch
import torch.nn.functional as F

from amst_core.config import RunConfig
from amst_core.distributed import Ranks
from amst_core.methods.base import Embeddings, Method
from amst_core.methods.epoch_means import EpochMeans


def pair_terms(logits_a: torch.Tensor, logits_b: torch.Tensor, labels: torch.Tensor,
               on_probabilities: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per sample of one pair: (w, RS, KL, a_stronger), each of shape (B,); a_stronger is 1 where
    p_a[y] >= p_b[y]."""
    logits_a, logits_b = logits_a.float(), logits_b.float()
    p_a, p_b = F.softmax(logits_a, dim=1), F.softmax(logits_b, dim=1)
    true_a, true_b = p_a.gather(1, labels[:, None])[:, 0], p_b.gather(1, labels[:, None])[:, 0]
    right = (p_a.argmax(dim=1) == labels) | (p_b.argmax(dim=1) == labels)
    strong, weak = torch.maximum(true_a, true_b), torch.minimum(true_a, true_b)
    w = torch.where(right, strong - weak, torch.zeros_like(strong))
    diff = (p_a - p_b) if on_probabilities else (logits_a - logits_b)
    rs = (diff ** 2).sum(dim=1) / logits_a.shape[1]
    kl = F.kl_div(strong, weak, reduction="none")
    return w, rs, kl, (true_a >= true_b).to(w.dtype)


def distillation(branches: dict[str, torch.Tensor], labels: torch.Tensor, modalities: tuple[str, ...]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(the loss added to the CE terms, each modality's weight as teacher: mean over samples of w where it is the
    more confident of a pair, averaged over pairs)."""
    pairs = list(combinations(range(len(modalities)), 2))
    on_probabilities = len(modalities) > 2
    loss = torch.zeros((), device=labels.device)
    weights = torch.zeros(len(modalities), device=labels.device)
    for a, b in pairs:
        w, rs, kl, a_stronger = pair_terms(branches[modalities[a]], branches[modalities[b]], labels,
                                           on_probabilities)
        loss = loss + (w * rs).mean() + (w * kl).mean()
        with torch.no_grad():
            weights[a] += (w * a_stronger).mean()
            weights[b] += (w * (1 - a_stronger)).mean()
    return loss / len(pairs), weights / len(pairs)


def most_confident(branches: dict[str, torch.Tensor], labels: torch.Tensor, modalities: tuple[str, ...]
                   ) -> torch.Tensor:
    """Per modality, the number of samples in which it gives the true class the highest probability (ties: the
    first in `modalities` order)."""
    true = torch.stack([F.softmax(branches[m].float(), dim=1).gather(1, labels[:, None])[:, 0] for m in modalities])
    return F.one_hot(true.argmax(dim=0), len(modalities)).sum(dim=0)


class Mbsd(Method):
    name = "mbsd"

    def __init__(self, cfg: RunConfig, num_classes: int, device: torch.device, ranks: Ranks | None = None):
        super().__init__(cfg, num_classes, device, ranks)
        # mbsd_weight: zero outside the window, over every batch; mbsd_confident: a share of the epoch's samples
        self.means = EpochMeans(self.modalities, self.device, per_modality=("mbsd_weight", "mbsd_confident"),
                                counted=("mbsd_confident",))

    def update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        trained, embs = self.nets["model"], embeddings["model"]
        with self.autocast():
            branches = trained.net.head.branches(embs)
            fused = trained.net.head.combine(list(branches.values()))
        loss = self.loss(fused, labels)
        self.means.batch()
        self.means.add("mbsd_confident", most_confident({m: o.detach() for m, o in branches.items()}, labels,
                                                        self.modalities), count=len(labels))
        if self.params.active(epoch):
            extra, weights = distillation(branches, labels, self.modalities)
            loss = loss + sum(self.loss(branches[m], labels) for m in self.modalities)
            loss = loss + self.scaled(extra)
            self.means.add("mbsd_weight", weights)
        self.step(loss, trained, ("head", "encoders"))
