"""Gradient-Blending (Wang, Tran & Feiszli, CVPR 2020; online G-Blend as BalanceBenchmark's GBlending trainer).

Loss per batch: w_fused * CE(fused logits) + sum_m w_m * CE(o_m), o_m the modality's branch of the fusion head.
The weights are estimated before epochs 0, S, 2S, ... (S = super_epoch) and kept for the S epochs that follow. For
each head k (each modality alone, and the fused prediction of all), a copy of the current network (encoders and
head; a fresh SGD with the run's optim settings, its initial lr, no momentum yet) is trained S epochs on the train
split with CE of that head alone (a modality alone: only its encoder runs, the others are absent from the head).
Over the first and the last of those epochs, T_k is the mean training loss of the epoch and V_k the mean
validation loss after it (eval mode). G_k = V_k,last - V_k,first, O_k = (V_k,last - T_k,last) -
(V_k,first - T_k,first), w_k = |G_k| / max(O_k^2, 1e-12), normalized to sum 1 (equal weights when all are
0). The copies are thrown away; the main network is not touched by the estimation.
Logged per epoch (run-level): `gblend_weight` per modality and `gblend_weight_fused`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from typing import Any

import torch
from torch.optim import SGD

from amst_core.distributed import average_gradients, sum_across
from amst_core.methods.base import Embeddings, Method
from amst_core.metrics import MetricPoint
from amst_core.models import MultimodalNet

FUSED = "fused"


def blend_weights(first: dict[str, tuple[float, float]], last: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Normalized |G| / O^2 per head from (train loss, val loss) over the first and the last epoch of the window."""
    raw = {}
    for k in first:
        (t0, v0), (t1, v1) = first[k], last[k]
        raw[k] = abs(v1 - v0) / max(((v1 - t1) - (v0 - t0)) ** 2, 1e-12)
    total = sum(raw.values())
    if not (math.isfinite(total) and total > 0):
        return {k: 1 / len(raw) for k in raw}
    return {k: w / total for k, w in raw.items()}


class GBlending(Method):
    name = "gblending"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        heads = (*self.modalities, FUSED)
        self.weights: dict[str, float] = {k: 1 / len(heads) for k in heads}

    def before_epoch(self, epoch: int, data: Any) -> None:
        if epoch % self.params.super_epoch == 0:
            self.weights = self.estimate(data)

    def estimate(self, data: Any) -> dict[str, float]:
        source = self.nets["model"].net
        first, last = {}, {}
        o, s = self.cfg.optim, self.params.super_epoch
        for k in (*self.modalities, FUSED):
            net: MultimodalNet = copy.deepcopy(source)
            present = self.modalities if k == FUSED else (k,)
            params = [p for m in present for p in net.encoders[m].parameters() if p.requires_grad]
            params += [p for p in net.head.parameters() if p.requires_grad]
            optimizer = SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
            scaler = torch.amp.GradScaler(self.device.type, enabled=self.scaler.is_enabled())
            for e in range(s):
                net.train(True)
                train = self.mean_loss(net, data.batches("train", stream=1 + e), present, optimizer, scaler)
                if e in (0, s - 1):
                    net.train(False)
                    with torch.no_grad():
                        val = self.mean_loss(net, data.batches("val"), present)
                    (first if e == 0 else last)[k] = (train, val)
            del net, optimizer
        return blend_weights(first, last)

    def mean_loss(self, net: MultimodalNet, batches: Iterable[dict[str, torch.Tensor]], present: tuple[str, ...],
                  optimizer: SGD | None = None, scaler: torch.amp.GradScaler | None = None) -> float:
        """The mean per-sample CE of the head on `present` over the batches; a training step per batch when an
        optimizer is given."""
        total = torch.zeros(2, device=self.device, dtype=torch.float64)  # (summed loss, samples)
        samples = 0  # on the host: a shape, no copy to the device per batch
        for batch in batches:
            labels = batch["label"]
            with self.autocast():
                logits = net.head(net.embed(batch, present))
            loss = torch.nn.functional.cross_entropy(logits.float(), labels)
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                average_gradients((p for g in optimizer.param_groups for p in g["params"]), self.ranks)
                scaler.step(optimizer)
                scaler.update()
            total[0] += loss.detach().double() * len(labels)
            samples += len(labels)
        total[1] = samples
        total = sum_across(total, self.ranks)
        return (total[0] / total[1].clamp(min=1)).item()

    def update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        trained, embs = self.nets["model"], embeddings["model"]
        with self.autocast():
            branches = trained.net.head.branches(embs)
            loss = self.weights[FUSED] * self.loss(trained.net.head.combine(list(branches.values())), labels)
            for m, logits in branches.items():
                loss = loss + self.weights[m] * self.loss(logits, labels)
        self.step(loss, trained, ("head", "encoders"))

    def after_validation(self, epoch: int, points: list[MetricPoint]) -> list[MetricPoint]:
        out = [MetricPoint("train", "run", m, "gblend_weight", epoch, self.weights[m]) for m in self.modalities]
        return [*out, MetricPoint("train", "run", None, "gblend_weight_fused", epoch, self.weights[FUSED])]

    def extra_state(self) -> dict[str, Any]:
        return {"weights": dict(self.weights)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "weights" in state:
            self.weights = dict(state["weights"])
