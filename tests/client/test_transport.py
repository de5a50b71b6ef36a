"""amst_client.Client over a mock transport (no network): every failure of the API becomes ApiError or
ApiUnavailable, and each route sends what the API expects (moved from tests/ui/test_client.py with the dashboard's
client)."""

from __future__ import annotations

import json

import httpx
import pytest

from amst_client import ApiError, ApiUnavailable, Client
from amst_client.errors import error_of

BASE = "http://api.test:8000"


def client_of(handler, token: str = "", timeout_s: float = 5.0, base: str = BASE) -> Client:
    return Client(base, token=token, timeout_s=timeout_s, transport=httpx.MockTransport(handler))


def test_json_error_body_becomes_api_error_with_its_field():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(422, json={"error": {"status": 422, "message": "epochs: must be at least 1",
                                                   "field": "epochs", "details": [{"loc": ["epochs"]}]}})

    with pytest.raises(ApiError) as caught:
        client_of(handler).submit({"epochs": 0})
    err = caught.value
    assert err.status == 422
    assert err.message == "epochs: must be at least 1"
    assert str(err) == "epochs: must be at least 1"
    assert err.field == "epochs"
    assert err.details == [{"loc": ["epochs"]}]


def test_json_error_body_without_field():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": {"status": 404, "message": "no run abc"}})

    with pytest.raises(ApiError) as caught:
        client_of(handler).run("abc")
    assert (caught.value.status, caught.value.message, caught.value.field, caught.value.details) == \
        (404, "no run abc", None, [])


def test_non_json_502_names_the_status_and_path():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>Bad Gateway</html>\n")

    with pytest.raises(ApiError) as caught:
        client_of(handler).runs()
    assert caught.value.status == 502
    assert caught.value.field is None
    assert caught.value.message == "HTTP 502 from /runs: <html>Bad Gateway</html>"


def test_empty_error_body_uses_the_reason_phrase():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    with pytest.raises(ApiError) as caught:
        client_of(handler).workers()
    assert caught.value.message == "HTTP 503 from /workers: Service Unavailable"


def test_health_503_is_an_answer_that_says_what_is_down():
    down = {"status": "degraded", "database": {"reachable": True}, "broker": {"reachable": False}}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json=down)

    assert client_of(handler).health() == down


def test_json_without_error_key_is_described_plainly():
    response = httpx.Response(500, json={"detail": "boom"}, request=httpx.Request("GET", f"{BASE}/workers"))
    err = error_of(response)
    assert err.status == 500
    assert err.message == 'HTTP 500 from /workers: {"detail":"boom"}'
    assert err.field is None


def test_connection_refused_is_unavailable_naming_the_url_and_amst_up():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    client = client_of(handler, base=BASE + "/")
    with pytest.raises(ApiUnavailable) as caught:
        client.health()
    message = str(caught.value)
    assert BASE in message
    assert f"{BASE}/" not in message  # the trailing slash is dropped
    assert "`amst up`" in message
    assert "ConnectError" in message
    assert "AMST_API_URL" in message


def test_timeout_is_unavailable_naming_the_seconds():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(ApiUnavailable) as caught:
        client_of(handler, timeout_s=2.5).metrics("r1")
    message = str(caught.value)
    assert "within 2.5 s" in message
    assert BASE in message


def test_success_that_is_not_json_is_unavailable():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>some other service</html>")

    with pytest.raises(ApiUnavailable) as caught:
        client_of(handler).methods()
    assert "/methods" in str(caught.value)
    assert "not JSON" in str(caught.value)


@pytest.mark.parametrize(("token", "expected"), [("s3cret", "Bearer s3cret"), ("", None)])
def test_bearer_token_header(token, expected):
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        return httpx.Response(200, json=[])

    client = client_of(handler, token=token)
    client.workers()
    client.datasets()
    assert seen == [expected, expected]


