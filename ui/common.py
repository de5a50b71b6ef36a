"""What every page shares: the API client of this browser session, error display, run labels, caches."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import streamlit as st

from amst_client import ApiError, ApiUnavailable, Client
from ui.series import RunSeries
from ui.settings import ui_settings
from ui.words import Words

PAGES = {"runs": "views/runs.py", "new": "views/new_run.py", "run": "views/run.py", "compare": "views/compare.py",
         "sweeps": "views/sweeps.py", "workers": "views/workers.py"}


def api() -> Client:
    """One client per browser session (so its call counter is this session's)."""
    if "api" not in st.session_state:
        s = ui_settings()
        st.session_state.api = Client(s.api_url, s.api_token or None, timeout_s=s.timeout_s)
    return st.session_state.api


def words() -> Words:
    """The product's words (GET /vocabulary), asked once per browser session: they change only with a release."""
    if "words" not in st.session_state:
        st.session_state.words = Words.of(api().vocabulary())
    return st.session_state.words


def baseline_pairs(run_ids: list[str], baseline: str) -> list[tuple[str, str]]:
    """(AMST run, its baseline run) ids among these runs: the library's one pairing rule, served by GET /pairs."""
    return [(p["run_id"], p["baseline_id"])
            for p in api().json("GET", "/pairs", params={"run": run_ids, "baseline": baseline})]


def differences_warning(lines: list[str]) -> None:
    """How the runs shown differ in code, environment or data (the API's one rule: GET /differences, a sweep's
    `differences`), above what compares them: a gap between them may come from there."""
    if lines:
        st.warning("**These runs did not all run the same code, environment or data:**  \n"
                   + "  \n".join(plain(line) for line in lines), icon=":material/difference:")


def series_cache() -> dict[str, RunSeries]:
    return st.session_state.setdefault("series_cache", {})


@contextmanager
def shown_errors() -> Iterator[None]:
    """The API being down, slow or refusing becomes a message on the page, never a traceback."""
    try:
        yield
    except ApiUnavailable as err:
        st.error(f"**The API is not available.** {err}", icon=":material/cloud_off:")
    except ApiError as err:
        where = f" (`{err.field}`)" if err.field else ""
        st.error(f"**The API refused this request{where}:** {err.message}", icon=":material/block:")


@st.cache_data(ttl=60, show_spinner=False)
def catalog(base_url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Methods and datasets change only with a new release (or a dataset being prepared): cached a minute."""
    client = api()
    return client.methods(), client.datasets()


@st.cache_data(ttl=10, show_spinner=False)
def health(base_url: str) -> dict[str, Any]:
    """The API's health for the sidebar: asked at most every 10 s, not on every redraw of every page."""
    return api().health()


def run_label(run: dict[str, Any]) -> str:
    return f"{run['name']} · {run['method']} · {run['dataset']} · seed {run['seed']} ({run['id'][:8]})"


def short_label(run: dict[str, Any]) -> str:
    """What fits a phone's table column or a legend: the name and the id's start."""
    return f"{run['name']} ({run['id'][:6]})"


MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def plain(text: Any) -> str:
    """User text (a run's name, tags, notes) made inert inside Markdown: links, images, emphasis, LaTeX and
    Streamlit's colour and icon directives show as the characters typed."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


def plain_lines(text: Any) -> str:
    """Like `plain`, keeping the text's line breaks (a note written over several lines reads as written)."""
    return "  \n".join(plain(line) for line in str(text).splitlines())


def age(timestamp: str | None, now: datetime | None = None) -> str:
    """'3 min ago' from an ISO time of the API (UTC)."""
    if not timestamp:
        return ""
    then = datetime.fromisoformat(timestamp)
    then = then if then.tzinfo else then.replace(tzinfo=UTC)
    return duration((now or datetime.now(UTC)) - then) + " ago"


def duration(delta: Any) -> str:
    seconds = max(0.0, delta.total_seconds() if hasattr(delta, "total_seconds") else float(delta))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"
