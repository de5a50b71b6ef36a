"""The suite's own rules: what several test modules share lives in tests/kit/, so no test module (or conftest)
imports another test module or a conftest; pytest's fixtures reach tests through conftest, never by import."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def is_test_module(dotted: str) -> bool:
    last = dotted.rsplit(".", 1)[-1]
    return dotted.startswith("tests.") and (last.startswith("test_") or last == "conftest")


def imports_of_test_modules(path: Path, root: Path = TESTS.parent) -> list[str]:
    where = path.relative_to(root)
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [f"{where}:{node.lineno} imports {a.name}"
                      for a in node.names if is_test_module(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module:
            targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            if any(is_test_module(t) for t in targets):
                found.append(f"{where}:{node.lineno} imports from {node.module}")
    return found


def test_no_test_module_imports_another() -> None:
    found = [hit for path in sorted(TESTS.rglob("*.py")) for hit in imports_of_test_modules(path)]
    assert not found, "move what they share into tests/kit/:\n" + "\n".join(found)


def test_the_rule_sees_each_form_of_import(tmp_path: Path) -> None:
    module = tmp_path / "test_probe.py"
    module.write_text("import tests.ui.test_series\nfrom tests.client.conftest import URL\n"
                      "from tests.ui import test_series\nfrom tests.kit.series import make\nimport tests.kit.svc\n")
    assert [h.split(" ", 1)[0] for h in imports_of_test_modules(module, tmp_path)] == \
        ["test_probe.py:1", "test_probe.py:2", "test_probe.py:3"]
