from pydantic import Field

from amst_core.method_specs.base import MethodSpec, Window
from amst_core.vocab import RunSeries


class MbsdParams(Window):
    modulation_end: int = Field(80, ge=0, description="last epoch the unimodal losses and the sample-weighted "
                                                      "distillation are added (included; BalanceBenchmark: 80)")


SERIES = (
    RunSeries("mbsd_weight", "bounded", True, "MBSD: the epoch's mean distillation weight |p_a[y] - p_b[y]| of the "
                                              "samples in which the modality is the more confident of a pair, over "
                                              "all samples and averaged over pairs (0 outside the window)"),
    RunSeries("mbsd_confident", "bounded", True, "MBSD: the share of the epoch's samples in which the modality "
                                                 "gives the true class the highest probability"),
)

SPEC = MethodSpec("mbsd", "MBSD: unimodal losses plus a per-sample distillation from the more confident modality",
                  MbsdParams, "lsum", fusion_fixed=False, uses_skip=False, series=SERIES,
                  implementation="amst_core.methods.mbsd:Mbsd")
