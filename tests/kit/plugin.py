"""A toy dataset that lives outside the package: two modules written into a folder that goes on PYTHONPATH, named
by AMST_PLUGINS, so every process (API, worker, CLI) registers it with no edit of the package."""

from __future__ import annotations

import os
from pathlib import Path

TOY = "toy_plugin_data"  # the dataset's name, also its spec module's
TOY_METHOD = "toy_plugin_method"  # the method's name, also its spec module's
TOY_CLASSES = ("ant", "bee", "cat")

SPEC_MODULE = f'''
"""The spec: torch-free, so the API can read it."""
from amst_core.datasets import DatasetSpec, register


def check(cfg, roots):
    return None  # generated in memory: nothing to find on disk


register(DatasetSpec("{TOY}", "a toy dataset registered by a plugin", ("audio", "visual"), check=check,
                     classes={TOY_CLASSES!r}, source="{TOY}_source:ToySource",
                     defaults={{"model": {{"frames": 1, "width": 8}}}}, recipe={{"epochs": 2}}))
'''

SOURCE_MODULE = f'''
"""The torch source: the synthetic generator with three classes."""
from amst_core.config import SyntheticConfig
from amst_core.data.synthetic import generate

DATA = SyntheticConfig(num_classes=3, samples={{"train": 48, "val": 24, "test": 24}})


class ToySource:
    def check(self, cfg):
        return None

    def classes(self, cfg):
        return {TOY_CLASSES!r}

    def split(self, cfg, split, train):
        samples = generate(DATA, split)
        samples.tensors = {{k: t for k, t in samples.tensors.items() if k in cfg.modalities}}
        return samples
'''

METHOD_SPEC_MODULE = f'''
"""A method's spec: torch-free, so the API can read it."""
from amst_core.method_specs import MethodSpec, NoParams, register

register(MethodSpec("{TOY_METHOD}", "naive training, registered by a plugin", NoParams, "concat", fusion_fixed=False,
                    uses_skip=False, implementation="{TOY_METHOD}_impl:ToyMethod"))
'''

METHOD_MODULE = f'''
"""Its implementation (torch): naive's update under the plugin's name."""
from amst_core.methods.naive import Naive


class ToyMethod(Naive):
    name = "{TOY_METHOD}"
'''

NO_CHECK_MODULE = '''
from amst_core.datasets import DatasetSpec, register

register(DatasetSpec("unchecked", "a dataset nobody checks", ("audio",), source="nowhere:Source"))
'''


def write_toy_plugin(folder: Path) -> Path:
    """The plugins' modules in `folder` (the toy dataset's spec and source, the toy method's spec and
    implementation); returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{TOY}.py").write_text(SPEC_MODULE)
    (folder / f"{TOY}_source.py").write_text(SOURCE_MODULE)
    (folder / f"{TOY_METHOD}.py").write_text(METHOD_SPEC_MODULE)
    (folder / f"{TOY_METHOD}_impl.py").write_text(METHOD_MODULE)
    return folder


def plugin_env(folder: Path, *modules: str) -> dict[str, str]:
    """What a process needs to load plugins: their folder on PYTHONPATH and their modules (default: the toy
    dataset's) in AMST_PLUGINS."""
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "AMST_PLUGINS": ",".join(modules or (TOY,))}


def toy_run(**fields: object) -> dict:
    """A run of the toy dataset small enough for a CPU test."""
    return {"method": "naive", "dataset": {"name": TOY}, "epochs": 2, "batch_size": 16, "device": "cpu",
            "optim": {"lr": 0.05}, **fields}
