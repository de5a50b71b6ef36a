"""Service settings (pydantic-settings), read from the environment: what the API, the workers and the store share.

What only the API reads is in `api.settings.ApiSettings`, what only a worker and its training processes read in
`worker.settings.WorkerSettings`; both extend these.

The embedded default needs nothing set: SQLite and kombu's SQLAlchemy transport under ./.amst/.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from amst_core.datafiles import DataRoots
from amst_core.store.db import home, normalise_url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    database_url: str = Field("", alias="DATABASE_URL", description="SQLAlchemy URL; default SQLite in .amst/")
    broker_url: str = Field("", alias="BROKER_URL", description="Celery broker; default SQLite transport in .amst/")
    data_root: Path = Field(Path("./data"), alias="AMST_DATA_ROOT")
    data_extra_roots: str = Field("", alias="AMST_DATA_EXTRA_ROOTS",
                                  description="more folders (os.pathsep-separated) that data symlinks may point to")
    artifacts: Path = Field(Path(""), alias="AMST_ARTIFACTS", description="checkpoints; default .amst/artifacts")
    export_root: Path = Field(Path(""), alias="AMST_EXPORT_ROOT",
                              description="the only folder a run's export targets (a TensorBoard folder, a sqlite "
                                          "MLflow store) may lie in on the service; default <AMST_ARTIFACTS>/exports")
    heartbeat_s: float = Field(10.0, alias="AMST_HEARTBEAT_S", gt=0)
    lost_after_heartbeats: int = Field(3, alias="AMST_LOST_AFTER", ge=2)
    stalled_factor: float = Field(5.0, alias="AMST_STALLED_FACTOR", gt=1, description="x median epoch time")
    stalled_min_s: float = Field(120.0, alias="AMST_STALLED_MIN_S", gt=0)
    reaper_s: float = Field(5.0, alias="AMST_REAPER_S", gt=0)
    checkpoint_retention_days: float = Field(30.0, alias="AMST_CHECKPOINT_RETENTION_DAYS", ge=0,
                                             description="an ended run keeps its checkpoints this long")
    keep_best_checkpoint: bool = Field(True, alias="AMST_KEEP_BEST_CHECKPOINT",
                                       description="retention removes last.pt only and keeps the best model")
    schema_wait_s: float = Field(120.0, alias="AMST_SCHEMA_WAIT_S", ge=0,
                                 description="at start, how long `amst db upgrade` waits for the database to "
                                             "answer, and the API and a worker for the schema it makes")
    crash_retries: int = Field(2, alias="AMST_CRASH_RETRIES", ge=0,
                               description="a run whose training process (or worker) dies is re-queued at most "
                                           "this many times in a row, then failed")

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
    def export_dir(self) -> Path:
        chosen = str(self.export_root) not in ("", ".")
        return (self.export_root if chosen else self.artifacts_dir / "exports").resolve()

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
            if value is None:  # unset stays unset (the string "None" would set it)
                continue
            env[field.alias or name] = str(value).lower() if isinstance(value, bool) else str(value)
        return env

    def run_dir(self, run_id: str) -> Path:
        return self.artifacts_dir / "runs" / run_id


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def queue_for(device: str, gpus: int = 1) -> str:
    """The queue of a run, by what it needs (Doc/service.md, "Queues"): `cpu` for a run asking for the CPU (on any
    number of ranks: a CPU worker runs them as processes), `gpu` for one GPU, `gpu-xN` for N GPUs."""
    if device == "cpu":
        return "cpu"
    return "gpu" if gpus == 1 else f"gpu-x{gpus}"


def gpu_queues(gpus: int) -> list[str]:
    """The queues of a worker holding `gpus` GPUs: runs asking for as many GPUs or fewer."""
    return [queue_for("cuda", n) for n in range(gpus, 0, -1)]
