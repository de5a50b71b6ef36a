from amst_core.method_specs.base import MethodSpec, NoParams

SPEC = MethodSpec("naive", "joint training of all modalities with one fused loss", NoParams, "concat",
                  fusion_fixed=False, uses_skip=False, implementation="amst_core.methods.naive:Naive")
