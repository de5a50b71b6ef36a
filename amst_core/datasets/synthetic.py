"""synthetic: tensors generated in memory with a controllable signal per modality (tests, demos)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from amst_core.datasets.base import DatasetSpec
from amst_core.vocab import AUDIO, VISUAL

if TYPE_CHECKING:
    from amst_core.config import RunConfig
    from amst_core.datafiles import DataRoots


def check(cfg: RunConfig, roots: DataRoots) -> None:
    return None  # generated: nothing to find on disk


def sizes(cfg: RunConfig, roots: DataRoots) -> dict[str, int] | None:
    return dict(cfg.dataset.synthetic.samples) if cfg.dataset.synthetic is not None else None


SPEC = DatasetSpec(
    "synthetic", "generated tensors with a controllable signal per modality (tests)", (AUDIO, VISUAL),
    check=check, sizes=sizes, source="amst_core.data.synthetic:Synthetic", knobs=("synthetic",),
    defaults={"model": {"frames": 1}}, recipe={"optim": {"lr": 0.05}, "epochs": 5},
    method_recipes={m: {"method_params": {"teacher_epochs": 1}} for m in ("umt", "g2d")},  # a student from epoch 1
)
