from pydantic import Field

from amst_core.method_specs.base import MethodSpec, Window
from amst_core.vocab import RunSeries


class AgmParams(Window):
    alpha: float = Field(0.1, ge=0, description="strength: encoder m's gradients are scaled by "
                                                 "exp(alpha * min(eta_m - r_m, 10))")
    clip: float = Field(5.0, ge=0, description="inside the window, when a fusion-head weight gradient exceeds clip "
                                               "in magnitude, the encoder and head gradients are clipped to total "
                                               "norm clip (0: never)")
    modulation_end: int = Field(80, ge=0, description="last epoch the coefficients are applied (included)")


SERIES = (
    RunSeries("agm_coeff", "quantity", True, "AGM: the mean factor the modality's encoder gradients were scaled by in "
                                             "the epoch (1 outside the modulation window)"),
    RunSeries("agm_score", "loss", True, "AGM: the mean cross-entropy of the modality's Shapley mono-modal response "
                                         "in the epoch"),
)

SPEC = MethodSpec("agm", "AGM: encoder gradients scaled by each modality's Shapley response against its running "
                  "average", AgmParams, "lsum", fusion_fixed=False, uses_skip=False, series=SERIES,
                  implementation="amst_core.methods.agm:Agm")
