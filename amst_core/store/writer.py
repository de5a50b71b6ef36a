"""DbSink: the MetricSink that writes a run's points into the run store.

One transaction per epoch: get-or-create the series, upsert every point (a retried or repeated epoch
overwrites, never duplicates), move each series' latest value forward, and update the run's progress and
best-so-far, so that readers see an epoch all at once or not at all.

Through a database outage the sink keeps the epochs it could not write, in order, and writes them first when the
database answers again, so training goes on; `pending()` hands them to the engine's checkpoint meanwhile. Only
an outage longer than `grace_s` (or more than `max_buffered` points) stops the run, with DatabaseUnavailable.
With a `worker_id`, every write also checks that this worker still holds the run's lease (LeaseLost if not).
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

from sqlalchemy import Engine, bindparam, delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from amst_core.config import ConfigError
from amst_core.metrics import MetricPoint
from amst_core.selection import NAMES as SELECTION
from amst_core.selection import selected
from amst_core.store import lifecycle
from amst_core.store.db import get_engine
from amst_core.store.lifecycle import LeaseLost
from amst_core.store.models import Modality, Point, Series, utcnow
from amst_core.store.outage import OUTAGE, DatabaseUnavailable, Outage, wait_out

log = logging.getLogger("amst.store")
SeriesKey = tuple[str, str, str | None, str]  # split, component, modality (None: run level), name
SERIES_CHUNK = 500


PG_UPSERT_POINTS = text("""
    INSERT INTO points (series_id, epoch, value, step, attempt, recorded_at)
    SELECT * FROM unnest(CAST(:series_id AS integer[]), CAST(:epoch AS integer[]), CAST(:value AS float8[]),
                         CAST(:step AS integer[]), CAST(:attempt AS integer[]), CAST(:recorded_at AS float8[]))
    ON CONFLICT (series_id, epoch) DO UPDATE SET value = excluded.value, step = excluded.step,
        attempt = excluded.attempt, recorded_at = excluded.recorded_at
""")
PG_ADVANCE_LATEST = text("""
    UPDATE series SET last_epoch = latest.ep, last_value = latest.val
    FROM unnest(CAST(:sid AS integer[]), CAST(:ep AS integer[]), CAST(:val AS float8[])) AS latest(sid, ep, val)
    WHERE series.id = latest.sid AND (series.last_epoch IS NULL OR series.last_epoch <= latest.ep)
