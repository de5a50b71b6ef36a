"""Modality subsets, said once for the methods that value them (CML, AGM, modality valuation).

The prediction from a subset S of modalities is the fusion head over S alone: the other modalities left out of
the head, as a skipped (absent) modality is (`FusionHead.combine` of S's branch logits). The Shapley value of
modality m for a value v over subsets (v(empty) = 0) is
    phi_m = sum over S not holding m of |S|! (n - |S| - 1)! / n! * (v(S + m) - v(S)).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from itertools import combinations

import torch

Subset = frozenset[str]


def subsets(modalities: Iterable[str], proper: bool = False) -> list[tuple[str, ...]]:
    """Every non-empty subset (`proper`: without the full set), larger ones first, each sorted."""
    mods = sorted(modalities)
    top = len(mods) - 1 if proper else len(mods)
    return [s for k in range(top, 0, -1) for s in combinations(mods, k)]


def head_over(combine: Callable[[list[torch.Tensor]], torch.Tensor], branches: dict[str, torch.Tensor],
              subset: Iterable[str]) -> torch.Tensor:
    """The head's logits from `subset` alone: its branches combined, the others left out."""
    return combine([branches[m] for m in sorted(subset)])


def shapley_weight(size: int, n: int) -> float:
    """|S|! (n - |S| - 1)! / n!: the weight of a subset S of `size` modalities not holding m, of n."""
    return math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)


def shapley_values(value: Callable[[Subset], torch.Tensor], modalities: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Each modality's Shapley value of `value` (called once per non-empty subset; v(empty) = 0)."""
    cache: dict[Subset, torch.Tensor] = {}

    def v(s: Subset) -> torch.Tensor:
        if s not in cache:
            cache[s] = value(s)
        return cache[s]

    n = len(modalities)
    out: dict[str, torch.Tensor] = {}
    for m in modalities:
        others = [k for k in modalities if k != m]
        total = v(frozenset({m})) * shapley_weight(0, n)
        for size in range(1, n):
            for rest in combinations(others, size):
                s = frozenset(rest)
                total = total + shapley_weight(size, n) * (v(s | {m}) - v(s))
        out[m] = total
    return out
