from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from amst_core.method_specs.base import MethodParams, MethodSpec
from amst_core.vocab import RunSeries


class LfmParams(MethodParams):
    alignment: Literal["contrastive", "js"] = Field(
        "contrastive",
        description="contrastive: symmetric InfoNCE between L2-normalised embeddings of each pair of modalities "
                    "(the paper); js: the Jensen-Shannon-style divergence of their softmaxed embeddings (what the "
                    "authors' released script runs)")
    temperature: float = Field(0.07, gt=0, description="temperature of the contrastive similarities")
    decay: float = Field(0.3, ge=0, description="the alignment weight is exp(-decay * epoch), clipped to "
                                                "[min_weight, max_weight]")
    min_weight: float = Field(0.05, ge=0, le=1, description="lowest alignment weight")
    max_weight: float = Field(0.95, ge=0, le=1, description="highest alignment weight")

    @model_validator(mode="after")
    def _ordered(self) -> LfmParams:
        if self.max_weight < self.min_weight:
            raise ValueError(f"max_weight: {self.max_weight} is below min_weight {self.min_weight}")
        return self


SERIES = (
    RunSeries("lfm_weight", "bounded", False, "LFM: the weight of the alignment loss in the epoch (the "
                                              "classification loss has 1 minus it)"),
    RunSeries("lfm_align_loss", "loss", False, "LFM: the mean cross-modal alignment (contrastive) loss of the "
                                               "epoch's batches"),
)

SPEC = MethodSpec("lfm", "LFM: the fused CE mixed with a cross-modal contrastive loss, by a weight decaying per epoch",
                  LfmParams, "lsum", fusion_fixed=False, uses_skip=False, series=SERIES,
                  implementation="amst_core.methods.lfm:Lfm")
