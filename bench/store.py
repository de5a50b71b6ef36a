"""Metric ingestion into the run store: the DB sink against one INSERT per point, side by side.

Each round writes the same epochs through both writers into fresh runs (the order alternates between rounds,
so a drifting machine hits both alike) and reports points/s and the ratio. Batch sizes: one AMST-FULL epoch
of real metric points (about 230) and larger synthetic epochs, because the sink commits once per epoch and
per-transaction cost dominates small epochs.

    python bench/store.py [--url postgresql://postgres@127.0.0.1:5432/test] [--rounds 3] [--epochs 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from scratch import scratch_database
from sqlalchemy import insert

from amst_core.metrics import MetricPoint
from amst_core.store.db import get_engine, session_scope
from amst_core.store.migrate import upgrade
from amst_core.store.models import Modality, Point, Run, Series
from amst_core.store.writer import DbSink

SPLITS = ("train", "val", "test")
NAMES = ("loss", "acc", "acc_prob", "macro_f1")


def epoch_points(epoch: int, components: int) -> list[MetricPoint]:
    """`components` x 3 modalities x 3 splits x 4 names points for one epoch."""
    comps = [f"c{i}" for i in range(components)]
    return [MetricPoint(split, c, m, n, epoch, 0.001 * epoch + 0.5)
            for split in SPLITS for c in comps for m in (None, "audio", "visual") for n in NAMES]


def new_run(url: str) -> str:
    run_id = uuid.uuid4().hex[:16]
    with session_scope(url) as s:
        s.add(Run(id=run_id, name="bench", method="naive", dataset="synthetic", seed=0, config={}, queue="cpu",
                  epochs_total=1000))
    return run_id


def with_sink(url: str, epochs: list[list[MetricPoint]]) -> float:
    sink = DbSink(new_run(url), url)
    sink.begin(0)
    t0 = time.perf_counter()
    for points in epochs:
        sink.write(points)
    return time.perf_counter() - t0


def one_insert_per_point(url: str, epochs: list[list[MetricPoint]]) -> float:
    """The naive writer: look up or create the series, then INSERT the point and commit, point by point."""
    run_id = new_run(url)
    engine = get_engine(url)
    series: dict[tuple, int] = {}
    t0 = time.perf_counter()
    for points in epochs:
        for p in points:
            key = (p.split, p.component, Modality.from_api(p.modality), p.name)
            with engine.begin() as conn:
                if key not in series:
                    series[key] = conn.execute(insert(Series).values(
                        run_id=run_id, split=key[0], component=key[1], modality=key[2], name=key[3])
                        .returning(Series.id)).scalar_one()
                conn.execute(insert(Point).values(series_id=series[key], epoch=p.epoch, value=p.value, step=0,
                                                  attempt=1, recorded_at=p.recorded_at))
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="PostgreSQL server to create a scratch database on, or sqlite (a temporary file)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--naive-epochs", type=int, default=3, help="epochs for the slow per-point writer")
    args = parser.parse_args()
    with scratch_database(args.url) as url:
        upgrade(url)
        measure(url, args)


def measure(url: str, args: argparse.Namespace) -> None:
    print(f"database: {get_engine(url).dialect.name}; {args.rounds} rounds, medians\n")
    print("| points per epoch (one transaction) | DB sink points/s | one INSERT per point points/s | ratio |")
    print("|---:|---:|---:|---:|")
    for components in (6, 60, 600):
        size = len(epoch_points(0, components))
        fast, slow = [], []
        for r in range(args.rounds):
            sink_epochs = [epoch_points(e, components) for e in range(args.epochs)]
            naive_epochs = [epoch_points(e, components) for e in range(args.naive_epochs)]
            order = [("sink", sink_epochs), ("naive", naive_epochs)]
            for name, epochs in order if r % 2 == 0 else reversed(order):
                n = sum(len(e) for e in epochs)
                if name == "sink":
                    fast.append(n / with_sink(url, epochs))
                else:
                    slow.append(n / one_insert_per_point(url, epochs))
        f, s = statistics.median(fast), statistics.median(slow)
        print(f"| {size:,} | {f:,.0f} | {s:,.0f} | {f / s:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
