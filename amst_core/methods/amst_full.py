"""AMST-FULL: an alternating module A (shared msum head) and an independent joint module J (concat head).

Prediction everywhere (training metrics, validation, test, evaluation):
    final = (n * mean_m A(E_m) + J(E)) / (n + 1),
the plain average of A's n per-modality logits and J's joint logits. J is trained alternately through its
concat branches (`full_joint_update: alt`, what the reference code runs) or with one joint loss (`joint`).
"""

from __future__ import annotations

import torch

from amst_core.methods.base import Embeddings, Method
from amst_core.metrics import Key


class AmstFull(Method):
    name = "amst_full"

    def net_specs(self) -> dict[str, tuple[str, str]]:
        return {"alt": ("msum", "alt_"), "joint": ("concat", "joint_")}

    def head_outputs(self, embeddings: dict[str, Embeddings]) -> dict[Key, torch.Tensor]:
        alt_head, joint_head = self.nets["alt"].net.head, self.nets["joint"].net.head
        alt_branches = alt_head.branches(embeddings["alt"])
        joint_branches = joint_head.branches(embeddings["joint"])
        joint = joint_head.combine(list(joint_branches.values()))
        # n * mean of A's branches is their sum; with every modality present this is the formula above (in fast
        # skip mode, train metrics of a skipped epoch divide by the number of present modalities + 1).
        fused = (torch.stack(list(alt_branches.values())).sum(dim=0) + joint) / (len(alt_branches) + 1)
        out: dict[Key, torch.Tensor] = {
            ("fused", None): fused,
            ("alt", None): alt_head.combine(list(alt_branches.values())),
            ("joint", None): joint,
        }
        out.update({("alt_branch", m): o for m, o in alt_branches.items()})
        out.update({("joint_branch", m): o for m, o in joint_branches.items()})
        return out

    def update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        self.alternating_update(self.nets["alt"], embeddings["alt"], labels, epoch)
        if self.params.full_joint_update == "alt":
            self.alternating_update(self.nets["joint"], embeddings["joint"], labels, epoch)
        else:
            self.joint_update(self.nets["joint"], embeddings["joint"], labels, self.schedule.updated(epoch))
