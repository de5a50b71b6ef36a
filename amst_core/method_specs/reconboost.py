from pydantic import Field

from amst_core.method_specs.base import MethodParams, MethodSpec
from amst_core.vocab import RunSeries


class ReconBoostParams(MethodParams):
    stage_epochs: int = Field(4, ge=1, description="epochs of a stage in which one modality's learner is trained by "
                                                   "the boosting loss (the code's epochs_per_stage)")
    correct_epochs: int = Field(4, ge=0, description="epochs after each stage's boosting epochs in which every "
                                                     "learner added so far and the ensemble weight are trained on "
                                                     "the ensemble's CE (global rectification; correct_epoch)")
    weight1: float = Field(5.0, ge=0, description="weight of the learner's own cross-entropy in the boosting loss")
    weight2: float = Field(1.0, ge=0, description="weight of the reconcilement term, which scales the learner's "
                                                  "loss down where the other learners' ensemble already gives "
                                                  "the true class a high probability")
    boost_rate: float = Field(1.0, description="initial ensemble weight: prediction = boost_rate x sum of the "
                                               "learners' logits (trained in the rectification epochs)")


SERIES = (
    RunSeries("recon_stage", "bounded", True, "ReconBoost: 1 in the epochs whose boosting loss trains the "
                                              "modality's learner, else 0"),
    RunSeries("recon_rectify", "bounded", False, "ReconBoost: 1 in a global rectification epoch (every learner "
                                                 "added so far trained on the ensemble's CE), else 0"),
    RunSeries("recon_weight", "quantity", True, "ReconBoost: the modality's learner's weight in the ensemble "
                                                "(the boost rate once it is added, 0 before)"),
)

SPEC = MethodSpec("reconboost", "ReconBoost: alternating boosting over modalities, each learner reconciled "
                                "against the others' ensemble", ReconBoostParams, "msum", fusion_fixed=False,
                  uses_skip=False, series=SERIES, implementation="amst_core.methods.reconboost:ReconBoost")
