from pydantic import Field

from amst_core.method_specs.base import MethodParams, MethodSpec


class MslrParams(MethodParams):
    lr_audio: float = Field(1e-3, gt=0, description="learning rate of the audio encoder")
    lr_visual: float = Field(1e-2, gt=0, description="learning rate of the visual encoder")
    lr_text: float = Field(1e-3, gt=0, description="learning rate of the text encoder")
    window: int = Field(5, ge=1, description="every `window` epochs, an encoder's lr is multiplied by its val "
                                            "branch accuracy over the mean of its last `window`")
    dynamic: bool = Field(True, description="apply that rule (the reference never runs it: false reproduces its "
                                            "fixed rates)")


SPEC = MethodSpec("mslr", "MSLR: a learning rate per encoder, adjusted by its validation accuracy", MslrParams,
                  "lsum", fusion_fixed=False, uses_skip=False, implementation="amst_core.methods.mslr:Mslr")
