"""Service settings (pydantic-settings), read from the environment; shared by the API and the workers.

The embedded default needs nothing set: SQLite and kombu's SQLAlchemy transport under ./.amst/.
"""

from __future__ import annotations

import contextlib
import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from amst_core.datafiles import DataRoots
from amst_core.store.db import home, normalise_url

# The exit status of a service process that stops itself to be started afresh: EX_TEMPFAIL, non-zero so that
# every supervisor restarts it (systemd's on-failure, a Kubernetes pod, a Slurm requeue), and never counted by
# `amst up` as a crash loop. (A worker no longer needs it after a CUDA error: each attempt trains in a process of
# its own, which ends with its run.)
EXIT_RESTART = 75
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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    database_url: str = Field("", alias="DATABASE_URL", description="SQLAlchemy URL; default SQLite in .amst/")
    broker_url: str = Field("", alias="BROKER_URL", description="Celery broker; default SQLite transport in .amst/")
    api_token: str = Field("", alias="AMST_API_TOKEN", description="bearer token for mutating routes, if set")
    data_root: Path = Field(Path("./data"), alias="AMST_DATA_ROOT")
    data_extra_roots: str = Field("", alias="AMST_DATA_EXTRA_ROOTS",
                                  description="more folders (os.pathsep-separated) that data symlinks may point to")
    artifacts: Path = Field(Path(""), alias="AMST_ARTIFACTS", description="checkpoints; default .amst/artifacts")
    heartbeat_s: float = Field(10.0, alias="AMST_HEARTBEAT_S", gt=0)
    lost_after_heartbeats: int = Field(3, alias="AMST_LOST_AFTER", ge=2)
    stalled_factor: float = Field(5.0, alias="AMST_STALLED_FACTOR", gt=1, description="x median epoch time")
    stalled_min_s: float = Field(120.0, alias="AMST_STALLED_MIN_S", gt=0)
    cancel_poll_s: float = Field(1.0, alias="AMST_CANCEL_POLL_S", gt=0)
    sse_poll_s: float = Field(0.25, alias="AMST_SSE_POLL_S", gt=0)
    reaper_s: float = Field(5.0, alias="AMST_REAPER_S", gt=0)
    checkpoint_retention_days: float = Field(30.0, alias="AMST_CHECKPOINT_RETENTION_DAYS", ge=0,
                                             description="an ended run keeps its checkpoints this long")
    keep_best_checkpoint: bool = Field(True, alias="AMST_KEEP_BEST_CHECKPOINT",
                                       description="retention removes last.pt only and keeps the best model")
    gc_interval_s: float = Field(3600.0, alias="AMST_GC_INTERVAL_S", ge=0,
                                 description="how often the API applies the retention policy (0: never)")
    db_grace_s: float = Field(300.0, alias="AMST_DB_GRACE_S", ge=0,
                              description="how long a worker trains on through a database outage")
    db_buffer_points: int = Field(500_000, alias="AMST_DB_BUFFER_POINTS", ge=1000,
                                  description="metric points a worker keeps in memory through an outage")
    crash_retries: int = Field(2, alias="AMST_CRASH_RETRIES", ge=0,
                               description="a run whose training process (or worker) dies is re-queued at most "
                                           "this many times in a row, then failed")
    run_memory_mb: int = Field(default_factory=default_run_memory_mb, alias="AMST_RUN_MEMORY_MB", ge=0,
                               description="a training process using more is killed and its run failed; 0: no "
                                           "limit; default 75% of the machine's memory")

    @property
    def db_url(self) -> str:
        return normalise_url(self.database_url or f"sqlite:///{home() / 'amst.db'}")

    @property
    def celery_broker(self) -> str:
        if self.broker_url:
            return self.broker_url
        home().mkdir(parents=True, exist_ok=True)  # SQLite makes the file, not its folder
        return f"sqla+sqlite:///{home() / 'broker.db'}"

    @property
    def artifacts_dir(self) -> Path:
        return (self.artifacts if str(self.artifacts) not in ("", ".") else home() / "artifacts").resolve()

    @property
    def data_roots(self) -> DataRoots:
        extra = [p for p in self.data_extra_roots.split(os.pathsep) if p.strip()]
        return DataRoots(self.data_root, extra)

    @property
    def lost_after_s(self) -> float:
        return self.heartbeat_s * self.lost_after_heartbeats

    def as_env(self) -> dict[str, str]:
        """These settings as the environment variables that set them: a worker's training process gets the
        worker's settings whatever set them."""
        env = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            env[field.alias or name] = str(value).lower() if isinstance(value, bool) else str(value)
        return env

    def run_dir(self, run_id: str) -> Path:
        return self.artifacts_dir / "runs" / run_id


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def queue_for(device: str) -> str:
    """Queues by device class: runs asking for the CPU go to `cpu`, every other run to `gpu`."""
    return "cpu" if device == "cpu" else "gpu"
