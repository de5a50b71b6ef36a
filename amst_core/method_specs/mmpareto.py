from pydantic import Field

from amst_core.method_specs.base import MethodParams, MethodSpec
from amst_core.vocab import RunSeries


class MmParetoParams(MethodParams):
    gamma: float = Field(1.5, gt=0, description="each encoder gradient tensor is multiplied by gamma after its "
                                                "norm is restored (the authors' code: 1.5)")


SERIES = (
    RunSeries("mmpareto_cos", "quantity", True, "MMPareto: the mean cosine, over the epoch's batches, between the "
              "gradients of the multimodal and the modality's unimodal loss on its encoder"),
    RunSeries("mmpareto_weight", "bounded", True, "MMPareto: the mean weight of the modality's unimodal loss in its "
              "encoder's gradient (0.5 without conflict; the multimodal loss has 1 minus it)"),
)

SPEC = MethodSpec("mmpareto", "MMPareto: multimodal and unimodal gradients of each encoder combined by Pareto "
                  "(min-norm) weights when they conflict", MmParetoParams, "concat", fusion_fixed=False,
                  uses_skip=False, series=SERIES, implementation="amst_core.methods.mmpareto:MmPareto")
