from pydantic import Field

from amst_core.method_specs.base import MethodParams, MethodSpec
from amst_core.vocab import RunSeries


class DglParams(MethodParams):
    alpha: float = Field(4.0, ge=0, description="weight of the unimodal losses, the only loss that trains the "
                                                "encoders (the authors' CREMA-D runs use 4 and 5)")
    clip_norm: float = Field(40.0, ge=0, description="the encoders' and head's gradients are clipped to this global "
                                                     "L2 norm before the step, as in the authors' code (0: no "
                                                     "clipping)")


SERIES = (
    RunSeries("dgl_unimodal_loss", "loss", True, "DGL: the mean cross-entropy of the modality's branch over the "
              "epoch's training batches: the loss that alone trains its encoder (before alpha)"),
)

SPEC = MethodSpec("dgl", "DGL: each encoder trained by its own unimodal loss, the head by the fused loss on "
                  "detached embeddings", DglParams, "concat", fusion_fixed=False, uses_skip=False, series=SERIES,
                  implementation="amst_core.methods.dgl:Dgl")
