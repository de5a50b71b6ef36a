"""Sweeps: every sweep with its progress; one sweep's results as the paper's compact table (mean ± std, the best
bold, Δ and p against the baseline cell, which starts as the sweep's own), its downloads and every number, a
heatmap over two grid keys, and its runs' curves grouped by cell, seeds as a band."""

from __future__ import annotations

import io
from typing import Any

import pandas as pd
import streamlit as st

from ui.charts import PLOT_CONFIG, band_figure, heatmap_figure
from ui.common import PAGES, age, api, differences_warning, series_cache, shown_errors, words
from ui.series import group_bands, refresh, whole_model

NO_BASELINE = "(none)"
DOWNLOADS = (("csv", "CSV (every number)", "text/csv", "csv"), ("markdown", "Markdown", "text/markdown", "md"),
             ("latex", "LaTeX (booktabs)", "application/x-latex", "tex"))

# The compact table fits the page's width: a smaller font and tighter cells than prose tables, so that the 13
# columns of a two-modality sweep fit 1400 px beside the sidebar (tests/ui/test_browser_sweeps.py).
COMPACT_TABLE_CSS = """<style>
.st-key-compact-table table { font-size: 0.85rem; }
.st-key-compact-table th, .st-key-compact-table td { padding: 0.3rem 0.45rem; }
</style>"""


def cell_label(cell: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in cell.items() if k != "seed") or "all runs"


def parse_cell(text: str) -> dict[str, str]:
    """`method=naive,skip.audio=2` (the URL's baseline) -> {"method": "naive", "skip.audio": "2"}."""
    return dict(item.partition("=")[::2] for item in text.split(",") if item)


def baseline_option(wanted: dict[str, Any] | None, cells: list[dict[str, Any]]) -> str:
    """The option of the one cell that `wanted` names by some of its grid values, as the API finds it: a sweep
    made with baseline {"method": "naive"} preselects "method=naive, skip.audio=-"."""
    if not wanted:
        return NO_BASELINE
    labels = {cell_label(c) for c in cells if all(str(c.get(k)) == str(v) for k, v in wanted.items())}
    return labels.pop() if len(labels) == 1 else cell_label(wanted)


def numbers_frame(csv_text: bytes) -> pd.DataFrame:
    """The numeric CSV as a table, numbers as numbers (sortable)."""
    return pd.read_csv(io.BytesIO(csv_text), keep_default_na=False, na_values=[""])


def sweep_list(sweeps: list[dict[str, Any]]) -> None:
    st.dataframe(pd.DataFrame([{
        "name": s["name"], "status": s["status"], "runs": f"{s['progress']['done']}/{s['progress']['total']} ended",
        "succeeded": s["progress"]["succeeded"], "grid": ", ".join(f"{k}: {len(v)}" for k, v in s["grid"].items()),
        "created": age(s["created_at"]), "id": s["id"]} for s in sweeps]), hide_index=True)


def results(sweep: dict[str, Any], baseline: str | None, chosen: str) -> None:
    rows = sweep["matrix"]
    if not rows:
        st.info("No run of this sweep has succeeded yet: the matrix fills in as runs end.", icon=":material/hourglass:")
        return
    st.subheader("Results")
    if chosen not in {NO_BASELINE, *(cell_label(row["cell"]) for row in rows)}:  # the API pairs once it has results
        st.caption(f"The baseline cell ({chosen}) has no succeeded run yet: the differences and p-values appear "
                   "when it has.")
    tables(sweep, baseline)
    heatmap(rows)


def tables(sweep: dict[str, Any], baseline: str | None) -> None:
    """The compact table, its downloads, and every number, all as the API renders them."""
    client = api()
    texts = {fmt: client.sweep_table(sweep["id"], fmt, baseline) for fmt, *_ in DOWNLOADS}
    # The API's compact Markdown table, as downloaded: it wraps to the page's width, so Δ and p stay in view. A
    # narrow cell breaks "0.605 ± 0.064" before the ± only (a no-break space after it), never inside the spread.
    st.markdown(COMPACT_TABLE_CSS, unsafe_allow_html=True)  # drawn with the table (st.html's element loads later)
    with st.container(key="compact-table"):
        st.markdown(texts["markdown"].decode().replace(" ± ", " ±\u00a0"))
    columns = st.columns(len(DOWNLOADS))
    for column, (fmt, label, mime, suffix) in zip(columns, DOWNLOADS, strict=True):
        column.download_button(label, texts[fmt], file_name=f"{sweep['name']}.{suffix}", mime=mime,
                               key=f"table-{fmt}")
    with st.expander("Every number (the CSV: mean, std, n per measure; difference, both p-values, paired seeds)"):
        st.dataframe(numbers_frame(texts["csv"]), hide_index=True)


