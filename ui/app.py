"""AMST Studio dashboard: `amst serve ui` (or `streamlit run ui/app.py`). Pages talk only to the API."""

from __future__ import annotations

import streamlit as st

from ui.common import PAGES, api, shown_errors
from ui.settings import ui_settings

st.set_page_config(page_title="AMST Studio", page_icon=":material/equalizer:", layout="wide")

pages = [
    st.Page(PAGES["runs"], title="Runs", icon=":material/table_rows:", url_path="runs", default=True),
    st.Page(PAGES["new"], title="New run", icon=":material/add_circle:", url_path="new"),
    st.Page(PAGES["run"], title="Run", icon=":material/monitoring:", url_path="run"),
    st.Page(PAGES["compare"], title="Compare", icon=":material/compare_arrows:", url_path="compare"),
    st.Page(PAGES["sweeps"], title="Sweeps", icon=":material/grid_view:", url_path="sweeps"),
]
page = st.navigation(pages)

with st.sidebar:
    st.caption(f"API: {ui_settings().api_url}")
    with shown_errors():
        health = api().health()
        st.caption(f"database {health['database']['backend']} · broker {health['broker']['backend']} · "
                   f"v{health['version']}")
        if not health["database"]["reachable"]:
            st.error("The API cannot reach its database: runs can be neither read nor submitted.")
        elif not health["broker"]["reachable"]:
            st.warning("The API cannot reach the broker: new runs cannot be queued until it is back.")

page.run()
