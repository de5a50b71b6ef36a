from amst_core.method_specs.base import MethodSpec, SkipParams

SPEC = MethodSpec("amst_joint", "joint concat training that leaves skipped modalities out", SkipParams, "concat",
                  fusion_fixed=True, uses_skip=True, implementation="amst_core.methods.amst_joint:AmstJoint")
