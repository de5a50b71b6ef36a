"""Run: live per-modality curves, the modality balance, the skip schedule, lifecycle controls, downloads."""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from amst_client import ApiError, ApiUnavailable
from ui import urlstate
from ui.charts import PLOT_CONFIG, balance_figure, curves_figure, resource_figure, run_series_figure, skip_figure
from ui.common import (
    PAGES,
    api,
    catalog,
    duration,
    plain,
    plain_lines,
    run_label,
    series_cache,
    shown_errors,
    words,
)
from ui.runinfo import (
    chance_level,
    eta_seconds,
    live_line,
    origin_caption,
    origin_rows,
    pass_fraction,
    pass_seconds_left,
    plateau_line,
    provenance_label,
    provenance_rows,
    reproducible,
    reproducible_yaml,
)
from ui.series import (
    RunSeries,
    balance,
    refresh,
    skip_decisions,
    skip_factors,
    skip_strip,
    to_csv,
)
from ui.settings import ui_settings
from ui.steady import steady_charts
from ui.style import status_badge


def choose_run() -> str | None:
    runs = api().runs(limit=100)
    if not runs:
        st.info("No runs yet. Submit one on **New run**.", icon=":material/info:")
        return None
    picked = st.selectbox("Run", runs, format_func=run_label, index=None, placeholder="choose a run")
    if picked is not None:
        st.query_params["run"] = picked["id"]
        st.rerun()  # drawn again as the run's own page, its name the heading
    return None


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
    if status in words().active and bar.button("Cancel", icon=":material/stop_circle:",
                                            disabled=detail["cancel_requested"]):
        st.session_state.cancelling = run_id  # asked, not done: confirm_cancel asks again
    confirm_cancel(detail)
    if status in words().retryable and bar.button("Retry", icon=":material/replay:",
                                                  help="resume from the last checkpoint"):
        api().retry(run_id)
        series_cache().pop(run_id, None)
        st.rerun()
    if bar.button("Re-run with same config", icon=":material/replay_circle_filled:",
                  help="a new run from this run's record: the config it recorded, on the data it trained on (it "
                       "refuses data that changed since, unless you say so)"):
        rerun(detail)
    if bar.button("Edit a copy", icon=":material/content_copy:",
                  help="the New run form with this config: its name and tags are left for you to give"):
        st.session_state.prefill = reproducible(detail["config"])
        st.session_state.prefill_from = detail["name"]
        st.switch_page(PAGES["new"])
    confirm_rerun(detail)
    bar.download_button("Config (YAML)", lambda: reproducible_yaml(detail["config"]), f"{run_id}.yaml",
                        "application/yaml", icon=":material/description:",
                        help="the config that trains this run again (amst train --config, POST /runs): without "
                             "its name and tags")
    if detail["best_epoch"] is not None:
        bar.download_button("Best checkpoint", lazy(api().checkpoint, run_id, "best"), f"{run_id}-best.pt",
                            "application/octet-stream", icon=":material/download:")


def rerun(detail: dict[str, Any], force: bool = False) -> None:
    """POST /runs/{id}/rerun, then the new run's page with what the API warned about; a refusal because the data
    changed (409 on `force`) is kept to be shown with a way to go on (confirm_rerun)."""
    try:
        again = api().rerun(detail["id"], force=force)
    except ApiError as err:
        if err.status != 409 or err.field != "force":
            raise
        st.session_state.rerun_refused = {"run": detail["id"], "message": err.message}
        return
    st.session_state.pop("rerun_refused", None)
    st.session_state.flash = f"Re-run of {plain(detail['name'])} queued."
    st.session_state.flash_warnings = again["warnings"]
    st.query_params["run"] = again["id"]
    st.rerun()


def confirm_rerun(detail: dict[str, Any]) -> None:
    """The data changed since the run trained: the API's words, and a re-run on the data as they are now."""
    refused = st.session_state.get("rerun_refused")
    if not refused or refused["run"] != detail["id"]:
        return
    st.warning(f"**Not re-run:** {plain(refused['message'])}", icon=":material/database:")
    row = st.container(horizontal=True)
    if row.button("Re-run anyway", type="primary", icon=":material/replay:",
                  help="on the data as they are now: the new run will not match this one's data"):
        rerun(detail, force=True)
    if row.button("Leave it"):
        st.session_state.pop("rerun_refused", None)
        st.rerun()


