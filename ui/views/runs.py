"""Runs: every run with its status, progress (inside the first epoch too), best accuracy and the hyperparameters
that differ; filters and search kept in the URL; redrawn only when a run changed."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from ui import runstable, urlstate
from ui.common import PAGES, age, api, catalog, plain, shown_errors, words
from ui.settings import ui_settings
from ui.style import status_color, status_label

ARCHIVED = {"hide": "not archived", "only": "archived only", "all": "both"}
SEARCH_HELP = ("Words match the name or id. `key OP value` terms, all of which must hold: a run field (`method`, "
               "`status`, `seed`, `tag`, `best_val_acc`, `test_acc_at_best`, `epochs_done`, ...) or a config path "
               "(`optim.lr`, `skip.audio`); OP is one of `= != > >= < <= ~` (~: contains). Example: "
               "`optim.lr=0.01 best_val_acc>0.9`")


def colour_status(value: str) -> str:
    status = value.split(" ", 1)[-1]
    return f"color: {status_color(status)}; font-weight: 600"


def column_config(hyperparameters: list[str]) -> dict[str, Any]:
    """Each column's pixel width (ui.runstable.WIDTHS: the default columns fit a 1400 px window), the name
    pinned so a wide table scrolls under it."""
    text = {c: st.column_config.TextColumn(width=runstable.width(c)) for c in
            ["status", "method", "dataset", "epochs done", "tags", "age", "id", *hyperparameters]}
    return {**text,
            "name": st.column_config.TextColumn(width=runstable.width("name"), pinned=True),
            "seed": st.column_config.NumberColumn(width=runstable.width("seed")),
            "now": st.column_config.TextColumn(width=runstable.width("now"), help="where inside its epoch the run is"),
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent",
                                                        color="blue", width=runstable.width("progress")),
            "val acc": st.column_config.NumberColumn(format="%.3f", width=runstable.width("val acc"),
                                                     help="best validation accuracy (fused prediction)"),
            "test acc": st.column_config.NumberColumn(format="%.3f", width=runstable.width("test acc"),
                                                      help="test accuracy at the best validation epoch (fused)")}


def signature(runs: list[dict[str, Any]]) -> tuple:
    """What the table shows that can change by itself; the page is drawn again only when this changes."""
    w = words()
    return tuple((r["id"], r["status"], r["epochs_done"], r["best_val_acc"], runstable.now_line(r, w.live, w.active))
                 for r in runs)


def preferred_columns() -> list[str]:
    """The hyperparameters shown first when they differ: the learning rate, each modality's skip factor, ..."""
    return ["optim.lr", *(f"skip.{m}" for m in words().modalities), "fusion", "epochs", "batch_size"]


def hyperparameter_columns(runs: list[dict[str, Any]], any_active: bool) -> list[str]:
    options = runstable.hyperparameter_options(runs, urlstate.chosen("cols", []))
    default = runstable.default_hyperparameters(options, preferred_columns(), any_active)
    return urlstate.widget(st.multiselect, "Hyperparameter columns", "cols", default, options,
                           help="config values that differ among the runs listed (and those chosen before)")


def more_columns(runs: list[dict[str, Any]], hyperparameters: list[str], any_active: bool) -> list[str]:
    default = runstable.default_more(runs, hyperparameters, any_active)
    return urlstate.widget(st.multiselect, "More columns", "more", default, runstable.MORE,
                           help="shown by default as far as the table fits the window")


def selection_actions(frame: pd.DataFrame, rows: list[int]) -> None:
    """Links for the rows ticked: one run's page, or Compare with two or more."""
    links = runstable.selection_links(frame, rows)
    a, b, _ = st.columns([2, 2, 3])
    run = links.get("run")
    a.page_link(PAGES["run"], label=run["label"] if run else "Open: tick one run",
                query_params=run["query_params"] if run else None, disabled=run is None,
                icon=":material/monitoring:")
    compare = links.get("compare")
    b.page_link(PAGES["compare"], label=compare["label"] if compare else "Compare: tick two or more",
                query_params=compare["query_params"] if compare else None, disabled=compare is None,
                icon=":material/compare_arrows:")


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
        a, b = st.columns([3, 2])
        with a:
            hyperparameters = hyperparameter_columns(runs, active)
        with b:
            more = more_columns(runs, hyperparameters, active)
        frame = runstable.table(runs, hyperparameters, words().live, words().active,
                                [age(r["created_at"]) for r in runs])
        picked = st.dataframe(frame.style.map(colour_status, subset=["status"]), hide_index=True,
                              column_order=runstable.shown_columns(active, hyperparameters, more),
                              column_config=column_config(hyperparameters), on_select="rerun",
                              selection_mode="multi-row", key="runs_table", width="stretch")
        st.caption("Tick a row to open its run, or several to compare them."
                   + (f" Searching for: {plain(query)}" if query else ""))
        selection_actions(frame, picked.selection.rows)
