"""Page scripts of the dashboard (st.Page files, run by Streamlit, not imported)."""
