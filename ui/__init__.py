"""The AMST Studio dashboard (Streamlit). It talks only to the REST API, through `amst_client`."""
