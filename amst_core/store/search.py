"""The search language of run lists (`GET /runs?q=...`, Doc/service.md): a parser and a matcher, pure Python.

A query is whitespace-separated terms, all of which must hold. A term is `key OP value` (OP one of =, !=, >, >=,
<, <=, ~) or a bare word (the run's name or id contains it). Double quotes group: `name="my run"`, `"two words"`.
A key is a run field (RUN_FIELDS) or a dotted path into the run's config (`optim.lr`; `config.device` reaches a
config key that a run field shadows). Values compare as numbers when both sides are numbers, as booleans when the
run's value is one, else as text; a run without the key (or with null) matches only `!=`.

Nothing here touches SQL or HTTP: amst_core.store.queries applies the terms to rows it has read, and the API turns
a SearchError into a 422 naming `q`. The API also refuses a key that names nothing (check_keys against the run
config's model), since such a term would silently match no run.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

OPERATORS = ("=", "!=", ">", ">=", "<", "<=", "~")
ORDERING = (">", ">=", "<", "<=")
OPERATOR_CHARS = frozenset("=!<>~")
RUN_FIELDS = ("name", "id", "method", "dataset", "status", "seed", "tag", "best_val_acc", "test_acc_at_best",
              "best_epoch", "epochs_done", "epochs_total", "queue", "device", "notes")
TEXT_FIELDS = ("name", "id", "method", "dataset", "status", "tag", "queue", "device", "notes")
CONFIG_PREFIX = "config."
KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$")
NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")  # no nan/inf: those stay text
MISSING = object()


class SearchError(ValueError):
    """A query that cannot be read; the message quotes the offending term."""

    def __init__(self, term: str, problem: str):
        super().__init__(f'"{term}": {problem}')
        self.term, self.problem = term, problem


@dataclass(frozen=True)
class Term:
    """One condition. A bare word has key and op None."""

    text: str  # as written in the query, for error messages
    key: str | None
    op: str | None
    value: str

    @property
    def on_config(self) -> bool:
        return self.key is not None and (self.key.startswith(CONFIG_PREFIX) or self.key not in RUN_FIELDS)

    @property
    def config_path(self) -> list[str]:
        assert self.key is not None
        return self.key.removeprefix(CONFIG_PREFIX).split(".")


def parse(q: str) -> list[Term]:
    """The terms of a query; SearchError for an unterminated quote, an unknown operator, an empty or malformed
    key, or an ordering comparison with a value that is not a number."""
    return [term_of(text, chars) for text, chars in split_terms(q)]


def split_terms(q: str) -> Iterable[tuple[str, list[tuple[str, bool]]]]:
    """Each term's text and its characters, each marked True when it was inside quotes (quoted characters are
    never operators or separators)."""
    i, n = 0, len(q)
    while i < n:
        if q[i].isspace():
            i += 1
            continue
        start, chars, quoted = i, [], False
        while i < n and (quoted or not q[i].isspace()):
            if q[i] == '"':
                quoted = not quoted
            else:
                chars.append((q[i], quoted))
            i += 1
        if quoted:
            raise SearchError(q[start:i], "unterminated quote")
        yield q[start:i], chars


def term_of(text: str, chars: list[tuple[str, bool]]) -> Term:
    at = next((i for i, (c, quoted) in enumerate(chars) if c in OPERATOR_CHARS and not quoted), None)
    if at is None:
        word = "".join(c for c, _ in chars)
        if not word:
            raise SearchError(text, "empty search term")
        return Term(text, None, None, word)
    end = at
    while end < len(chars) and chars[end][0] in OPERATOR_CHARS and not chars[end][1]:
        end += 1
    op = "".join(c for c, _ in chars[at:end])
    if op not in OPERATORS:
        raise SearchError(text, f"unknown operator {op}; use one of {', '.join(OPERATORS)}")
    key = "".join(c for c, _ in chars[:at])
    value = "".join(c for c, _ in chars[end:])
    if not key:
        raise SearchError(text, f"{op} needs a field name before it (a run field or a config path like optim.lr)")
    if not KEY.match(key):
        raise SearchError(text, f"{key} is not a field name (a run field or a dotted config path like optim.lr)")
    if op in ORDERING:
        if key in TEXT_FIELDS:
            raise SearchError(text, f"{key} is text; {op} compares numbers (use =, != or ~)")
        if number(value) is None:
            raise SearchError(text, f"{key} {op} needs a number")
    return Term(text, key, op, value)


def check_keys(terms: Sequence[Term], config_model: type[BaseModel]) -> None:
    """SearchError for the first key that is neither a run field nor a path of `config_model` (the run config),
    naming the key and the keys known where it went astray. A path into a free-form mapping (`method_params.*`)
    is taken as it is: what a method takes is the method's."""
    for term in terms:
        if term.key is None or (term.key in RUN_FIELDS):
            continue
        if (problem := path_problem(config_model, term.config_path, term.key.startswith(CONFIG_PREFIX))):
            raise SearchError(term.text, problem)


