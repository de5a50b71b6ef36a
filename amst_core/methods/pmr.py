"""PMR (prototypical modality rebalance; the reference's pmr3_new.py), for datasets of two modalities.

Before each epoch, in eval mode and without gradients, a prototype per class and modality: the mean embedding
of the class over the first `factor` share of the (shuffled) train batches; more batches are read until every
class has a sample, and a class never seen keeps its previous prototype. After the first epoch
P = (1 - momentum_coef) * P_new + momentum_coef * P_old. Per batch, s_m = -||E_m - P_m|| (B x C) is a
prototype classifier; L_m = CE(s_m, y), score_m = sum softmax(s_m)[y]; with m1, m2 the sorted modalities,
inside the window the loss adds alpha * L_m2 when score_m1 / score_m2 > 1 and alpha * L_m1 when it is < 1, to
the fused CE. The prototype classifier is logged as component `prototype` per modality on every split.
Deviation: the reference takes AVE's prototypes from the val loader; here always from train.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from amst_core.config import RunConfig
from amst_core.distributed import Ranks, sum_across
from amst_core.methods.base import Embeddings, Method
from amst_core.metrics import Key


def prototype_logits(embedding: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Negative Euclidean distance of each sample to each class prototype (B x C)."""
    return -torch.cdist(embedding.float(), prototypes)


def class_means(sums: torch.Tensor, counts: torch.Tensor, previous: torch.Tensor | None) -> torch.Tensor:
    """Mean per class; a class without a sample keeps `previous` (zeros before any)."""
    means = sums / counts.clamp(min=1)[:, None]
    if previous is None:
        return means
    return torch.where(counts[:, None] > 0, means, previous)


class Pmr(Method):
    name = "pmr"

    def __init__(self, cfg: RunConfig, num_classes: int, device: torch.device, ranks: Ranks | None = None):
        super().__init__(cfg, num_classes, device, ranks)
        self.num_classes = num_classes
        self.prototypes: dict[str, torch.Tensor] | None = None

    @torch.no_grad()
    def before_epoch(self, epoch: int, data) -> None:
        net = self.nets["model"].net
        net.train(False)  # BatchNorm statistics do not move
        wanted = max(1, math.ceil(self.params.factor * data.num_batches("train")))
        sums: dict[str, torch.Tensor] = {}
        counts = torch.zeros(self.num_classes, device=self.device)
        for i, batch in enumerate(data.batches("train")):
            # Past the share, and every class seen (else read on: no NaN prototype). The only host sync of the
            # pass, once per batch past the share (once per epoch unless a class is rare).
            if i >= wanted and bool((sum_across(counts.clone(), self.ranks) > 0).all()):
                break
            with self.autocast():
                embeddings = net.embed(batch, self.modalities)
            for m, e in embeddings.items():
                sums.setdefault(m, torch.zeros(self.num_classes, e.shape[1], device=self.device))
                sums[m].index_add_(0, batch["label"], e.float())
            counts.index_add_(0, batch["label"], torch.ones_like(batch["label"], dtype=counts.dtype))  # no sync
        sum_across(counts, self.ranks)
        for m in self.modalities:
            sum_across(sums[m], self.ranks)
        old = self.prototypes
        new = {m: class_means(sums[m], counts, old[m] if old else None) for m in self.modalities}
        if old is not None:
            mc = self.params.momentum_coef
            new = {m: (1 - mc) * new[m] + mc * old[m] for m in self.modalities}
        self.prototypes = new

    def head_outputs(self, embeddings: dict[str, Embeddings]) -> dict[Key, torch.Tensor]:
        out = super().head_outputs(embeddings)
        if self.prototypes is not None:
            out.update({("prototype", m): prototype_logits(e, self.prototypes[m])
                        for m, e in embeddings["model"].items()})
        return out

    def update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        trained, embs = self.nets["model"], embeddings["model"]
        with self.autocast():
            loss = self.loss(trained.net.head(embs), labels)
        if self.params.active(epoch) and self.prototypes is not None:
            loss = loss + self.params.alpha * self.rebalance_loss(embs, labels)
        self.step(loss, trained, ("head", "encoders"))

    def rebalance_loss(self, embs: Embeddings, labels: torch.Tensor) -> torch.Tensor:
        """The prototype loss of the weaker modality (none when both score the same)."""
        m1, m2 = self.modalities
        logits = {m: prototype_logits(embs[m], self.prototypes[m]) for m in (m1, m2)}
        losses = {m: self.loss(s, labels) for m, s in logits.items()}
        with torch.no_grad():  # the global batch's scores on several ranks
            scores = sum_across(torch.stack([F.softmax(logits[m], dim=1).gather(1, labels[:, None]).sum()
                                             for m in (m1, m2)]), self.ranks)
            ratio = scores[0] / scores[1]
        zero = torch.zeros((), device=self.device)
        return torch.where(ratio > 1, losses[m2], torch.where(ratio < 1, losses[m1], zero))

    def extra_state(self) -> dict[str, Any]:
        return {"prototypes": self.prototypes}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        prototypes = state.get("prototypes")
        self.prototypes = {m: p.to(self.device) for m, p in prototypes.items()} if prototypes else None
