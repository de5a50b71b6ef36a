from pydantic import Field

from amst_core.method_specs.base import MethodSpec, Window
from amst_core.vocab import RunSeries


class AmcoParams(Window):
    sigma: float = Field(0.5, gt=0, le=1, description="a modality becomes the dependent one (masked) for the rest of "
                                                      "the epoch once its share of the softmax over all branches' "
                                                      "concatenated logits, averaged over a batch, reaches sigma")
    eps: float = Field(0.3, gt=0, description="progress at which the mask ratio reaches 1: "
                                              "p = sin(pi/2 * min(eps, progress) / eps)")
    progress_rate: float = Field(0.1, ge=0, description="progress starts at 0 each epoch and grows by "
                                                        "epoch * progress_rate after each batch "
                                                        "(BalanceBenchmark: epoch / 10)")
    modulation_start: int = Field(10, ge=0, description="first epoch the dependent modality is masked")
    modulation_end: int = Field(80, ge=0, description="last epoch the dependent modality is masked (included)")


SERIES = (
    RunSeries("amco_mask", "bounded", True, "AMCo: the mean share of the modality's embedding features masked in a "
              "batch of the epoch (0 for a modality never dependent, and outside the modulation window)"),
)

SPEC = MethodSpec("amco", "AMCo: a growing share of the dependent modality's features masked, with unimodal "
                  "losses beside the fused one", AmcoParams, "concat", fusion_fixed=False, uses_skip=False,
                  series=SERIES, implementation="amst_core.methods.amco:Amco")
