"""Compare: overlay runs per modality; each AMST run against a baseline (naive fusion by default, or any of the
paper's baselines) of the same dataset and seed."""

from __future__ import annotations

from typing import Any

import streamlit as st

from ui.charts import PLOT_CONFIG, band_figure, compare_figure, difference_figure
from ui.common import api, catalog, run_label, series_cache, shown_errors
from ui.series import differing_keys, final_and_best, flatten, group_bands, group_runs, pair_baselines, refresh
from ui.settings import ui_settings
from ui.style import ACTIVE

COMPONENTS = ["branch", "helper", "alt_branch", "joint_branch", "alt_helper", "joint_helper", "prototype"]
COMPONENT_HELP = "the fused prediction has its own panel; branch and helper mean AMST-FULL's alt_ ones for it"

st.title("Compare")
with shown_errors():
    runs = api().runs(limit=500)
    by_id = {r["id"]: r for r in runs}
    wanted = [i for i in st.query_params.get("runs", "").split(",") if i in by_id]
    selected: list[dict[str, Any]] = st.multiselect("Runs", runs, [by_id[i] for i in wanted], format_func=run_label,
                                                    placeholder="choose runs to overlay")
    st.query_params["runs"] = ",".join(r["id"] for r in selected)
    methods, _ = catalog(ui_settings().api_url)
    baselines = [m["name"] for m in methods if not m["name"].startswith("amst")]
    a, b, c, d, e = st.columns(5)
    split = a.radio("Split", ["val", "test", "train"], horizontal=True)
    component = b.selectbox("Per-modality component", COMPONENTS, help=COMPONENT_HELP)
    name = c.radio("Metric", ["acc", "loss"], horizontal=True)
    smoothing = d.slider("Smoothing", 0.0, 0.95, 0.0, 0.05)
    asked = st.query_params.get("baseline", "naive")
    baseline = e.selectbox("Baseline", baselines, index=baselines.index(asked) if asked in baselines else 0,
                           help="each AMST run is paired with a run of this method, same dataset and seed")
    st.query_params["baseline"] = baseline
    configs = {r["id"]: flatten(api().run(r["id"])["config"]) for r in selected}
    varying = differing_keys(list(configs.values()))
    asked_groups = [k for k in st.query_params.get("group", "").split(",") if k in varying]
    group_by = st.multiselect("Group by (config keys)", varying, asked_groups,
                              help="runs sharing these config values become one line with a band of one standard "
                                   "deviation (seeds collapse, methods stay apart); only keys whose values differ "
                                   "among the chosen runs are offered")
    st.query_params["group"] = ",".join(group_by)
    pairs = pair_baselines(selected, runs, baseline)
    live = any(r["status"] in ACTIVE for r in selected + [base for _, base in pairs])

    @st.fragment(run_every=ui_settings().refresh_s if live else None)
    def charts() -> None:
        with shown_errors():
            if not selected:
                st.info(f"Choose runs above. AMST runs are paired with a {baseline} run of the same dataset and seed.")
                return
            ids = list(dict.fromkeys([r["id"] for r in selected] + [base["id"] for _, base in pairs]))
            # One incremental call per run, for the split and metric drawn (not the run's every series).
            series = {i: refresh(api(), series_cache(), i, split=split, name=name) for i in ids}
            labels = {i: run_label(series[i].run) for i in ids}
            chosen = [series[r["id"]] for r in selected]
            if group_by:
                groups = group_runs(selected, configs, group_by)
                st.caption("One line per group of runs sharing " + ", ".join(group_by) + ": its mean, with a band "
                           "of one standard deviation over the group's runs (seeds).")
                st.plotly_chart(band_figure(group_bands(chosen, groups, split, component, name), split, name),
                                key="grouped", config=PLOT_CONFIG)
            else:
                st.plotly_chart(compare_figure(chosen, labels, split, component, name, smoothing), key="overlay",
                                config=PLOT_CONFIG)
            st.subheader("AMST minus baseline")
            if pairs:
                st.caption(" · ".join(f"{run_label(amst)} vs {run_label(base)}" for amst, base in pairs))
                diff = [(series[amst["id"]], series[base["id"]], amst["name"]) for amst, base in pairs]
                st.plotly_chart(difference_figure(diff, split, component, name), key="difference", config=PLOT_CONFIG)
            else:
                st.caption(f"No AMST run among those chosen has a {baseline} run of the same dataset and seed.")
            st.subheader("Final and best per modality")
            table = final_and_best(chosen, labels, (split,), name)
            st.dataframe(table, hide_index=True, width="stretch",
                         column_config={"final": st.column_config.NumberColumn(format="%.4f"),
                                        "best": st.column_config.NumberColumn(format="%.4f")})

    charts()