def confirm_cancel(detail: dict[str, Any]) -> None:
    """Cancel asks once more: a click by mistake would end hours of training (a cancelled run can be retried
    from its last checkpoint, not continued where it stood)."""
    if st.session_state.get("cancelling") != detail["id"] or detail["status"] not in words().active:
        return
    st.warning(f"**Cancel {plain(detail['name'])}?** The worker stops it after its current batch; a retry "
               "resumes from its last checkpoint.", icon=":material/stop_circle:")
    row = st.container(horizontal=True)
    if row.button("Yes, cancel the run", type="primary", icon=":material/stop_circle:"):
        api().cancel(detail["id"])
        st.session_state.pop("cancelling", None)
        st.rerun()
    if row.button("Keep it running"):
        st.session_state.pop("cancelling", None)
        st.rerun()


def chart_options(rs: RunSeries) -> dict[str, Any]:
    """The charts' options, each kept in the URL (a shared link shows the same curves). Metrics: those of the
    predictions (run-level series and the imbalance gaps have their own panels)."""
    w = words()
    names = sorted({k[3] for k in rs.points if w.is_prediction(k[1]) and k[3] not in w.gaps}) or ["acc", "loss"]
    components = rs.components(w) or [w.fused, w.branch, w.helper]
    default = [c for c in w.families[w.fused] if c in components]  # fused, and AMST-FULL's alt and joint
    default += [next((c for c in w.family(f) if c in components), None) for f in (w.branch, w.helper)]
    default = [c for c in default if c] or components[:1]
    metric_default = [n for n in ("acc", "loss") if n in names] or names[:1]
    with st.expander("Chart options", expanded=False):
        a, b, c = st.columns(3)
        options = {
            "splits": urlstate.widget(a.multiselect, "Splits", "splits", list(w.splits), list(w.splits)),
            "components": urlstate.widget(b.multiselect, "Components", "components", default, components),
            "x": urlstate.widget(c.radio, "x-axis", "x", "epoch", ["epoch", "wall"], horizontal=True,
                                 format_func=lambda v: "epoch" if v == "epoch" else "wall time"),
        }
        a, b, c, d = st.columns(4)
        options["names"] = urlstate.widget(a.multiselect, "Metrics", "metrics", metric_default, names)
        options["smoothing"] = urlstate.widget(b.slider, "Smoothing", "smoothing", 0.0, min_value=0.0,
                                               max_value=0.95, step=0.05,
                                               help="exponential moving average; the raw values stay drawn faintly")
        options["log_y"] = urlstate.widget(c.toggle, "Log scale (loss)", "log", False,
                                           help="applies to losses only: accuracy stays on a linear 0-1 axis")
        options["balance_split"] = urlstate.widget(d.radio, "Balance on", "balance", w.eval_splits[0], w.judged_first(),
                                                   horizontal=True)
    options["names"] = options["names"] or metric_default
    return options


def header(run: dict[str, Any], inside_epoch: bool = True) -> None:
    """Three numbers that matter, the rest in one line; `inside_epoch`: the progress inside the epoch too (the
    first epoch's box says it instead, from the same answer)."""
    st.badge(run["status"], color=status_badge(run["status"]))
    row = st.container(horizontal=True, gap="large")  # side by side, wrapping on a phone instead of stacking
    row.metric("Epoch", f"{run['epochs_done']}/{run['epochs_total']}", help="epochs finished / planned",
               width="content")
    best = f"epoch {run['best_epoch'] + 1}" if run["best_epoch"] is not None else "no epoch yet"
    row.metric("Best val acc (fused)", fmt(run["best_val_acc"]), width="content",
               help=f"validation accuracy of the fused prediction (all modalities), best so far: {best}")
    row.metric("Test acc at best (fused)", fmt(run["test_acc_at_best"]), width="content",
               help="test accuracy of the fused prediction at the epoch of the best validation accuracy")
    heartbeat = run["heartbeat_age_s"]
    facts = [f"attempt {run['attempt']}", "heartbeat " + ("—" if heartbeat is None else f"{duration(heartbeat)} ago"),
             "ETA " + eta_text(run)]
    st.caption(" · ".join(facts))
    st.progress(run["progress"])
    if inside_epoch and (line := progress_line(run)):
        st.caption(line)


def eta_text(run: dict[str, Any]) -> str:
    """The API's ETA once an epoch has ended; inside the first, one from the batches done and the rate."""
    eta = eta_seconds(run)
    if eta is None:
        return "—"
    return duration(eta) if run["eta_s"] is not None else f"~{duration(eta)} (from the first epoch's rate)"


