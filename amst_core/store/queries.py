"""Read queries of the run store, for the API and the dashboard (DESIGN.md sections 4 and 6).

Every function takes a Session and runs a fixed, small number of indexed statements: a page of runs is one
query plus one for its tags, one run's curves are one query on `series` plus one range scan of the `points`
primary key. Nothing here loads a run's whole history to answer a list, and nothing imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select, text, tuple_
from sqlalchemy.orm import Session, defer
from sqlalchemy.sql import Select

from amst_core.placement import cannot_hold
from amst_core.store import search
from amst_core.store.models import Attempt, Modality, Point, Run, RunStatus, RunTag, Series, Worker

# A search reads rows in batches of this many until it has a page of matches, and stops after SEARCH_SCAN rows
# so that one request costs a bounded amount; its cursor then says where to go on (the page may be short).
SEARCH_BATCH = 200
SEARCH_SCAN = 5000


@dataclass(frozen=True)
class RunFilters:
    """Filters of a run list. Each tuple is "any of" its values, except tags: a run must carry every tag."""

    statuses: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    archived: Literal["hide", "only", "all"] = "all"  # GET /runs asks for "hide"; the store itself hides nothing
    search: tuple[search.Term, ...] = ()  # applied in Python, after the SQL filters (amst_core.store.search)


@dataclass(frozen=True)
class PageKey:
    """Where a page of runs ends in the (created_at DESC, id DESC) order; the next page starts after it."""

    created_at: datetime
    id: str


def list_runs(s: Session, filters: RunFilters, limit: int, after: PageKey | None = None,
              with_config: bool = False) -> tuple[list[Run], PageKey | None]:
    """One page of runs, newest first, and the key of its last run when another page follows. With search terms
    a page may be short (SEARCH_SCAN rows read) and still have a key to go on from."""
    stmt = filtered(filters, with_config)
    if filters.search:
        return search_runs(s, stmt, filters.search, limit, after)
    runs = list(s.scalars(page(stmt, after, limit + 1)))  # Run.tags is lazy="selectin": one more query per page
    if len(runs) <= limit:
        return runs, None
    return runs[:limit], key_of(runs[limit - 1])


def filtered(filters: RunFilters, with_config: bool) -> Select[tuple[Run]]:
    """The runs that pass the SQL filters, loading only the columns the page and its search terms read: a column
    left out raises when touched (raiseload), so a forgotten one is an error, not a silent N+1."""
    deferred = [defer(Run.summary, raiseload=True), defer(Run.provenance, raiseload=True)]
    if not (with_config or search.uses(filters.search, "config")):
        deferred.append(defer(Run.config, raiseload=True))
    if not search.uses(filters.search, "notes"):
        deferred.append(defer(Run.notes, raiseload=True))
    stmt = select(Run).options(*deferred)
    if filters.archived == "hide":
        stmt = stmt.where(Run.archived_at.is_(None))
    elif filters.archived == "only":
        stmt = stmt.where(Run.archived_at.is_not(None))
    if filters.statuses:
        stmt = stmt.where(Run.status.in_(filters.statuses))
    if filters.methods:
        stmt = stmt.where(Run.method.in_(filters.methods))
    if filters.datasets:
        stmt = stmt.where(Run.dataset.in_(filters.datasets))
    for tag in filters.tags:  # ix_run_tags_tag (tag, run_id) answers each of these
        stmt = stmt.where(Run.id.in_(select(RunTag.run_id).where(RunTag.tag == tag)))
    return stmt


def page(stmt: Select[tuple[Run]], after: PageKey | None, size: int) -> Select[tuple[Run]]:
    if after is not None:  # keyset pagination: ix_runs_created (created_at, id), read backwards
        stmt = stmt.where(tuple_(Run.created_at, Run.id) < tuple_(after.created_at, after.id))
    return stmt.order_by(Run.created_at.desc(), Run.id.desc()).limit(size)


def key_of(run: Run) -> PageKey:
    return PageKey(run.created_at, run.id)


def search_runs(s: Session, stmt: Select[tuple[Run]], terms: tuple[search.Term, ...], limit: int,
                after: PageKey | None) -> tuple[list[Run], PageKey | None]:
    """Read the filtered runs in batches and keep those that match, until limit + 1 matches (so a next page is
    known to exist), the rows end, or a batch brings the rows read to SEARCH_SCAN. The key is that of the last run
    returned, or of the last row read when the scan stopped early, so a cursor goes on where this left off."""
    found: list[Run] = []
    scanned = 0
    on_config = search.uses(terms, "config")
    while True:
        batch = list(s.scalars(page(stmt, after, SEARCH_BATCH)))
        for run in batch:
            if search.matches(terms, search_fields(run), run.config if on_config else None):
                if len(found) == limit:  # one more match: another page follows this one
                    return found, key_of(found[-1])
                found.append(run)
        if len(batch) < SEARCH_BATCH:
            return found, None
        after = key_of(batch[-1])
        scanned += len(batch)
        if scanned >= SEARCH_SCAN:
            return found, after


def search_fields(run: Run) -> dict[str, Any]:
    """A run's fields as the search language names them (amst_core.store.search.RUN_FIELDS)."""
    fields = {k: getattr(run, k) for k in search.RUN_FIELDS if k not in ("tag", "notes")}
    fields["tag"] = run.tag_names
    if "notes" in run.__dict__:  # loaded only when a term reads it (list_runs)
        fields["notes"] = run.notes
    return fields


