"""Greedy (balanced multi-modal learning; Wu, Jastrzebski, Cho, Geras, ICML 2022; BalanceBenchmark's Greedy
trainer), adapted to two encoders and a late-fusion head, for datasets of two modalities.

Learning speed: after each normal step's backward (the fused CE, gradients averaged over the ranks), encoder m
adds g_m / w_m to its accumulator M_m (g_m: the sum of its parameters' squared gradients, w_m: of their squared
values); the accumulators start at 0 and run over the whole run, as BalanceBenchmark's do. The conditional
learning speed of m is BDR_m = log10(M_other / M_m) and d = BDR_0 - BDR_1 (modalities sorted), i.e.
2 log10(M_1 / M_0). After a normal step, when |d| > alpha the next `window_size` batches are re-balancing steps
of modality 0 when d > 0 (encoder 0 learns slower), of modality 1 when d < 0; then normal steps again, and the
speed is measured (and re-balancing decided) only on normal steps.
Normal step: one fused CE over both modalities, encoders and head updated. Re-balancing step of m: the CE of m's
head branch alone, o_m = head.branch(m, E_m); only m's encoder and its head parameters get gradients, the other
encoder is not moved (no momentum or weight-decay step either).
BalanceBenchmark measures "bypass" (MMTM cross-modal layers) against "main" (unimodal) parameters and re-balances
by fixing the cared-for modality's MMTM excitation to its running average; with no cross-modal layers here, the
other encoder stands for m's bypass and the branch loss for cutting it off.
Logged per epoch (run-level, per modality): `greedy_speed` (BDR_m at the epoch's end) and `greedy_rebalanced`
(the share of the epoch's batches that were re-balancing steps of m).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from amst_core.methods.base import Embeddings, Method, TrainedNet
from amst_core.metrics import MetricPoint


def relative_gradient(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """sum of squared gradients over sum of squared values, over the parameters that have a gradient."""
    with_grad = [p for p in params if p.grad is not None]
    grads = torch.stack(torch._foreach_norm([p.grad.detach() for p in with_grad])).double().pow(2).sum()
    weights = torch.stack(torch._foreach_norm([p.detach() for p in with_grad])).double().pow(2).sum()
    return grads / weights


def conditional_speeds(accumulated: torch.Tensor) -> torch.Tensor:
    """BDR_m = log10(M_other / M_m) for two modalities."""
    m = accumulated.clamp(min=1e-300)
    return torch.log10(m.flip(0) / m)


def rebalanced_modality(speeds: torch.Tensor, alpha: float) -> int | None:
    """Index of the modality to re-balance (the slower: higher BDR), or None when |d| <= alpha."""
    d = float(speeds[0] - speeds[1])
    if abs(d) <= alpha:
        return None
    return 0 if d > 0 else 1


class Greedy(Method):
    name = "greedy"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.accumulated = torch.zeros(2, device=self.device, dtype=torch.float64)
        self.caring: int | None = None  # the modality being re-balanced, None in normal steps
        self.curation_step = 0
        self.measuring = False
        self.reset_epoch()

    def reset_epoch(self) -> None:
        self.rebalanced = [0, 0]
        self.batches = 0

    def before_epoch(self, epoch: int, data) -> None:
        self.reset_epoch()

    def update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        trained, embs = self.nets["model"], embeddings["model"]
        self.batches += 1
        if self.caring is not None:
            m = self.modalities[self.caring]
            self.rebalanced[self.caring] += 1
            with self.autocast():
                logits = trained.net.head.branch(m, embs[m])
            self.step(self.loss(logits, labels), trained, ("head", "encoders"))
            self.curation_step += 1
            if self.curation_step >= self.params.window_size:
                self.caring = None
            return
        self.measuring = True
        self.joint_update(trained, embs, labels, self.modalities)
        self.measuring = False
        self.caring = rebalanced_modality(conditional_speeds(self.accumulated), self.params.alpha)
        self.curation_step = 0

    def on_gradients(self, trained: TrainedNet, parts: tuple[str, ...]) -> None:
        if self.measuring:
            self.accumulated += torch.stack([relative_gradient(trained.net.encoders[m].parameters())
                                             for m in self.modalities])

    def after_validation(self, epoch: int, points: list[MetricPoint]) -> list[MetricPoint]:
        if not self.batches:
            return []
        speeds = conditional_speeds(self.accumulated).tolist()
        return [p for i, m in enumerate(self.modalities) for p in (
            MetricPoint("train", "run", m, "greedy_speed", epoch, speeds[i]),
            MetricPoint("train", "run", m, "greedy_rebalanced", epoch, self.rebalanced[i] / self.batches))]

    def extra_state(self) -> dict[str, Any]:
        return {"accumulated": self.accumulated.cpu(), "caring": self.caring, "curation_step": self.curation_step}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "accumulated" in state:
            self.accumulated = state["accumulated"].to(self.device, torch.float64)
            self.caring = state["caring"]
            self.curation_step = int(state["curation_step"])