def progress_line(run: dict[str, Any]) -> str | None:
    left = pass_seconds_left(run)
    return live_line(run, None if left is None else duration(left))


def waiting(run: dict[str, Any]) -> None:
    """Before the first epoch ends there is nothing to draw: say what is happening instead of empty axes. Drawn
    by the refreshing header's fragment, from its answer: the box, its bar and the header move together."""
    w = words()
    if run["status"] in w.pending:
        st.info(f"**Waiting for the first epoch**: the run is {run['status']}.", icon=":material/hourglass_top:")
    elif (fraction := pass_fraction(run)) is not None:
        st.info(f"**Waiting for the first epoch**: {progress_line(run)}.", icon=":material/hourglass_top:")
        st.progress(fraction, text=f"{run['live']['split']} pass")
    elif run["status"] in w.active:
        st.info("**Waiting for the first epoch**: the worker is loading the data and building the model.",
                icon=":material/hourglass_top:")
    else:
        st.caption("This run recorded no epoch.")


def fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def curves(rs: RunSeries, options: dict[str, Any]) -> None:
    """A figure per split, side by side in columns: Streamlit stacks columns on a phone, where one figure's three
    panels would be a hundred pixels wide each. Each has its legend under its own curves."""
    splits = options["splits"] or list(words().splits)
    for split, column in zip(splits, st.columns(len(splits)), strict=True):
        fig = curves_figure(rs, options["names"], [split], options["components"], words(), options["x"],
                            options["smoothing"], options["log_y"])
        column.plotly_chart(fig, key=f"curves-{split}", config=PLOT_CONFIG)


def balance_panel(rs: RunSeries, split: str, chance: float | None = None) -> None:
    """The modality balance, and under it the skip schedule: one figure (see charts.balance_figure). `chance`:
    1 / classes, below which (within a margin) a modality has not plateaued but not started learning."""
    b = balance(rs, words(), split, chance)
    modalities, epochs, grid = skip_strip(rs)
    strip = (modalities, epochs, grid, skip_factors(rs)) if modalities else None
    st.subheader("Modality balance" + (" and skip schedule" if strip else ""))
    if b.lagging:
        behind = f"{b.gap:.3f} behind" if b.gap is not None else "behind"
        st.markdown(f"Lagging modality: **{b.lagging}** — {behind} **{b.leading}** "
                    f"({split} branch accuracy, epoch {b.epoch + 1})")
    if line := plateau_line(b, chance):
        st.caption(line)
    if strip:
        st.caption("Skip schedule: ■ updated in that epoch · □ skipped · hover for the skip factor in force")
    if b.rows:
        st.plotly_chart(balance_figure(b, strip), key="balance", config=PLOT_CONFIG)
    elif strip:
        st.plotly_chart(skip_figure(*strip), key="skip", config=PLOT_CONFIG)
    else:
        st.caption("No per-modality accuracy yet.")
    decisions = skip_decisions(rs)
    if decisions:
        st.markdown("**Automatic skip factors** (`skip: auto`): each decision, from the helpers' validation "
                    "accuracy slope per epoch")
        st.dataframe([{**d, "after epoch": d["after epoch"] + 1} for d in decisions], hide_index=True)


def selections_panel(detail: dict[str, Any]) -> None:
    """A method's other selected predictions (MLA's combinations), each with its own best epoch and test at it."""
    selections = (detail.get("summary") or {}).get("selections") or {}
    if not selections:
        return
    st.subheader("Selected like the fused prediction")
    rows = [{"prediction": name.removeprefix(words().combo_prefix), "best epoch": b["best_epoch"] + 1,
             "best val acc": b["best_val_acc"], "test acc at best": b["test_acc_at_best"]}
            for name, b in sorted(selections.items(), key=lambda kv: -kv[1]["best_val_acc"])]
    st.dataframe(rows, hide_index=True, column_config={
        "best val acc": st.column_config.NumberColumn(format="%.4f"),
        "test acc at best": st.column_config.NumberColumn(format="%.4f")})


