"""The product's optional parts and the packages they need. `pip install .` brings what a GPU node needs (training,
the worker, the API); the dashboard, video decoding and the sweeps' paired tests come with the extras `ui`,
`media` and `stats` (`.[all]`; `make venv` and the image install everything). A missing one is an error that
says which extra to install, never a bare ModuleNotFoundError from deep inside a run."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtra(ImportError):
    def __init__(self, module: str, extra: str, feature: str):
        super().__init__(f"{feature} needs {module}, which is not installed here; install the `{extra}` extra: "
                         f"pip install 'amst-studio[{extra}]' (from the repository: pip install '.[{extra}]')")
        self.module, self.extra = module, extra


def require(module: str, extra: str, feature: str) -> ModuleType:
    """`module` imported, or MissingExtra naming `extra` when it (not something it imports) is absent."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name is None or not (module == err.name or module.startswith(err.name + ".")):
            raise  # a package it needs, not the extra itself
        raise MissingExtra(module, extra, feature) from None
