"""The run store's tables (SQLAlchemy 2.0). The database is the source of truth for every run.

Metric points live in two tables: `series` (one row per run, split, component, modality and name, with the
latest epoch and value, so run lists and "latest" panels never scan history) and `points` (one row per series
and epoch, primary key (series_id, epoch): a retried write is an upsert, never a duplicate).
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from amst_core.vocab import ACTIVE, MODALITIES, TERMINAL, RunStatus  # noqa: F401  (re-exported: the store speaks these)

NAMING = {  # stable constraint names, so Alembic migrations are the same on SQLite and PostgreSQL
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ModalityColumn(enum.StrEnum):
    """Typed modality column: the vocabulary's modalities and `none`, which stands for run-level series (the API
    shows it as null). Members come from amst_core.vocab (Modality below), in its order, so the database's enum
    type (its names and values) is what the migrations created."""

    @classmethod
    def from_api(cls, value: str | None) -> ModalityColumn:
        return cls.none if value is None else cls(value)  # type: ignore[attr-defined]

    def to_api(self) -> str | None:
        return None if self.value == NO_MODALITY else self.value


NO_MODALITY = "none"
Modality = ModalityColumn("Modality", [(m, m) for m in (*MODALITIES, NO_MODALITY)], module=__name__)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in Python on every backend (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the run store; use amst_core.store.models.utcnow()")
        return value.astimezone(UTC) if dialect.name != "sqlite" else value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Tz = UTCDateTime()


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.queued)
    method: Mapped[str] = mapped_column(String(40))
    dataset: Mapped[str] = mapped_column(String(40))
    seed: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    queue: Mapped[str] = mapped_column(String(40))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(Tz, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Tz, default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(Tz)
    finished_at: Mapped[datetime | None] = mapped_column(Tz)
    # lifecycle
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    max_restarts: Mapped[int] = mapped_column(Integer, default=2)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    task_id: Mapped[str | None] = mapped_column(String(64))
    heartbeat_at: Mapped[datetime | None] = mapped_column(Tz)
    device: Mapped[str | None] = mapped_column(String(40))
    error: Mapped[str | None] = mapped_column(Text)
    # progress and results, updated with every epoch's points
    epochs_total: Mapped[int] = mapped_column(Integer)
    epochs_done: Mapped[int] = mapped_column(Integer, default=0)
    last_epoch_at: Mapped[datetime | None] = mapped_column(Tz)
    median_epoch_s: Mapped[float | None] = mapped_column(Float)
    best_epoch: Mapped[int | None] = mapped_column(Integer)
    best_val_acc: Mapped[float | None] = mapped_column(Float)
    test_acc_at_best: Mapped[float | None] = mapped_column(Float)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # progress within an epoch, from the worker's heartbeat (see amst_core.engine.LiveProgress)
    live: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    progress_at: Mapped[datetime | None] = mapped_column(Tz)
    # a sweep's run: its sweep and grid values; held back (no task yet) until the sweep may run one more
    sweep_id: Mapped[str | None] = mapped_column(ForeignKey("sweeps.id", ondelete="SET NULL"))
    sweep_cell: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # what a person keeps with the run (PATCH /runs/{id}); an archived run is hidden from run lists unless asked
    notes: Mapped[str | None] = mapped_column(Text)
    archived_at: Mapped[datetime | None] = mapped_column(Tz)
    # what the latest attempt recorded at its start (amst_core.provenance.collect: code, environment, data, the
    # resolved config, their digests); deferred: only one run's page reads it, never a run list
    provenance: Mapped[dict[str, Any] | None] = mapped_column(JSON, deferred=True)
    rerun_of: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))  # POST /runs/{id}/rerun

    tags: Mapped[list[RunTag]] = relationship(cascade="all, delete-orphan", lazy="selectin")

    __table_args__ = (
        Index("ix_runs_created", "created_at", "id"),
        Index("ix_runs_status_queue", "status", "queue", "created_at"),
        Index("ix_runs_method", "method"),
        Index("ix_runs_dataset", "dataset"),
        Index("ix_runs_sweep", "sweep_id", "status"),
    )

    @property
    def tag_names(self) -> list[str]:
        return sorted(t.tag for t in self.tags)


class Sweep(Base):
    """A grid of runs submitted as one study (amst_core.sweeps); its runs are ordinary runs with `sweep_id`."""

    __tablename__ = "sweeps"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    base: Mapped[dict[str, Any]] = mapped_column(JSON)
    grid: Mapped[dict[str, Any]] = mapped_column(JSON)
    baseline: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    max_concurrent: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(Tz, default=utcnow)
    cancelled_at: Mapped[datetime | None] = mapped_column(Tz)

    __table_args__ = (Index("ix_sweeps_created", "created_at", "id"),)


class RunTag(Base):
    __tablename__ = "run_tags"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(100), primary_key=True)

    __table_args__ = (Index("ix_run_tags_tag", "tag", "run_id"),)


class Attempt(Base):
    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    start_epoch: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(Tz, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(Tz)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("run_id", "number", name="uq_attempts_run_number"),)


class Series(Base):
    __tablename__ = "series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    split: Mapped[str] = mapped_column(String(8))
    component: Mapped[str] = mapped_column(String(40))
    modality: Mapped[Modality] = mapped_column(Enum(Modality, name="modality", native_enum=True,
                                                    values_callable=lambda e: [m.value for m in e]))
    name: Mapped[str] = mapped_column(String(40))
    last_epoch: Mapped[int | None] = mapped_column(Integer)
    last_value: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (
        UniqueConstraint("run_id", "split", "component", "modality", "name", name="uq_series_key"),
        # Every epoch rewrites last_epoch/last_value of every series: free space on each page lets PostgreSQL
        # update in place (HOT, no index churn), which more than halves the cost of that UPDATE.
        {"postgresql_with": {"fillfactor": 50}},
    )


class Point(Base):
    __tablename__ = "points"

    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[float | None] = mapped_column(Float)  # NULL: not finite (a diverged loss)
    step: Mapped[int] = mapped_column(Integer, default=0)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    recorded_at: Mapped[float] = mapped_column(Float)  # unix seconds: compact and cheap to compare


class Worker(Base):
    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[str] = mapped_column(String(200))
    device: Mapped[str] = mapped_column(String(80))
    started_at: Mapped[datetime] = mapped_column(Tz, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(Tz, default=utcnow)
    current_run_id: Mapped[str | None] = mapped_column(String(32))
    stopped_at: Mapped[datetime | None] = mapped_column(Tz)
    # what it announces at start (amst_core.gpu.visible_gpus, amst_core.placement.here): its GPUs, [{index, name,
    # memory_mib}] ([] on a CPU worker, NULL: registered before workers said), and the Slurm job or Kubernetes pod
    # it runs in (NULL: none)
    gpus: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    slurm_job_id: Mapped[str | None] = mapped_column(String(64))
    slurm_job_name: Mapped[str | None] = mapped_column(String(200))
    slurm_partition: Mapped[str | None] = mapped_column(String(200))
    pod_name: Mapped[str | None] = mapped_column(String(253))  # a DNS subdomain name, at most 253 characters
    pod_namespace: Mapped[str | None] = mapped_column(String(63))  # a DNS label
