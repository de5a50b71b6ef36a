"""The New run form's rules, apart from Streamlit: the body it submits, and where an API error belongs."""

from __future__ import annotations

import copy
from collections.abc import Collection, MutableMapping
from typing import Any

from ui.series import flatten

SERVER_TAG_PREFIX = "sweep:"  # the API's own tags (amst_core.store.sweeps); the UI talks only to the API
REFERENCE = "reference"  # RunConfig.recipe for the paper's settings; GET /datasets' key for them
REFERENCE_SPLIT = "reference"  # dataset.split_scheme of a dataset's own split files (GET /datasets split_schemes)
LR_FORMAT = "%g"  # a learning rate of 3e-6 reads 3e-06, not 0.00000
FORM_FIELDS = ("name", "tags", "dataset.preset", "dataset.split_scheme", "dataset.split_seed", "dataset.test_session",
               "skip", "method_params", "fusion", "epochs", "batch_size", "seed",
               "device", "optim.lr", "model", "resources.gpus")


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else copy.deepcopy(value)
    return out


def recipe_of(dataset: dict[str, Any], method: str, reference: bool = False) -> dict[str, Any]:
    """The fields the server fills in for a run of this dataset and method that leaves them out (GET /datasets:
    `recipes`, or `reference` for the paper's settings); the data's own `defaults` where the API has no entry."""
    return copy.deepcopy(dataset.get(REFERENCE if reference else "recipes", {}).get(method, dataset.get("defaults",
                                                                                                        {})))


def starting_config(prefill: dict[str, Any] | None, dataset: dict[str, Any], method: str,
                    reference: bool = False) -> dict[str, Any]:
    """What the form shows first: the run being re-run (same dataset), else what the server would fill in for this
    dataset and method: its recipe, or with `reference` the paper's settings (and `recipe: reference` in the body,
    so the fields the form does not show come from there too). A re-run is no part of the sweep it copies: the
    server's own `sweep:` tags (which a request may not set) are left out."""
    if prefill and prefill.get("dataset", {}).get("name") == dataset["name"]:
        start = copy.deepcopy(prefill)
        if "tags" in start:
            start["tags"] = [t for t in start["tags"] if not t.startswith(SERVER_TAG_PREFIX)]
        return start
    start = deep_merge({"dataset": {"name": dataset["name"]}}, recipe_of(dataset, method, reference))
    return {**start, "recipe": REFERENCE} if reference else start


def restart_fields(state: MutableMapping[str, Any], starts: dict[str, Any], prefix: str = "form") -> None:
    """Each keyed field of the form (`{prefix}:{slot}` in `state`) takes its start value when it has none yet, and
    again when where the form starts changes (another method, dataset, or the reference settings) unless the user
    changed it: an edit survives, an untouched recipe value follows the new recipe."""
    for slot, new in starts.items():
        key, seen = f"{prefix}:{slot}", f"{prefix}-start:{slot}"
        if key not in state or (state.get(seen) != new and state[key] == state.get(seen)):
            state[key] = new
        state[seen] = new


def recipe_note(dataset: dict[str, Any], method: str, reference: bool, shown: Collection[str]) -> str:
    """Which values are the recipe's (or the paper's) and which the data's, for the caption under the fields;
    `shown` are the dotted paths the form has fields for, marked so the eye finds them."""
    data = flatten(dataset.get("defaults", {}))
    layer = flatten(recipe_of(dataset, method, reference))
    own = {k: v for k, v in layer.items() if data.get(k) != v}

    def listing(values: dict[str, Any]) -> str:
        return " · ".join(f"{'**' * (k in shown)}{k}{'**' * (k in shown)} {printable(v)}" for k, v in values.items())

    whose = "the paper's reference settings" if reference else f"the {dataset['name']} recipe for {method}"
    lines = [f"Starts from {whose}: {listing(own) or 'nothing beyond the defaults'}."]
    if data:
        lines.append(f"From the data's shapes: {listing(data)}.")
    lines.append("A setting the form does not show is sent as " + ("the reference code has it." if reference else
                                                                   "the recipe has it, else as the reference code."))
    return "  \n".join(lines)


def printable(value: Any) -> str:
    """0.01 as 0.01, 3e-6 as 3e-06: never 0.00000."""
    return f"{value:g}" if isinstance(value, float) else str(value)


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
    if "split_scheme" in values:
        body["dataset"].update(split_settings(dataset, values))
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
    if "gpus" in values:  # the rest of `resources` (a re-run's memory floor, BatchNorm switch) is kept
        body["resources"] = {**body.get("resources", {}), "gpus": values["gpus"]}
    if values.get("model"):
        body["model"] = {**body.get("model", {}), **values["model"]}
    return body


def split_settings(dataset: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """dataset.split_scheme and what it takes: the reference split (the split files) draws nothing, so it sends
    no seed or session; a drawn split its seed, and its held-out session where the dataset takes one."""
    drawn = values["split_scheme"] != REFERENCE_SPLIT
    takes_session = drawn and "test_session" in dataset.get("knobs", [])
    return {"split_scheme": values["split_scheme"] if drawn else None,
            "split_seed": values.get("split_seed") if drawn else None,
            "test_session": values.get("test_session") if takes_session else None}


def split_rows(dataset: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per split of the dataset's reference split (GET /datasets `split_counts`): its samples, each class's
    count, and how many speakers; none where the server counted nothing."""
    rows = []
    for split, counts in (dataset.get("split_counts") or {}).items():
        speakers = {"speakers": len(counts["speakers"])} if counts["speakers"] else {}
        rows.append({"split": split, "samples": counts["samples"], **counts["classes"], **speakers})
    return rows


def speaker_leak(dataset: dict[str, Any]) -> str | None:
    """What a reader must know when speakers of the test split are also trained on (CREMA-D's reference split)."""
    shared = (dataset.get("shared_speakers") or {}).get("train/test", 0)
    if not shared:
        return None
    drawn = [s for s in dataset.get("split_schemes", []) if s != REFERENCE_SPLIT]
    fix = f"; `{drawn[0]}` keeps every speaker in one split" if drawn else ""
    return (f"The reference split has {shared} speakers in both train and test: test accuracy is measured on "
            f"voices the model trained on{fix}.")


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
