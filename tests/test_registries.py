"""The torch-free catalog (used by the API) and the registries (used by the engine) must list the same names."""

from amst_core.catalog import DATASETS, METHODS
from amst_core.data import DATASET_SOURCES
from amst_core.methods import METHOD_CLASSES


def test_every_catalogued_method_has_an_implementation():
    assert set(METHODS) == set(METHOD_CLASSES)
    for name, cls in METHOD_CLASSES.items():
        assert cls.name == name


def test_every_catalogued_dataset_has_a_source():
    assert set(DATASETS) == set(DATASET_SOURCES)


def test_catalog_and_config_do_not_import_torch():
    import subprocess
    import sys

    code = "import sys, amst_core.config, amst_core.catalog; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
