"""Workers: every worker that registered with the API's run store, one row each: where it runs (host, Slurm job,
Kubernetes pod), its GPUs, its queues, the run it trains (a link to its page), its heartbeat's age and whether it
is alive, lost or stopped. Asked again every few seconds, so heartbeats age and runs change in place."""

from __future__ import annotations

from typing import Any

import streamlit as st

from ui import urlstate, workerlist
from ui.common import PAGES, api, duration, plain, shown_errors
from ui.settings import ui_settings
from ui.style import worker_badge

COLUMNS = {"state": 1.1, "worker": 2.2, "where": 2.8, "GPUs": 2.8, "queues": 1.0, "training": 2.4, "heartbeat": 1.2}
START_HINT = ("Start one with `amst serve worker` on a machine that reaches this API's database and broker "
              "(one per GPU: `amst serve worker --gpu 0`, `--gpu 1`, ...), or everything on this machine with "
              "`amst up`. Doc/deploy.md says how to run workers on other machines.")


def lines(texts: list[str]) -> str:
    """Lines of text as Markdown, each inert (hosts, job and pod names come from the environment)."""
    return "  \n".join(plain(t) for t in texts)


def header() -> None:
    for column, title in zip(st.columns(list(COLUMNS.values())), COLUMNS, strict=True):
        column.caption(f"**{title}**")


def row(worker: dict[str, Any]) -> None:
    state, worker_id, where, gpus, queues, training, heartbeat = st.columns(list(COLUMNS.values()))
    with state:
        st.badge(worker["state"], color=worker_badge(worker["state"]))
    worker_id.markdown(lines([worker["id"]]))
    where.markdown(lines(workerlist.where(worker)))
    gpus.markdown(lines(workerlist.gpus(worker["gpus"]).splitlines()))
    queues.markdown(lines([", ".join(worker["queues"])]))
    label = workerlist.run_label(worker)
    if label is None:
        training.caption("idle" if worker["state"] == "alive" else "nothing")
    elif worker["current_run_name"] is None:
        training.markdown(lines([label]))  # deleted since: no page to open
    else:
        training.page_link(PAGES["run"], label=label, query_params={"run": worker["current_run_id"]},
                           icon=":material/monitoring:")
    heartbeat.markdown(f"{duration(worker['heartbeat_age_s'])} ago")


@st.fragment(run_every=ui_settings().refresh_s)
def worker_list(with_stopped: bool) -> None:
    """Drawn afresh every AMST_UI_REFRESH_S seconds: heartbeat ages move on their own."""
    with shown_errors():
        workers = api().workers()
        if not workers:
            st.info(f"No worker has registered yet. {START_HINT}", icon=":material/dns:")
            return
        listed = workerlist.shown(workers, with_stopped)
        st.caption(workerlist.state_counts(workers) + f" — asked every {ui_settings().refresh_s:g} s")
        if not listed:
            st.info(f"No worker is alive or lost: all {len(workers)} stopped (turn on **Show stopped workers** to "
                    f"list them). {START_HINT}", icon=":material/dns:")
            return
        header()
        for worker in listed:
            row(worker)


st.title("Workers")
urlstate.page("workers")
with_stopped = urlstate.widget(st.toggle, "Show stopped workers", "stopped", False,
                               help="workers that said they were stopping; each restart under a new process id "
                                    "registers a new worker, so they pile up")
worker_list(with_stopped)
