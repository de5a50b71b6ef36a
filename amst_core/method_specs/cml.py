from pydantic import Field

from amst_core.method_specs.base import MethodParams, MethodSpec
from amst_core.vocab import RunSeries


class CmlParams(MethodParams):
    lam: float = Field(0.1, ge=0, description="weight of the calibration regulariser: the mean over samples and "
                                              "modality subsets of relu(conf(subset) - conf(all modalities))")


SERIES = (
    RunSeries("cml_reg", "quantity", False, "CML: the calibration regulariser's mean value over the epoch's "
              "batches (before lam)"),
    RunSeries("cml_active", "bounded", False, "CML: the share of (sample, modality subset) pairs whose subset "
              "prediction was more confident than the prediction from all modalities"),
)

SPEC = MethodSpec("cml", "CML: fused CE plus a penalty when leaving modalities out raises the confidence",
                  CmlParams, "lsum", fusion_fixed=False, uses_skip=False, series=SERIES,
                  implementation="amst_core.methods.cml:Cml")
