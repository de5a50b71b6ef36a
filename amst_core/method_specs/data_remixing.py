from pydantic import Field

from amst_core.method_specs.base import MethodParams, MethodSpec
from amst_core.vocab import RunSeries


class DataRemixingParams(MethodParams):
    warmup_epochs: int = Field(10, ge=0, description="epochs of joint training (fused loss plus weighted branch "
                                                     "losses) before samples are remixed")
    warmup_weight: float = Field(0.5, ge=0, description="weight of each modality's branch loss added to the fused "
                                                        "loss in warm-up (the authors' alpha and beta)")
    unimodal_weight: float = Field(1.0, ge=0, description="weight of the assigned modality's branch loss added to "
                                                          "the fused loss of its unimodal batch (the authors' gamma1 "
                                                          "and gamma2)")


SERIES = (
    RunSeries("remix_share", "bounded", True, "Data Remixing: the share of the epoch's training samples whose "
              "unimodal input trained the modality (1 for every modality in warm-up, where every sample trains "
              "all; after it the shares sum to 1)"),
)

SPEC = MethodSpec("data_remixing", "Data Remixing: each sample trains only the modality that has learnt it least, "
                  "in unimodal batches", DataRemixingParams, "concat", fusion_fixed=False, uses_skip=False,
                  series=SERIES, implementation="amst_core.methods.data_remixing:DataRemixing")
