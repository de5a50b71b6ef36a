from typing import Literal

from pydantic import Field

from amst_core.method_specs.base import MethodSpec, Window
from amst_core.method_specs.umt import PHASE, TEACHER_PREFIX, TeacherParams, check_student_epochs
from amst_core.vocab import RunSeries


class G2dParams(TeacherParams, Window):
    feature_weight: float = Field(1.0, ge=0, description="weight of each modality's feature distillation (MSE "
                                                         "between student and teacher embeddings)")
    logit_weight: float = Field(1.0, ge=0, description="weight of each teacher's logit distillation into the fused "
                                                       "prediction (KL at the temperature, times its square)")
    temperature: float = Field(1.0, gt=0, description="softmax temperature of the logit distillation")
    modulation_end: int = Field(150, ge=0, description="last run epoch (teacher epochs included) in which SMP "
                                                       "suppresses the dominant modality's gradients")
    suppress: Literal["conv", "all"] = Field("conv", description="which of the dominant encoder's gradients SMP "
                                                                 "zeroes: its conv kernels (the authors' code) or "
                                                                 "every parameter (encoders without convolutions, "
                                                                 "e.g. text)")


SERIES = (
    PHASE,
    RunSeries("g2d_priority", "bounded", True, "G2D: the share of the epoch's batches in which SMP prioritised the "
                                               "modality (another modality's gradients were suppressed, not its "
                                               "own); 0 in phase 1 and outside the window"),
)

SPEC = MethodSpec("g2d", "G2D: unimodal teachers distilled (features and logits), the dominant modality's gradients "
                  "suppressed", G2dParams, "lsum", fusion_fixed=False, uses_skip=False, series=SERIES,
                  check=check_student_epochs,
                  implementation="amst_core.methods.g2d:G2d", modules=("", TEACHER_PREFIX))
