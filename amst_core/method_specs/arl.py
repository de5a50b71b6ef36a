from pydantic import Field

from amst_core.method_specs.base import MethodParams, MethodSpec
from amst_core.vocab import RunSeries


class ArlParams(MethodParams):
    gamma: float = Field(4.0, ge=0, description="weight of the unimodal (branch) losses once the rule acts; 1 "
                                                "before (CREMA-D 4, AVE 5 in the authors' scripts)")
    temperature: float = Field(8.0, gt=0, description="T: the coefficients are softmax(T * score) over the "
                                                      "modalities (CREMA-D 8, AVE 4)")
    start: int = Field(5, ge=0, description="the rule acts in epochs after this one (epoch > start)")
    entropy_floor: float = Field(0.3, ge=0, le=1, description="lower bound of each modality's share of the summed "
                                                              "prediction entropies")
    max_grad_norm: float = Field(40.0, ge=0, description="the gradients of the head and encoders are clipped to "
                                                         "this global L2 norm (0: no clipping)")


SERIES = (
    RunSeries("arl_grad_scale", "quantity", True, "ARL: the mean factor (1 + coefficient) the gradient reaching "
                                                  "the modality's encoder was multiplied by in the epoch (1 before "
                                                  "the rule acts)"),
)

SPEC = MethodSpec("arl", "ARL: each encoder's gradient boosted by an entropy- and logit-based coefficient, plus "
                  "unimodal losses", ArlParams, "concat", fusion_fixed=False, uses_skip=False, series=SERIES,
                  implementation="amst_core.methods.arl:Arl")
