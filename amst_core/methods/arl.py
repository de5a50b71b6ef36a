"""ARL (asymmetric representation learning; Wei, Luo and Luo, "Improving Multimodal Learning via Imbalanced
Learning", ICCV 2025; the authors' main_arl_variance.py and models/backbone.py).

Per batch, from the branch logits o_m (the head's logits of one modality, as the reference's shared-weight
auxiliary heads), without gradient and over the (global) batch:
- c_m = sum over samples and classes of |o_m|, normalised to sum 1 over the modalities (the logit magnitude);
- H_m = summed entropy of softmax(o_m), normalised to sum 1 and floored at `entropy_floor`;
  v_m = (1 / H_m) normalised to sum 1;
- score_m = c_others * v_m with c_others the sum of the other modalities' c (two modalities: the reference's
  calculate_b * a_weight for audio, calculate_a * v_weight for visual); coefficients k = softmax(T * score).
In epochs after `start`, the gradient reaching each encoder's output is multiplied by 1 + k_m (the reference's
GradScale after the encoder; the head's gradient is not scaled), and the loss is
CE(fused) + gamma * sum_m CE(o_m, y); up to `start` nothing is scaled and the unimodal losses have weight 1. One
backward; the head's and encoders' gradients are clipped to the global norm `max_grad_norm`, then both step.
Logged per epoch (run-level, per modality): `arl_grad_scale`, the mean factor 1 + k_m (1 up to `start`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from amst_core.distributed import SINGLE, Ranks, sum_across
from amst_core.methods.base import Embeddings, Method, TrainedNet, clip_to_norm
from amst_core.methods.epoch_means import EpochMeans
from amst_core.methods.ogm_ge import others_sum


class GradScale(torch.autograd.Function):
    """Identity forward; the backward multiplies the incoming gradient by `factor`."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(factor)
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (factor,) = ctx.saved_tensors
        return grad * factor.to(grad.dtype), None


def coefficients(branches: dict[str, torch.Tensor], modalities: tuple[str, ...], temperature: float,
                 entropy_floor: float, ranks: Ranks = SINGLE) -> torch.Tensor:
    """k, one per modality in `modalities` order (sums to 1), on the device: no host sync."""
    stats = []
    for m in modalities:
        logits = branches[m].float()
        p = F.softmax(logits, dim=1)
        stats.append(torch.stack([logits.abs().sum(), (-p * torch.log(p + 1e-16)).sum()]))
    # Batch means in the reference; their normalisation over the modalities cancels the batch size.
    magnitude, entropy = sum_across(torch.stack(stats), ranks).unbind(dim=1)
    magnitude = magnitude / magnitude.sum()
    entropy = (entropy / entropy.sum()).clamp(min=entropy_floor)
    inverse = 1 / entropy
    inverse = inverse / inverse.sum()
    return F.softmax(temperature * others_sum(magnitude) * inverse, dim=0)


class Arl(Method):
    name = "arl"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.means = EpochMeans(self.modalities, self.device, per_modality=("arl_grad_scale",))

    def active(self, epoch: int) -> bool:
        return epoch > self.params.start

    def update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        trained, embs = self.nets["model"], embeddings["model"]
        head = trained.net.head
        active = self.active(epoch)
        if active:
            with torch.no_grad(), self.autocast():
                detached = head.branches({m: e.detach() for m, e in embs.items()})
                k = coefficients(detached, self.modalities, self.params.temperature, self.params.entropy_floor,
                                 self.ranks)
            factors = 1 + k
            embs = {m: GradScale.apply(embs[m], factors[i]) for i, m in enumerate(self.modalities)}
            self.means.add("arl_grad_scale", factors)
        else:
            self.means.add("arl_grad_scale", 1.0)  # no scaling before the start
        self.means.batch()
        weight = self.params.gamma if active else 1.0
        with self.autocast():
            branches = head.branches(embs)
            loss = self.loss(head.combine(list(branches.values())), labels)
            loss = loss + weight * sum(self.loss(branches[m], labels) for m in self.modalities)
        self.step(loss, trained, ("head", "encoders"))

    def on_gradients(self, trained: TrainedNet, parts: tuple[str, ...]) -> None:
        if self.params.max_grad_norm > 0:
            clip_to_norm([trained.optimizers[part] for part in parts], self.params.max_grad_norm)
