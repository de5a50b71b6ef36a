"""Naive fusion: one fused loss over all modalities, any fusion head."""

from __future__ import annotations

import torch

from amst_core.methods.base import Embeddings, Method


class Naive(Method):
    name = "naive"

    def update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        self.joint_update(self.nets["model"], embeddings["model"], labels, self.modalities)
