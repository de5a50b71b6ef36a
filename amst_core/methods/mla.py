"""MLA as the reference runs it (mla_new.py): alternating unimodal training through a shared (msum) head, every
modality every epoch, without MLA's gradient modification (the authors dropped it). That is AMST-ALT with every
skip factor 1; the epoch-0 train metrics of the two agree exactly.

At evaluation, fixed weighted combinations of the branch logits (two modalities: first/second 0.3/0.7 ... 0.7/0.3;
three: audio 0.35, text 0.4, visual 0.25) and entropy gating, w_m proportional to exp(max_k H_k - H_m) with H the
per-sample entropy of softmax over the classes of each branch's LOGITS (decision 8.4; the reference fed it the
embeddings), are logged as components `combo:<name>` on val and test. Test runs every epoch, and model selection
tracks each combination's best val -> test (the summary's `selections`); best.pt follows the fused prediction
(the plain mean, which is a50_v50).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from amst_core.method_specs.mla import ENTROPY, combinations, combo_names
from amst_core.methods.base import Embeddings, Method
from amst_core.metrics import Key
from amst_core.vocab import combo


def entropy_gate(branches: dict[str, torch.Tensor]) -> torch.Tensor:
    """sum_m w_m o_m with w_m = softmax over m of (max_k H_k - H_m): the more confident branch weighs more."""
    logits = torch.stack([o.float() for o in branches.values()])  # (M, B, C)
    entropy = -(F.softmax(logits, dim=2) * F.log_softmax(logits, dim=2)).sum(dim=2)  # (M, B)
    weights = F.softmax(entropy.max(dim=0).values - entropy, dim=0)  # exp(max H - H_m), normalised over m
    return (weights[..., None] * logits).sum(dim=0)


class Mla(Method):
    name = "mla"
    tests_every_epoch = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.weights = combinations(self.modalities)

    def update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        self.alternating_update(self.nets["model"], embeddings["model"], labels, epoch)

    def eval_outputs(self, outputs: dict[Key, torch.Tensor]) -> dict[Key, torch.Tensor]:
        branches = {m: outputs[("branch", m)] for m in self.modalities}
        if len(branches) < 2:
            return {}
        out: dict[Key, torch.Tensor] = {
            (combo(name), None): sum(w * branches[m].float() for m, w in weights.items())
            for name, weights in self.weights.items()}
        out[(combo(ENTROPY), None)] = entropy_gate(branches)
        return out

    def selections(self) -> tuple[str, ...]:
        return tuple(combo(name) for name in combo_names(self.modalities))
