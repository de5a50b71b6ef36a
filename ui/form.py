"""The New run form's rules, apart from Streamlit: the body it submits, and where an API error belongs."""

from __future__ import annotations

import copy
from collections.abc import Collection
from typing import Any

SERVER_TAG_PREFIX = "sweep:"  # the API's own tags (amst_core.store.sweeps); the UI talks only to the API
FORM_FIELDS = ("name", "tags", "dataset.preset", "skip", "method_params", "fusion", "epochs", "batch_size", "seed",
               "device", "optim.lr", "model")


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else copy.deepcopy(value)
    return out


def starting_config(prefill: dict[str, Any] | None, dataset: dict[str, Any]) -> dict[str, Any]:
    """What the form shows first: the run being re-run (same dataset), else the dataset's suggestion. A re-run
    is no part of the sweep it copies: the server's own `sweep:` tags (which a request may not set) are left out."""
    if prefill and prefill.get("dataset", {}).get("name") == dataset["name"]:
        start = copy.deepcopy(prefill)
        if "tags" in start:
            start["tags"] = [t for t in start["tags"] if not t.startswith(SERVER_TAG_PREFIX)]
        return start
    return deep_merge({"dataset": {"name": dataset["name"]}}, dataset.get("suggested", {}))


def run_body(start: dict[str, Any], method: dict[str, Any], dataset: dict[str, Any],
             values: dict[str, Any]) -> dict[str, Any]:
    """The POST /runs body: the starting config with the form's values on top. Fields the form does not
    show (optimiser details, model shapes of a re-run, ...) are kept as they were."""
    body = copy.deepcopy(start)
    for key in ("id", "status"):
        body.pop(key, None)
    body["method"] = method["name"]
    body["name"] = values.get("name") or None
    body["tags"] = values.get("tags", [])
    body.setdefault("dataset", {})["name"] = dataset["name"]
    if "preset" in values:
        body["dataset"]["preset"] = values["preset"] or None
    if values.get("root"):
        body["dataset"]["root"] = values["root"]
    body["skip"] = {**body.get("skip", {}), **values.get("skip", {})} if method["uses_skip"] else {}
    body["method_params"] = values.get("method_params", {})
    if method["fusion_fixed"]:
        body.pop("fusion", None)
    elif values.get("fusion"):
        body["fusion"] = values["fusion"]
    for key in ("epochs", "batch_size", "seed", "device", "precision", "compile"):
        if key in values:
            body[key] = values[key]
    if "lr" in values:
        body.setdefault("optim", {})["lr"] = values["lr"]
    if values.get("model"):
        body["model"] = {**body.get("model", {}), **values["model"]}
    return body


def slot_for(field: str | None, slots: list[str]) -> str | None:
    """The form field an API error names: exact, else the longest slot its dotted path starts with
    (`skip.audio` -> `skip.audio` or `skip`; `optim.lr` -> `optim.lr`)."""
    if not field:
        return None
    if field in slots:
        return field
    matches = [s for s in slots if field.startswith(s + ".") or s.startswith(field + ".")]
    return max(matches, key=len) if matches else None


def param_widgets(schema: dict[str, Any], modalities: list[str] | None = None, known: Collection[str] = ()
                  ) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, kind, spec) per method parameter from its JSON schema: kind is select, bool, int, float or text. A
    choice that may be left unset (`anyOf` an enum and null) is a select too; one of modalities (all among `known`,
    the served vocabulary's) offers only the dataset's."""
    out = []
    for name, spec in schema.get("properties", {}).items():
        options = spec.get("enum") or next((o["enum"] for o in spec.get("anyOf", []) if "enum" in o), None)
        if options is not None and modalities is not None and known and set(options) <= set(known):
            options = [o for o in options if o in modalities]
        if options is not None:
            kind, spec = "select", {**spec, "enum": options}
        elif spec.get("type") == "boolean":
            kind = "bool"
        elif spec.get("type") == "integer":
            kind = "int"
        elif spec.get("type") == "number":
            kind = "float"
        else:
            kind = "text"
        out.append((name, kind, spec))
    return out


def placed_errors(err: Any, slots: list[str]) -> dict[str | None, list[str]]:
    """An API error's problems by the form field each belongs to (None: no field of the form). The API lists
    every problem in `details`; an error with none is one problem about `field`."""
    problems = err.details or [{"field": err.field, "message": err.message}]
    out: dict[str | None, list[str]] = {}
    for p in problems:
        where = slot_for(p.get("field"), slots)
        named = f" (`{p['field']}`)" if p.get("field") and not where else ""
        out.setdefault(where, []).append(str(p.get("message")) + named)
    return out
