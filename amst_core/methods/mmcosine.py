"""MMCosine (multi-modal cosine loss; Xu, Feng, Zhang and Hu, ICASSP 2023; the authors' main_CD.py).

On the lsum head's per-modality linears (weights W_m, C x D; their biases are not used): each branch's logits
are o_m = s * normalize(E_m) @ normalize(W_m)^T, i.e. s * cos(E_m, W_m^c) for every class c (the embedding and
each class's weight row L2-normalised), and fused = sum over the present modalities of o_m. Training is one
cross-entropy of the fused logits through encoders and head; evaluation predicts with the same cosine logits
(`head_outputs`), so the branches, the fused prediction and the train metrics all use them.
Logged per epoch (run-level, per modality): `mmcosine_true_cos`, the mean over the epoch's training samples of
cos(E_m, W_m^y), y the true class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from amst_core.distributed import sum_across
from amst_core.methods.base import Embeddings, Method
from amst_core.metrics import Key, MetricPoint


def cosine_logits(embedding: torch.Tensor, weight: torch.Tensor, scaling: float) -> torch.Tensor:
    """s * cos(e_i, w_c): B x C, from embeddings B x D and class weight rows C x D."""
    return scaling * F.normalize(embedding, dim=1) @ F.normalize(weight, dim=1).T


def true_class_cosine(logits: torch.Tensor, labels: torch.Tensor, scaling: float) -> torch.Tensor:
    """The sum over the batch of cos(E, W^y) (cosine logits divided by s, taken at the true class)."""
    return (logits.float().gather(1, labels[:, None]) / scaling).sum()


class MmCosine(Method):
    name = "mmcosine"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reset_epoch()

    def reset_epoch(self) -> None:
        # per modality the sum of cos(E_m, W_m^y) over the epoch's samples, then their count
        self.sums = torch.zeros(self.n + 1, device=self.device, dtype=torch.float64)
        self.batches = 0

    def before_epoch(self, epoch: int, data) -> None:
        self.reset_epoch()

    def branches(self, embeddings: Embeddings) -> dict[str, torch.Tensor]:
        linears = self.nets["model"].net.head.linears
        return {m: cosine_logits(e, linears[m].weight, self.params.scaling)
                for m, e in sorted(embeddings.items()) if e is not None}

    def head_outputs(self, embeddings: dict[str, Embeddings]) -> dict[Key, torch.Tensor]:
        branches = self.branches(embeddings["model"])
        out: dict[Key, torch.Tensor] = {("fused", None): torch.stack(list(branches.values())).sum(dim=0)}
        out.update({("branch", m): logits for m, logits in branches.items()})
        return out

    def update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        trained = self.nets["model"]
        with self.autocast():
            branches = self.branches(embeddings["model"])
            fused = torch.stack(list(branches.values())).sum(dim=0)
        with torch.no_grad():
            self.sums[:-1] += torch.stack([true_class_cosine(branches[m].detach(), labels, self.params.scaling)
                                           for m in self.modalities]).double()
            self.sums[-1] += len(labels)
            self.batches += 1
        self.step(self.loss(fused, labels), trained, ("head", "encoders"))

    def after_validation(self, epoch: int, points: list[MetricPoint]) -> list[MetricPoint]:
        if not self.batches:
            return []
        sums = sum_across(self.sums.clone(), self.ranks)  # every rank's samples
        means = (sums[:-1] / sums[-1]).tolist()
        return [MetricPoint("train", "run", m, "mmcosine_true_cos", epoch, means[i])
                for i, m in enumerate(self.modalities)]
