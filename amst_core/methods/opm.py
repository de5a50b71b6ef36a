"""OPM (on-the-fly prediction modulation; Wei, Hu et al., TPAMI 2024, the journal version of OGM-GE).

Per batch, from the no-grad pass over the detached embeddings: the discrepancy ratio ratio_m of OGM-GE
(`ogm_ge.modulation`: score_m = sum over the batch of softmax(o_m)[y], over the sum of the other modalities'
scores). The drop probability q_m = clip(q_base * (1 + lam * tanh(ratio_m - 1)), 0, 1) when ratio_m > 1, else 0
(the authors' calcu_q: only the dominant modality drops). Inside the modulation window a batch drops with
probability p_exe (one draw per batch); then each sample keeps modality m's embedding with probability 1 - q_m
(independent Bernoulli draws), and every embedding is divided by 1 - theta, theta = sum_m d_m q_m / sum_m d_m
(d_m: embedding widths). The fused CE on those embeddings trains head and encoders; a sample whose every modality
was dropped leaves the loss (the authors' update_flag; with this ratio at most one modality has q_m > 0, so in
practice none does). Outside the window, or in a batch that does not drop: the fused CE. Evaluation never drops.
Logged per epoch (run-level, per modality): `opm_drop`, the mean q_m (0 outside the window).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from amst_core.distributed import share_rng_state, sum_across
from amst_core.methods.base import Embeddings, Method
from amst_core.methods.epoch_means import EpochMeans
from amst_core.methods.ogm_ge import modulation


def drop_probabilities(ratios: torch.Tensor, q_base: float, lam: float) -> torch.Tensor:
    """q per modality: q_base * (1 + lam * tanh(ratio - 1)) clipped to [0, 1] for a ratio above 1, else 0."""
    return torch.where(ratios > 1, (q_base * (1 + lam * torch.tanh(ratios - 1))).clamp(0.0, 1.0),
                       torch.zeros_like(ratios))


def drop_features(embs: list[torch.Tensor], keep: torch.Tensor, q: torch.Tensor,
                  execute: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(embeddings with dropped rows zeroed and all scaled by 1 / (1 - theta), per-sample flag: some modality kept).
    `keep`: (modalities, batch) 0/1; `execute`: a 0-d bool, False leaves everything as it is."""
    dims = torch.tensor([e.shape[1] for e in embs], dtype=q.dtype, device=q.device)
    theta = (dims * q).sum() / dims.sum()
    keep = torch.where(execute, keep, torch.ones_like(keep))
    scale = torch.where(execute, 1 / (1 - theta).clamp(min=1e-5), torch.ones_like(theta))
    dropped = [e * (keep[i, :, None] * scale).to(e.dtype) for i, e in enumerate(embs)]
    return dropped, keep.amax(dim=0) > 0


class Opm(Method):
    name = "opm"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # zero outside the window: the mean over every batch of the epoch
        self.means = EpochMeans(self.modalities, self.device, per_modality=("opm_drop",))

    def update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        trained, embs = self.nets["model"], embeddings["model"]
        self.means.batch()
        if not self.params.active(epoch):
            self.joint_update(trained, embs, labels, self.modalities)
            return
        p = self.params
        with torch.no_grad(), self.autocast():
            branches = trained.net.head.branches({m: e.detach() for m, e in embs.items()})
            _, ratios = modulation(branches, labels, 0.0, self.modalities, self.ranks)
        q = drop_probabilities(ratios.float(), p.q_base, p.lam)
        self.means.add("opm_drop", q)
        # One decision per global batch: every rank draws from rank 0's state (OGM-GE's noise does the same).
        share_rng_state(self.device, self.ranks)
        execute = torch.rand((), device=self.device) < p.p_exe
        keep = self.keep_pattern(q, len(labels))
        dropped, flags = drop_features([embs[m] for m in self.modalities], keep, q, execute)
        with self.autocast():
            logits = trained.net.head(dict(zip(self.modalities, dropped, strict=True)))
        kept = flags.float()
        per_sample = F.cross_entropy(logits.float(), labels, reduction="none")
        count = sum_across(kept.sum().detach().clone(), self.ranks).clamp(min=1)
        loss = (per_sample * kept).sum() / count * (self.ranks.world if self.ranks.distributed else 1)
        self.step(loss, trained, ("head", "encoders"))

    def keep_pattern(self, q: torch.Tensor, size: int) -> torch.Tensor:
        """(modalities, size) 0/1 draws, keep with probability 1 - q_m: on several ranks this rank's slice of the
        global batch's draws (every rank draws them all from rank 0's RNG state), so the pattern is one process's."""
        total = round(size * self.ranks.world / self.loss_scale) if self.ranks.distributed else size
        start, end = self.ranks.share(total)
        if end - start != size:  # not a slice of a global batch as the engine cuts it: this batch's own draws
            start, end, total = 0, size, size
        return torch.bernoulli((1 - q)[:, None].expand(self.n, total).contiguous())[:, start:end]
