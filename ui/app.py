"""AMST Studio dashboard: `amst serve ui` (or `streamlit run ui/app.py`). Pages talk only to the API."""

from __future__ import annotations

import streamlit as st

from ui.common import PAGES, health, shown_errors
from ui.settings import ui_settings

st.set_page_config(page_title="AMST Studio", page_icon=":material/equalizer:", layout="wide")


def home() -> None:
    """`/` opens the Runs page at its own address, `/runs`, with the link's parameters: every page has one URL."""
    st.switch_page(PAGES["runs"], query_params=st.query_params.to_dict())


pages = [
    st.Page(home, title="Home", url_path="home", default=True, visibility="hidden"),
    st.Page(PAGES["runs"], title="Runs", icon=":material/table_rows:", url_path="runs"),
    st.Page(PAGES["new"], title="New run", icon=":material/add_circle:", url_path="new"),
    st.Page(PAGES["run"], title="Run", icon=":material/monitoring:", url_path="run"),
    st.Page(PAGES["compare"], title="Compare", icon=":material/compare_arrows:", url_path="compare"),
    st.Page(PAGES["sweeps"], title="Sweeps", icon=":material/grid_view:", url_path="sweeps"),
    st.Page(PAGES["workers"], title="Workers", icon=":material/dns:", url_path="workers"),
]
page = st.navigation(pages)

with st.sidebar:
    st.caption(f"API: {ui_settings().api_url}")
    with shown_errors():
        state = health(ui_settings().api_url)
        st.caption(f"database {state['database']['backend']} · broker {state['broker']['backend']} · "
                   f"v{state['version']}")
        if not state["database"]["reachable"]:
            st.error("The API cannot reach its database: runs can be neither read nor submitted.")
        elif not state["broker"]["reachable"]:
            st.warning("The API cannot reach the broker: new runs cannot be queued until it is back.")

page.run()
