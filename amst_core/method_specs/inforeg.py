from pydantic import Field

from amst_core.method_specs.base import MethodParams, MethodSpec
from amst_core.vocab import RunSeries


class InfoRegParams(MethodParams):
    beta_audio: float = Field(0.95, ge=0, description="base strength of the proximal term on the audio encoder "
                                                      "when audio leads (the authors' code: 0.95)")
    beta_visual: float = Field(0.1, ge=0, description="base strength of the proximal term on the visual encoder "
                                                      "when visual leads (the authors' code: 0.1)")
    beta_text: float = Field(0.1, ge=0, description="base strength of the proximal term on the text encoder when "
                                                    "text leads (ours: the authors have no text)")
    threshold: float = Field(0.05, ge=0, description="the prime learning window lasts while a modality's "
                                                     "information acquisition rate is above this")
    rate_window: int = Field(10, ge=1, description="epochs in each moving average of the Fisher trace that the "
                                                   "acquisition rate compares")
    unimodal_losses: bool = Field(True, description="add each branch's CE to the fused CE, as the authors' code "
                                                    "trains (false: the fused CE alone)")


SERIES = (
    RunSeries("inforeg_rate", "quantity", True, "InfoReg: the modality's information acquisition rate used in the "
              "epoch (relative growth of its encoder's Fisher trace; regulated while above the threshold)"),
    RunSeries("inforeg_beta", "quantity", True, "InfoReg: the mean strength of the proximal term on the "
              "modality's encoder over the epoch's batches (0 outside its prime learning window)"),
    RunSeries("inforeg_trace", "quantity", True, "InfoReg: the trace of the modality encoder's empirical Fisher "
              "information in the epoch (squared gradients of its conv and linear weights)"),
)

SPEC = MethodSpec("inforeg", "InfoReg: the leading modality's encoder held near its epoch-start weights during "
                  "the prime learning window", InfoRegParams, "concat", fusion_fixed=False, uses_skip=False,
                  series=SERIES, implementation="amst_core.methods.inforeg:InfoReg")
