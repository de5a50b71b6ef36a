"""What the dataset and method registries share: a table of specs by name that refuses a bad or twice-registered
spec, and the import paths specs name their torch code by (so that reading a spec never imports torch)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Generic, TypeVar


class SpecError(ValueError):
    """A dataset or method spec that cannot be registered; the message names it."""


def resolve(path: str) -> Any:
    """'package.module:attr.key' -> the object; a Mapping along the way is indexed by the next part."""
    module, _, attrs = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in filter(None, attrs.split(".")):
        obj = obj[part] if isinstance(obj, Mapping) else getattr(obj, part)
    return obj


T = TypeVar("T")


class Registry(Generic[T]):
    """Specs by name, in registration order; a name registered twice is refused (a plugin cannot hide a built-in
    by accident)."""

    def __init__(self, kind: str, spec_type: type):
        self.kind, self.spec_type = kind, spec_type
        self.specs: dict[str, T] = {}

    def register(self, spec: T) -> T:
        name = getattr(spec, "name", None)
        if not isinstance(spec, self.spec_type):
            raise SpecError(f"{self.kind} {name!r}: register takes a {self.spec_type.__name__}, got "
                            f"{type(spec).__name__}")
        if name in self.specs and self.specs[name] is not spec:
            raise SpecError(f"{self.kind} {name!r} is registered twice")
        self.specs[name] = spec
        return spec
