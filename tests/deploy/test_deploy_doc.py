"""Doc/deploy.md is proven: every command in its code blocks is covered by a row of its section 8 ("How this page
is checked"), every test a row names exists, and every line of the podman section is one the compose stack test
runs as written."""

from __future__ import annotations

import ast
import re
import shlex

import pytest

from tests.kit.compose import DEPLOY_DOC, ROOT, podman_doc_commands

TEXT = DEPLOY_DOC.read_text()
STACK_TEST = ROOT / "tests" / "deploy" / "test_compose_stack.py"
# Lines of the podman section the stack test does not pass to run_doc, and what does the same.
RUN_OTHERWISE = {
    "sudo deploy/local/base-image.sh": "the fixture runs the script (ensure_base_image) when the image is missing",
    "deploy/local/base-image.sh": "the fixture runs the script (ensure_base_image) when the image is missing",
    "export CONTAINERS_CONF=$PWD/deploy/local/containers.conf COMPOSE_FILE=docker-compose.yml:docker-compose.local.yml":
        "Stack sets both variables (COMPOSE_FILE with absolute paths)",
}


def commands() -> list[str]:
    """Every command line of the page's bash blocks: continuation lines joined, comments dropped."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", TEXT, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                found.append(" ".join(words))
    return found


def proof_table() -> dict[str, str]:
    section = TEXT[TEXT.index("## 8. How this page is checked"):]
    return dict(re.findall(r"^\| `([^`]+)` \| (.+) \|$", section, re.M))


def test_every_command_of_the_page_has_a_row() -> None:
    rows = proof_table()
    assert len(rows) > 20
    uncovered = [c for c in commands() if not any(c.startswith(prefix) for prefix in rows)]
    assert not uncovered, f"Doc/deploy.md section 8 says nothing of: {uncovered}"


def test_every_row_is_used_and_names_tests_that_exist() -> None:
    cmds = commands()
    for prefix, proof in proof_table().items():
        assert any(c.startswith(prefix) for c in cmds), f"section 8 row {prefix!r} matches no command"
        named = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", proof)
        assert named or proof.startswith(("not run", "the service tests")), f"{prefix!r}: no test named: {proof}"
        for path, test in named:
            assert (ROOT / path).is_file(), f"{prefix!r}: {path} does not exist"
            if test:
                assert re.search(rf"^def {test}\(", (ROOT / path).read_text(), re.M), f"{prefix!r}: no {path}::{test}"


def stack_test_strings() -> set[str]:
    """The string constants of the stack test's code (adjacent literals come out joined), docstrings left out: a
    line only mentioned does not count as run."""
    tree = ast.parse(STACK_TEST.read_text())
    docstrings = {id(owner.body[0].value) for owner in ast.walk(tree)
                  if isinstance(owner, ast.Module | ast.FunctionDef | ast.ClassDef) and owner.body
                  and isinstance(owner.body[0], ast.Expr) and isinstance(owner.body[0].value, ast.Constant)}
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
            and isinstance(node.value, str) and id(node) not in docstrings}


@pytest.mark.parametrize("line", [c for c in dict.fromkeys(podman_doc_commands()) if not c.startswith("docker ")])
def test_the_stack_test_runs_every_line_of_the_podman_section(line: str) -> None:
    assert line in stack_test_strings() or line in RUN_OTHERWISE, \
        f"tests/deploy/test_compose_stack.py does not run {line!r}"
