"""CML (calibrating multimodal learning; Ma, Zhang, Zhang, Wu, Fu, Zhou and Hu, ICML 2023).

The principle: the confidence of a prediction must not rise when modalities are removed. Per batch, with
conf(x) = max_c softmax(x)_c, o_all the fused logits of all modalities and o_S those of a non-empty proper subset
S of them (the fusion head over S alone: the other modalities left out, as for an absent modality),
    reg = mean over samples i and subsets S of relu(conf(o_S)_i - conf(o_all)_i)
and the loss is CE(o_all, y) + lam * reg, one backward through encoders and head (both confidences carry
gradients). With two modalities the subsets are the two unimodal predictions; with three, the three pairs and
the three single modalities.
Logged per epoch (run-level): `cml_reg`, the mean of reg over the epoch's batches, and `cml_active`, the share of
(sample, subset) pairs where the subset was the more confident.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from amst_core.methods.base import Embeddings, Method
from amst_core.methods.epoch_means import EpochMeans
from amst_core.methods.subsets import head_over, subsets


def confidence(logits: torch.Tensor) -> torch.Tensor:
    """The highest softmax probability of each sample."""
    return F.softmax(logits.float(), dim=1).max(dim=1).values


def calibration_penalty(full: torch.Tensor, subsets: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(reg, active): the mean over samples and subsets of relu(conf(subset) - conf(full)), and the share of those
    pairs where it is positive (no gradient)."""
    conf_full = confidence(full)
    gaps = torch.stack([confidence(s) - conf_full for s in subsets])  # subsets x B
    return F.relu(gaps).mean(), (gaps.detach() > 0).float().mean()


class Cml(Method):
    name = "cml"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.subsets = subsets(self.modalities, proper=True)
        self.means = EpochMeans(self.modalities, self.device, scalars=("cml_reg", "cml_active"), ranks=self.ranks)

    def update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        trained, embs = self.nets["model"], embeddings["model"]
        head = trained.net.head
        with self.autocast():
            branches = head.branches(embs)
            full = head.combine(list(branches.values()))
            partial = [head_over(head.combine, branches, s) for s in self.subsets]
        reg, active = calibration_penalty(full, partial)
        if self.ranks.distributed:  # a rank's mean over its samples, weighted by its share of the global batch
            reg = reg * self.loss_scale
            active = active * self.loss_scale
        # Summed over the ranks when logged: loss_scale / world is this rank's share of the global batch.
        self.means.add("cml_reg", reg.detach().double() / self.ranks.world)
        self.means.add("cml_active", active.double() / self.ranks.world)
        self.means.batch()
        self.step(self.loss(full, labels) + self.params.lam * reg, trained, ("head", "encoders"))