def ping(s: Session) -> None:
    """The cheapest round trip: raises unless the database answers (GET /health)."""
    s.execute(text("SELECT 1"))


def get_run(s: Session, run_id: str, for_update: bool = False) -> Run | None:
    """The run, locked for the rest of the transaction when it is about to change (PostgreSQL; SQLite
    serialises writers anyway)."""
    return s.get(Run, run_id, with_for_update=for_update or None)


def attempts(s: Session, run_id: str) -> list[Attempt]:
    return list(s.scalars(select(Attempt).where(Attempt.run_id == run_id).order_by(Attempt.number)))


@dataclass
class LatestValue:
    split: str
    component: str
    modality: str | None
    name: str
    epoch: int
    value: float | None


def latest_values(s: Session, run_id: str) -> list[LatestValue]:
    """The newest value of every series of a run, from the small `series` table (no scan of points)."""
    rows = s.execute(
        select(Series.split, Series.component, Series.modality, Series.name, Series.last_epoch, Series.last_value)
        .where(Series.run_id == run_id, Series.last_epoch.is_not(None))
        .order_by(Series.split, Series.component, Series.modality, Series.name))
    return [LatestValue(r.split, r.component, Modality(r.modality).to_api(), r.name, r.last_epoch,
                        finite(r.last_value)) for r in rows]


@dataclass(frozen=True)
class SeriesFilters:
    """Which series of a run to read; an empty tuple means no filter on that dimension."""

    splits: tuple[str, ...] = ()
    components: tuple[str, ...] = ()
    modalities: tuple[Modality, ...] = ()
    names: tuple[str, ...] = ()


@dataclass
class SeriesPoints:
    split: str
    component: str
    modality: str | None
    name: str
    epochs: list[int] = field(default_factory=list)
    values: list[float | None] = field(default_factory=list)


def series_points(s: Session, run_id: str, filters: SeriesFilters, since_epoch: int, before_epoch: int,
                  max_points: int | None = None) -> list[SeriesPoints]:
    """Points of the run's matching series with since_epoch < epoch < before_epoch, ordered by epoch.

    The caller passes `before_epoch = run.epochs_done`: the writer commits an epoch's points and the new
    epochs_done together, so a reader never sees half an epoch. Series without points in the window are left out.
    """
    if before_epoch <= since_epoch + 1:
        return []
    found = run_series(s, run_id, filters)
    if not found:
        return []
    for series_id, epoch, value in point_rows(s, list(found), since_epoch, before_epoch):
        out = found[series_id]
        out.epochs.append(epoch)
        out.values.append(finite(value))
    result = [p for p in found.values() if p.epochs]
    if max_points is not None:
        for p in result:
            p.epochs, p.values = downsample(p.epochs, p.values, max_points)
    return result


def point_rows(s: Session, series_ids: list[int], since_epoch: int, before_epoch: int) -> list[tuple[int, int, float]]:
    """(series_id, epoch, value) ordered by series and epoch: a range scan of the points primary key per series.

    This is the hot path of every chart, so it goes through the DBAPI cursor: for a long run (tens of thousands
    of points) building SQLAlchemy Row objects costs three to four times the query itself.
    """
    conn = s.connection()
    mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(conn.dialect.paramstyle)
    if mark is None:  # a driver with another parameter style: the portable (slower) way
        return [tuple(r) for r in s.execute(
            select(Point.series_id, Point.epoch, Point.value)
            .where(Point.series_id.in_(series_ids), Point.epoch > since_epoch, Point.epoch < before_epoch)
            .order_by(Point.series_id, Point.epoch))]
    sql = (f"SELECT series_id, epoch, value FROM {Point.__tablename__} "
           f"WHERE series_id IN ({', '.join([mark] * len(series_ids))}) AND epoch > {mark} AND epoch < {mark} "
           "ORDER BY series_id, epoch")
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, (*series_ids, since_epoch, before_epoch))
        return cursor.fetchall()
    finally:
        cursor.close()


