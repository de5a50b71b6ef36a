"""GET /methods serves the run-level series each method declares, so the dashboard can draw them."""

from __future__ import annotations

from fastapi.testclient import TestClient

from amst_core.catalog import METHODS


def test_methods_serve_their_declared_series(client: TestClient) -> None:
    served = {m["name"]: m["series"] for m in client.get("/methods").json()}
    assert {name: [s["name"] for s in series] for name, series in served.items()} == \
        {name: [s.name for s in m.series] for name, m in METHODS.items()}
    ogm = {s["name"]: s for s in served["ogm_ge"]}
    assert set(ogm) == {"ogm_coeff", "ogm_ratio"}
    assert ogm["ogm_coeff"]["per_modality"] and ogm["ogm_coeff"]["kind"] == "bounded"
