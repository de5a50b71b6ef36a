"""AMST-JOINT: one concat-head loss per batch over the modalities updated this epoch; a skipped modality is
absent from the sum, so neither its encoder nor its head slice W_m moves (the shared bias still does)."""

from __future__ import annotations

import torch

from amst_core.methods.base import Embeddings, Method


class AmstJoint(Method):
    name = "amst_joint"

    def update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        self.joint_update(self.nets["model"], embeddings["model"], labels, self.schedule.updated(epoch))
