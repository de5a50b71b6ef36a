"""Worker settings: the shared service settings (amst_core.settings) plus what only a worker and the training
processes it starts read. A training process gets them through `as_env`, so it sees its worker's values."""

from __future__ import annotations

import contextlib
from functools import lru_cache
from pathlib import Path

from pydantic import Field

from amst_core.settings import Settings

RUN_MEMORY_SHARE = 0.75  # AMST_RUN_MEMORY_MB's default: this share of the machine's (or container's) memory


def machine_memory_mb() -> int:
    """The memory this process may use: the machine's, or its cgroup's limit (v2 or v1) when that is smaller."""
    limits = []
    with contextlib.suppress(OSError, ValueError, IndexError):
        meminfo = Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0]
        limits.append(int(meminfo) * 1024)
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            limits.append(int(Path(path).read_text().strip()))  # "max": no limit (ValueError)
    return min(limits) // 2**20 if limits else 0


def default_run_memory_mb() -> int:
    return int(machine_memory_mb() * RUN_MEMORY_SHARE)


class WorkerSettings(Settings):
    cancel_poll_s: float = Field(1.0, alias="AMST_CANCEL_POLL_S", gt=0)
    db_grace_s: float = Field(300.0, alias="AMST_DB_GRACE_S", ge=0,
                              description="how long a worker trains on through a database outage")
    db_buffer_points: int = Field(500_000, alias="AMST_DB_BUFFER_POINTS", ge=1000,
                                  description="metric points a worker keeps in memory through an outage")
    health_file: Path | None = Field(None, alias="AMST_WORKER_HEALTH_FILE",
                                     description="touched at every maintenance tick (heartbeats, reaper): a "
                                                 "container's health check reads its age; unset: none")
    idle_exit_s: float | None = Field(None, alias="AMST_WORKER_IDLE_EXIT_S", gt=0,
                                      description="a worker that has trained nothing for this long stops (warmly, "
                                                  "as on SIGTERM): the Slurm job holding it ends and frees its "
                                                  "node; unset: it never leaves on its own")
    rank_restarts: int = Field(1, alias="AMST_RANK_RESTARTS", ge=0, le=100,
                               description="a run on several ranks: how often PyTorch's launcher restarts them all "
                                           "when one dies (each restart continues from the last checkpoint) before "
                                           "the attempt counts as crashed")
    run_memory_mb: int = Field(default_factory=default_run_memory_mb, alias="AMST_RUN_MEMORY_MB", ge=0,
                               description="a training process using more is killed and its run failed; 0: no "
                                           "limit; default 75% of the machine's memory")

@lru_cache(maxsize=1)
def get_worker_settings() -> WorkerSettings:
    return WorkerSettings()
