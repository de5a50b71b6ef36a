"""Run: live per-modality curves, the modality balance, the skip schedule, lifecycle controls, downloads."""

from __future__ import annotations

from typing import Any

import streamlit as st

from ui.charts import PLOT_CONFIG, balance_figure, curves_figure, skip_figure
from ui.client import ApiError, ApiUnavailable
from ui.common import PAGES, api, duration, run_label, series_cache, shown_errors
from ui.series import (
    BRANCH_COMPONENTS,
    HELPER_COMPONENTS,
    RunSeries,
    balance,
    refresh,
    skip_decisions,
    skip_factors,
    skip_strip,
    to_csv,
)
from ui.settings import ui_settings
from ui.style import ACTIVE, CANCELLABLE, RETRYABLE, STATUS_BADGE

RUN_LEVEL_NAMES = {"skip", "skip_factor", "skip_speed", "epoch_time", "samples_per_s", "lr", "acc_gap",
                   "ogm_coeff", "ogm_ratio", "epochs_to_plateau", "best_epoch", "best_val_acc", "test_acc_at_best"}


def choose_run() -> str | None:
    runs = api().runs(limit=100)
    if not runs:
        st.info("No runs yet. Submit one on **New run**.", icon=":material/info:")
        return None
    picked = st.selectbox("Run", runs, format_func=run_label, index=None, placeholder="choose a run")
    if picked is not None:
        st.query_params["run"] = picked["id"]
    return picked["id"] if picked else None


def lazy(fetch, *args) -> Any:
    """A download's bytes, fetched only when the button is pressed; a failure becomes the file's text."""
    def data() -> bytes:
        try:
            return fetch(*args)
        except (ApiError, ApiUnavailable) as err:
            return f"download failed: {err}".encode()
    return data


def controls(detail: dict[str, Any]) -> None:
    run_id, status = detail["id"], detail["status"]
    bar = st.container(horizontal=True)
    if status in CANCELLABLE and bar.button("Cancel", icon=":material/stop_circle:",
                                            disabled=detail["cancel_requested"]):
        api().cancel(run_id)
        st.rerun()
    if status in RETRYABLE and bar.button("Retry", icon=":material/replay:", help="resume from the last checkpoint"):
        api().retry(run_id)
        series_cache().pop(run_id, None)
        st.rerun()
    if bar.button("Re-run with same config", icon=":material/content_copy:"):
        st.session_state.prefill = detail["config"]
        st.switch_page(PAGES["new"])
    bar.download_button("Config (YAML)", lazy(api().config_yaml, run_id), f"{run_id}.yaml", "application/yaml",
                        icon=":material/description:")
    if detail["best_epoch"] is not None:
        bar.download_button("Best checkpoint", lazy(api().checkpoint, run_id, "best"), f"{run_id}-best.pt",
                            "application/octet-stream", icon=":material/download:")


def chart_options(rs: RunSeries) -> dict[str, Any]:
    names = sorted({k[3] for k in rs.points if k[3] not in RUN_LEVEL_NAMES}) or ["acc", "loss"]
    components = rs.components() or ["fused", "branch", "helper"]
    st.session_state.run_components = rs.components()
    default = [c for c in ("fused", "alt", "joint") if c in components]
    default += [next((c for c in group if c in components), None) for group in (BRANCH_COMPONENTS, HELPER_COMPONENTS)]
    with st.expander("Chart options", expanded=False):
        a, b, c = st.columns(3)
        options = {
            "splits": a.multiselect("Splits", ["train", "val", "test"], ["train", "val", "test"]),
            "components": b.multiselect("Components", components, [c for c in default if c] or components[:1]),
            "x": c.radio("x-axis", ["epoch", "wall"], horizontal=True,
                         format_func=lambda v: "epoch" if v == "epoch" else "wall time"),
        }
        a, b, c = st.columns(3)
        options["smoothing"] = a.slider("Smoothing", 0.0, 0.95, 0.0, 0.05)
        options["log_y"] = b.toggle("Log scale")
        options["balance_split"] = c.radio("Balance on", ["val", "test", "train"], horizontal=True)
    options["names"] = [n for n in ("acc", "loss") if n in names] or names[:1]
    return options


def header(run: dict[str, Any]) -> None:
    st.badge(run["status"], color=STATUS_BADGE.get(run["status"], "gray"))
    cols = st.columns(6)
    cols[0].metric("Epoch", f"{run['epochs_done']}/{run['epochs_total']}")
    cols[1].metric("Attempt", run["attempt"])
    heartbeat = run["heartbeat_age_s"]
    cols[2].metric("Heartbeat", "—" if heartbeat is None else f"{duration(heartbeat)} ago")
    cols[3].metric("ETA", "—" if run["eta_s"] is None else duration(run["eta_s"]))
    cols[4].metric("Best val acc", fmt(run["best_val_acc"]), help=f"epoch {run['best_epoch']}")
    cols[5].metric("Test acc at best", fmt(run["test_acc_at_best"]))
    st.progress(run["progress"])


def fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def curves(rs: RunSeries, options: dict[str, Any]) -> None:
    fig = curves_figure(rs, options["names"], options["splits"], options["components"], options["x"],
                        options["smoothing"], options["log_y"])
    st.plotly_chart(fig, key="curves", config=PLOT_CONFIG)


def balance_panel(rs: RunSeries, split: str) -> None:
    b = balance(rs, split)
    st.subheader("Modality balance")
    if not b.rows:
        st.caption("No per-modality accuracy yet.")
        return
    if b.lagging:
        st.markdown(f"Lagging modality: **{b.lagging}** — {b.gap:.3f} behind **{b.leading}** "
                    f"({split} branch accuracy, epoch {b.epoch})")
    plateaus = [f"{r['modality']} {r['plateau']}" for r in b.rows if r.get("plateau") is not None]
    if plateaus:
        st.caption("Epochs to plateau (val probe within a point of its best so far): " + " · ".join(plateaus))
    st.plotly_chart(balance_figure(b), key="balance", config=PLOT_CONFIG)


def selections_panel(detail: dict[str, Any]) -> None:
    """A method's other selected predictions (MLA's combinations), each with its own best epoch and test at it."""
    selections = (detail.get("summary") or {}).get("selections") or {}
    if not selections:
        return
    st.subheader("Selected like the fused prediction")
    rows = [{"prediction": name.removeprefix("combo:"), "best epoch": b["best_epoch"],
             "best val acc": b["best_val_acc"], "test acc at best": b["test_acc_at_best"]}
            for name, b in sorted(selections.items(), key=lambda kv: -kv[1]["best_val_acc"])]
    st.dataframe(rows, hide_index=True, column_config={
        "best val acc": st.column_config.NumberColumn(format="%.4f"),
        "test acc at best": st.column_config.NumberColumn(format="%.4f")})


def skip_panel(rs: RunSeries) -> None:
    modalities, epochs, grid = skip_strip(rs)
    if modalities:
        st.subheader("Skip schedule")
        st.caption("■ updated in that epoch · □ skipped · hover for the skip factor in force")
        factors = skip_factors(rs)
        st.plotly_chart(skip_figure(modalities, epochs, grid, factors), key="skip", config=PLOT_CONFIG)
        decisions = skip_decisions(rs)
        if decisions:
            st.markdown("**Automatic skip factors** (`skip: auto`): each decision, from the helpers' validation "
                        "accuracy slope per epoch")
            st.dataframe(decisions, hide_index=True)


st.title("Run")
with shown_errors():
    run_id = st.query_params.get("run") or choose_run()
    if run_id:
        if flash := st.session_state.pop("flash", None):
            st.success(flash, icon=":material/check_circle:")
        detail = api().run(run_id)
        st.session_state.run_status = (run_id, detail["status"], detail["attempt"])
        st.caption(f"{run_label(detail)} · queue {detail['queue']} · device {detail['device'] or '—'}"
                   + (f" · {detail['queue_position']} ahead in the queue" if detail["queue_position"] else ""))
        if detail["error"]:
            st.error(f"**{detail['status']}:** {detail['error']}", icon=":material/error:")
        controls(detail)
        selections_panel(detail)
        st.session_state.prefetched = refresh(api(), series_cache(), run_id)
        options = chart_options(st.session_state.prefetched)

        @st.fragment(run_every=ui_settings().refresh_s if detail["status"] in ACTIVE else None)
        def live() -> None:
            with shown_errors():
                # The page's own fetch serves the fragment's first pass; each refresh after it is one call.
                rs = st.session_state.pop("prefetched", None) or refresh(api(), series_cache(), run_id)
                run = rs.run
                if (run_id, run["status"], run["attempt"]) != st.session_state.run_status:
                    st.rerun()  # a new status: the controls, the error and the refresh interval change too
                if rs.components() != st.session_state.run_components:
                    st.rerun()  # the first points arrived: the chart options offer their components
                header(run)
                curves(rs, options)
                balance_panel(rs, options["balance_split"])
                skip_panel(rs)
                st.download_button("All points (CSV)", to_csv(rs), f"{run_id}-metrics.csv", "text/csv",
                                   icon=":material/table_view:", key="csv")

        live()
