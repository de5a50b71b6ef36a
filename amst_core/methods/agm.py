"""AGM (adaptive gradient modulation; Li et al., ICCV 2023; the authors' two-modality code and BalanceBenchmark's
AGM trainer).

Per batch, without gradients, from the batch's branch logits o_m: the value of a subset S of modalities is the
head's prediction from S alone, v(S) = combine(o_k for k in S) (absent branches left out of the head, as a skipped
modality is), v(empty) = 0; the mono-modal response of m is its Shapley value
    u_m = sum over S not holding m of |S|! (n - |S| - 1)! / n! * (v(S + m) - v(S))
(lsum and concat: u_m = o_m; msum: 3/4 o_m - 1/4 o_other). Its score s_m is the batch's mean cross-entropy
-log(max(softmax(u_m)[y], 1e-8)) (global batch on several ranks). With k = n / (n - 1), the discrepancy ratio
r_m = exp(k * (mean(s) - s_m)) (two modalities: exp(s_other - s_m), the authors' code), its target
eta_m = exp(k * (mean(sbar) - sbar_m)) from the running averages sbar (0 before the first batch), and the
coefficient c_m = exp(alpha * min(eta_m - r_m, 10)). Then sbar_m <- sbar_m (t - 1) / t + s_m / t, t the run's
batch count from 1 (a mean over every batch so far, updated in every epoch). One fused CE backward; inside the
modulation window every encoder gradient of two or more dimensions of modality m is multiplied by c_m (biases
and norm weights are not), and when a fusion-head weight gradient exceeds `clip` in magnitude the encoder and head
gradients are clipped to total norm `clip` (BalanceBenchmark's rule). Logged per epoch (run-level, per modality):
`agm_coeff`, the mean coefficient applied (1 outside the window), and `agm_score`, the mean score s_m.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F

from amst_core.distributed import sum_across
from amst_core.methods.base import Embeddings, Method, TrainedNet
from amst_core.methods.epoch_means import EpochMeans
from amst_core.methods.subsets import head_over, shapley_values


def shapley_responses(branches: dict[str, torch.Tensor],
                      combine: Callable[[list[torch.Tensor]], torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each modality's Shapley value of the head's output, v(S) = the head over S alone, v(empty) = 0."""
    return shapley_values(lambda s: head_over(combine, branches, s), tuple(branches))


def response_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of a response, each sample's probability of its class floored at 1e-8."""
    p = F.softmax(logits.float(), dim=1).gather(1, labels[:, None]).squeeze(1)
    return -torch.log(p.clamp(min=1e-8)).sum()


def agm_coefficients(scores: torch.Tensor, running: torch.Tensor, alpha: float) -> torch.Tensor:
    """c_m = exp(alpha * min(eta_m - r_m, 10)) from this batch's scores and the running averages."""
    k = len(scores) / (len(scores) - 1)
    ratio = torch.exp(k * (scores.mean() - scores))
    target = torch.exp(k * (running.mean() - running))
    return torch.exp(alpha * (target - ratio).clamp(max=10.0))


def running_average(running: torch.Tensor, scores: torch.Tensor, iteration: int) -> torch.Tensor:
    return running * (iteration - 1) / iteration + scores / iteration


class Agm(Method):
    name = "agm"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.coeffs: torch.Tensor | None = None  # this batch's, inside the window
        self.running = torch.zeros(self.n, device=self.device, dtype=torch.float64)
        self.iteration = 0
        self.means = EpochMeans(self.modalities, self.device, per_modality=("agm_coeff", "agm_score"))

    def update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        trained, embs = self.nets["model"], embeddings["model"]
        head = trained.net.head
        with torch.no_grad(), self.autocast():
            branches = head.branches({m: e.detach() for m, e in embs.items()})
            responses = shapley_responses(branches, head.combine)
            count = torch.full((), len(labels), dtype=torch.float32, device=labels.device)  # no host copy
            sums = torch.stack([response_loss_sum(responses[m], labels) for m in self.modalities] + [count]).double()
        sums = sum_across(sums, self.ranks)
        scores = sums[:-1] / sums[-1]
        self.iteration += 1
        coeffs = agm_coefficients(scores, self.running, self.params.alpha)
        self.running = running_average(self.running, scores, self.iteration)
        self.coeffs = coeffs if self.params.active(epoch) else None
        self.means.add("agm_coeff", coeffs if self.coeffs is not None else 1.0)
        self.means.add("agm_score", scores)
        self.means.batch()
        self.joint_update(trained, embs, labels, self.modalities)

    def on_gradients(self, trained: TrainedNet, parts: tuple[str, ...]) -> None:
        if self.coeffs is None:
            return
        net = trained.net
        coeffs = self.coeffs.float()
        for i, m in enumerate(self.modalities):
            grads = [p.grad for p in net.encoders[m].parameters() if p.grad is not None and p.grad.dim() > 1]
            if grads:
                torch._foreach_mul_(grads, coeffs[i])
        if self.params.clip > 0:
            clip_when_head_exceeds(net.head.parameters(), [*net.encoders.parameters(), *net.head.parameters()],
                                   self.params.clip)

    def extra_state(self) -> dict[str, Any]:
        return {"running": self.running.cpu(), "iteration": self.iteration}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "running" in state:
            self.running = state["running"].to(self.device, torch.float64)
            self.iteration = int(state["iteration"])


def clip_when_head_exceeds(head_params: Iterable[torch.nn.Parameter], params: Iterable[torch.nn.Parameter],
                           clip: float) -> None:
    """When any head weight gradient (2-D or more) exceeds `clip` in magnitude, clip the gradients of `params` to
    total norm `clip` (torch's clip_grad_norm_ rule), without a host sync."""
    head = [p.grad for p in head_params if p.grad is not None and p.grad.dim() > 1]
    grads = [p.grad for p in params if p.grad is not None]
    if not head or not grads:
        return
    exceeds = torch.stack([m.float() for m in torch._foreach_max(torch._foreach_abs(head))]).max() > clip
    total = torch.nn.utils.get_total_norm(grads, foreach=True).float()
    factor = torch.where(exceeds, (clip / (total + 1e-6)).clamp(max=1.0), torch.ones_like(total))
    torch._foreach_mul_(grads, factor)
