"""A user's own datasets and methods, without editing the package: AMST_PLUGINS names modules (comma-separated,
importable from the process's path) that register specs when imported, e.g. `AMST_PLUGINS=my_lab.toy_dataset`.

Every process that reads a registry (API, worker, CLI) imports them when the registry is first read, so one
environment variable, set for all of them, makes the dataset or method exist everywhere. A plugin module imports
`amst_core.datasets` or `amst_core.method_specs` and calls `register(...)`; a module that cannot be imported
stops the process with its name, rather than leaving a dataset that exists in one process and not another.
"""

from __future__ import annotations

import importlib
import os

ENV = "AMST_PLUGINS"
_loaded: set[str] = set()  # modules imported (or being imported: a plugin may read a registry itself)


def plugin_modules() -> list[str]:
    return [name.strip() for name in os.environ.get(ENV, "").split(",") if name.strip()]


def load_plugins() -> None:
    """Import every module AMST_PLUGINS names, once per process."""
    for name in plugin_modules():
        if name in _loaded:
            continue
        _loaded.add(name)
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ImportError(f"{ENV}: cannot import the plugin module {name!r} ({err})") from err
