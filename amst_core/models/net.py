"""A multimodal classifier: one encoder per modality, a fusion head and helper probes."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from amst_core.config import ConfigError, ModelConfig
from amst_core.models.encoders import ENCODERS, TEXT_DIM, build_encoder, embedding_dim
from amst_core.models.fusion import FusionHead, HelperHeads, build_head
from amst_core.models.text import TextEncoder
from amst_core.vocab import TEXT


class MultimodalNet(nn.Module):
    def __init__(self, modalities: tuple[str, ...], num_classes: int, fusion: str, model: ModelConfig | None = None):
        super().__init__()
        model = model or ModelConfig()
        self.modalities = tuple(sorted(modalities))
        unsupported = [m for m in self.modalities if m not in (*ENCODERS, TEXT)]
        if unsupported:
            raise ConfigError("dataset", f"no encoder for modality {', '.join(unsupported)} yet")
        text = TextEncoder(model) if TEXT in self.modalities else None
        dim = embedding_dim(self.modalities, model.width, text.dim if text is not None else TEXT_DIM)
        self.encoders = nn.ModuleDict({m: text if m == TEXT else build_encoder(m, model, dim)
                                       for m in self.modalities})
        self.head: FusionHead = build_head(fusion, self.modalities, dim, num_classes)
        self.helpers = HelperHeads(self.modalities, dim, num_classes)

    def embed(self, batch: dict[str, torch.Tensor], modalities: Iterable[str]) -> dict[str, torch.Tensor]:
        return {m: self.encoders[m](batch[m], batch["text_mask"]) if m == TEXT else self.encoders[m](batch[m])
                for m in modalities}

    def parts(self) -> dict[str, list[dict]]:
        """The parts with an optimizer each (reference: encoders, fusion head, helpers), as parameter groups: one
        per modality for the encoders, so that a method may give each its own learning rate (MSLR)."""
        return {
            "encoders": [{"params": list(self.encoders[m].parameters()), "modality": m} for m in self.modalities],
            "head": [{"params": list(self.head.parameters())}],
            "helpers": [{"params": list(self.helpers.parameters())}],
        }
