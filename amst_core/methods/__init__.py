"""Methods: each is an implementation module here (torch) and a torch-free spec in `amst_core.method_specs`
(one module plus one registry line; the spec names its implementation). This package imports torch only when
an implementation is asked for, so the specs beneath it stay readable by the API.

`METHOD_CLASSES` is derived from the specs' `implementation` paths: there is one table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from amst_core.registry import resolve

if TYPE_CHECKING:
    import torch

    from amst_core.config import RunConfig
    from amst_core.distributed import Ranks
    from amst_core.methods.base import Method, TrainedNet


def method_class(name: str) -> type[Method]:
    from amst_core.method_specs import METHODS

    return resolve(METHODS[name].implementation)


def build_method(cfg: RunConfig, num_classes: int, device: torch.device, ranks: Ranks | None = None) -> Method:
    """`ranks`: this process's place in a run on several ranks (amst_core.distributed); None: one process."""
    return method_class(cfg.method)(cfg, num_classes, device, ranks)


def __getattr__(name: str) -> Any:
    """`Method`, `TrainedNet` and `METHOD_CLASSES` import torch: only when someone asks for them."""
    if name in ("Method", "TrainedNet"):
        from amst_core.methods import base

        return getattr(base, name)
    if name == "METHOD_CLASSES":
        from amst_core.method_specs import METHODS

        return {spec_name: method_class(spec_name) for spec_name in METHODS}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["METHOD_CLASSES", "Method", "TrainedNet", "build_method", "method_class"]
