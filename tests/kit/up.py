"""`amst up` started in an empty folder, as a user starts it (the service tests and the GPU tier's service test)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.kit.procs import Proc, descendants
from tests.kit.svc import free_port, wait_until
from tests.kit.tiny import write_tiny_avdigits

TERMINAL = {"succeeded", "failed", "cancelled", "lost"}


@dataclass
class Up:
    proc: subprocess.Popen
    cwd: Path
    url: str
    log: Path
    tree: list[Proc]

    def logs(self) -> str:
        """amst up's own output, then the end of each child's log (.amst/logs/)."""
        out = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
        for child in sorted((self.cwd / ".amst" / "logs").glob("*.log")):
            out += f"\n--- {child.name} ---\n" + child.read_text(errors="replace")[-2000:]
        return out

    def get(self, path: str) -> dict:
        resp = httpx.get(f"{self.url}{path}", timeout=10)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def record_tree(self) -> None:
        known = {(p.pid, p.start) for p in self.tree}
        self.tree += [p for p in descendants(self.proc.pid) if (p.pid, p.start) not in known]


@contextlib.contextmanager
def start_up(tmp_path: Path, **extra_env: str) -> Iterator[Up]:
    cwd, data = tmp_path / "cwd", tmp_path / "data"
    cwd.mkdir()
    write_tiny_avdigits(data)
    env = {k: v for k, v in os.environ.items()
           if k not in ("AMST_HOME", "AMST_ARTIFACTS", "DATABASE_URL", "BROKER_URL", "AMST_API_TOKEN")}
    env.update({"AMST_DATA_ROOT": str(data), "AMST_HEARTBEAT_S": "0.5", "AMST_CANCEL_POLL_S": "0.2",
                "AMST_REAPER_S": "0.5", "AMST_SSE_POLL_S": "0.1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
                **extra_env})
    port = free_port()
    log = tmp_path / "amst-up.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "launch", "up", "--port", str(port), "--no-ui"],
                                cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Up(proc, cwd, f"http://127.0.0.1:{port}", log, [])
    try:
        def healthy() -> bool:
            assert proc.poll() is None, f"amst up exited with {proc.returncode}:\n{server.logs()}"
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{server.url}/health", timeout=2).status_code == 200
            return False

        wait_until(healthy, 120, interval=0.3, message="amst up's API to answer /health")
        server.record_tree()
        yield server
    finally:  # whatever the test found, leave nothing running
        for group in {proc.pid} | {p.pgid for p in server.tree}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


def child_of(up: Up, role: str) -> Proc:
    """The live process of `amst serve <role>` under amst up."""
    up.record_tree()
    for p in up.tree:
        if p.alive and f"serve\0{role}".encode() in Path(f"/proc/{p.pid}/cmdline").read_bytes():
            return p
    raise AssertionError(f"no live {role} process under amst up:\n{up.logs()}")
