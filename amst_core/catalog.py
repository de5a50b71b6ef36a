"""What methods and datasets exist, described without importing torch: views over the two registries.

The API validates run requests with this catalog, and it must never import torch (DESIGN.md section 1). A
dataset is one spec module in `amst_core.datasets` plus one registry line, a method one implementation module in
`amst_core.methods` and one spec module in `amst_core.method_specs` plus one registry line; a plugin registers
either from its own package (AMST_PLUGINS, amst_core.plugins). `DATASETS` and `METHODS` are those registries.
"""

from __future__ import annotations

from amst_core.datasets import DATASETS, DatasetSpec, deep_merge
from amst_core.method_specs import METHODS, Fusion, MethodSpec, SkipMode
from amst_core.vocab import MODALITIES

# The names the API, the dashboard and the tests have always read here.
DatasetInfo = DatasetSpec
MethodInfo = MethodSpec

__all__ = ["DATASETS", "METHODS", "MODALITIES", "DatasetInfo", "Fusion", "MethodInfo", "SkipMode", "deep_merge"]
