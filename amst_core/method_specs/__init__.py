"""The method registry: one spec module per method, one line in BUILTIN. Plugins (AMST_PLUGINS,
amst_core.plugins) call `register` themselves. Torch-free: the API and the run config read it."""

from __future__ import annotations

from amst_core.method_specs import (  # one line per method
    agm,
    amco,
    amst_alt,
    amst_full,
    amst_joint,
    arl,
    cml,
    data_remixing,
    dgl,
    g2d,
    gblending,
    greedy,
    inforeg,
    lfm,
    mbsd,
    mla,
    mmcosine,
    mmpareto,
    modality_valuation,
    mslr,
    naive,
    ogm_ge,
    opm,
    pmr,
    reconboost,
    relearning,
    umt,
    unimodal,
)
from amst_core.method_specs.base import Fusion, MethodParams, MethodSpec, NoParams, SkipMode, SkipParams, Window
from amst_core.plugins import load_plugins
from amst_core.registry import Registry

BUILTIN: tuple[MethodSpec, ...] = (
    naive.SPEC,
    amst_alt.SPEC,
    amst_joint.SPEC,
    amst_full.SPEC,
    ogm_ge.SPEC,
    pmr.SPEC,
    mla.SPEC,
    mslr.SPEC,
    unimodal.SPEC,
    # The field's methods (issue 26): BalanceBenchmark's, then 2025's.
    opm.SPEC,
    agm.SPEC,
    greedy.SPEC,
    amco.SPEC,
    mmcosine.SPEC,
    umt.SPEC,
    mbsd.SPEC,
    cml.SPEC,
    mmpareto.SPEC,
    gblending.SPEC,
    lfm.SPEC,
    relearning.SPEC,
    reconboost.SPEC,
    modality_valuation.SPEC,
    inforeg.SPEC,
    arl.SPEC,
    dgl.SPEC,
    g2d.SPEC,
    data_remixing.SPEC,
)

_registry: Registry[MethodSpec] = Registry("method", MethodSpec)
METHODS: dict[str, MethodSpec] = _registry.specs  # by name, in registration order; read it, never write it


def register(spec: MethodSpec) -> MethodSpec:
    """Add a method (a plugin's): from now on the API, the run config and the engine know it."""
    return _registry.register(spec)


for _spec in BUILTIN:
    register(_spec)
load_plugins()

__all__ = ["METHODS", "Fusion", "MethodParams", "MethodSpec", "NoParams", "SkipMode", "SkipParams", "Window",
           "register"]
