from typing import Literal

from pydantic import Field

from amst_core.method_specs.base import MethodSpec, SkipParams


class FullParams(SkipParams):
    full_joint_update: Literal["alt", "joint"] = Field(
        "alt",
        description="alt: the joint module is trained with per-modality losses (reference code); "
        "joint: one CE loss over its concat head (paper figure)",
    )


SPEC = MethodSpec("amst_full", "alternating module plus joint module, predictions averaged", FullParams, "concat",
                  fusion_fixed=True, uses_skip=True, implementation="amst_core.methods.amst_full:AmstFull",
                  modules=("alt_", "joint_"))  # an alternating module A and a joint module J