def run_series(s: Session, run_id: str, filters: SeriesFilters) -> dict[int, SeriesPoints]:
    """The run's series that match, by id, in a stable order (uq_series_key starts with run_id)."""
    stmt = select(Series.id, Series.split, Series.component, Series.modality, Series.name).where(
        Series.run_id == run_id)
    if filters.splits:
        stmt = stmt.where(Series.split.in_(filters.splits))
    if filters.components:
        stmt = stmt.where(Series.component.in_(filters.components))
    if filters.modalities:
        stmt = stmt.where(Series.modality.in_(filters.modalities))
    if filters.names:
        stmt = stmt.where(Series.name.in_(filters.names))
    stmt = stmt.order_by(Series.split, Series.component, Series.modality, Series.name)
    return {r.id: SeriesPoints(r.split, r.component, Modality(r.modality).to_api(), r.name)
            for r in s.execute(stmt)}


def downsample(epochs: Sequence[int], values: Sequence[float | None], max_points: int
               ) -> tuple[list[int], list[float | None]]:
    """At most max_points (>= 2) points at a uniform stride, always keeping the first and the last."""
    n = len(epochs)
    if n <= max_points:
        return list(epochs), list(values)
    # Strictly increasing indices from 0 to n-1: the step (n-1)/(max_points-1) is > 1 because n > max_points.
    picks = [round(i * (n - 1) / (max_points - 1)) for i in range(max_points)]
    return [epochs[i] for i in picks], [values[i] for i in picks]


def idle_queues(s: Session, alive_since: datetime) -> set[str]:
    """Queues that a live worker serves while training nothing. A run queued there for long has lost its broker
    message; a run queued behind busy workers is just waiting (and re-sending it would only pile up duplicates)."""
    rows = s.scalars(select(Worker.queues).where(Worker.stopped_at.is_(None), Worker.heartbeat_at >= alive_since,
                                                 Worker.current_run_id.is_(None)))
    return {q.strip() for queues in rows for q in queues.split(",") if q.strip()}


def workers(s: Session, limit: int = 500) -> list[Worker]:
    return list(s.scalars(select(Worker).order_by(Worker.heartbeat_at.desc(), Worker.id).limit(limit)))


def waiting_reason(s: Session, run: Run, now: datetime, lost_after_s: float) -> str | None:
    """Why a queued run may wait forever, or None: no live worker consumes its queue, or none of those can hold
    it (amst_core.placement.cannot_hold: too few GPUs or too little memory; a worker registered before it
    announced its GPUs is given the benefit of the doubt). The rule of the queues: amst_core.settings.queue_for."""
    if run.status != RunStatus.queued:
        return None
    live = [w for w in workers(s) if w.stopped_at is None
            and (now - w.heartbeat_at).total_seconds() <= lost_after_s]
    serving = [w for w in live if run.queue in w.queues.split(",")]
    gpus = int(((run.config or {}).get("resources") or {}).get("gpus") or 1)
    if not serving:
        start = ("amst serve worker --queue cpu" if run.queue == "cpu" else "amst serve worker --gpu 0" if gpus == 1
                 else f"amst serve worker --gpus {','.join(map(str, range(gpus)))}")
        return (f"no live worker serves queue {run.queue} ({len(live)} live worker(s) serve other queues): it waits "
                f"until one does, e.g. `{start}`")
    reasons = [cannot_hold(run.config or {}, w.gpus) for w in serving if w.gpus is not None]
    if len(reasons) == len(serving) and all(reasons):
        why = "; ".join(sorted({str(r) for r in reasons}))
        return (f"no live worker of queue {run.queue} can hold it ({why}): each hands it back, and it waits until "
                "a worker that can joins")
    return None


def run_names(s: Session, run_ids: Sequence[str]) -> dict[str, str]:
    """Run id -> name, for the runs that exist among `run_ids` (what workers train: one query for a whole list)."""
    ids = sorted(set(run_ids))
    return dict(s.execute(select(Run.id, Run.name).where(Run.id.in_(ids))).tuples().all()) if ids else {}


def provenances(s: Session, run_ids: Sequence[str]) -> dict[str, dict[str, Any] | None]:
    """Run id -> its recorded provenance (None: nothing recorded yet), for the runs that exist among `run_ids`, in
    one query (Compare and a sweep's table ask for many runs at once)."""
    ids = sorted(set(run_ids))
    if not ids:
        return {}
    return {run_id: prov for run_id, prov in s.execute(select(Run.id, Run.provenance).where(Run.id.in_(ids)))}


def finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: a diverged loss is reported as null."""
    return value if value is not None and math.isfinite(value) else None
