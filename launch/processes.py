"""`amst serve api|worker|ui`: one service process, in the foreground."""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

from worker.gpulocks import is_member

KEEP_ALIVE_S = 65


def serve_api(host: str, port: int, workers: int = 1) -> None:
    """The API; `workers` > 1 runs that many processes on one port (each request is CPU-bound Python, so one
    process uses at most one core)."""
    import uvicorn

    # An open server-sent event stream would otherwise hold a graceful shutdown forever. Idle connections are
    # kept longer than clients keep them (httpx: 5 s, browsers and proxies up to 60 s): when both sides give up
    # at the same moment, a request sent on a connection the server is closing fails (seen under load).
    uvicorn.run("api.main:create_app", factory=True, host=host, port=port, log_level="info",
                timeout_graceful_shutdown=5, timeout_keep_alive=KEEP_ALIVE_S, workers=workers)


def pin_gpu(gpu: int, env: MutableMapping[str, str] = os.environ) -> str:
    """This process sees GPU `gpu` alone (set before torch is imported), and says which one it is in
    AMST_WORKER_GPU. `gpu` counts the GPUs this process was given: nvidia-smi's numbering (CUDA's own order, by
    speed, may differ: CUDA_DEVICE_ORDER=PCI_BUS_ID makes them agree), or the N-th of CUDA_VISIBLE_DEVICES where
    Slurm, Kubernetes or a user already chose some."""
    chosen = pin_gpus([gpu], env, "--gpu")
    env["AMST_WORKER_GPU"] = chosen
    return chosen


def pin_gpus(gpus: list[int], env: MutableMapping[str, str] = os.environ, option: str = "--gpus") -> str:
    """This process sees these GPUs alone, counted as `pin_gpu` counts (a worker serving runs on several GPUs:
    its ranks take cuda:0.. among them)."""
    env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    given = env.get("CUDA_VISIBLE_DEVICES")
    visible = [d.strip() for d in given.split(",") if d.strip()] if given is not None else None
    chosen = []
    for gpu in gpus:
        if visible is not None and not 0 <= gpu < len(visible):
            raise SystemExit(f"{option} {gpu}: this process was given {len(visible)} GPU(s) "
                             f"(CUDA_VISIBLE_DEVICES={given!r}); {option} counts from 0 among them")
        chosen.append(str(gpu) if visible is None else visible[gpu])
    if len(set(chosen)) != len(chosen):
        raise SystemExit(f"{option} {','.join(map(str, gpus))}: a GPU is named twice")
    env["CUDA_VISIBLE_DEVICES"] = ",".join(chosen)
    return env["CUDA_VISIBLE_DEVICES"]


def serve_worker(gpu: int | None, queue: str | None, gpus: list[int] | None = None) -> None:
    """One worker process: on GPU `gpu` alone (runs asking for one GPU), or on what it was given (the CPU and any
    GPU). On `gpus`: a set of workers sharing them (launch/gpuworkers.py: runs asking for up to that many, and
    one-GPU runs on each GPU while none does), or, started by that set, its worker of the multi-GPU runs."""
    from amst_core.settings import gpu_queues

    if gpu is not None:
        pin_gpu(gpu)
        default = "gpu"
    elif gpus:
        default = ",".join(gpu_queues(len(gpus)))
        if len(gpus) > 1 and not is_member():  # not yet one of a set's workers: start the set
            from launch.gpuworkers import supervise

            ids = pin_gpus(gpus, dict(os.environ)).split(",")  # a GPU that is not there is said once, here
            raise SystemExit(supervise(gpus, (queue or default).split(","), ids))
        pin_gpus(gpus)
    else:
        default = "gpu,cpu"
    queues = queue or default
    from celery import signals

    from amst_core.settings import get_settings
    from api.dispatch import Dispatcher
    from worker.app import app
    from worker.runner import current_executor, start_maintenance

    # The worker sends run messages as the API does (a run it hands back or re-queues, the reaper's): one sender.
    maintenance = start_maintenance(queues, Dispatcher(get_settings()).send)
    signals.worker_shutting_down.connect(lambda **_: current_executor().shutdown(), weak=False)
    signals.worker_shutdown.connect(lambda **_: maintenance.stop(), weak=False)  # GET /workers: stopped_at
    where = f"gpu{gpu}" if gpu is not None else f"gpus{'-'.join(map(str, gpus))}" if gpus else "cpu"
    name = f"amst-{where}-{os.getpid()}@%h"
    app.worker_main(["worker", "--pool=solo", "--concurrency=1", "-Q", queues, "-n", name, "--loglevel=INFO",
                     "--without-gossip", "--without-mingle"])


def ui_command(host: str, port: int) -> list[str]:
    """The dashboard: a Streamlit server that talks only to the API (AMST_API_URL). Error details stay in the
    server log; pages show their own messages."""
    import ui
    from amst_core.extras import require

    require("streamlit", "ui", "the dashboard")  # said here, not by a child process that exits at once
    app = Path(ui.__file__).parent / "app.py"
    return [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless", "true",
            "--server.address", host, "--server.port", str(port), "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--client.showErrorDetails", "none", "--client.toolbarMode", "minimal",
            "--theme.primaryColor", "#0072B2",
            # Streamlit runs a full gc.collect() after every script run, fragments included: in a process holding
            # pandas and Plotly that is most of the CPU an open live page costs, and a fifth of a page's render.
            # Python's own generational collector still runs.
            "--runner.postScriptGC", "false"]


def serve_ui(host: str, port: int) -> None:
    cmd = ui_command(host, port)
    os.execv(cmd[0], cmd)  # Streamlit becomes this process: signals reach it directly
