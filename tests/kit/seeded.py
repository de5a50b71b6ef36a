"""Runs with realistic curves, written into a run store the way a worker writes them (lifecycle + DbSink), for
the dashboard's tests and its render benchmark."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from amst_core.catalog import METHODS
from amst_core.config import load_config
from amst_core.metrics import MetricPoint
from amst_core.selection import ModelSelection
from amst_core.store import lifecycle
from amst_core.store.db import get_engine
from amst_core.store.models import RunStatus
from amst_core.store.writer import DbSink

APP = str(Path(__file__).resolve().parents[2] / "ui" / "app.py")  # the dashboard, for AppTest
# A run name that would inject images, links, colours and maths if the dashboard rendered it as markdown.
EVIL_NAME = "![pixel](http://evil.example/p.png) [click](http://evil.example) :red[alarm] $x$"
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


NAMES = ("acc", "loss", "macro_f1")


def epoch_points(method: str, epoch: int, rng: random.Random, skip_audio: int = 3,
                 names: tuple[str, ...] = NAMES) -> list[MetricPoint]:
    """One epoch of a two-modality run: fused, branch and helper curves per split (acc, loss, macro_f1), the
    gaps, the skip schedule and timings; AMST-FULL adds its alt and joint modules, MLA a combination, a method's
    declared run-level series are there too."""
    fused_extra = 0.06 if method.startswith("amst") else 0.03
    full = method == "amst_full"  # AMST-FULL's two modules each have branches and helpers (as the method writes)
    components = ["alt_branch", "joint_branch", "alt_helper", "joint_helper"] if full else ["branch", "helper"]
    points = []
    for split in ("train", "val", "test"):
        accs: dict[str, list[float]] = {}
        for m in MODALITIES:
            for component in components:
                acc = curve(epoch, SPEED[m], CEILING[m] - (0.04 if "helper" in component else 0), rng)
                accs.setdefault(component, []).append(acc)
                points += metric_set(split, component, m, epoch, acc, names)
        fused = min(0.999, max(accs[components[0]]) + fused_extra * (1 - math.exp(-epoch / 5)))
        for component in ("fused", "alt", "joint") if full else ("fused",):
            points += metric_set(split, component, None, epoch, fused - (0.01 if component != "fused" else 0), names)
        if method == "mla" and split != "train":  # a combination of its branches, selected like the fused one
            points += metric_set(split, "combo:entropy", None, epoch, fused - 0.005, names)
        points += [MetricPoint(split, c, None, "acc_gap", epoch, max(a) - min(a)) for c, a in accs.items()]
    updated = {"audio": epoch % skip_audio == 0 if method.startswith("amst") else True, "visual": True}
    points += [MetricPoint("train", "run", m, "skip", epoch, float(updated[m])) for m in MODALITIES]
    points += [MetricPoint("train", "run", None, "epoch_time", epoch, 2.0 + rng.random()),
               MetricPoint("train", "run", None, "samples_per_s", epoch, 900 + 50 * rng.random())]
    for i, series in enumerate(METHODS[method].series):  # what the method declares it logs (OGM-GE's coefficients)
        where = MODALITIES if series.per_modality else (None,)
        points += [MetricPoint(series.split, "run", m, series.name, epoch, 0.5 + 0.1 * i + 0.01 * epoch) for m in where]
    return points


def metric_set(split: str, component: str, modality: str | None, epoch: int, acc: float,
               names: tuple[str, ...]) -> list[MetricPoint]:
    value = {"acc": acc, "loss": -math.log(acc) + 0.05, "macro_f1": acc - 0.01, "acc_prob": acc - 0.02}
    return [MetricPoint(split, component, modality, n, epoch, value[n]) for n in names]


def seed_run(url: str, method: str, epochs_done: int, epochs_total: int, status: RunStatus, seed: int = 0,
             name: str | None = None, dataset: str = "synthetic", tags: tuple[str, ...] = (),
             names: tuple[str, ...] = NAMES, summary: dict | None = None) -> SeededRun:
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
    sink, rng, selection = DbSink(run_id, url), random.Random(seed * 1000 + len(method)), ModelSelection()
    sink.begin(0)
    for epoch in range(epochs_done):
        points = epoch_points(method, epoch, rng, names=names)
        points += selection.update(epoch, points)  # as the engine does: the store copies its choice
        for p in points:
            p.attempt = attempt
        sink.write(points)
    if status != RunStatus.running:
        with Session(engine) as s, s.begin():
            lifecycle.finish(s, run_id, worker, attempt, status, summary=summary,
                             error="seeded failure" if status == RunStatus.failed else None)
    return SeededRun(run_id, method, seed, status)


def seed_provenance(url: str, run_id: str, commit: str = "3f2a1c0d9e81", dirty: bool = False,
                    torch: str = "2.9.0") -> dict:
    """What a worker records for a run at its start (amst_core.provenance.collect's shape), written into its row:
    code at `commit` (modified tree: `dirty`), a CPU environment with `torch`, the synthetic dataset."""
    from sqlalchemy import update

    from amst_core.provenance import digest
    from amst_core.store.models import Run

    code = {"version": "0.4.0", "commit": commit.ljust(40, "0"), "dirty": dirty}
    environment = {"python": "3.11.9", "torch": torch, "cuda": None, "cudnn": None, "platform": "Linux",
                   "host": "seed-host", "device": "cpu", "device_name": "seed CPU"}
    data = {"dataset": "synthetic", "files": None, "split_files": {}, "preprocessing": {}, "digest": "5eed5eed5eed5eed"}
    prov = {"code": code, "environment": environment, "data": data, "config": {},
            "digests": {"code": digest(code), "environment": digest(environment), "data": data["digest"]}}
    with Session(get_engine(url)) as s, s.begin():
        s.execute(update(Run).where(Run.id == run_id).values(provenance=prov))
    return prov


def seed_sweep(url: str, name: str, grid: dict, runs: list[tuple[SeededRun, dict]], baseline: dict | None) -> str:
    """A sweep over already seeded runs (each with its grid values), as POST /sweeps would have made it."""
    from sqlalchemy import update

    from amst_core.store.models import Run, Sweep, utcnow

    sweep_id = lifecycle.new_run_id()
    with Session(get_engine(url)) as s, s.begin():
        s.add(Sweep(id=sweep_id, name=name, base={}, grid=grid, baseline=baseline, max_concurrent=2,
                    created_at=utcnow()))
        s.flush()
        for run, cell in runs:
            s.execute(update(Run).where(Run.id == run.id).values(sweep_id=sweep_id, sweep_cell=cell))
    return sweep_id
