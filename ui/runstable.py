"""The Runs page's table apart from Streamlit: its rows, which columns it shows by default and how wide each is,
which hyperparameters it offers, and where a selection of rows leads."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import pandas as pd

from ui.form import printable
from ui.series import differing_keys, flatten
from ui.style import status_label

# The table's width at a 1400 px window with the sidebar open (measured: 938 px), less the row-selection column
# (35 px): the columns shown by default fit it, so none is off-screen. Each width holds its header and its usual
# values in the dashboard's 14 px font with the grid's 8 px padding each side ("epoch 1: train 120/400 · 213/s"
# measures 170 px), so none is cut; tests/ui/test_browser_forms.py measures both in a browser.
FIT_PX = 900
WIDTHS = {"status": 95, "name": 120, "val acc": 70, "test acc": 75, "progress": 90, "now": 200, "method": 90,
          "seed": 50, "dataset": 85, "epochs done": 95, "tags": 110, "age": 80, "id": 140}
HYPERPARAMETER_PX = 85  # a value such as 0.001 or concat; a long key gets the room its name needs
CHAR_PX = 7  # a character of a header, at most (14 px Source Sans: "batch_size" is 63 px)
PADDING_PX = 16
CORE = ["status", "name", "val acc", "test acc", "progress", "now", "method", "seed"]  # always shown
MORE = ["dataset", "epochs done", "tags", "age", "id"]  # shown as room allows, or when asked for
MAX_HYPERPARAMETERS = 4


def now_line(run: dict[str, Any], live: Collection[str], active: Collection[str]) -> str:
    """What the run is doing: inside an epoch, the pass and its batches (the first epoch is not a blank)."""
    state = run.get("live")
    if run["status"] in live and state and state.get("batches"):
        rate = f" · {state['samples_per_s']:.0f}/s" if state.get("samples_per_s") else ""
        return f"epoch {state['epoch'] + 1}: {state['split']} {state['batch']}/{state['batches']}{rate}"
    if run["status"] in active:
        return run["status"]
    return ""


def table(runs: list[dict[str, Any]], hyperparameters: list[str], live: Collection[str],
          active: Collection[str], ages: list[str]) -> pd.DataFrame:
    """One row per run with every column the page may show (which it shows is `shown_columns`'s choice); `ages`
    are the runs' ages as text, in the same order."""
    rows = []
    for r, made in zip(runs, ages, strict=True):
        config = flatten(r.get("config") or {})
        rows.append({
            "id": r["id"], "status": status_label(r["status"]), "name": r["name"], "method": r["method"],
            "dataset": r["dataset"], "seed": r["seed"], **{c: printable(config.get(c)) for c in hyperparameters},
            "val acc": r["best_val_acc"], "test acc": r["test_acc_at_best"], "progress": r["progress"],
            "epochs done": f"{r['epochs_done']}/{r['epochs_total']}", "now": now_line(r, live, active),
            "tags": ", ".join(r["tags"]), "age": made,
        })
    return pd.DataFrame(rows)


def width(column: str) -> int:
    """A column's pixels: its own, or a hyperparameter's, wide enough for its key."""
    return WIDTHS.get(column, max(HYPERPARAMETER_PX, CHAR_PX * len(column) + PADDING_PX))


def fitting(candidates: list[str], used: int, budget: int = FIT_PX, most: int | None = None) -> list[str]:
    """The candidates, in order, that still fit beside columns `used` pixels wide (at most `most` of them)."""
    out = []
    for column in candidates:
        if used + width(column) <= budget and (most is None or len(out) < most):
            out.append(column)
            used += width(column)
    return out


def core_columns(any_active: bool) -> list[str]:
    """The "now" column is there only while a listed run is active."""
    return [c for c in CORE if c != "now" or any_active]


def hyperparameter_options(runs: list[dict[str, Any]], chosen: list[str]) -> list[str]:
    """The config keys whose values differ among the runs listed, and those the user chose already: a search that
    narrows the list to runs alike in a chosen key must not take its column away (nor clearing the search leave
    it gone)."""
    varying = differing_keys([flatten(r.get("config") or {}) for r in runs])
    varying = [k for k in varying if not k.startswith(("dataset.root", "method_params_defaults"))]
    return varying + [c for c in chosen if c not in varying]


def default_hyperparameters(options: list[str], preferred: list[str], any_active: bool) -> list[str]:
    """The preferred keys among the options, as many as fit beside the core columns."""
    used = sum(width(c) for c in core_columns(any_active))
    return fitting([k for k in preferred if k in options], used, most=MAX_HYPERPARAMETERS)


def default_more(runs: list[dict[str, Any]], hyperparameters: list[str], any_active: bool) -> list[str]:
    """The other columns that tell the listed runs apart, as many as fit: the dataset when there are several,
    tags when a run has any, then epochs done and age."""
    wanted = [c for c in MORE if c != "id"
              and (c != "dataset" or len({r["dataset"] for r in runs}) > 1)
              and (c != "tags" or any(r["tags"] for r in runs))]
    used = sum(width(c) for c in [*core_columns(any_active), *hyperparameters])
    return fitting(wanted, used)


def shown_columns(any_active: bool, hyperparameters: list[str], more: list[str]) -> list[str]:
    """The table's column order: who the run is and how it did first, then its settings, then the rest."""
    core = core_columns(any_active)
    return [*core[:-2], *hyperparameters, *core[-2:], *[c for c in MORE if c in more]]


def selection_links(frame: pd.DataFrame, rows: list[int]) -> dict[str, dict[str, Any]]:
    """Where the selected rows lead: "run" (exactly one: its page) and "compare" (two or more: Compare with them,
    in the table's order), each {label, query_params}."""
    ids = [str(frame.iloc[i]["id"]) for i in sorted(rows)]
    if len(ids) == 1:
        name = frame.iloc[rows[0]]["name"]
        label = name if isinstance(name, str) and name else ids[0]  # an unnamed run: pandas holds None as NaN
        return {"run": {"label": f"Open {label}", "query_params": {"run": ids[0]}}}
    if len(ids) >= 2:
        return {"compare": {"label": f"Compare these {len(ids)} runs", "query_params": {"runs": ",".join(ids)}}}
    return {}
