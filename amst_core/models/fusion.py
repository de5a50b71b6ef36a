"""Fusion heads. Input: modality -> embedding, or None for an absent (skipped) modality.

concat: per-modality W_m (no bias) plus one shared bias b; branch o_m = W_m E_m + b/n with n the number of
        modalities of the dataset; fused = sum of present branches (= a linear layer on the concatenation).
lsum:   per-modality Linear with its own bias; fused = sum of present branches.
msum:   one shared Linear; o_m = W E_m + b; fused = mean of present branches.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

import torch
from torch import nn

Embeddings = Mapping[str, torch.Tensor | None]


def xavier_linear(d_in: int, d_out: int, bias: bool = True) -> nn.Linear:
    layer = nn.Linear(d_in, d_out, bias=bias)
    nn.init.xavier_normal_(layer.weight)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


class FusionHead(nn.Module, ABC):
    """Common interface: `branch(m, e)` gives one modality's logits, `forward` fuses the present ones."""

    def __init__(self, modalities: tuple[str, ...]):
        super().__init__()
        self.modalities = tuple(sorted(modalities))

    @abstractmethod
    def branch(self, modality: str, embedding: torch.Tensor) -> torch.Tensor:
        """Logits of one modality's branch."""

    def combine(self, branches: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(branches).sum(dim=0)

    def branches(self, embeddings: Embeddings) -> dict[str, torch.Tensor]:
        present = {m: e for m, e in embeddings.items() if e is not None}
        unknown = set(present) - set(self.modalities)
        if unknown:
            raise KeyError(f"head has no branch for {sorted(unknown)}")
        return {m: self.branch(m, present[m]) for m in self.modalities if m in present}

    def forward(self, embeddings: Embeddings) -> torch.Tensor:
        branches = self.branches(embeddings)
        if not branches:
            raise ValueError("fusion needs at least one present modality")
        return self.combine(list(branches.values()))


class ConcatHead(FusionHead):
    def __init__(self, modalities: tuple[str, ...], dim: int, num_classes: int):
        super().__init__(modalities)
        self.weights = nn.ModuleDict({m: xavier_linear(dim, num_classes, bias=False) for m in self.modalities})
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def branch(self, modality: str, embedding: torch.Tensor) -> torch.Tensor:
        return self.weights[modality](embedding) + self.bias / len(self.modalities)


class LateSumHead(FusionHead):
    def __init__(self, modalities: tuple[str, ...], dim: int, num_classes: int):
        super().__init__(modalities)
        self.linears = nn.ModuleDict({m: xavier_linear(dim, num_classes) for m in self.modalities})

    def branch(self, modality: str, embedding: torch.Tensor) -> torch.Tensor:
        return self.linears[modality](embedding)


class SharedMeanHead(FusionHead):
    def __init__(self, modalities: tuple[str, ...], dim: int, num_classes: int):
        super().__init__(modalities)
        self.linear = xavier_linear(dim, num_classes)

    def branch(self, modality: str, embedding: torch.Tensor) -> torch.Tensor:
        return self.linear(embedding)

    def combine(self, branches: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(branches).mean(dim=0)


FUSION_HEADS: dict[str, type[FusionHead]] = {"concat": ConcatHead, "lsum": LateSumHead, "msum": SharedMeanHead}


def build_head(kind: str, modalities: tuple[str, ...], dim: int, num_classes: int) -> FusionHead:
    return FUSION_HEADS[kind](modalities, dim, num_classes)


class HelperHeads(nn.Module):
    """Linear probes on detached embeddings: they measure each encoder and never touch it."""

    def __init__(self, modalities: tuple[str, ...], dim: int, num_classes: int):
        super().__init__()
        self.linears = nn.ModuleDict({m: xavier_linear(dim, num_classes) for m in sorted(modalities)})

    def forward(self, embeddings: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: self.linears[m](e.detach()) for m, e in embeddings.items()}