def path_problem(model: type[BaseModel], path: list[str], prefixed: bool) -> str | None:
    """Why `path` is no key of the model's instances, or None when it is one."""
    for depth, part in enumerate(path):
        if part not in model.model_fields:
            parent = ".".join(path[:depth]) or "the config"
            return unknown_key(CONFIG_PREFIX * prefixed + ".".join(path[:depth + 1]), parent, model,
                               depth == 0 and not prefixed)
        inner = nested_model(model.model_fields[part].annotation)
        if inner is None:
            rest = path[depth + 1:]
            if rest and not free_form(model.model_fields[part].annotation):
                return f"{'.'.join(path[:depth + 1])} is a value, it has no key {rest[0]}"
            return None
        model = inner
    return None


def unknown_key(key: str, parent: str, model: type[BaseModel], top: bool) -> str:
    keys = ", ".join(model.model_fields)
    if top:
        return f"unknown key {key}: use a run field ({', '.join(RUN_FIELDS)}) or a config key ({keys}), " \
               "with dots into a section (optim.lr)"
    return f"unknown key {key}: {parent} has {keys}"


def type_args(annotation: Any) -> tuple[Any, ...]:
    """The types an annotation allows: the members of a union (`X | None`), else the annotation itself."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def nested_model(annotation: Any) -> type[BaseModel] | None:
    return next((a for a in type_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)), None)


def free_form(annotation: Any) -> bool:
    """A mapping or Any: whatever keys it holds are searchable."""
    return any(a is Any or typing.get_origin(a) in (dict, Mapping) or a is dict for a in type_args(annotation))


def number(text: str) -> float | None:
    return float(text) if NUMBER.match(text) else None


def uses(terms: Sequence[Term], key: str) -> bool:
    """Whether a term reads this run field ("config": any config path), so a caller loads only what is needed."""
    if key == "config":
        return any(t.on_config for t in terms)
    return any(t.key == key for t in terms)


def matches(terms: Sequence[Term], fields: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> bool:
    """Whether a run satisfies every term. `fields` holds the run fields (RUN_FIELDS; `tag` a list of tags);
    `config` the run's config, needed only when a term reads it (see uses)."""
    return all(holds(t, fields, config) for t in terms)


def holds(term: Term, fields: Mapping[str, Any], config: Mapping[str, Any] | None) -> bool:
    if term.key is None or term.op is None:
        word = term.value.casefold()
        return any(word in str(fields.get(k) or "").casefold() for k in ("name", "id"))
    found = lookup(config or {}, term.config_path) if term.on_config else fields.get(term.key, MISSING)
    if found is MISSING or found is None or isinstance(found, Mapping):
        return term.op == "!="
    values = found if isinstance(found, list | tuple) else [found]
    if term.op == "!=":  # none of a list's values (a run's tags) is equal
        return not any(compare(v, "=", term.value) for v in values)
    return any(compare(v, term.op, term.value) for v in values)


def lookup(config: Mapping[str, Any], path: list[str]) -> Any:
    value: Any = config
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return MISSING
        value = value[part]
    return value


def compare(have: Any, op: str, want: str) -> bool:
    """One run value against the query's value text (op is never != here)."""
    if have is None:
        return False
    if isinstance(have, bool):
        have = "true" if have else "false"
        want = want.casefold() if want.casefold() in ("true", "false") else want
    elif isinstance(have, int | float) and (wanted := number(want)) is not None:
        return {"=": have == wanted, ">": have > wanted, ">=": have >= wanted, "<": have < wanted,
                "<=": have <= wanted, "~": want in str(have)}[op]
    text = str(have)
    if op == "=":
        return text == want
    if op == "~":
        return want.casefold() in text.casefold()
    return False  # an ordering against text: the parser made sure the query's value is a number