def method_series_panel(rs: RunSeries, method_name: str, log_y: bool) -> None:
    """The run-level series its method declares (GET /methods), drawn as declared: a method's new series appear
    here with no edit of the dashboard. Every run-level series (the engine's too) on demand."""
    w = words()
    method = next((m for m in catalog(ui_settings().api_url)[0] if m["name"] == method_name), None)
    own = (method or {}).get("series") or []
    fig = run_series_figure(rs, own, w, log_y) if own else None
    if fig is not None:
        st.subheader(f"{method_name} series")
        st.caption(" · ".join(f"**{s['name']}**: {s['description']}" for s in own))
        st.plotly_chart(fig, key="method_series", config=PLOT_CONFIG)
    if urlstate.widget(st.toggle, "All run-level series", "run_series", False,
                       help="every series the run logged for the whole run or per modality (skip schedule, epoch "
                            "time, throughput, GPU, the method's own), as the API declares them"):
        every = run_series_figure(rs, w.series_of(method), w, log_y)
        if every is None:
            st.caption("No run-level series yet.")
        else:
            st.plotly_chart(every, key="run_series", config=PLOT_CONFIG)


def resources_panel(rs: RunSeries) -> None:
    fig = resource_figure(rs)
    if fig is not None:
        st.subheader("GPU")
        st.caption("The worker's GPU over each epoch (NVIDIA's management library): mean utilisation, peak memory.")
        st.plotly_chart(fig, key="gpu", config=PLOT_CONFIG)


def manage_panel(detail: dict[str, Any]) -> None:
    """Rename, tag, annotate, archive or delete the run (through the API, with its token)."""
    run_id = detail["id"]
    if detail.get("notes"):
        st.caption("Notes: " + plain_lines(detail["notes"]))
    with st.expander("Name, tags, notes" + (" · archived" if detail.get("archived") else ""),
                     icon=":material/edit_note:"):
        with st.form(f"manage-{run_id}", border=False):
            name = st.text_input("Name", detail["name"], max_chars=200)
            tags = st.text_input("Tags", ", ".join(detail["tags"]), placeholder="comma-separated")
            notes = st.text_area("Notes", detail.get("notes") or "", placeholder="what this run is for, what you saw")
            if st.form_submit_button("Save", icon=":material/save:"):
                api().update_run(run_id, name=name.strip(), notes=notes or None,
                                 tags=[t.strip() for t in tags.split(",") if t.strip()])
                st.session_state.flash = "Saved."
                st.rerun()
        bar = st.container(horizontal=True)
        archived = bool(detail.get("archived"))
        if bar.button("Unarchive" if archived else "Archive", icon=":material/archive:",
                      help="archived runs leave the Runs table (its Archived filter shows them); nothing is deleted"):
            api().update_run(run_id, archived=not archived)
            st.session_state.flash = "Unarchived." if archived else "Archived: the Runs table hides it by default."
            st.rerun()
        live = detail["status"] in words().live
        sure = bar.checkbox("Delete for good", help="the run, its points and its checkpoints", disabled=live)
        if bar.button("Delete", icon=":material/delete:", type="primary", disabled=not sure or live):
            api().delete(run_id)
            st.session_state.flash = f"Deleted run {plain(detail['name'])} ({run_id})."
            st.switch_page(PAGES["runs"])


def logs_panel(run_id: str, live: bool) -> None:
    """The worker's output for this run, tailing while it runs (only fetched while shown)."""
    if not urlstate.widget(st.toggle, "Worker output", "logs", False, help="the worker's log lines for this run"):
        return

    @st.fragment(run_every=ui_settings().refresh_s if live else None)
    def tail() -> None:
        with shown_errors():
            held = st.session_state.get("log_tail")
            if held is None or held["run"] != run_id:
                got = api().logs(run_id)
                held = {"run": run_id, "text": got["text"], "next": got["next_offset"]}
            elif live:
                got = api().logs(run_id, offset=held["next"])
                held = {"run": run_id, "text": (held["text"] + got["text"])[-LOG_CHARS:], "next": got["next_offset"]}
            st.session_state.log_tail = held
            if held["text"]:
                st.code(held["text"], language=None, height=360, wrap_lines=True)
            else:
                st.caption("No output yet.")

    tail()


LOG_CHARS = 200_000  # what the page keeps of a long log: its end


def signature(rs: RunSeries) -> tuple:
    """What a redraw of the charts depends on: new points, a new status or attempt. Nothing else redraws them."""
    return rs.run.get("status"), rs.run.get("attempt"), rs.next_since, rs.run.get("cancel_requested")


