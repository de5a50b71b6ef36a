"""Bearer token: mutating routes need it when AMST_API_TOKEN is set; reads never do."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.kit.api import TOKEN, config, counts


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_mutating_routes_need_the_token(locked: TestClient, db_url: str) -> None:
    before = counts(db_url)
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"}):
        r = locked.post("/runs", json=config(), headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", r.text
        assert r.json()["error"]["field"] == "Authorization" and "Bearer" in r.json()["error"]["message"]
    r = locked.post("/runs", json=config(), headers=bearer("wrong"))
    assert r.status_code == 403 and r.json()["error"]["message"] == "the bearer token is not valid for this server"
    latin1 = {"Authorization": "Bearer tökén".encode("latin-1")}  # non-ASCII must not break compare_digest
    assert locked.post("/runs", json=config(), headers=latin1).status_code == 403
    # Auth comes before validation: an anonymous caller learns nothing about the body or the run ids.
    assert locked.post("/runs", content=b"{garbage", headers={}).status_code == 401
    for method, path in (("POST", "/runs/nope/cancel"), ("POST", "/runs/nope/retry"), ("DELETE", "/runs/nope")):
        assert locked.request(method, path).status_code == 401
        assert locked.request(method, path, headers=bearer("wrong")).status_code == 403
    assert counts(db_url) == before


def test_right_token_works_and_reads_stay_open(locked: TestClient) -> None:
    r = locked.post("/runs", json=config(), headers=bearer(TOKEN))
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    for path in ("/runs", f"/runs/{run_id}", f"/runs/{run_id}/metrics", "/methods", "/datasets", "/workers",
                 "/health"):
        assert locked.get(path).status_code == 200, path
    assert locked.post(f"/runs/{run_id}/cancel", headers=bearer(TOKEN)).status_code == 200
    assert locked.delete(f"/runs/{run_id}", headers=bearer(TOKEN)).status_code == 204


def test_no_token_configured_means_open(client: TestClient) -> None:
    assert client.post("/runs", json=config()).status_code == 201
