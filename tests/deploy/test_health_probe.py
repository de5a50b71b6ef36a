"""launch.health, the containers' health check: a URL that answers 2xx, a file touched recently."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from launch import health


def test_a_fresh_file_is_healthy_and_a_stale_or_missing_one_says_why(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    alive = tmp_path / "alive"
    assert health.main(["--file", str(alive)]) == 1
    assert "No such file" in capsys.readouterr().out
    alive.touch()
    assert health.main(["--file", str(alive), "--max-age", "60"]) == 0
    os.utime(alive, (time.time() - 120, time.time() - 120))
    assert health.main(["--file", str(alive), "--max-age", "60"]) == 1
    assert "last touched 120 s ago (more than 60 s)" in capsys.readouterr().out


def test_a_url_is_healthy_when_it_answers_2xx(capsys: pytest.CaptureFixture) -> None:
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 503)
            self.end_headers()

        def log_message(self, *_) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert health.main([f"{base}/health"]) == 0
        assert health.main([f"{base}/other"]) == 1
        assert "503" in capsys.readouterr().out
    finally:
        server.shutdown()
    assert health.main([f"{base}/health"]) == 1, "nothing listens any more"


def test_it_wants_a_url_or_a_file() -> None:
    with pytest.raises(SystemExit):
        health.main([])
