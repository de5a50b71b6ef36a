from pydantic import Field

from amst_core.method_specs.base import MethodSpec, Window
from amst_core.vocab import RunSeries


class OgmParams(Window):
    alpha: float = Field(0.1, ge=0, description="strength: the dominant modality's gradients are scaled by "
                                                 "1 - tanh(alpha * relu(ratio))")


SERIES = (
    RunSeries("ogm_coeff", "bounded", True, "OGM-GE: the mean factor the modality's encoder gradients were scaled by "
              "in the epoch (1 outside the modulation window)"),
    RunSeries("ogm_ratio", "quantity", True, "OGM-GE: the mean ratio of the modality's score (summed probability "
                                             "of the true class) to the others'"),
)

SPEC = MethodSpec("ogm_ge", "OGM-GE: the dominant modality's encoder gradients scaled down, Gaussian noise added",
                  OgmParams, "lsum", fusion_fixed=False, uses_skip=False, series=SERIES,
                  implementation="amst_core.methods.ogm_ge:OgmGe")
