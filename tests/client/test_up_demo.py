"""`amst up --demo`'s watcher (launch.up.DemoRun) through amst_client against the in-process API: it waits for a
healthy API, submits once with an idempotency key, and prints the run's progress (the whole `amst up` is
tests/service/test_amst_up.py)."""

from __future__ import annotations

import httpx
import pytest

from launch.up import DemoRun
from tests.client.conftest import URL
from tests.kit.api import FakeWorker, config


def test_the_demo_is_submitted_once_the_api_answers_and_its_epochs_are_printed(transport, settings, capsys) -> None:
    down = DemoRun(URL, config(), every_s=0, transport=httpx.MockTransport(
        lambda request: httpx.Response(503, json={"status": "unavailable"})))
    down.poll()
    assert down.run_id is None and capsys.readouterr().out == ""

    posts: list[httpx.Request] = []

    class Counting(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if request.method == "POST":
                posts.append(request)
            return transport.handle_request(request)

    demo = DemoRun(URL, config(epochs=2), every_s=0, transport=Counting())
    demo.api.http.headers["Authorization"] = "Bearer s3cret-token"  # the test server asks for its token
    demo.poll()
    assert demo.run_id is not None and len(posts) == 1 and posts[0].headers["Idempotency-Key"] == demo.key
    worker = FakeWorker(settings.db_url, demo.run_id).start()
    worker.epoch(0)
    demo.poll()
    worker.epoch(1)
    worker.finish()
    demo.poll()
    assert demo.done
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"demo run {demo.run_id} submitted: naive on synthetic, 2 epochs"
    said = [line.removeprefix(f"demo run {demo.run_id}: ") for line in lines[1:]]
    assert said == ["queued", "running", "epoch 1/2, best val acc 0.500", "epoch 2/2, best val acc 0.510",
                        "succeeded", "test accuracy at the best epoch 0.510; press Ctrl-C to stop everything"]


@pytest.mark.parametrize("failure", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
def test_an_api_not_up_yet_is_tried_again_on_the_next_poll(failure: Exception) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise type(failure)(str(failure), request=request)

    demo = DemoRun(URL, config(), every_s=0, transport=httpx.MockTransport(fail))
    demo.poll()
    demo.poll()
    assert demo.run_id is None and not demo.done
