"""Run-store helpers of the writer tests: a run, its stored points, an epoch as the engine writes it."""

from __future__ import annotations

from sqlalchemy import select

from amst_core.metrics import MetricPoint
from amst_core.selection import ModelSelection
from amst_core.store import lifecycle
from amst_core.store.models import Modality, Point, Run, Series
from tests.kit.db import tx
from tests.kit.tiny import tiny_config


def new_run(url: str) -> str:
    with tx(url) as s:
        return lifecycle.create_run(s, tiny_config(epochs=10)).id


def load(url: str, run_id: str) -> Run:
    with tx(url) as s:
        return s.get(Run, run_id)


def epoch(e: int, val: float = 0.5, test: float | None = None, loss: float = 1.0,
          epoch_time: float = 2.0) -> list[MetricPoint]:
    """One epoch as the engine writes it (a subset): fused and per-modality curves, and run-level series."""
    points = [MetricPoint("val", "fused", None, "acc", e, val),
              MetricPoint("test", "fused", None, "acc", e, val / 2 if test is None else test),
              MetricPoint("train", "fused", None, "loss", e, loss),
              MetricPoint("train", "run", None, "epoch_time", e, epoch_time)]
    points += [MetricPoint(split, "branch", m, "acc", e, val + 0.01 * i)
               for split in ("train", "val") for i, m in enumerate(("audio", "visual"))]
    return points


def stored(url: str, run_id: str) -> dict[tuple[str, str, str | None, str], dict[int, float | None]]:
    """Every point of a run: {(split, component, modality, name): {epoch: value}}, failing on duplicates."""
    out: dict[tuple[str, str, str | None, str], dict[int, float | None]] = {}
    with tx(url) as s:
        rows = s.execute(select(Series.split, Series.component, Series.modality, Series.name, Point.epoch,
                                Point.value).join(Point, Point.series_id == Series.id)
                         .where(Series.run_id == run_id))
        for split, component, modality, name, ep, value in rows:
            key = (split, component, Modality(modality).to_api(), name)
            assert ep not in out.setdefault(key, {}), f"duplicate point {key} epoch {ep}"
            out[key][ep] = value
    return out


def selecting(points: list[MetricPoint], selection: ModelSelection) -> list[MetricPoint]:
    """An epoch's points with the engine's model selection added, as the engine writes them."""
    return points + selection.update(points[0].epoch, points)
