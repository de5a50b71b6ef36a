from pydantic import Field

from amst_core.method_specs.base import MethodParams, MethodSpec
from amst_core.vocab import RunSeries


class GBlendingParams(MethodParams):
    super_epoch: int = Field(10, ge=2, description="epochs per super-epoch: the weights are estimated before epochs "
                                                   "0, super_epoch, 2 super_epoch, ... from copies of the network "
                                                   "trained this many epochs per head")


SERIES = (
    RunSeries("gblend_weight", "bounded", True, "Gradient-Blending: the weight of the modality's unimodal (branch) "
              "loss in the epoch"),
    RunSeries("gblend_weight_fused", "bounded", False, "Gradient-Blending: the weight of the fused prediction's "
              "loss in the epoch"),
)

SPEC = MethodSpec("gblending", "Gradient-Blending: unimodal and fused losses weighted by generalization over "
                  "overfitting, re-estimated every super-epoch", GBlendingParams, "concat", fusion_fixed=False,
                  uses_skip=False, series=SERIES, implementation="amst_core.methods.gblending:GBlending")
