from pydantic import Field

from amst_core.method_specs.base import MethodSpec, Window
from amst_core.vocab import PROTOTYPE


class PmrParams(Window):
    alpha: float = Field(1.0, ge=0, description="weight of the weaker modality's prototype loss")
    momentum_coef: float = Field(0.2, ge=0, le=1, description="P = (1 - m) * P_new + m * P_old after the first "
                                                              "epoch")
    factor: float = Field(0.1, gt=0, le=1, description="share of the shuffled train batches the prototypes are "
                                                       "computed from before each epoch")
    modulation_end: int = Field(70, ge=0, description="last epoch the prototype loss is added (included)")


SPEC = MethodSpec("pmr", "PMR: a prototype loss for the weaker of two modalities", PmrParams, "lsum",
                  fusion_fixed=False, uses_skip=False, modalities=2, implementation="amst_core.methods.pmr:Pmr",
                  modality_components=(PROTOTYPE,))
