"""One modality alone (the reference's single_modality.py): its encoder and a linear classifier (the concat head
over one modality is W E + b), trained with CE; the dataset's other modalities are not even loaded. The unimodal
references against which a fusion method's per-modality results read."""

from __future__ import annotations

import torch

from amst_core.methods.base import Embeddings, Method


class Unimodal(Method):
    name = "unimodal"

    def update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        self.joint_update(self.nets["model"], embeddings["model"], labels, self.modalities)
