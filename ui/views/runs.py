"""Runs: every run with its status, progress (inside the first epoch too), best accuracy and the hyperparameters
that differ; filters and search kept in the URL; redrawn only when a run changed."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from ui import urlstate
from ui.common import PAGES, age, api, catalog, plain, shown_errors, words
from ui.series import differing_keys, flatten
from ui.settings import ui_settings
from ui.style import status_color, status_label

ARCHIVED = {"hide": "not archived", "only": "archived only", "all": "both"}
SEARCH_HELP = ("Words match the name or id. `key OP value` terms, all of which must hold: a run field (`method`, "
               "`status`, `seed`, `tag`, `best_val_acc`, `test_acc_at_best`, `epochs_done`, ...) or a config path "
               "(`optim.lr`, `skip.audio`); OP is one of `= != > >= < <= ~` (~: contains). Example: "
               "`optim.lr=0.01 best_val_acc>0.9`")


def now_line(run: dict[str, Any]) -> str:
    """What the run is doing: inside an epoch, the pass and its batches (the first epoch is not a blank)."""
    live = run.get("live")
    if run["status"] in words().live and live and live.get("batches"):
        rate = f" · {live['samples_per_s']:.0f}/s" if live.get("samples_per_s") else ""
        return f"epoch {live['epoch'] + 1}: {live['split']} {live['batch']}/{live['batches']}{rate}"
    if run["status"] in words().active:
        return run["status"]
    return ""


def table(runs: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """One row per run: who it is, the hyperparameters asked for, how it did, where it is. The "now" column is
    there only while a listed run is active."""
    active = any(r["status"] in words().active for r in runs)
    rows = []
    for r in runs:
        config = flatten(r.get("config") or {})
        rows.append({
            "id": r["id"], "status": status_label(r["status"]), "name": r["name"], "method": r["method"],
            "dataset": r["dataset"], "seed": r["seed"], **{c: printable(config.get(c)) for c in columns},
            "best val acc": r["best_val_acc"], "test acc @ best": r["test_acc_at_best"], "progress": r["progress"],
            "epochs done": f"{r['epochs_done']}/{r['epochs_total']}", **({"now": now_line(r)} if active else {}),
            "tags": ", ".join(r["tags"]), "age": age(r["created_at"]),
        })
    return pd.DataFrame(rows)


def printable(value: Any) -> str:
    """A config value for a table cell: 0.01 as 0.01 (not 0.010000), lists and mappings as text."""
    if value is None:
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


def colour_status(value: str) -> str:
    status = value.split(" ", 1)[-1]
    return f"color: {status_color(status)}; font-weight: 600"


COLUMNS = {
    "id": None,
    "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent",
                                                 color="blue"),
    "best val acc": st.column_config.NumberColumn(format="%.3f", help="fused prediction, best validation epoch"),
    "test acc @ best": st.column_config.NumberColumn(format="%.3f", help="fused prediction, at the best val epoch"),
}


def signature(runs: list[dict[str, Any]]) -> tuple:
    """What the table shows that can change by itself; the page is drawn again only when this changes."""
    return tuple((r["id"], r["status"], r["epochs_done"], r["best_val_acc"], now_line(r)) for r in runs)


def preferred_columns() -> list[str]:
    """The hyperparameters shown first when they differ: the learning rate, each modality's skip factor, ..."""
    return ["optim.lr", *(f"skip.{m}" for m in words().modalities), "fusion", "epochs", "batch_size"]


def hyperparameter_columns(runs: list[dict[str, Any]]) -> list[str]:
    varying = differing_keys([flatten(r.get("config") or {}) for r in runs])
    varying = [k for k in varying if not k.startswith(("dataset.root", "method_params_defaults"))]
    default = [k for k in preferred_columns() if k in varying][:4]
    return urlstate.widget(st.multiselect, "Hyperparameter columns", "cols", default, varying,
                           help="config values that differ among the runs listed")


st.title("Runs")
urlstate.page("runs")
if flash := st.session_state.pop("flash", None):
    st.success(flash, icon=":material/check_circle:")
with shown_errors():
    methods, datasets = catalog(ui_settings().api_url)
    query = urlstate.widget(st.text_input, "Search", "q", "", placeholder="e.g. optim.lr=0.01 best_val_acc>0.9",
                            help=SEARCH_HELP)
    c1, c2, c3, c4, c5 = st.columns(5)
    status = urlstate.widget(c1.multiselect, "Status", "status", [], list(words().statuses))
    method = urlstate.widget(c2.multiselect, "Method", "method", [], [m["name"] for m in methods])
    dataset = urlstate.widget(c3.multiselect, "Dataset", "dataset", [], [d["name"] for d in datasets])
    tags_text = urlstate.widget(c4.text_input, "Tags (all of)", "tags", "", placeholder="e.g. sweep, baseline")
    archived = urlstate.widget(c5.selectbox, "Archived", "archived", "hide", list(ARCHIVED),
                               format_func=ARCHIVED.get)
    tags = [t.strip() for t in tags_text.split(",") if t.strip()]
    filters = {"status": status, "method": method, "dataset": dataset, "tag": tags, "q": query or None,
               "archived": archived}
    runs = api().runs(limit=500, with_config=True, **filters)
    active = any(r["status"] in words().active for r in runs)
    drawn = signature(runs)

    @st.fragment(run_every=ui_settings().refresh_s if active else None)
    def watch() -> None:
        """Asks for the list every few seconds while a run is active; redraws the page only when it changed."""
        with shown_errors():
            if st.session_state.pop("runs_fresh", False):
                return  # the page's own fetch was this refresh
            if signature(api().runs(limit=500, with_config=True, **filters)) != drawn:
                st.rerun(scope="app")

    st.session_state.runs_fresh = True
    watch()
    if not runs:
        st.info("No runs match. Submit one on **New run**.", icon=":material/info:")
        st.page_link(PAGES["new"], label="New run", icon=":material/add_circle:")
    else:
        counts = pd.Series([r["status"] for r in runs]).value_counts()
        st.caption(" · ".join(f"{status_label(s)} {n}" for s, n in counts.items())
                   + (f" — live: checked every {ui_settings().refresh_s:g} s, redrawn when a run changes"
                      if active else ""))
        columns = hyperparameter_columns(runs)
        frame = table(runs, columns)
        picked = st.dataframe(frame.style.map(colour_status, subset=["status"]), hide_index=True,
                              column_config=COLUMNS, on_select="rerun", selection_mode="single-row",
                              key="runs_table", width="stretch")
        st.caption("Select a row to open the run." + (f" Searching for: {plain(query)}" if query else ""))
        if picked.selection.rows:
            st.switch_page(PAGES["run"], query_params={"run": frame.iloc[picked.selection.rows[0]]["id"]})
