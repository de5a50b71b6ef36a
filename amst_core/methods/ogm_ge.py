"""OGM-GE (on-the-fly gradient modulation with generalization enhancement; the reference's ogm3_new.py).

Per batch, from the no-grad metrics pass: score_m = sum over the batch of softmax(o_m)[y] (o_m: the modality's
branch logits) and ratio_m = score_m / sum of the other modalities' scores. Only the modality with the highest
ratio gets coefficient 1 - tanh(alpha * relu(ratio)) (the others 1; the ratio is not reduced by 1, as in the
original code). Then one fused CE backward and, inside the modulation window, every trainable 4-D (conv)
gradient of each encoder becomes grad * coeff_m + N(0, std(grad) + 1e-8) noise; the head is not modulated.
Logged per epoch (run-level, per modality): `ogm_coeff`, the mean coefficient applied (1 outside the window),
and `ogm_ratio`, the mean discrepancy ratio.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from amst_core.distributed import SINGLE, Ranks, share_rng_state, sum_across
from amst_core.methods.base import Embeddings, Method, TrainedNet, encoder_gradients
from amst_core.methods.epoch_means import EpochMeans


def others_sum(values: torch.Tensor) -> torch.Tensor:
    """Each entry's sum of the other entries, summed without the entry itself: sum() - value rounds, so with two
    it would not be exactly the other one (the reference's score_a / score_v to the last bit)."""
    n = values.shape[0]
    return (values[None, :] * (1 - torch.eye(n, device=values.device, dtype=values.dtype))).sum(dim=1)


def modulation(branches: dict[str, torch.Tensor], labels: torch.Tensor, alpha: float,
               modalities: tuple[str, ...], ranks: Ranks = SINGLE) -> tuple[torch.Tensor, torch.Tensor]:
    """(coefficients, ratios), one per modality in `modalities` order, on the device: no host sync. On several
    ranks the scores are the global batch's (summed over the ranks' slices)."""
    scores = sum_across(torch.stack([F.softmax(branches[m].float(), dim=1).gather(1, labels[:, None]).sum()
                                     for m in modalities]), ranks)
    ratios = scores / others_sum(scores).clamp(min=1e-12)
    dominant = torch.arange(len(modalities), device=ratios.device) == ratios.argmax()
    coeffs = torch.where(dominant, 1 - torch.tanh(alpha * F.relu(ratios)), torch.ones_like(ratios))
    return coeffs, ratios


class OgmGe(Method):
    name = "ogm_ge"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.coeffs: torch.Tensor | None = None  # this batch's, inside the window
        self.means = EpochMeans(self.modalities, self.device, per_modality=("ogm_coeff", "ogm_ratio"))

    def update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        trained, embs = self.nets["model"], embeddings["model"]
        with torch.no_grad(), self.autocast():  # half-precision embeddings meet the head's weights as in training
            branches = trained.net.head.branches({m: e.detach() for m, e in embs.items()})
            coeffs, ratios = modulation(branches, labels, self.params.alpha, self.modalities, self.ranks)
        self.coeffs = coeffs if self.params.active(epoch) else None
        self.means.add("ogm_coeff", coeffs if self.coeffs is not None else 1.0)
        self.means.add("ogm_ratio", ratios)
        self.means.batch()
        self.joint_update(trained, embs, labels, self.modalities)

    def on_gradients(self, trained: TrainedNet, parts: tuple[str, ...]) -> None:
        if self.coeffs is None:
            return
        # The noise comes from the global RNG, as the reference's; on several ranks from rank 0's state, so every
        # rank adds the same noise to the same averaged gradients, whatever drew from one rank's RNG alone (a
        # text encoder's dropout on slices of unequal size).
        share_rng_state(self.device, self.ranks)
        for i, m in enumerate(self.modalities):
            for grad in encoder_gradients(trained.net.encoders[m]):
                noise = torch.randn_like(grad) * (grad.std() + 1e-8)  # std of the raw gradient
                grad.mul_(self.coeffs[i].to(grad.dtype)).add_(noise)
