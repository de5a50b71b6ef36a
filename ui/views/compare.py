"""Compare: overlay runs per modality; each AMST run against a baseline (naive fusion by default, or any of the
paper's baselines) of the same dataset and seed. Every option lives in the URL; the charts are drawn again only
when a run has new points or a new status."""

from __future__ import annotations

from typing import Any

import streamlit as st

from ui import urlstate
from ui.charts import PLOT_CONFIG, Clocks, band_figure, compare_figure, difference_figure, run_styles
from ui.common import (
    api,
    baseline_pairs,
    catalog,
    differences_warning,
    plain,
    run_label,
    series_cache,
    short_label,
    shown_errors,
    words,
)
from ui.series import (
    RunSeries,
    coinciding,
    compare_components,
    differing_keys,
    fetch_clock,
    final_and_best,
    flatten,
    group_bands,
    group_runs,
    refresh,
    uneven_lengths,
    whole_model,
)
from ui.settings import ui_settings
from ui.words import Words

COMPONENT_HELP = ("the fused prediction has its own panel (a combination, combo:*, takes its place); branch and "
                  "helper mean AMST-FULL's alt_ ones for it")


def options(runs: list[dict[str, Any]]) -> dict[str, Any]:
    by_id = {r["id"]: r for r in runs}
    ids = urlstate.widget(st.multiselect, "Runs", "runs", [], list(by_id),
                          format_func=lambda i: run_label(by_id[i]), placeholder="choose runs to overlay")
    methods, _ = catalog(ui_settings().api_url)
    baselines = [m["name"] for m in methods if not m["uses_skip"]]  # an AMST method is one that skips
    w = words()
    a, b, c, d = st.columns(4)
    chosen = {
        "selected": [by_id[i] for i in ids],
        "split": urlstate.widget(a.radio, "Split", "split", w.eval_splits[0], w.judged_first(), horizontal=True),
        "component_slot": b,  # filled once the runs' series are read: it offers the components they have
        "name": urlstate.widget(c.radio, "Metric", "metric", "acc", ["acc", "loss"], horizontal=True),
        "baseline": urlstate.widget(d.selectbox, "Baseline", "baseline", "naive" if "naive" in baselines
                                    else baselines[0], baselines,
                                    help="each AMST run is paired with a run of this method, same dataset and seed"),
    }
    a, b, c = st.columns(3)
    chosen["smoothing"] = urlstate.widget(a.slider, "Smoothing", "smoothing", 0.0, min_value=0.0, max_value=0.95,
                                          step=0.05, help="exponential moving average; raw values stay faint behind")
    chosen["x"] = urlstate.widget(b.radio, "x-axis", "x", "epoch", ["epoch", "wall"], horizontal=True,
                                  format_func=lambda v: "epoch" if v == "epoch" else "wall time")
    chosen["log_y"] = urlstate.widget(c.toggle, "Log scale (loss)", "log", False,
                                      help="applies to losses only: accuracy stays on a linear 0-1 axis")
    return chosen


def choose_component(slot: Any, series: list[RunSeries], w: Words) -> str:
    return urlstate.widget(slot.selectbox, "Per-modality component", "component", w.branch,
                           compare_components(series, w), help=COMPONENT_HELP)


def group_options(selected: list[dict[str, Any]]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    configs = {r["id"]: flatten(r.get("config") or {}) for r in selected}
    varying = differing_keys(list(configs.values()))
    group_by = urlstate.widget(st.multiselect, "Group by (config keys)", "group", [], varying,
                               help="runs sharing these config values become one line with a band of one standard "
                                    "deviation (seeds collapse, methods stay apart); only keys whose values differ "
                                    "among the chosen runs are offered")
    return group_by, configs


def signature(series: dict[str, RunSeries]) -> tuple:
    return tuple((i, rs.next_since, rs.run.get("status"), rs.run.get("attempt")) for i, rs in series.items())


def clocks_of(runs: list[RunSeries], x: str) -> Clocks | None:
    """On a wall-time axis, each run's clock from its epoch times (not among the series fetched to draw)."""
    if x != "wall":
        return None
    return {rs.run_id: fetch_clock(api(), series_cache(), rs.run_id, words()) for rs in runs}


def draw(chosen: dict[str, Any], series: dict[str, RunSeries], pairs: list, group_by: list[str],
         configs: dict[str, dict[str, Any]]) -> None:
    split, component, name = chosen["split"], chosen["component"], chosen["name"]
    selected = chosen["selected"]
    labels = {i: short_label(rs.run) for i, rs in series.items()}
    runs = [series[r["id"]] for r in selected]
    if warning := uneven_lengths([rs.run for rs in runs]):
        st.warning(plain(warning) + " Compare final values with care; the x-axis shows each run's own epochs.",
                   icon=":material/straighten:")
    w = words()
    diff = [(series[amst], series[base], labels[amst]) for amst, base in pairs]
    styles = run_styles([r["id"] for r in selected])  # by place in the link: the same colour in every view
    clocks = clocks_of(runs, chosen["x"])
    if group_by:
        draw_groups(chosen, runs, group_by, configs, styles, clocks, diff)
    else:
        st.plotly_chart(compare_figure(runs, labels, split, component, name, w, chosen["smoothing"], x=chosen["x"],
                                       log_y=chosen["log_y"], pairs=diff or None, clocks=clocks, styles=styles),
                        key="overlay", config=PLOT_CONFIG)
        hidden_runs(coinciding(runs, labels, w, split, component, name))
    clock_notes(runs, labels, clocks, bool(diff))
    if pairs:
        st.caption("AMST minus baseline: " + " · ".join(f"{plain(labels[amst])} vs {plain(labels[base])}"
                                                        for amst, base in pairs))
    else:
        st.caption(f"No AMST run among those chosen has a {chosen['baseline']} run of the same dataset and seed.")
    st.subheader(f"Final and best {split} {name} per modality")
    whole = whole_model(w, component)
    st.caption(f"Per run: the last and the best value of each modality's {component} and of the "
               + ("fused prediction (all modalities together)." if whole == w.fused else f"combination {whole}."))
    table = final_and_best(runs, labels, w, split, component, name)
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        c: st.column_config.NumberColumn(format="%.4f") for c in table.columns if c not in ("run", "epochs")})


