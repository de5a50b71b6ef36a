"""The product's words are listed once, in amst_core/vocab.py: a modality, split, status or component list spelled
out anywhere else in the product's code fails here, naming its file and line.

A list is a tuple, list or set literal, a `Literal[...]`, or a dict's keys, holding two or more words of one kind.
The dashboard's style tables (ui/style.py: a colour per status, a dash per component) are not lists: they style the
words the API serves and give a word they lack a neutral look, so their dict keys are not counted.
Run it as a script on another checkout to count its lists: `python tests/test_vocabulary.py /path/to/checkout`.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from amst_core import vocab

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("amst_core", "api", "worker", "ui", "launch", "amst_client")
HOME = Path("amst_core") / "vocab.py"
STYLE = Path("ui") / "style.py"
# The words of each kind. Components: every member of a family (fused, branch, helper and their alt_/joint_
# forms) and PMR's prototype; FULL's bare `alt`/`joint` stay out, they also name FULL's joint-update setting.
KINDS: dict[str, frozenset[str]] = {
    "modality": frozenset(vocab.MODALITIES),
    "split": frozenset(vocab.SPLITS),
    "status": frozenset(s.value for s in vocab.RunStatus),
    "component": frozenset({vocab.PROTOTYPE} | {c for f in vocab.FAMILIES for c in vocab.family_members(f)}
                           ) - {vocab.component(vocab.FUSED, p) for p in vocab.MODULE_PREFIXES if p},
}


def strings(nodes: list[ast.expr | None]) -> list[str]:
    return [n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def listed(node: ast.AST) -> list[str]:
    """The strings a node lists: the items of a tuple/list/set, the arguments of Literal[...], a dict's keys."""
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return strings(node.elts)
    if isinstance(node, ast.Dict):
        return strings(node.keys)
    if isinstance(node, ast.Subscript):
        name = node.value.attr if isinstance(node.value, ast.Attribute) else getattr(node.value, "id", "")
        if name == "Literal":
            items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            return strings(items)
    return []


def word_lists(source: str, style: bool = False) -> list[tuple[int, str, list[str]]]:
    """(line, kind, words) of each list of two or more words of one kind. A tuple inside a Literal[...] counts
    once (the Literal); with `style`, dicts (a look per word) do not count."""
    found, seen = [], set()
    for node in ast.walk(ast.parse(source)):
        if id(node) in seen or (style and isinstance(node, ast.Dict)):
            continue
        if isinstance(node, ast.Subscript):
            seen.add(id(node.slice))
        words = listed(node)
        for kind, vocabulary in KINDS.items():
            hits = sorted({w for w in words if w in vocabulary})
            if len(hits) >= 2:
                found.append((node.lineno, kind, hits))
    return sorted(found)


def offenders(root: Path) -> list[str]:
    out = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root)
            if relative == HOME:
                continue
            for line, kind, words in word_lists(path.read_text(), style=relative == STYLE):
                out.append(f"{relative}:{line}: {kind} list {words}")
    return out


def test_the_scanner_sees_each_form_of_a_list() -> None:
    source = ('A = ("audio", "visual")\nB: Literal["train", "val"]\nC = {"queued": 1, "running": 2}\n'
              'D = ["branch", "alt_helper"]\nE = {"audio", "x"}\nF = ("alt", "joint")\nG = Literal[("a", "b")]\n')
    assert [(line, kind) for line, kind, _ in word_lists(source)] == [
        (1, "modality"), (2, "split"), (3, "status"), (4, "component")]
    assert [line for line, _, _ in word_lists(source, style=True)] == [1, 2, 4]  # a style table's keys: a look each


def test_no_word_list_outside_the_vocabulary() -> None:
    found = offenders(ROOT)
    assert not found, "Take these words from amst_core.vocab:\n" + "\n".join(found)


if __name__ == "__main__":
    lists = offenders(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
    print("\n".join(lists))
    print(f"{len(lists)} word lists outside amst_core/vocab.py")
