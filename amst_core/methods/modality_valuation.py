"""Modality valuation, modality-level variant (Wei, Feng, Hu et al., CVPR 2024, "Enhancing Multimodal Cooperation
via Sample-level Modality Valuation"; BalanceBenchmark's Sample trainer with method "Modality-level").

Before each epoch, in eval mode and without gradients, over the first `part_ratio` share of the (shuffled) train
batches: for each sample and each non-empty subset S of modalities, v(S) = 1 when the head's prediction from S
alone (absent branches left out of the head) is the label, else 0, and v(empty) = 0; the sample's contribution of
m is its Shapley value phi_m = sum over S not holding m of |S|! (n - |S| - 1)! / n! * (v(S + m) - v(S)). With
phibar_m the mean over the valued samples and gap_m = 1 - phibar_m, the re-sampled share is
    r = 2/3 * sum over ordered pairs m != m' of |gap_m - gap_m'| / n!    (two modalities: 2/3 |gap_0 - gap_1|).
Inside the window, each batch of B samples gets k = round(r * B) extra draws (uniform, with replacement, from
the batch); each draw adds one copy per modality m holding m and every modality m' with gap_m' >= gap_m (the others
left out: the least contributing modality alone, the most contributing one with all). The copies' logits come from
the batch's own embeddings and join the fused logits in one mean CE: one backward, one step per batch.
Outside the window the step is the plain fused CE (contributions are still measured and logged).
Logged per epoch: `mv_shapley` (phibar_m, per modality) and `mv_resample` (r inside the window, else 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from amst_core.distributed import sum_across
from amst_core.methods.base import Embeddings, Method
from amst_core.methods.subsets import head_over, shapley_values, subsets
from amst_core.metrics import MetricPoint


def sample_shapley(correct: dict[frozenset[str], torch.Tensor], modalities: tuple[str, ...]) -> torch.Tensor:
    """Per-sample Shapley values (n x B) of the correctness v(S) given for every non-empty subset S."""
    phi = shapley_values(lambda s: correct[s].float(), modalities)
    return torch.stack([phi[m] for m in modalities])


def subset_correctness(branches: dict[str, torch.Tensor], labels: torch.Tensor,
                       combine: Callable[[list[torch.Tensor]], torch.Tensor]) -> dict[frozenset[str], torch.Tensor]:
    """Per non-empty subset S, whether the head over S alone predicts each sample's label."""
    return {frozenset(s): head_over(combine, branches, s).argmax(dim=1) == labels for s in subsets(branches)}


def resample_share(contributions: torch.Tensor) -> float:
    """2/3 of the summed absolute gap differences over ordered pairs, over n!."""
    gap = 1 - contributions.double()
    n = len(gap)
    return float((gap[:, None] - gap[None, :]).abs().sum() / math.factorial(n) * 2 / 3)


def copy_subsets(contributions: torch.Tensor, modalities: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Per modality m, the modalities its copy keeps: m and every m' whose gap is at least m's."""
    gap = (1 - contributions.double()).tolist()
    return [tuple(k for j, k in enumerate(modalities) if k == m or gap[j] >= gap[i]) for i, m in enumerate(modalities)]


class ModalityValuation(Method):
    name = "modality_valuation"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.contributions = torch.zeros(self.n, dtype=torch.float64)
        self.resample = 0.0
        self.copies: list[tuple[str, ...]] = []
        self.valued = False

    @torch.no_grad()
    def before_epoch(self, epoch: int, data) -> None:
        net = self.nets["model"].net
        net.train(False)
        wanted = max(1, math.ceil(self.params.part_ratio * data.num_batches("train")))
        sums = torch.zeros(self.n + 1, device=self.device, dtype=torch.float64)
        for i, batch in enumerate(data.batches("train")):
            if i >= wanted:
                break
            with self.autocast():
                branches = net.head.branches(net.embed(batch, self.modalities))
            phi = sample_shapley(subset_correctness(branches, batch["label"], net.head.combine), self.modalities)
            sums[:-1] += phi.sum(dim=1).double()
            sums[-1] += phi.shape[1]
        sum_across(sums, self.ranks)
        self.contributions = (sums[:-1] / sums[-1].clamp(min=1)).cpu()
        self.valued = True
        self.resample = resample_share(self.contributions) if self.params.active(epoch) else 0.0
        self.copies = copy_subsets(self.contributions, self.modalities)

    def update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        trained, embs = self.nets["model"], embeddings["model"]
        k = math.floor(self.resample * len(labels) + 0.5)
        if k == 0:
            self.joint_update(trained, embs, labels, self.modalities)
            return
        head = trained.net.head
        idx = torch.randint(len(labels), (k,), device=labels.device)
        with self.autocast():
            branches = head.branches(embs)
            logits = [head.combine(list(branches.values()))]
            picked = {m: b[idx] for m, b in branches.items()}
            logits += [head_over(head.combine, picked, keep) for keep in self.copies]
        targets = torch.cat([labels, *[labels[idx]] * len(self.copies)])
        self.step(self.loss(torch.cat(logits), targets), trained, ("head", "encoders"))

    def after_validation(self, epoch: int, points: list[MetricPoint]) -> list[MetricPoint]:
        if not self.valued:
            return []
        values = self.contributions.tolist()
        points = [MetricPoint("train", "run", m, "mv_shapley", epoch, values[i]) for i, m in enumerate(self.modalities)]
        return [*points, MetricPoint("train", "run", None, "mv_resample", epoch, self.resample)]
