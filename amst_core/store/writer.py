"""DbSink: the MetricSink that writes a run's points into the run store.

One transaction per epoch: get-or-create the series, upsert every point (a retried or repeated epoch
overwrites, never duplicates), move each series' latest value forward, and update the run's progress and
best-so-far, so that readers see an epoch all at once or not at all.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from sqlalchemy import Engine, bindparam, delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from amst_core.metrics import MetricPoint
from amst_core.store.db import get_engine
from amst_core.store.models import Modality, Point, Run, RunStatus, Series, utcnow

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
    def __init__(self, run_id: str, url: str | None = None):
        self.run_id = run_id
        self.engine = get_engine(url)
        self.postgres = self.engine.dialect.name == "postgresql"
        self.series_ids: dict[SeriesKey, int] = {}
        self.epoch_times: dict[int, float] = {}

    # ---- MetricSink -------------------------------------------------------------------------------------------

    def begin(self, start_epoch: int) -> None:
        """A (re)started attempt repeats epochs >= start_epoch: remove what an earlier attempt left there."""
        with Session(self.engine) as s, s.begin():
            run_series = select(Series.id).where(Series.run_id == self.run_id)
            s.execute(delete(Point).where(Point.series_id.in_(run_series), Point.epoch >= start_epoch))
            latest = (select(Point.series_id, func.max(Point.epoch).label("epoch"))
                      .where(Point.series_id.in_(run_series)).group_by(Point.series_id).subquery())
            rows = s.execute(select(Point.series_id, Point.epoch, Point.value)
                             .join(latest, (Point.series_id == latest.c.series_id) & (Point.epoch == latest.c.epoch)))
            s.execute(update(Series).where(Series.run_id == self.run_id).values(last_epoch=None, last_value=None))
            for series_id, epoch, value in rows.all():
                s.execute(update(Series).where(Series.id == series_id).values(last_epoch=epoch, last_value=value))
            s.execute(update(Run).where(Run.id == self.run_id).values(epochs_done=start_epoch, **self.best_before(s)))
            self.epoch_times = dict(s.execute(
                select(Point.epoch, Point.value).join(Series, Series.id == Point.series_id)
                .where(Series.run_id == self.run_id, Series.component == "run", Series.name == "epoch_time",
                       Point.epoch < start_epoch, Point.value.is_not(None))).all())

    def best_before(self, s: Session) -> dict[str, Any]:
        """Best-so-far among the epochs kept: the first epoch with the highest fused val accuracy."""
        def fused(split: str):
            return (select(Point.epoch, Point.value).join(Series, Series.id == Point.series_id)
                    .where(Series.run_id == self.run_id, Series.split == split, Series.component == "fused",
                           Series.modality == Modality.none, Series.name == "acc"))
        best = s.execute(fused("val").order_by(Point.value.desc(), Point.epoch).limit(1)).first()
        if best is None:
            return {"best_epoch": None, "best_val_acc": None, "test_acc_at_best": None}
        test = s.execute(fused("test").where(Point.epoch == best.epoch)).first()
        return {"best_epoch": best.epoch, "best_val_acc": best.value, "test_acc_at_best": test.value if test else None}

    def write(self, points: Sequence[MetricPoint]) -> None:
        if not points:
            return
        try:
            with Session(self.engine) as s, s.begin():
                ids = self.ensure_series(s, {series_key(p) for p in points})
                self.upsert_points(s, ids, points)
                self.advance_latest(s, ids, points)
                self.update_run(s, points)
        except BaseException:
            self.series_ids.clear()  # ids created in the rolled-back transaction do not exist
            raise

    def close(self) -> None:
        pass

    # ---- steps of one write -----------------------------------------------------------------------------------

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
        run = s.execute(select(Run.best_val_acc, Run.status).where(Run.id == self.run_id)).first()
        if run is None:
            raise LookupError(f"run {self.run_id} does not exist")
        val = _value(points, "val", "fused", "acc")
        if val is not None and (run.best_val_acc is None or val > run.best_val_acc):
            values.update(best_epoch=epoch, best_val_acc=val, test_acc_at_best=_value(points, "test", "fused", "acc"))
        if run.status == RunStatus.stalled:
            values["status"] = RunStatus.running  # a new epoch: not stalled any more
        s.execute(update(Run).where(Run.id == self.run_id).values(**values))


def _value(points: Sequence[MetricPoint], split: str, component: str, name: str) -> float | None:
    return next((p.value for p in points if p.split == split and p.component == component and p.name == name
                 and p.modality is None), None)