def draw_groups(chosen: dict[str, Any], runs: list[RunSeries], group_by: list[str],
                configs: dict[str, dict[str, Any]], styles: dict[str, dict[str, Any]], clocks: Clocks | None,
                diff: list) -> None:
    """One line per group, in its first run's colour, on the axis and scale chosen for the runs."""
    split, component, name, w = chosen["split"], chosen["component"], chosen["name"], words()
    groups = group_runs(chosen["selected"], configs, group_by)
    at = " at its runs' mean wall time per epoch" if chosen["x"] == "wall" else ""
    st.caption("One line per group of runs sharing " + ", ".join(group_by) + f": its mean{at}, with a band "
               "of one standard deviation over the group's runs (seeds), in the colour of its first run.")
    bands = group_bands(runs, groups, split, component, name, w, clocks)
    st.plotly_chart(band_figure(bands, split, name, whole_model(w, component),
                                styles={label: styles[ids[0]] for label, ids in groups.items()}, x=chosen["x"],
                                log_y=chosen["log_y"], words=w), key="grouped", config=PLOT_CONFIG)
    if diff:
        st.plotly_chart(difference_figure(diff, split, component, name, w), key="difference", config=PLOT_CONFIG)


def hidden_runs(groups: list[list[str]]) -> None:
    """Runs drawn exactly on top of each other (series.coinciding): the figure shows one line for them."""
    for same in groups:
        st.caption(":material/layers: Drawn exactly on top of each other (identical values): "
                   + ", ".join(plain(label) for label in same) + ". Only the last one's line is visible.")


def clock_notes(runs: list[RunSeries], labels: dict[str, str], clocks: Clocks | None, paired: bool) -> None:
    """What a wall-time axis cannot show: runs left off it for want of epoch times, differences kept on epochs."""
    if clocks is not None and (missing := [labels[rs.run_id] for rs in runs if not clocks.get(rs.run_id)]):
        st.caption("Left off the wall-time axis (no epoch times recorded): "
                   + ", ".join(plain(label) for label in missing) + ".")
    if clocks is not None and paired:
        st.caption("AMST minus baseline stays on epochs: a pair's two runs reach an epoch at different times.")


st.title("Compare")
urlstate.page("compare")
with shown_errors():
    all_runs = api().runs(limit=500, archived="all", with_config=True)
    chosen = options(all_runs)
    selected = chosen["selected"]
    slot = chosen.pop("component_slot")
    if not selected:
        chosen["component"] = choose_component(slot, [], words())
        st.info(f"Choose runs above. AMST runs are paired with a {chosen['baseline']} run of the same dataset and "
                "seed.")
    else:
        differences_warning(api().differences([r["id"] for r in selected]))
        group_by, configs = group_options(selected)
        pairs = baseline_pairs([r["id"] for r in selected], chosen["baseline"])
        ids = list(dict.fromkeys([r["id"] for r in selected] + [base for _, base in pairs]))

        def fetch() -> dict[str, RunSeries]:
            # One incremental call per run, for the split and metric drawn (not the run's every series).
            return {i: refresh(api(), series_cache(), i, words(), split=chosen["split"], name=chosen["name"])
                    for i in ids}

        series = fetch()
        chosen["component"] = choose_component(slot, list(series.values()), words())
        drawn = signature(series)
        live = any(rs.run.get("status") in words().active for rs in series.values())

        @st.fragment(run_every=ui_settings().refresh_s if live else None)
        def watch() -> None:
            """Polls while a run is active; the charts are drawn again only when something changed."""
            with shown_errors():
                if not st.session_state.pop("compare_fresh", False) and signature(fetch()) != drawn:
                    st.rerun(scope="app")

        st.session_state.compare_fresh = True
        watch()
        draw(chosen, series, pairs, group_by, configs)
