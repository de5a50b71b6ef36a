from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from amst_core.method_specs.base import MethodParams, MethodSpec
from amst_core.vocab import RunSeries

if TYPE_CHECKING:
    from amst_core.config import RunConfig

TEACHER_PREFIX = "teacher_"  # the unimodal teachers' network (vocab.MODULE_PREFIXES)


class TeacherParams(MethodParams):
    """A run in two phases: epochs [0, teacher_epochs) train the unimodal teachers, the rest the student."""

    teacher_epochs: int = Field(50, ge=1, description="epochs of phase 1, in which each modality's teacher (its own "
                                                      "encoder and linear classifier) is trained alone; the "
                                                      "multimodal student trains in the epochs after them")

    def teaching(self, epoch: int) -> bool:
        return epoch < self.teacher_epochs


def check_student_epochs(cfg: RunConfig, params: TeacherParams) -> None:
    """A run whose teachers take every epoch trains no multimodal model at all: refused, not run for nothing."""
    if cfg.epochs <= params.teacher_epochs:
        raise ValueError(f"method_params.teacher_epochs: {params.teacher_epochs} teacher epochs leave none of the "
                         f"run's {cfg.epochs} epochs to the multimodal student; set epochs above teacher_epochs "
                         f"(e.g. epochs={cfg.epochs + params.teacher_epochs}) or fewer teacher_epochs")


class UmtParams(TeacherParams):
    distill_weight: float = Field(1.0, ge=0, description="weight of the MSE between each student encoder's "
                                                         "embedding and its frozen teacher's (BalanceBenchmark: 1)")


PHASE = RunSeries("phase", "count", False, "1 while the unimodal teachers train, 2 while the multimodal student "
                                           "trains")
SERIES = (
    PHASE,
    RunSeries("umt_distill", "loss", True, "UMT: the epoch's mean MSE between the modality's student and teacher "
                                           "embeddings (measured in phase 1 too, where it trains nothing)"),
)

SPEC = MethodSpec("umt", "UMT: unimodal teachers trained first, their features distilled into the multimodal model",
                  UmtParams, "lsum", fusion_fixed=False, uses_skip=False, series=SERIES, check=check_student_epochs,
                  implementation="amst_core.methods.umt:Umt", modules=("", TEACHER_PREFIX))
