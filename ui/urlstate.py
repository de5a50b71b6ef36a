"""View state in the URL: every option a page offers starts from its query parameter (on a browser session's
first visit) and is written back when it changes, so a copied link reproduces the view in a fresh browser.

A widget bound here is keyed (`state_key`) so Streamlit keeps its value across reruns; the URL holds only what
differs from the default, so plain links stay short.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st


def decode(raw: str, default: Any, options: Sequence[Any] | None) -> Any:
    """A query parameter's text as the widget's value type (the default's); None where it does not parse or is
    not one of `options`, so a hand-edited link falls back to the default instead of failing."""
    try:
        if isinstance(default, bool):
            value: Any = raw.lower() in ("1", "true", "yes", "on")
        elif isinstance(default, int):
            value = int(raw)
        elif isinstance(default, float):
            value = float(raw)
        elif isinstance(default, list | tuple):
            value = [v for v in raw.split(",") if v]
            return [v for v in value if options is None or v in options]
        else:
            value = raw
    except ValueError:
        return None
    return value if options is None or value in options else None


def encode(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def state_key(name: str) -> str:
    return f"url:{st.session_state.get('url_page', '')}:{name}"


def bound(name: str, default: Any, options: Sequence[Any] | None = None,
          clamp: Callable[[Any], Any] | None = None) -> str:
    """The session-state key of the widget whose value lives in the URL parameter `name`: on first use it is
    seeded from the URL (else `default`); a value that is no longer an option is dropped (a run without the
    chosen component)."""
    key = state_key(name)
    if key not in st.session_state:
        raw = st.query_params.get(name)
        value = decode(raw, default, options) if raw is not None else None
        st.session_state[key] = default if value is None else value
    value = st.session_state[key]
    if options is not None:
        if isinstance(default, list):
            st.session_state[key] = [v for v in value if v in options]
        elif value not in options:
            st.session_state[key] = default
    if clamp is not None:
        st.session_state[key] = clamp(st.session_state[key])
    return key


def chosen(name: str, default: Any) -> Any:
    """The value the widget bound to `name` holds (its state, else the URL's, else `default`) before its options
    are known, so that a page can keep a past choice among them (the Runs page's columns through a search)."""
    key = state_key(name)
    if key in st.session_state:
        return st.session_state[key]
    raw = st.query_params.get(name)
    value = decode(raw, default, None) if raw is not None else None
    return default if value is None else value


def remember(name: str, value: Any, default: Any) -> None:
    """Write a value into the URL, or take it out when it is the default."""
    if value == default or value in (None, [], ""):
        st.query_params.pop(name, None)
    elif st.query_params.get(name) != encode(value):
        st.query_params[name] = encode(value)


def widget(make: Callable[..., Any], label: str, name: str, default: Any, options: Sequence[Any] | None = None,
           clamp: Callable[[Any], Any] | None = None, **kwargs: Any) -> Any:
    """A widget (st.selectbox, st.multiselect, st.radio, st.slider, st.toggle, st.text_input, or a column's) bound
    to the URL parameter `name`."""
    key = bound(name, default, options, clamp)
    args = (label, options) if options is not None else (label,)
    value = make(*args, key=key, **kwargs)
    remember(name, value, default)
    return value


def page(name: str) -> None:
    """Call first on each page: its widgets' state is its own (Runs' status filter is not Compare's)."""
    st.session_state.url_page = name