def paged_handler(total: int, requests: list[httpx.Request]):
    """GET /runs over `total` runs named r0, r1, ...: pages of at most `limit`, cursor = next offset."""
    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        assert request.url.path == "/runs"
        start = int(request.url.params.get("cursor", "0"))
        end = min(total, start + int(request.url.params["limit"]))
        cursor = str(end) if end < total else None
        return httpx.Response(200, json={"items": [{"id": f"r{i}"} for i in range(start, end)],
                                         "next_cursor": cursor})
    return handler


def test_runs_follows_the_cursor_to_the_last_page():
    requests: list[httpx.Request] = []
    client = client_of(paged_handler(450, requests))
    items = client.runs(limit=1000)
    assert [i["id"] for i in items] == [f"r{i}" for i in range(450)]
    assert [(r.url.params["limit"], r.url.params.get("cursor")) for r in requests] == \
        [("200", None), ("200", "200"), ("200", "400")]
    assert client.calls == 3


def test_runs_stops_at_the_limit():
    requests: list[httpx.Request] = []
    client = client_of(paged_handler(1000, requests))
    items = client.runs(limit=450)
    assert len(items) == 450
    assert items[-1] == {"id": "r449"}
    assert [(r.url.params["limit"], r.url.params.get("cursor")) for r in requests] == \
        [("200", None), ("200", "200"), ("50", "400")]


def test_runs_default_limit_is_one_page_of_200():
    requests: list[httpx.Request] = []
    items = client_of(paged_handler(1000, requests)).runs()
    assert len(items) == 200
    assert len(requests) == 1


def test_runs_passes_only_non_empty_filters_lists_as_repeated_params():
    requests: list[httpx.Request] = []
    client_of(paged_handler(3, requests)).runs(limit=10, status=["running", "queued"], method=None, dataset=[],
                                               tag=["ablation"])
    params = requests[0].url.params
    assert params.get_list("status") == ["running", "queued"]
    assert params.get_list("tag") == ["ablation"]
    assert "method" not in params
    assert "dataset" not in params
    assert "cursor" not in params
    assert sorted(params.keys()) == ["limit", "status", "tag"]


def test_runs_keeps_filters_on_every_page():
    requests: list[httpx.Request] = []
    client_of(paged_handler(250, requests)).runs(limit=300, status=["succeeded"])
    assert [r.url.params.get_list("status") for r in requests] == [["succeeded"], ["succeeded"]]
    assert requests[1].url.params["cursor"] == "200"


def test_calls_counts_every_request_failed_ones_too():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(200, json={"status": "ok"})
        if request.url.path.endswith("/cancel"):
            return httpx.Response(409, json={"error": {"status": 409, "message": "already finished"}})
        raise httpx.ConnectError("refused", request=request)

    client = client_of(handler)
    assert client.calls == 0
    assert client.health() == {"status": "ok"}
    assert client.calls == 1
    with pytest.raises(ApiError):
        client.cancel("r1")
    with pytest.raises(ApiUnavailable):
        client.retry("r1")
    assert client.calls == 3


def test_routes_send_what_the_api_expects():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, dict(request.url.params),
                     json.loads(request.content) if request.content else None))
        if request.url.path.endswith("/config"):
            return httpx.Response(200, content=b"method: naive\n")
        if request.url.path.endswith("/checkpoint"):
            return httpx.Response(200, content=b"\x00\x01")
        return httpx.Response(200, json={"ok": True})

    client = client_of(handler)
    client.metrics("r1", since_epoch=7)
    client.metrics("r1")
    client.submit({"method": "naive"})
    assert client.config_yaml("r1") == b"method: naive\n"
    assert client.checkpoint("r1", "last") == b"\x00\x01"
    assert seen == [
        ("GET", "/runs/r1/metrics", {"since_epoch": "7"}, None),
        ("GET", "/runs/r1/metrics", {"since_epoch": "-1"}, None),
        ("POST", "/runs", {}, {"method": "naive"}),
        ("GET", "/runs/r1/config", {"format": "yaml"}, None),
        ("GET", "/runs/r1/checkpoint", {"which": "last"}, None),
    ]


