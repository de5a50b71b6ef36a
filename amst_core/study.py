"""`amst sweep` and `amst reproduce`: a grid of runs from the command line, trained here one after another, and its
results matrix printed and written as CSV, Markdown and LaTeX. (Submitted to a server instead, `--api URL`, it is
launch.remote's work, through amst_client: the library talks no HTTP.)

Here, each run trains into `<out>/<run name>/`; a run whose folder already holds its summary is not trained
again, so an interrupted study continues where it stopped (an interrupted run resumes from its checkpoint).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from amst_core.config import ConfigError
from amst_core.sweeps import (
    RunResult,
    SweepError,
    expand,
    format_cell,
    matrix,
    modality_measures,
    render_table,
)

REPRODUCE_DIR = Path(__file__).resolve().parents[1] / "configs"


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """`--grid method=naive,amst_full --grid skip.audio=1,2,5`: values read as YAML scalars."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError("--grid", f"{item!r}: give KEY=V1,V2,...")
        try:
            grid[key.strip()] = [yaml.safe_load(v) for v in values.split(",")]
        except yaml.YAMLError as err:
            raise ConfigError("--grid", f"{item!r}: {err}") from None
    return grid


def parse_cell(text: str | None) -> dict[str, Any] | None:
    """`method=naive,optim.lr=0.1` -> {"method": "naive", "optim.lr": 0.1}."""
    if not text:
        return None
    return {k: v[0] for k, v in parse_grid([f"{k}={v}" for k, _, v in (i.partition("=") for i in text.split(","))])
            .items()}


def run_dir_name(cell: Mapping[str, Any]) -> str:
    return "_".join(f"{k}-{v}" for k, v in cell.items()).replace("/", "-") or "run"


def run_here(base: Mapping[str, Any], grid: Mapping[str, Any], baseline: Mapping[str, Any] | None, out: Path,
             progress: bool | None) -> list[RunResult]:
    from amst_core.execute import execute_run
    from amst_core.runfolder import RunFolder
    from amst_core.sinks import ConsoleSink, JsonlSink

    try:
        runs = expand(base, grid)
    except SweepError as err:
        raise ConfigError(err.field, str(err)) from None
    results = []
    for i, run in enumerate(runs, start=1):
        folder = out / run_dir_name(run.cell)
        summary_file = RunFolder(folder).summary
        print(f"[{i}/{len(runs)}] {format_cell(run.cell)} -> {folder}", file=sys.stderr)
        if summary_file.exists():  # trained by an earlier call of this study
            summary = json.loads(summary_file.read_text())
        else:  # (an interrupted run resumes from its last checkpoint)
            summary = execute_run(run.config, folder, [JsonlSink(RunFolder(folder).metrics),
                                                       ConsoleSink(run.config.epochs)],
                                  run_id=folder.name, progress=progress)
        measures = {"best_val_acc": summary.get("best_val_acc"), "test_acc_at_best": summary.get("test_acc_at_best"),
                    **modality_measures(summary.get("test_at_best"))}
        results.append(RunResult(dict(run.cell), measures))
    return results


def write_tables(results: list[RunResult], baseline: Mapping[str, Any] | None, out: Path,
                 shown: str = "markdown") -> str:
    """matrix.csv, .md and .tex in `out`; the `shown` one's text. Where the runs differ in code, environment or
    data (their provenance.json), the tables' notes say so first, and so does stderr."""
    try:
        rows = matrix(results, baseline)
    except SweepError as err:
        raise ConfigError(err.field, str(err)) from None
    warnings = run_differences(out / run_dir_name(r.cell) for r in results)
    for line in warnings:
        print(f"warning: the runs' {line}", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    for suffix in ("csv", "md", "tex"):
        (out / f"matrix.{suffix}").write_text(render_table(rows, suffix, warnings))
    return render_table(rows, shown, warnings)


def run_differences(folders: Iterable[Path]) -> list[str]:
    from amst_core.provenance import differences
    from amst_core.runfolder import RunFolder

    recorded = [RunFolder(f).provenance for f in folders]
    return differences([json.loads(p.read_text()) if p.exists() else None for p in recorded])


def load_study(path: Path) -> dict[str, Any]:
    """A study file: `base` (a run config, or `base_config`: a path to one), `grid`, optional `baseline`."""
    try:
        study = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError("config", f"file not found: {path}") from None
    if not isinstance(study, dict) or "grid" not in study:
        raise ConfigError("config", f"{path} must hold `base` (or `base_config`) and `grid`")
    if "base_config" in study:
        study["base"] = yaml.safe_load((path.parent / study.pop("base_config")).read_text())
    return study
