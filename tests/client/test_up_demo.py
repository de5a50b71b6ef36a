"""`amst up --demo`'s watcher (launch.up.DemoRun) through amst_client against the in-process API: it waits for a
healthy API, submits once with an idempotency key, and prints the run's progress (the whole `amst up` is
tests/service/test_amst_up.py)."""

from __future__ import annotations

import httpx
import pytest

from launch.up import Demo, DemoRun, demo_pair
from tests.kit.api import IN_PROCESS_URL as URL
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
                        "succeeded", "test accuracy at the best epoch 0.510"]


@pytest.mark.parametrize("failure", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
def test_an_api_not_up_yet_is_tried_again_on_the_next_poll(failure: Exception) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise type(failure)(str(failure), request=request)

    demo = DemoRun(URL, config(), every_s=0, transport=httpx.MockTransport(fail))
    demo.poll()
    demo.poll()
    assert demo.run_id is None and not demo.done


def test_the_demo_trains_the_method_and_its_baseline_and_prints_them_side_by_side(transport, settings, capsys) -> None:
    """Issue 23: a newcomer's first run, alone, showed nothing of what AMST does. The demo is a pair: the method
    and the baseline on the same data, seed and settings, then both results and the Compare link of the two."""
    full = config("amst_full", epochs=1, seed=3, skip={"audio": 2}, method_params={"skip_mode": "faithful"},
                  name="demo-amst_full", optim={"lr": 0.02})
    configs = demo_pair(full, "naive")
    assert configs[0] == full and demo_pair(full, None) == [full] and demo_pair(full, "amst_full") == [full]
    twin = configs[1]
    assert twin["method"] == "naive" and twin["name"] == "demo-naive" and twin["seed"] == 3
    assert twin["optim"] == {"lr": 0.02} and "skip" not in twin and "method_params" not in twin

    class Authorised(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            request.headers["Authorization"] = "Bearer s3cret-token"
            return transport.handle_request(request)

    demo = Demo(URL, configs, "http://127.0.0.1:8501", every_s=0, transport=Authorised())
    demo.poll()
    first, second = (run.run_id for run in demo.runs)
    assert first is not None and second is not None
    helpers = {"helper": {"audio": 0.75, "visual": 0.5}}
    for run_id, acc in ((first, 0.7), (second, 0.6)):
        worker = FakeWorker(settings.db_url, run_id).start()
        worker.epoch(0, acc)
        worker.finish(summary={"test_at_best": helpers})
        demo.poll()
    assert demo.done
    out = capsys.readouterr().out
    table = out[out.index("demo: amst_full against naive"):].splitlines()
    assert table[0] == "demo: amst_full against naive on synthetic, seed 3, 1 epochs each"
    assert table[2].split() == ["amst_full", first, "0.700", "0.700", "audio", "0.750", "·", "visual", "0.500"]
    assert table[3].split()[:4] == ["naive", second, "0.600", "0.600"]
    assert table[4] == f"compare them: http://127.0.0.1:8501/compare?runs={first},{second}"
    assert table[5] == "press Ctrl-C to stop everything"
