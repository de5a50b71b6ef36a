from pydantic import Field

from amst_core.method_specs.base import MethodSpec, Window
from amst_core.vocab import RunSeries


class OpmParams(Window):
    q_base: float = Field(0.5, ge=0, le=1, description="base drop probability of the dominant modality's features: "
                                                       "q = q_base * (1 + lam * tanh(ratio - 1)), clipped to [0, 1]")
    lam: float = Field(0.5, ge=0, description="how much the discrepancy ratio raises the drop probability above "
                                              "q_base")
    p_exe: float = Field(0.7, ge=0, le=1, description="probability that a batch drops features at all")
    modulation_start: int = Field(6, ge=0, description="first epoch features are dropped (the authors' code: after "
                                                       "6 warm-up epochs, 0..5)")
    modulation_end: int = Field(1000, ge=0, description="last epoch features are dropped (included; the authors' "
                                                        "code drops until the end of training)")


SERIES = (
    RunSeries("opm_drop", "bounded", True, "OPM: the mean probability with which a sample's features of the modality "
              "were dropped in a batch that drops (0 outside the modulation window; batches drop with p_exe)"),
)

SPEC = MethodSpec("opm", "OPM: the dominant modality's features dropped per sample in the forward pass, more "
                  "often the more it dominates", OpmParams, "concat", fusion_fixed=False, uses_skip=False,
                  series=SERIES, implementation="amst_core.methods.opm:Opm")
