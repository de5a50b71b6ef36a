from pydantic import Field

from amst_core.method_specs.base import MethodSpec, Window
from amst_core.vocab import RunSeries


class ValuationParams(Window):
    part_ratio: float = Field(0.2, gt=0, le=1, description="share of the shuffled train batches whose samples are "
                                                           "valued before each epoch")
    modulation_end: int = Field(1000, ge=0, description="last epoch samples are re-sampled (included; the reference "
                                                        "never stops)")


SERIES = (
    RunSeries("mv_shapley", "quantity", True, "Modality valuation: the modality's mean Shapley contribution to the "
              "fused prediction's correctness over the valued train samples, before the epoch"),
    RunSeries("mv_resample", "quantity", False, "Modality valuation: the share of each batch re-sampled in the epoch "
              "(2/3 of the contribution gap; 0 outside the window)"),
)

SPEC = MethodSpec("modality_valuation", "Modality valuation: the low-contributing modality re-trained on re-sampled "
                  "samples, by Shapley contribution", ValuationParams, "lsum", fusion_fixed=False, uses_skip=False,
                  series=SERIES, implementation="amst_core.methods.modality_valuation:ModalityValuation")
