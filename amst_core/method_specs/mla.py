from amst_core.method_specs.base import MethodSpec, NoParams

SPEC = MethodSpec("mla", "MLA: alternating unimodal training through a shared head; weighted and entropy-gated "
                  "combinations evaluated", NoParams, "msum", fusion_fixed=True, uses_skip=False,
                  implementation="amst_core.methods.mla:Mla")
