from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from amst_core.method_specs.base import MethodParams, MethodSpec
from amst_core.vocab import Modality

if TYPE_CHECKING:
    from amst_core.config import RunConfig


class UnimodalParams(MethodParams):
    modality: Modality | None = Field(
        None, description="the one modality trained (its encoder and a linear classifier); the others are not "
                          "loaded")


def check(cfg: RunConfig, params: UnimodalParams) -> None:
    available, chosen = cfg.dataset.modalities, params.modality
    if chosen is None or chosen not in available:
        raise ValueError(f"method_params.modality: name the one modality to train, one of {', '.join(available)}"
                         + (f"; {cfg.dataset.name} has no {chosen}" if chosen else ""))


SPEC = MethodSpec("unimodal", "one modality alone: its encoder and a linear classifier", UnimodalParams, "concat",
                  fusion_fixed=True, uses_skip=False, check=check, implementation="amst_core.methods.unimodal:Unimodal")