def config_panel(detail: dict[str, Any]) -> None:
    """The run's config, and where its values came from (GET /runs/{id}'s config_origin: the submission, the
    dataset's recipe, the dataset's files, the reference's defaults); an API that does not say shows the config
    alone."""
    config, origin = detail["config"], detail.get("config_origin") or None
    if caption := origin_caption(config, origin):
        st.caption(plain(caption))
    with st.expander("Config" + (" and where each value came from" if origin else ""), icon=":material/tune:"):
        st.dataframe(origin_rows(config, origin), hide_index=True)


def provenance_panel(detail: dict[str, Any]) -> None:
    """What the run can be traced to (GET /runs/{id}'s provenance): code, environment, device, data; the whole
    record (with the full resolved config) as a download."""
    prov = detail.get("provenance")
    if not prov:
        st.caption("No provenance recorded yet: a worker records the code, environment and data when it starts the "
                   "run (runs trained before this was recorded have none).")
        return
    with st.expander(plain(provenance_label(prov)), icon=":material/fingerprint:"):
        st.dataframe(provenance_rows(prov), hide_index=True, width="stretch")
        st.download_button("Provenance (JSON)", json.dumps(prov, indent=2), f"{detail['id']}-provenance.json",
                           "application/json", icon=":material/download:",
                           help="the whole record: code, environment, the data's fingerprint, the full resolved "
                                "config and the digests")


def title_and_labels(detail: dict[str, Any]) -> None:
    """The run's name as the heading; its method, dataset, seed, id, queue and device; its tags."""
    st.title(plain(detail["name"]))
    st.caption(f"{plain(run_label(detail))} · queue {detail['queue']} · device {plain(detail['device'] or '—')}"
               + (f" · {detail['queue_position']} ahead in the queue" if detail["queue_position"] else ""))
    if detail["tags"]:
        st.caption("Tags: " + " · ".join(f"**{plain(t)}**" for t in detail["tags"]))
    if detail.get("rerun_of"):
        expects = (detail.get("config") or {}).get("data_fingerprint")
        st.page_link(PAGES["run"], label=f"Re-run of run {detail['rerun_of']}"
                     + (f" · expects its data (digest {expects})" if expects else ""),
                     query_params={"run": detail["rerun_of"]}, icon=":material/replay:")
    if detail.get("waiting_for"):  # a queued run no live worker can hold: said, not waited on in silence
        st.warning(f"**No worker can take this run now**: {plain(detail['waiting_for'])}", icon=":material/block:")


urlstate.page("run")
steady_charts()  # a new epoch's charts replace the old ones without a blank frame
with shown_errors():
    run_id = st.query_params.get("run")
    if not run_id:
        st.title("Run")
        choose_run()
    if run_id:
        detail = api().run(run_id)
        title_and_labels(detail)
        if flash := st.session_state.pop("flash", None):
            st.success(flash, icon=":material/check_circle:")
        for warning in st.session_state.pop("flash_warnings", []):
            st.warning(plain(warning), icon=":material/warning:")
        if detail["error"]:
            st.error(f"**{detail['status']}:** {plain(detail['error'])}", icon=":material/error:")
        controls(detail)
        manage_panel(detail)
        selections_panel(detail)
        rs = refresh(api(), series_cache(), run_id, words())
        drawn = signature(rs)
        live = detail["status"] in words().active

        @st.fragment(run_every=ui_settings().refresh_s if live else None)
        def status() -> None:
            """The only thing that refreshes by itself: the header (one incremental call). The charts below are
            drawn again only when this sees new points or a new status, by rerunning the page."""
            with shown_errors():
                # The page's own fetch serves the first pass; each refresh after it is one incremental call.
                current = st.session_state.pop("prefetched", None) or refresh(api(), series_cache(), run_id, words())
                if signature(current) != drawn:
                    st.rerun(scope="app")
                run = {**current.run, "config": detail["config"]}
                header(run, inside_epoch=bool(current.points))
                if not current.points:
                    waiting(run)

        st.session_state.prefetched = rs
        status()
        if rs.points:
            options = chart_options(rs)
            curves(rs, options)
            balance_panel(rs, options["balance_split"], chance_level(detail["config"],
                                                                     catalog(ui_settings().api_url)[1]))
            method_series_panel(rs, detail["method"], options["log_y"])
            resources_panel(rs)
            st.download_button("All points (CSV)", lambda: to_csv(rs), f"{run_id}-metrics.csv", "text/csv",
                               icon=":material/table_view:", key="csv")  # built when pressed, not per redraw
        config_panel(detail)
        provenance_panel(detail)
        logs_panel(run_id, live)
