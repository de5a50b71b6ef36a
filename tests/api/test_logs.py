"""GET /runs/{id}/logs: a run's log file (logs/output.log in its folder under AMST_ARTIFACTS), its tail or a page
from an offset, as a dashboard following a live run reads it."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from amst_core.runlog import log_path
from api.settings import ApiSettings
from tests.kit.api import submit

LINES = [f"2026-12-02 15:04:{i:02d} INFO amst.engine: epoch {i + 1}/20 | train acc 0.5 loss 1.2\n" for i in range(20)]


def write_log(settings: ApiSettings, run_id: str, content: bytes) -> Path:
    path = log_path(settings.run_dir(run_id))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_a_run_with_no_log_yet_answers_empty(client: TestClient) -> None:
    run_id = submit(client)["id"]
    r = client.get(f"/runs/{run_id}/logs")
    assert r.status_code == 200, r.text
    assert r.json() == {"text": "", "offset": 0, "next_offset": 0, "size": 0, "truncated": False}
    assert client.get(f"/runs/{run_id}/logs", params={"offset": 0}).json()["size"] == 0


def test_a_small_log_comes_whole(client: TestClient, settings: ApiSettings) -> None:
    run_id = submit(client)["id"]
    content = "".join(LINES).encode()
    write_log(settings, run_id, content)
    body = client.get(f"/runs/{run_id}/logs").json()
    assert body == {"text": content.decode(), "offset": 0, "next_offset": len(content), "size": len(content),
                    "truncated": False}


def test_the_tail_starts_at_a_line_start(client: TestClient, settings: ApiSettings) -> None:
    run_id = submit(client)["id"]
    content = "".join(LINES).encode()
    write_log(settings, run_id, content)
    tail_bytes = len(LINES[-1]) * 2 + 10  # two lines and part of a third
    body = client.get(f"/runs/{run_id}/logs", params={"tail_bytes": tail_bytes}).json()
    assert body["text"] == LINES[-2] + LINES[-1]
    assert body["truncated"] is True
    assert body["next_offset"] == body["size"] == len(content)
    assert body["offset"] == len(content) - len(LINES[-1]) * 2
    exact = client.get(f"/runs/{run_id}/logs", params={"tail_bytes": len(LINES[-1])}).json()
    assert exact["text"] == LINES[-1]  # the tail begins right at a line start: nothing dropped


def test_following_a_growing_log_with_next_offset(client: TestClient, settings: ApiSettings) -> None:
    run_id = submit(client)["id"]
    path = write_log(settings, run_id, "".join(LINES[:3]).encode())
    first = client.get(f"/runs/{run_id}/logs", params={"offset": 0}).json()
    assert first["text"] == "".join(LINES[:3]) and first["truncated"] is False
    with path.open("ab") as f:
        f.write("".join(LINES[3:5]).encode())
    second = client.get(f"/runs/{run_id}/logs", params={"offset": first["next_offset"]}).json()
    assert second["text"] == "".join(LINES[3:5])
    assert second["offset"] == first["next_offset"] and second["truncated"] is True
    idle = client.get(f"/runs/{run_id}/logs", params={"offset": second["next_offset"]}).json()
    assert idle["text"] == "" and idle["next_offset"] == idle["size"] == second["next_offset"]


def test_a_page_is_at_most_1_mb_and_ends_at_a_line_break(client: TestClient, settings: ApiSettings) -> None:
    run_id = submit(client)["id"]
    line = ("é" * 99 + "\n").encode()  # 199 bytes, two-byte characters: a blind cut would split one
    content = line * 12_000  # 2.4 MB
    write_log(settings, run_id, content)
    offset, text = 0, ""
    while True:
        body = client.get(f"/runs/{run_id}/logs", params={"offset": offset}).json()
        assert body["next_offset"] - body["offset"] <= 1_000_000
        if not body["text"]:
            break
        assert body["text"].endswith("\n") and "\ufffd" not in body["text"]
        text += body["text"]
        offset = body["next_offset"]
    assert text.encode() == content


def test_bad_bytes_are_replaced_and_an_offset_past_the_end_answers_nothing(client: TestClient,
                                                                          settings: ApiSettings) -> None:
    run_id = submit(client)["id"]
    write_log(settings, run_id, b"ok \xff\xfe\n")
    assert client.get(f"/runs/{run_id}/logs").json()["text"] == "ok \ufffd\ufffd\n"
    past = client.get(f"/runs/{run_id}/logs", params={"offset": 10**9}).json()
    assert past == {"text": "", "offset": 6, "next_offset": 6, "size": 6, "truncated": True}


def test_unknown_run_is_404(client: TestClient) -> None:
    for run_id in ("0123456789abcdef", "not-a-run"):
        r = client.get(f"/runs/{run_id}/logs")
        assert r.status_code == 404
        assert r.json()["error"]["message"] == f"run {run_id} not found"


@pytest.mark.parametrize("params", [{"offset": -1}, {"tail_bytes": 0}, {"tail_bytes": 1_000_001},
                                    {"offset": "x"}, {"tail_bytes": "lots"}])
def test_out_of_bounds_parameters_are_422(client: TestClient, params: dict) -> None:
    run_id = submit(client)["id"]
    r = client.get(f"/runs/{run_id}/logs", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] in ("offset", "tail_bytes")
