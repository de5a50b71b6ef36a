"""InfoReg (Huang, Wei, Yang & Hu, CVPR 2025; the authors' main.py), for any number of modalities.

Information acquisition: per epoch, the trace of each encoder's empirical Fisher information, F_m = sum over its
Conv2d / Linear weights of the mean of sum over the epoch's batches of grad^2 (the gradients that step, proximal
term included; under fp16 a batch whose gradients overflowed, which the scaler does not step, adds nothing).
History h_m: `rate_window` zeros, then F_m of each epoch. Acquisition rate for an epoch:
k_m = (mean(h_m[-w:]) - mean(h_m[-w-1:-1])) / mean(h_m[-w:]) (w = rate_window; 1 in epoch 0, 0 when the mean is 0).
The modality is in its prime learning window while k_m > threshold.
Per batch: loss = CE(fused) (+ sum_m CE(o_m), o_m the branch logits, with `unimodal_losses`, as the code trains);
score_m = sum over the batch of softmax(o_m)[y]; the leading modality d (highest score), with
gap = score_d - mean of the others' scores > 0 and d in its window, gets beta_d = beta_<d> * exp(tanh(gap)), every
other modality 0. Between backward and the step each encoder's gradient becomes grad + beta_m (theta - theta_0),
theta_0 its weights at the start of the epoch: the gradient of (beta_m / 2) |theta - theta_0|^2.
Logged per epoch (run-level, per modality): `inforeg_rate` (k_m), `inforeg_beta` (mean beta_m over the batches),
`inforeg_trace` (F_m).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from amst_core.distributed import sum_across
from amst_core.methods.base import Embeddings, Method, TrainedNet
from amst_core.metrics import MetricPoint


def acquisition_rate(history: list[float], window: int) -> float:
    """Relative growth of the moving average of the Fisher trace over the last epoch (history: one per epoch)."""
    if not history:
        return 1.0
    padded = [0.0] * window + list(history)
    recent, before = sum(padded[-window:]) / window, sum(padded[-window - 1:-1]) / window
    return (recent - before) / recent if recent > 0 else 0.0


def regulation_strengths(scores: torch.Tensor, betas: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """beta per modality: the leading one's base strength times exp(tanh(gap)) when it leads and is active."""
    n = scores.numel()
    lead = scores.argmax()
    others = (scores.sum() - scores[lead]) / max(n - 1, 1)
    gap = scores[lead] - others
    is_lead = torch.arange(n, device=scores.device) == lead
    strength = betas * torch.exp(torch.tanh(gap))
    return torch.where(is_lead & active & (gap > 0), strength, torch.zeros_like(strength))


def fisher_trace(encoder: nn.Module) -> torch.Tensor:
    """Sum over the encoder's Conv2d and Linear weights of the mean squared gradient (0 when none has one)."""
    grads = [m.weight.grad for m in encoder.modules()
             if isinstance(m, nn.Conv2d | nn.Linear) and m.weight.requires_grad and m.weight.grad is not None]
    if not grads:
        return torch.zeros(())
    squares = [n.float() for n in torch._foreach_norm(grads)]  # one multi-tensor pass, not kernels per layer
    torch._foreach_mul_(squares, squares)
    torch._foreach_div_(squares, [float(g.numel()) for g in grads])
    return torch.stack(squares).sum()


def proximal_gradient(params: list[torch.Tensor], anchors: list[torch.Tensor], beta: torch.Tensor) -> None:
    """grad += beta (theta - theta_0) for each parameter with a gradient: the gradient of beta / 2 |theta -
    theta_0|^2 (beta a device scalar: no host sync)."""
    kept = [(p, a) for p, a in zip(params, anchors, strict=True) if p.grad is not None]
    if not kept:
        return
    pull = torch._foreach_sub([p.detach() for p, _ in kept], [a for _, a in kept])
    torch._foreach_mul_(pull, beta)
    torch._foreach_add_([p.grad for p, _ in kept], pull)


class InfoReg(Method):
    name = "inforeg"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.history: dict[str, list[float]] = {m: [] for m in self.modalities}
        self.betas = torch.tensor([getattr(self.params, f"beta_{m}") for m in self.modalities], device=self.device)
        self.strength: torch.Tensor | None = None  # this batch's beta per modality
        self.anchors: dict[str, list[torch.Tensor]] = {}
        self.start_epoch(0)

    def start_epoch(self, epoch: int) -> None:
        self.rates = [acquisition_rate(self.history[m], self.params.rate_window) for m in self.modalities]
        self.active = torch.tensor([k > self.params.threshold for k in self.rates], device=self.device)
        self.beta_sum = torch.zeros(self.n, device=self.device, dtype=torch.float64)
        self.trace_sum = torch.zeros(self.n, device=self.device, dtype=torch.float64)
        self.batches = 0

    def before_epoch(self, epoch: int, data: Any) -> None:
        self.start_epoch(epoch)
        encoders = self.nets["model"].net.encoders
        # theta_0: only for a modality that may be regulated in this epoch
        self.anchors = {m: [p.detach().clone() for p in encoders[m].parameters()]
                        for i, m in enumerate(self.modalities) if self.rates[i] > self.params.threshold}

    def update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        trained, embs = self.nets["model"], embeddings["model"]
        head = trained.net.head
        with self.autocast():
            branches = head.branches(embs)
            loss = self.loss(head.combine(list(branches.values())), labels)
            if self.params.unimodal_losses:
                for logits in branches.values():
                    loss = loss + self.loss(logits, labels)
        with torch.no_grad():
            scores = sum_across(torch.stack([F.softmax(branches[m].detach().float(), dim=1)
                                             .gather(1, labels[:, None]).sum() for m in self.modalities]), self.ranks)
            self.strength = regulation_strengths(scores, self.betas, self.active)
        self.step(loss, trained, ("head", "encoders"))
        self.beta_sum += self.strength.double()
        self.batches += 1

    def on_gradients(self, trained: TrainedNet, parts: tuple[str, ...]) -> None:
        if "encoders" not in parts or self.strength is None:
            return
        for i, m in enumerate(self.modalities):
            encoder = trained.net.encoders[m]
            if m in self.anchors:
                proximal_gradient(list(encoder.parameters()), self.anchors[m], self.strength[i])
            # fp16: a batch whose gradients overflowed is not stepped (the scaler skips it) and adds nothing to the
            # trace, which would otherwise be inf for the epoch and poison `rate_window` epochs of rates
            trace = fisher_trace(encoder).to(self.trace_sum)
            self.trace_sum[i] += torch.where(torch.isfinite(trace), trace, torch.zeros_like(trace))

    def after_validation(self, epoch: int, points: list[MetricPoint]) -> list[MetricPoint]:
        traces = self.trace_sum.tolist()
        for m, trace in zip(self.modalities, traces, strict=True):
            self.history[m].append(trace)
        betas = (self.beta_sum / max(self.batches, 1)).tolist()
        return [MetricPoint("train", "run", m, name, epoch, value) for i, m in enumerate(self.modalities)
                for name, value in (("inforeg_rate", self.rates[i]), ("inforeg_beta", betas[i]),
                                    ("inforeg_trace", traces[i]))]

    def extra_state(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.history = {m: list(state.get("history", {}).get(m, [])) for m in self.modalities}
