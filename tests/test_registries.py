"""One registry per kind: every dataset and method spec names an implementation that imports and fits it, and a
spec that cannot work is refused when it is registered."""

import pytest

from amst_core.catalog import DATASETS, METHODS
from amst_core.data import DATASET_SOURCES
from amst_core.datasets import DatasetSpec, SpecError, register
from amst_core.methods import METHOD_CLASSES


def test_every_method_spec_names_an_implementation_of_that_name():
    assert list(METHOD_CLASSES) == list(METHODS)  # derived from the specs: one table
    for name, cls in METHOD_CLASSES.items():
        assert cls.name == name


def test_every_dataset_spec_names_a_source_with_the_source_protocol():
    assert list(DATASET_SOURCES) == list(DATASETS)
    for name, source in DATASET_SOURCES.items():
        assert all(callable(getattr(source, hook, None)) for hook in ("check", "classes", "split")), name


def test_a_dataset_spec_without_a_check_is_refused_naming_it():
    with pytest.raises(SpecError, match="dataset 'nocheck': its spec has no check"):
        register(DatasetSpec("nocheck", "no check", ("audio",), source="my_pkg.data:Source"))
    assert "nocheck" not in DATASETS


def test_a_name_registered_twice_is_refused():
    twin = DatasetSpec("synthetic", "another", ("audio",), check=lambda cfg, roots: None, source="x:Y")
    with pytest.raises(SpecError, match="'synthetic' is registered twice"):
        register(twin)
    assert DATASETS["synthetic"] is not twin


def test_catalog_and_config_do_not_import_torch():
    import subprocess
    import sys

    code = "import sys, amst_core.config, amst_core.catalog; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_the_library_imports_no_service_package():
    """amst_core is the library: every module of it imports without api, worker, ui or launch (DESIGN.md 1)."""
    import subprocess
    import sys

    code = ("import importlib, pkgutil, sys, amst_core\n"
            "for m in pkgutil.walk_packages(amst_core.__path__, 'amst_core.'):\n"
            "    importlib.import_module(m.name)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('api', 'worker', 'ui', 'launch'))\n"
            "sys.exit(f'amst_core imported {bad}' if bad else 0)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_no_library_module_names_a_service_package_even_lazily():
    import ast
    from pathlib import Path

    services = ("api", "worker", "ui", "launch")
    found = []
    for path in sorted((Path(__file__).resolve().parents[1] / "amst_core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            found += [f"{path.name}:{node.lineno} {n}" for n in names if n.split(".")[0] in services]
    assert not found, found
