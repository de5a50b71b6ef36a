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

from amst_core.methods.base import Embeddings, Method
from amst_core.methods.epoch_means import EpochMeans
from amst_core.metrics import Key


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
        # per modality the mean of cos(E_m, W_m^y) over every rank's samples of the epoch
        self.means = EpochMeans(self.modalities, self.device, per_modality=("mmcosine_true_cos",),
                                counted=("mmcosine_true_cos",), ranks=self.ranks)

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
            self.means.add("mmcosine_true_cos", torch.stack([
                true_class_cosine(branches[m].detach(), labels, self.params.scaling) for m in self.modalities]),
                count=len(labels))
            self.means.batch()
        self.step(self.loss(fused, labels), trained, ("head", "encoders"))
