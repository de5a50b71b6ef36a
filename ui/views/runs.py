"""Runs: every run with its status, progress and best accuracy; filters; live while runs are active."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from ui.common import PAGES, age, api, catalog, shown_errors
from ui.settings import ui_settings
from ui.style import ACTIVE, STATUS_COLORS, status_label

STATUSES = list(STATUS_COLORS)


def table(runs: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame([{
        "id": r["id"], "status": status_label(r["status"]), "name": r["name"], "method": r["method"],
        "dataset": r["dataset"], "seed": r["seed"], "progress": r["progress"],
        "epochs": f"{r['epochs_done']}/{r['epochs_total']}", "best val acc": r["best_val_acc"],
        "test acc @ best": r["test_acc_at_best"], "tags": ", ".join(r["tags"]), "age": age(r["created_at"]),
    } for r in runs])


def colour_status(value: str) -> str:
    status = value.split(" ", 1)[-1]
    return f"color: {STATUS_COLORS.get(status, 'inherit')}; font-weight: 600"


COLUMNS = {
    "id": None,
    "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent",
                                                 color="blue"),
    "best val acc": st.column_config.NumberColumn(format="%.3f"),
    "test acc @ best": st.column_config.NumberColumn(format="%.3f"),
}

st.title("Runs")
with shown_errors():
    methods, datasets = catalog(ui_settings().api_url)
    c1, c2, c3, c4 = st.columns(4)
    status = c1.multiselect("Status", STATUSES)
    method = c2.multiselect("Method", [m["name"] for m in methods])
    dataset = c3.multiselect("Dataset", [d["name"] for d in datasets])
    tags = [t.strip() for t in c4.text_input("Tags (all of)", placeholder="e.g. sweep, baseline").split(",")
            if t.strip()]
    live = st.session_state.get("runs_live", True)

    @st.fragment(run_every=ui_settings().refresh_s if live else None)
    def runs_table() -> None:
        with shown_errors():
            runs = api().runs(limit=500, status=status, method=method, dataset=dataset, tag=tags)
            active = any(r["status"] in ACTIVE for r in runs)
            if active != st.session_state.get("runs_live", True):
                st.session_state.runs_live = active
                st.rerun()  # the refresh interval is fixed when the fragment is defined
            if not runs:
                st.info("No runs match. Submit one on **New run**.", icon=":material/info:")
                st.page_link(PAGES["new"], label="New run", icon=":material/add_circle:")
                return
            counts = pd.Series([r["status"] for r in runs]).value_counts()
            st.caption(" · ".join(f"{status_label(s)} {n}" for s, n in counts.items())
                       + (f" — live, every {ui_settings().refresh_s:g} s" if active else ""))
            frame = table(runs)
            picked = st.dataframe(frame.style.map(colour_status, subset=["status"]), hide_index=True,
                                  column_config=COLUMNS, on_select="rerun", selection_mode="single-row",
                                  key="runs_table", width="stretch")
            st.caption("Select a row to open the run.")
            if picked.selection.rows:
                st.switch_page(PAGES["run"], query_params={"run": frame.iloc[picked.selection.rows[0]]["id"]})

    runs_table()
