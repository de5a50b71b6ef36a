"""Sweeps: every sweep with its progress; one sweep's results matrix (mean, std, n; paired differences against a
baseline cell), a heatmap over two grid keys, and its runs' curves grouped by cell, seeds as a band."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from ui.charts import PLOT_CONFIG, band_figure, heatmap_figure
from ui.common import PAGES, age, api, series_cache, shown_errors, words
from ui.series import group_bands, refresh, whole_model


def cell_label(cell: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in cell.items() if k != "seed") or "all runs"


def matrix_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One line per cell: its grid values, mean +- std (n) of each measure, paired difference and p-values."""
    records = []
    for row in rows:
        record: dict[str, Any] = dict(row["cell"])
        for measure, stat in row["stats"].items():
            if stat["mean"] is None:
                continue
            spread = f" ± {stat['std']:.4f}" if stat["std"] is not None else ""
            record[measure] = f"{stat['mean']:.4f}{spread} (n={stat['count']})"
        for measure, paired in row["paired"].items():
            if paired["mean"] is None:
                continue
            mark = "" if paired["meaningful"] else " (too few seeds)"
            record[f"{measure} − baseline"] = f"{paired['mean']:+.4f}"
            record[f"{measure} p (t / Wilcoxon)"] = " / ".join(
                "-" if p is None else f"{p:.3g}" for p in (paired["t_p"], paired["wilcoxon_p"])) + mark
        records.append(record)
    return pd.DataFrame(records)


def sweep_list(sweeps: list[dict[str, Any]]) -> None:
    st.dataframe(pd.DataFrame([{
        "name": s["name"], "status": s["status"], "runs": f"{s['progress']['done']}/{s['progress']['total']} ended",
        "succeeded": s["progress"]["succeeded"], "grid": ", ".join(f"{k}: {len(v)}" for k, v in s["grid"].items()),
        "created": age(s["created_at"]), "id": s["id"]} for s in sweeps]), hide_index=True)


def results(sweep: dict[str, Any], baseline: str | None) -> None:
    rows = sweep["matrix"]
    if not rows:
        st.info("No run of this sweep has succeeded yet: the matrix fills in as runs end.", icon=":material/hourglass:")
        return
    st.subheader("Results matrix")
    st.caption("Mean ± standard deviation over seeds (n runs) of the fused prediction's best validation accuracy, "
               "the test accuracy at that epoch, and each modality's helper and branch test accuracy at it; "
               "against the baseline cell: the mean paired difference by seed, paired t-test and Wilcoxon p-values.")
    st.dataframe(matrix_frame(rows), hide_index=True)
    client = api()
    columns = st.columns(3)
    for column, (fmt, mime) in zip(columns, (("csv", "text/csv"), ("md", "text/markdown"),
                                             ("tex", "application/x-latex")), strict=True):
        column.download_button(f"Table as .{fmt}", client.sweep_table(sweep["id"], fmt, baseline),
                               file_name=f"{sweep['name']}.{fmt}", mime=mime, key=f"table-{fmt}")
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
    stored = cell_label(sweep["baseline"]) if sweep["baseline"] else "(none)"
    current = stored if asked is None else (asked.replace(",", ", ") if asked else "(none)")
    options = ["(none)", *dict.fromkeys(cell_label(c) for c in sweep["cells"])]
    chosen = st.selectbox("Baseline cell", options, index=options.index(current) if current in options else 0,
                          help="every other cell is paired with it seed by seed")
    wanted = "" if chosen == "(none)" else chosen.replace(", ", ",")
    if chosen != current:
        st.query_params["baseline"] = wanted
        sweep = client.sweep(sweep_id, wanted)
    results(sweep, wanted)
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
