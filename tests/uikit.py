"""Runs with realistic curves, written into a run store the way a worker writes them (lifecycle + DbSink), for
the dashboard's tests and its render benchmark. Importable: tests/ is on sys.path via the root conftest."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from sqlalchemy.orm import Session

from amst_core.config import load_config
from amst_core.metrics import MetricPoint
from amst_core.store import lifecycle
from amst_core.store.db import get_engine
from amst_core.store.models import RunStatus
from amst_core.store.writer import DbSink

MODALITIES = ("audio", "visual")
SPEED = {"audio": 3.0, "visual": 9.0}  # epochs to learn: audio dominates, as on avdigits
CEILING = {"audio": 0.88, "visual": 0.77}


@dataclass
class SeededRun:
    id: str
    method: str
    seed: int
    status: str


def curve(epoch: int, speed: float, ceiling: float, rng: random.Random) -> float:
    return min(0.999, max(0.05, 0.1 + (ceiling - 0.1) * (1 - math.exp(-(epoch + 1) / speed)) + rng.gauss(0, 0.01)))


def epoch_points(method: str, epoch: int, rng: random.Random, skip_audio: int = 3) -> list[MetricPoint]:
    """One epoch of a two-modality run: fused, branch and helper curves per split (acc, loss, macro_f1), the
    gaps, the skip schedule and timings; AMST-FULL adds its alt and joint modules."""
    fused_extra = 0.06 if method.startswith("amst") else 0.03
    components = ["branch", "helper"] + (["alt_branch", "joint_branch"] if method == "amst_full" else [])
    points = []
    for split in ("train", "val", "test"):
        accs = {}
        for m in MODALITIES:
            for component in components:
                acc = curve(epoch, SPEED[m], CEILING[m] - (0.04 if component == "helper" else 0), rng)
                accs.setdefault(component, []).append(acc)
                points += metric_triplet(split, component, m, epoch, acc)
        fused = min(0.999, max(accs["branch"]) + fused_extra * (1 - math.exp(-epoch / 5)))
        points += metric_triplet(split, "fused", None, epoch, fused)
        points += [MetricPoint(split, c, None, "acc_gap", epoch, max(a) - min(a)) for c, a in accs.items()]
    updated = {"audio": epoch % skip_audio == 0 if method.startswith("amst") else True, "visual": True}
    points += [MetricPoint("train", "run", m, "skip", epoch, float(updated[m])) for m in MODALITIES]
    points += [MetricPoint("train", "run", None, "epoch_time", epoch, 2.0 + rng.random()),
               MetricPoint("train", "run", None, "samples_per_s", epoch, 900 + 50 * rng.random())]
    return points


def metric_triplet(split: str, component: str, modality: str | None, epoch: int, acc: float) -> list[MetricPoint]:
    return [MetricPoint(split, component, modality, "acc", epoch, acc),
            MetricPoint(split, component, modality, "loss", epoch, -math.log(acc) + 0.05),
            MetricPoint(split, component, modality, "macro_f1", epoch, acc - 0.01)]


def seed_run(url: str, method: str, epochs_done: int, epochs_total: int, status: RunStatus, seed: int = 0,
             name: str | None = None, dataset: str = "synthetic", tags: tuple[str, ...] = ()) -> SeededRun:
    """A run that reached `epochs_done` and is now `status` (queued runs get no epochs)."""
    cfg = load_config(base={"method": method, "dataset": {"name": dataset}, "epochs": epochs_total, "seed": seed,
                            "name": name, "tags": list(tags), "device": "cpu"})
    engine = get_engine(url)
    with Session(engine) as s, s.begin():
        run_id = lifecycle.create_run(s, cfg).id
    if status == RunStatus.queued:
        return SeededRun(run_id, method, seed, status)
    worker = "seed-worker"
    with Session(engine) as s, s.begin():
        attempt = lifecycle.claim(s, run_id, worker, "cpu")
        lifecycle.set_running(s, run_id, worker, attempt, 0)
    sink, rng = DbSink(run_id, url), random.Random(seed * 1000 + len(method))
    sink.begin(0)
    for epoch in range(epochs_done):
        points = epoch_points(method, epoch, rng)
        for p in points:
            p.attempt = attempt
        sink.write(points)
    if status != RunStatus.running:
        with Session(engine) as s, s.begin():
            lifecycle.finish(s, run_id, worker, attempt, status,
                             error="seeded failure" if status == RunStatus.failed else None)
    return SeededRun(run_id, method, seed, status)
