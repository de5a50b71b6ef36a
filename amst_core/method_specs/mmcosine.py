from pydantic import Field

from amst_core.method_specs.base import MethodParams, MethodSpec
from amst_core.vocab import RunSeries


class MmcosineParams(MethodParams):
    scaling: float = Field(10.0, gt=0, description="s: each branch's logits are s * cos(E_m, W_m^c), the cosine of "
                                                   "the normalised embedding and the class's normalised weight row")


SERIES = (
    RunSeries("mmcosine_true_cos", "quantity", True, "MMCosine: the mean cosine between the modality's embedding and "
              "its branch's weight row of the true class over the epoch's training batches (in [-1, 1])"),
)

SPEC = MethodSpec("mmcosine", "MMCosine: per-modality cosine logits (normalised embeddings and class weights), "
                  "summed and scaled", MmcosineParams, "lsum", fusion_fixed=True, uses_skip=False, series=SERIES,
                  implementation="amst_core.methods.mmcosine:MmCosine")
