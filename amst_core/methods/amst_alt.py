"""AMST-ALT: alternating unimodal updates through a shared (msum) head, each modality on its skip schedule.
With every skip factor 1 this is the repository's MLA baseline without gradient modification."""

from __future__ import annotations

import torch

from amst_core.methods.base import Embeddings, Method


class AmstAlt(Method):
    name = "amst_alt"

    def update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        self.alternating_update(self.nets["model"], embeddings["model"], labels, epoch)
