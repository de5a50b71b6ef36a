"""`make run`, end to end, as a person starts it: the demo AMST-FULL run is submitted and its status changes are
printed as they happen; Ctrl-C (SIGINT to the terminal's foreground process group) stops everything; a second
`make run` reuses what is prepared and starts in seconds.

The data root holds a tiny avdigits (with the meta.json that `amst prepare` checks), so nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.kit.procs import with_env
from tests.kit.svc import ROOT, free_port, wait_until
from tests.kit.tiny import write_tiny_avdigits

pytestmark = pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "amst").exists(),
                                reason="make run uses the project's .venv (make test creates it)")


class MakeRun:
    """`make run` in its own process group, its output collected line by line."""

    def __init__(self, env: dict[str, str], api_port: int, ui_port: int):
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"API_PORT={api_port}", f"UI_PORT={ui_port}", "DEMO_EPOCHS=2"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        threading.Thread(target=self.read, daemon=True).start()

    def read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        def found():
            assert self.proc.poll() is None or any(re.search(pattern, x) for x in self.lines), \
                f"make run exited with {self.proc.returncode}:\n{self.output()}"
            return next((m for x in self.lines if (m := re.search(pattern, x))), None)
        return wait_until(found, timeout, message=f"{pattern!r} in make run's output")

    def ctrl_c(self) -> int:
        os.killpg(self.proc.pid, signal.SIGINT)  # what a terminal does: the whole foreground group
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"make run still running 60 s after Ctrl-C:\n{self.output()}")


@pytest.fixture
def env(tmp_path: Path):
    data = tmp_path / "data"
    out = write_tiny_avdigits(data, frames=48)  # the demo config's audio length
    (out / "meta.json").write_text(json.dumps({"seed": 0, "note": "tiny test fixture"}))
    home = str(tmp_path / ".amst")
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "BROKER_URL", "AMST_API_TOKEN", "AMST_ARTIFACTS", "MAKEFLAGS", "MAKELEVEL")}
    env.update({"AMST_HOME": home, "AMST_DATA_ROOT": str(data), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    yield env
    for p in with_env("AMST_HOME", home):  # whatever the test found, leave nothing running
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGKILL)


def no_process_left(home: str) -> None:
    with contextlib.suppress(AssertionError):
        wait_until(lambda: not with_env("AMST_HOME", home), 10, message="no process left")
    left = with_env("AMST_HOME", home)
    assert not left, "left behind:\n" + "\n".join(p.describe() for p in left)


def test_make_run_demo_succeeds_then_ctrl_c_stops_everything(env: dict[str, str]) -> None:
    api_port, ui_port = free_port(), free_port()
    run = MakeRun(env, api_port, ui_port)
    try:
        run.wait_for(rf"dashboard: http://127\.0\.0\.1:{ui_port}", 120)
        run_id = run.wait_for(r"demo run ([0-9a-f]{16}) submitted: amst_full on avdigits, 2 epochs", 120).group(1)
        run.wait_for(rf"demo run {run_id}: succeeded", 300)
        # Then the same run with the baseline, and the two side by side with the dashboard's Compare link.
        twin = run.wait_for(r"demo run ([0-9a-f]{16}) submitted: naive on avdigits, 2 epochs", 60).group(1)
        run.wait_for(rf"compare them: http://127\.0\.0\.1:{ui_port}/compare\?runs={run_id},{twin}", 300)
        assert re.search(rf"^  amst_full +{run_id} +0\.\d{{3}} +0\.\d{{3}}  audio 0\.\d{{3}} · visual 0\.\d{{3}}$",
                         run.output(), re.M), run.output()
        assert re.search(rf"^  naive +{twin} +0\.\d{{3}}", run.output(), re.M), run.output()
        statuses = [m.group(1) for x in run.lines if (m := re.match(rf"demo run {run_id}: (\w+)$", x))]
        assert statuses[0] == "queued" and statuses[-1] == "succeeded" and "running" in statuses, run.output()
        assert any(f"demo run {run_id}: epoch 1/2" in x for x in run.lines), run.output()
        api = f"http://127.0.0.1:{api_port}"
        series = httpx.get(f"{api}/runs/{run_id}/metrics", params={"split": "val", "name": "acc"}).json()["series"]
        per_modality = {(s["component"], s["modality"]) for s in series}
        assert {("alt_branch", "audio"), ("alt_branch", "visual"), ("fused", None)} <= per_modality
        assert httpx.get(f"http://127.0.0.1:{ui_port}/_stcore/health", timeout=5).text == "ok"
        assert with_env("AMST_HOME", env["AMST_HOME"]), "the check sees the processes while they run"
    finally:
        run.ctrl_c()
    assert "stopping API, worker and dashboard" in run.output()
    no_process_left(env["AMST_HOME"])

    # Again: the environment and the data are there; it starts in seconds.
    started = time.monotonic()
    again = MakeRun(env, free_port(), free_port())
    try:
        again.wait_for(r"demo run [0-9a-f]{16}: queued", 120)
        print(f"\nsecond make run: demo run queued {time.monotonic() - started:.1f} s after `make run`")
        assert "avdigits already prepared" in again.output()
        assert "pip install" not in again.output()
    finally:
        again.ctrl_c()
    no_process_left(env["AMST_HOME"])