""")


def _insert(engine: Engine):
    return postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert


def series_key(p: MetricPoint) -> SeriesKey:
    return (p.split, p.component, p.modality, p.name)


def pg_array(values) -> str:
    """A PostgreSQL array literal; str() of a float round-trips exactly, and joining is far cheaper than
    having the driver adapt every element."""
    return "{" + ",".join("NULL" if v is None else str(v) for v in values) + "}"


def finite_or_none(value: float) -> float | None:
    """Non-finite values (a diverged loss) are stored as NULL: JSON has no NaN and the series stays readable."""
    value = float(value)
    return value if math.isfinite(value) else None


class DbSink:
    def __init__(self, run_id: str, url: str | None = None, *, worker_id: str | None = None,
                 grace_s: float = 300.0, max_buffered: int = 500_000, max_points: int | None = None):
        self.run_id = run_id
        self.engine = get_engine(url)
        self.postgres = self.engine.dialect.name == "postgresql"
        self.worker_id, self.grace_s, self.max_buffered, self.max_points = worker_id, grace_s, max_buffered, max_points
        self.series_ids: dict[SeriesKey, int] = {}
        self.epoch_times: dict[int, float] = {}
        self.buffer: list[list[MetricPoint]] = []  # epochs accepted but not committed yet, oldest first
        self.outage = Outage(grace_s, f"run {run_id}: metrics")
        self.checked_budget = False

    # ---- MetricSink -------------------------------------------------------------------------------------------

    def begin(self, start_epoch: int) -> None:
        """A (re)started attempt repeats epochs >= start_epoch: remove what an earlier attempt left there."""
        self.retrying(lambda: self.rewind(start_epoch))

    def write(self, points: Sequence[MetricPoint]) -> None:
        if points:
            self.buffer.append(list(points))
            self.flush()

    def pending(self) -> list[MetricPoint]:
        return [p for epoch in self.buffer for p in epoch]

    def close(self) -> None:
        """Everything accepted is stored, waiting out an outage up to the grace; DatabaseUnavailable if not."""
        self.retrying(self.flush_or_raise)

    # ---- outages ------------------------------------------------------------------------------------------------

    def flush(self) -> bool:
        """Commit the buffered epochs in order; True when none is left. An outage keeps them for the next call."""
        while self.buffer:
            try:
                self.commit(self.buffer[0])
            except OUTAGE as err:
                self.database_silent(err)
                return False
            self.buffer.pop(0)
        self.outage.answered()
        return True

    def flush_or_raise(self) -> None:
        if not self.flush():
            raise OperationalError("flush", {}, ConnectionError("the database did not answer"))

    def database_silent(self, err: Exception) -> None:
        """Training goes on while the outage is shorter than the grace and the epochs held fit in memory."""
        buffered = len(self.pending())
        detail = f" ({buffered} metric points waiting)"
        if buffered > self.max_buffered:
            raise DatabaseUnavailable(f"the database has been unreachable for {self.outage.down_s:.0f} s{detail}; "
                                      f"AMST_DB_BUFFER_POINTS is {self.max_buffered}") from err
        self.outage.failed(err, detail)

    def retrying(self, action: Callable[[], None]) -> None:
        """Run `action`, waiting out an outage (growing pauses) until the grace is spent."""
        wait_out(action, self.outage, self.database_silent)

    # ---- steps of one write -----------------------------------------------------------------------------------

    def rewind(self, start_epoch: int) -> None:
        with Session(self.engine) as s, s.begin():
            s.execute(delete(Point).where(lifecycle.superseded_points(self.run_id, start_epoch)))
            run_series = select(Series.id).where(Series.run_id == self.run_id)
            latest = (select(Point.series_id, func.max(Point.epoch).label("epoch"))
                      .where(Point.series_id.in_(run_series)).group_by(Point.series_id).subquery())
            rows = s.execute(select(Point.series_id, Point.epoch, Point.value)
                             .join(latest, (Point.series_id == latest.c.series_id) & (Point.epoch == latest.c.epoch)))
            s.execute(update(Series).where(Series.run_id == self.run_id).values(last_epoch=None, last_value=None))
            for series_id, epoch, value in rows.all():
                s.execute(update(Series).where(Series.id == series_id).values(last_epoch=epoch, last_value=value))
            lifecycle.rewound(s, self.run_id, start_epoch, self.best_before(s, start_epoch))
            self.epoch_times = dict(s.execute(
                select(Point.epoch, Point.value).join(Series, Series.id == Point.series_id)
                .where(Series.run_id == self.run_id, Series.component == "run", Series.name == "epoch_time",
                       Point.epoch < start_epoch, Point.value.is_not(None))).all())

    def best_before(self, s: Session, start_epoch: int) -> dict[str, Any]:
        """The engine's model selection as of the last epoch kept (its run-level `best_*` points there)."""
        rows = s.execute(select(Series.name, Point.epoch, Point.value).join(Series, Series.id == Point.series_id)
                         .where(Series.run_id == self.run_id, Series.component == "run", Series.split == "val",
                                Series.name.in_(SELECTION), Point.epoch < start_epoch)).all()
        last = max((r.epoch for r in rows), default=None)
        chosen = {r.name: r.value for r in rows if r.epoch == last}
        return best_columns(chosen)

    def commit(self, points: Sequence[MetricPoint]) -> None:
        try:
            with Session(self.engine) as s, s.begin():
                ids = self.ensure_series(s, {series_key(p) for p in points})
                self.upsert_points(s, ids, points)
                self.advance_latest(s, ids, points)
                self.update_run(s, points)
        except BaseException:
            self.series_ids.clear()  # ids created in the rolled-back transaction do not exist
            raise

    def ensure_series(self, s: Session, keys: set[SeriesKey]) -> dict[SeriesKey, int]:
        missing = [k for k in keys if k not in self.series_ids]
        if missing:
            rows = [{"run_id": self.run_id, "split": k[0], "component": k[1], "modality": Modality.from_api(k[2]),
                     "name": k[3]} for k in missing]
            insert = _insert(self.engine)
            for i in range(0, len(rows), SERIES_CHUNK):  # bound parameters per statement stay far below limits
                s.execute(insert(Series).values(rows[i:i + SERIES_CHUNK]).on_conflict_do_nothing())
            found = s.execute(select(Series.id, Series.split, Series.component, Series.modality, Series.name)
                              .where(Series.run_id == self.run_id))
            for sid, split, component, modality, name in found:
                self.series_ids[(split, component, Modality(modality).to_api(), name)] = sid
        return self.series_ids

    def upsert_points(self, s: Session, ids: dict[SeriesKey, int], points: Sequence[MetricPoint]) -> None:
        columns = {
            "series_id": [ids[series_key(p)] for p in points],
            "epoch": [p.epoch for p in points],
            "value": [finite_or_none(p.value) for p in points],
            "step": [p.step for p in points],
            "attempt": [p.attempt for p in points],
            "recorded_at": [p.recorded_at for p in points],
        }
        if self.postgres:  # one statement, one round trip: the rows travel as six arrays
            s.execute(PG_UPSERT_POINTS, {name: pg_array(col) for name, col in columns.items()})
            return
        rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
        s.connection().execute(self.sqlite_upsert, rows)  # executemany of one cached statement, in-process

    @cached_property
    def sqlite_upsert(self):
        stmt = sqlite.insert(Point.__table__)
        return stmt.on_conflict_do_update(
            index_elements=["series_id", "epoch"],
            set_={c: stmt.excluded[c] for c in ("value", "step", "attempt", "recorded_at")},
        )

    def advance_latest(self, s: Session, ids: dict[SeriesKey, int], points: Sequence[MetricPoint]) -> None:
        newest: dict[int, MetricPoint] = {}
        for p in points:
            sid = ids[series_key(p)]
            if sid not in newest or p.epoch >= newest[sid].epoch:
                newest[sid] = p
        if self.postgres:
            s.execute(PG_ADVANCE_LATEST, {"sid": pg_array(newest), "ep": pg_array(p.epoch for p in newest.values()),
                                          "val": pg_array(finite_or_none(p.value) for p in newest.values())})
            return
        table = Series.__table__
        s.connection().execute(
            update(table).where(table.c.id == bindparam("sid"))
            .where(table.c.last_epoch.is_(None) | (table.c.last_epoch <= bindparam("ep")))
            .values(last_epoch=bindparam("ep"), last_value=bindparam("val")),
            [{"sid": sid, "ep": p.epoch, "val": finite_or_none(p.value)} for sid, p in newest.items()],
        )

    def update_run(self, s: Session, points: Sequence[MetricPoint]) -> None:
        epoch = max(p.epoch for p in points)
        values: dict[str, Any] = {"epochs_done": epoch + 1, "last_epoch_at": utcnow()}
        self.epoch_times.update({p.epoch: p.value for p in points if p.name == "epoch_time" and p.component == "run"
                                 and finite_or_none(p.value) is not None})
        if self.epoch_times:
            values["median_epoch_s"] = statistics.median(self.epoch_times.values())
        epochs_total = lifecycle.check_lease(s, self.run_id, self.worker_id)
        self.check_budget(len(points), epochs_total)
        chosen = selected([p for p in points if p.epoch == epoch])
        if chosen:  # the engine's decision, copied: this sink decides nothing
            values.update(best_columns(chosen))
        lifecycle.record_epoch(s, self.run_id, values)

    def check_budget(self, per_epoch: int, epochs: int) -> None:
        """A run may write at most `max_points` points (AMST_MAX_POINTS_PER_RUN): refused at its first epoch."""
        if self.max_points is None or self.checked_budget:
            return
        self.checked_budget = True
        if per_epoch * epochs > self.max_points:
            raise ConfigError("epochs", f"this run would write about {per_epoch * epochs:,} metric points "
                                        f"({per_epoch} an epoch x {epochs} epochs); this server keeps at most "
                                        f"{self.max_points:,} per run (AMST_MAX_POINTS_PER_RUN)")


def best_columns(chosen: dict[str, float | None]) -> dict[str, Any]:
    """The run row's best columns from a model selection's points (amst_core.selection)."""
    epoch = chosen.get("best_epoch")
    return {"best_epoch": int(epoch) if epoch is not None else None, "best_val_acc": chosen.get("best_val_acc"),
            "test_acc_at_best": chosen.get("test_acc_at_best")}


__all__ = ["DatabaseUnavailable", "DbSink", "LeaseLost"]  # where the worker and tests have found them
