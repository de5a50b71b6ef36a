"""One finished (or stopped) run as an export copies it: its config, its points, its summary and its provenance.

A run is named by its folder (what `amst train --out` writes) or by the id of a run of this machine's service
(AMST_ARTIFACTS/runs/<id>). A folder's points are its metrics.jsonl; a service run keeps its points in the run
store (DATABASE_URL), which is read instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from amst_core.metrics import MetricPoint
from amst_core.runfolder import find_run


@dataclass
class RunRecord:
    run_id: str
    config: dict[str, Any]
    points: list[MetricPoint]
    summary: dict[str, Any] | None = None  # none while the run has not ended
    provenance: dict[str, Any] | None = None  # none for a run older than provenance records

    @property
    def name(self) -> str:
        return self.config.get("name") or self.run_id


def read_run(ref: str | Path) -> RunRecord:
    """The run a command line names; FileNotFoundError saying where it looked when there is none."""
    folder = find_run(ref)
    config = yaml.safe_load(folder.config.read_text())
    points = jsonl_points(folder.metrics) if folder.metrics.exists() else stored_points(folder.name)
    return RunRecord(folder.name, config, points, json_or_none(folder.summary), json_or_none(folder.provenance))


def jsonl_points(path: Path) -> list[MetricPoint]:
    """metrics.jsonl's points; a last line cut short by a kill mid-write was never written."""
    points = []
    for line in path.read_text().splitlines():
        try:
            points.append(MetricPoint(**json.loads(line)))
        except (ValueError, TypeError):
            continue
    return points


def stored_points(run_id: str) -> list[MetricPoint]:
    """A service run's points, from the run store (its whole epochs: those the writer has committed)."""
    from amst_core.settings import get_settings
    from amst_core.store.db import session_scope
    from amst_core.store.queries import SeriesFilters, get_run, series_points

    url = get_settings().db_url
    with session_scope(url) as s:
        run = get_run(s, run_id)
        if run is None:
            raise FileNotFoundError(f"{run_id}: its folder holds no metrics.jsonl and the run store ({url}) knows "
                                    "no run of that id")
        series = series_points(s, run_id, SeriesFilters(), -1, run.epochs_done)
    return [MetricPoint(one.split, one.component, one.modality, one.name, epoch,
                        float("nan") if value is None else value)
            for one in series for epoch, value in zip(one.epochs, one.values, strict=True)]


def json_or_none(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None