def heatmap(rows: list[dict[str, Any]]) -> None:
    keys = [k for k in rows[0]["cell"]]
    measures = list(rows[0]["stats"])
    if len(keys) >= 2:
        st.subheader("Heatmap")
        a, b, c = st.columns(3)
        x_key = a.selectbox("Across", keys, index=0, key="heat_x")
        y_key = b.selectbox("Down", [k for k in keys if k != x_key], index=0, key="heat_y")
        measure = c.selectbox("Measure", measures, index=0, key="heat_measure")
        st.plotly_chart(heatmap_figure(rows, x_key, y_key, measure), key="heatmap", config=PLOT_CONFIG)


def grouped_curves(sweep: dict[str, Any]) -> None:
    runs = [(r, c) for r, c in zip(sweep["runs"], sweep["cells"], strict=True) if r["epochs_done"] > 0]
    if not runs:
        return
    st.subheader("Curves by cell")
    keys = [k for k in sweep["grid"] if k != "seed"]
    a, b, c, d = st.columns(4)
    by = a.multiselect("Group by", keys, default=keys, help="runs sharing these grid values form one line; the "
                                                          "others (seeds) make its band of one standard deviation")
    w = words()
    split = b.radio("Split", w.judged_first(), horizontal=True, key="band_split")
    component = c.selectbox("Per-modality component", [w.branch, w.helper], key="band_component")
    name = d.radio("Metric", ["acc", "loss"], horizontal=True, key="band_name")
    groups: dict[str, list[str]] = {}
    for run, cell in runs:
        groups.setdefault(cell_label({k: cell[k] for k in by}), []).append(run["id"])
    client, cache = api(), series_cache()
    series = [refresh(client, cache, run["id"], w) for run, _ in runs]
    bands = group_bands(series, groups, split, component, name, w)
    if bands:
        st.plotly_chart(band_figure(bands, split, name, whole_model(w, component)), key="bands", config=PLOT_CONFIG)


def one_sweep(sweep_id: str) -> None:
    client = api()
    asked = st.query_params.get("baseline")  # absent: the sweep's own baseline; empty: none
    sweep = client.sweep(sweep_id, asked)
    progress = sweep["progress"]
    st.header(sweep["name"])
    st.caption(f"{sweep['status']} · {progress['done']} of {progress['total']} runs ended, "
               f"{progress['succeeded']} succeeded · at most {sweep['max_concurrent']} at once · "
               + " · ".join(f"{k}: {n}" for k, n in progress["by_status"].items()))
    st.progress(progress["done"] / max(1, progress["total"]))
    if sweep["status"] in words().sweep_active and st.button("Cancel the sweep", type="secondary"):
        client.cancel_sweep(sweep_id)
        st.rerun()
    cells = sweep["cells"]
    current = baseline_option(sweep["baseline"] if asked is None else parse_cell(asked), cells)
    options = list(dict.fromkeys([NO_BASELINE, *(cell_label(c) for c in cells), current]))
    chosen = st.selectbox("Baseline cell", options, index=options.index(current),
                          help="every other cell is paired with it seed by seed; the sweep's own is chosen first")
    if chosen != current:
        asked = "" if chosen == NO_BASELINE else chosen.replace(", ", ",")
        st.query_params["baseline"] = asked
        sweep = client.sweep(sweep_id, asked)
    differences_warning(sweep.get("differences") or [])
    results(sweep, asked, chosen)
    grouped_curves(sweep)
    with st.expander(f"Runs ({len(sweep['runs'])})"):
        for run, cell in zip(sweep["runs"], sweep["cells"], strict=True):
            st.page_link(PAGES["run"], label=f"{run['status']} · {cell_label(cell)} · seed {cell.get('seed', '-')}",
                         query_params={"run": run["id"]})


st.title("Sweeps")
with shown_errors():
    sweeps = api().sweeps()
    if not sweeps:
        st.info("No sweep yet. Submit one with `POST /sweeps` or `amst sweep CONFIG --grid KEY=V1,V2 --api URL` "
                "(Doc/sweeps.md).", icon=":material/grid_view:")
    else:
        sweep_list(sweeps)
        by_id = {s["id"]: s for s in sweeps}
        asked = st.query_params.get("sweep")
        ids = list(by_id)
        sweep_id = st.selectbox("Sweep", ids, index=ids.index(asked) if asked in by_id else 0,
                                format_func=lambda i: f"{by_id[i]['name']} ({by_id[i]['status']}, {i[:8]})")
        st.query_params["sweep"] = sweep_id
        one_sweep(sweep_id)
