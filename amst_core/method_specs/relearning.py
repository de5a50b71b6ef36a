from pydantic import Field

from amst_core.method_specs.base import MethodParams, MethodSpec
from amst_core.vocab import RunSeries


class RelearningParams(MethodParams):
    diagnose_every: int = Field(20, ge=1, description="after every epoch e > 0 with e % diagnose_every == 0 (the "
                                                      "code's reinit_epoch), diagnose the encoders and softly "
                                                      "re-initialise them")
    max_reinits: int = Field(3, ge=0, description="at most this many diagnoses and re-initialisations "
                                                  "(reinit_num)")
    move_lambda: float = Field(3.0, ge=0, description="re-initialisation strength alpha_m = tanh(move_lambda * "
                                                      "|train purity - val purity| of the modality's features)")
    kmeans_restarts: int = Field(10, ge=1, description="k-means runs from different k-means++ seeds; the one of "
                                                       "least inertia is kept (sklearn's n_init)")
    kmeans_iters: int = Field(300, ge=1, description="most Lloyd iterations of one k-means run (sklearn's "
                                                     "max_iter)")


SERIES = (
    RunSeries("learning_state", "bounded", True, "Re-learning: the modality's learning state, |purity of k-means "
              "clusters of its train features - of its val features| at the last diagnosis (0 before any)"),
    RunSeries("reinit_strength", "bounded", True, "Re-learning: alpha in theta = (1 - alpha) theta + alpha "
              "theta_init applied to the modality's encoder before the epoch (0 when none)"),
)

SPEC = MethodSpec("relearning", "Diagnosing & Re-learning: encoders softly re-initialised by how well their "
                                "features cluster", RelearningParams, "concat", fusion_fixed=False, uses_skip=False,
                  series=SERIES, implementation="amst_core.methods.relearning:Relearning")
