from amst_core.method_specs.base import MethodSpec, SkipParams

SPEC = MethodSpec("amst_alt", "alternating unimodal updates through a shared head, with skip factors", SkipParams,
                  "msum", fusion_fixed=True, uses_skip=True, implementation="amst_core.methods.amst_alt:AmstAlt")
