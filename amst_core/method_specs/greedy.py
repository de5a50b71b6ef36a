from pydantic import Field

from amst_core.method_specs.base import MethodParams, MethodSpec
from amst_core.vocab import RunSeries


class GreedyParams(MethodParams):
    alpha: float = Field(0.001, ge=0, description="threshold: re-balancing starts when the two modalities' "
                                                  "conditional learning speeds differ by more than alpha")
    window_size: int = Field(5, ge=1, description="re-balancing steps taken each time the threshold is crossed")


SERIES = (
    RunSeries("greedy_speed", "quantity", True, "Greedy: the modality's conditional learning speed at the end of the "
              "epoch, log10 of the other encoder's accumulated relative gradient norm over its own (higher: it "
              "learns slower)"),
    RunSeries("greedy_rebalanced", "bounded", True, "Greedy: the share of the epoch's batches that were re-balancing "
              "steps of this modality (only its branch loss, only its encoder and head branch updated)"),
)

SPEC = MethodSpec("greedy", "Greedy: re-balancing steps that train only the modality learning slower", GreedyParams,
                  "lsum", fusion_fixed=False, uses_skip=False, modalities=2, series=SERIES,
                  implementation="amst_core.methods.greedy:Greedy")