def test_logs_asks_for_the_tail_or_a_page_from_an_offset():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, dict(request.url.params)))
        return httpx.Response(200, json={"text": "a\n", "offset": 0, "next_offset": 2, "size": 2, "truncated": False})

    client = client_of(handler)
    assert client.logs("r1")["next_offset"] == 2
    client.logs("r1", tail_bytes=1000)
    client.logs("r1", offset=2)
    client.logs("r1", offset=0)
    assert seen == [
        ("/runs/r1/logs", {"tail_bytes": "65536"}),
        ("/runs/r1/logs", {"tail_bytes": "1000"}),
        ("/runs/r1/logs", {"offset": "2"}),
        ("/runs/r1/logs", {"offset": "0"}),
    ]


def test_logs_of_an_unknown_run_is_an_api_error():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": {"status": 404, "message": "run r9 not found", "field": "run_id"}})

    with pytest.raises(ApiError) as err:
        client_of(handler).logs("r9", offset=5)
    assert (err.value.status, err.value.field) == (404, "run_id")


def test_runs_passes_search_archived_and_with_config_on_every_page():
    requests: list[httpx.Request] = []
    client_of(paged_handler(250, requests)).runs(limit=300, q='name="my run" optim.lr=0.01', archived="all",
                                                 with_config=True, status=["succeeded"])
    for r in requests:
        assert r.url.params["q"] == 'name="my run" optim.lr=0.01'
        assert (r.url.params["archived"], r.url.params["with_config"]) == ("all", "true")
        assert r.url.params.get_list("status") == ["succeeded"]
    assert requests[1].url.params["cursor"] == "200"


def test_runs_leaves_out_search_archived_and_with_config_by_default():
    requests: list[httpx.Request] = []
    client = client_of(paged_handler(3, requests))
    client.runs(limit=10)
    client.runs(10, q="", archived=None, with_config=False)
    assert [sorted(r.url.params.keys()) for r in requests] == [["limit"], ["limit"]]


def test_update_run_patches_json_with_the_token_and_returns_the_run():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, request.headers.get("Authorization"),
                     request.headers.get("Content-Type"), json.loads(request.content)))
        return httpx.Response(200, json={"id": "r1", "name": "renamed", "notes": None, "archived": True})

    client = client_of(handler, token="s3cret")
    assert client.update_run("r1", name="renamed", notes=None, archived=True)["name"] == "renamed"
    client.update_run("r1", tags=["a", "b"])
    sent = ("PATCH", "/runs/r1", "Bearer s3cret", "application/json")
    assert seen == [(*sent, {"name": "renamed", "notes": None, "archived": True}), (*sent, {"tags": ["a", "b"]})]


def test_update_run_refused_is_an_api_error_naming_the_field():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(422, json={"error": {"status": 422, "field": "tags.0",
                                                   "message": "tags.0: String should have at least 1 character"}})

    with pytest.raises(ApiError) as err:
        client_of(handler).update_run("r1", tags=[""])
    assert (err.value.status, err.value.field) == (422, "tags.0")
    assert err.value.message.startswith("tags.0: ")


def test_delete_sends_the_token_and_a_refusal_names_the_run():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, request.headers.get("Authorization")))
        if request.url.path == "/runs/live":
            return httpx.Response(409, json={"error": {"status": 409, "field": "run_id",
                                                       "message": "run live is running; cancel it first"}})
        return httpx.Response(204)

    client = client_of(handler, token="s3cret")
    client.delete("r1")
    with pytest.raises(ApiError) as err:
        client.delete("live")
    assert seen == [("DELETE", "/runs/r1", "Bearer s3cret"), ("DELETE", "/runs/live", "Bearer s3cret")]
    assert (err.value.status, err.value.field) == (409, "run_id")


def test_wait_on_a_server_without_the_vocabulary_ends_on_the_runs_end_time():
    polls = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/vocabulary":
            return httpx.Response(404, json={"error": {"status": 404, "message": "not found"}})
        polls.append(request.url.path)
        finished = "2026-01-01T00:00:00Z" if len(polls) == 3 else None
        return httpx.Response(200, json={"id": "r1", "status": "whatever", "epochs_done": len(polls),
                                         "finished_at": finished})

    run = client_of(handler).wait("r1", every_s=0)
    assert run["finished_at"] and polls == ["/runs/r1"] * 3
