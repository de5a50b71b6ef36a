"""The dataset registry: one module per dataset (its `DatasetSpec`), one line in BUILTIN. Plugins (AMST_PLUGINS,
amst_core.plugins) call `register` themselves. Torch-free: the API reads it."""

from __future__ import annotations

from amst_core.datasets import (
    avdigits,
    ave,
    avtdigits,
    cremad,
    folder,
    iemocap,
    iemocap3,
    mvsa,
    synthetic,
    urfunny,
)
from amst_core.datasets.base import KNOBS, DatasetSpec, deep_merge
from amst_core.plugins import load_plugins
from amst_core.registry import Registry, SpecError, resolve

BUILTIN: tuple[DatasetSpec, ...] = (
    avdigits.SPEC,
    avtdigits.SPEC,
    synthetic.SPEC,
    folder.SPEC,
    cremad.SPEC,
    ave.SPEC,
    mvsa.SPEC,
    iemocap.SPEC,
    iemocap3.SPEC,
    urfunny.SPEC,
)

_registry: Registry[DatasetSpec] = Registry("dataset", DatasetSpec)
DATASETS: dict[str, DatasetSpec] = _registry.specs  # by name, in registration order; read it, never write it


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add a dataset (a plugin's): from now on the API, the run config, the CLI and the engine know it."""
    return _registry.register(spec)


for _spec in BUILTIN:
    register(_spec)
load_plugins()

__all__ = ["DATASETS", "KNOBS", "DatasetSpec", "SpecError", "deep_merge", "register", "resolve"]
