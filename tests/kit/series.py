"""The metrics answers of the API as the dashboard's tests build them (api/schemas.py's shapes), and a RunSeries
made from them."""

from __future__ import annotations

from typing import Any

from ui.series import RunSeries


def summary(run_id: str = "r1", status: str = "running", epochs_done: int = 0, attempt: int = 1, **extra: Any):
    """A RunSummary as the API sends it (api/schemas.py)."""
    return {"id": run_id, "name": f"run {run_id}", "status": status, "method": "amst_alt", "dataset": "synthetic",
            "seed": 0, "tags": [], "created_at": "2025-01-01T00:00:00", "started_at": "2025-01-01T00:00:01",
            "finished_at": None, "attempt": attempt, "epochs_done": epochs_done, "epochs_total": 10,
            "progress": epochs_done / 10, "best_epoch": None, "best_val_acc": None, "test_acc_at_best": None,
            "queue": "default", "device": "cpu", "heartbeat_age_s": 1.0, "eta_s": None, **extra}


def metrics_body(run_id: str = "r1", status: str = "running", epochs_done: int = 0, attempt: int = 1,
                 series: list[tuple] | None = None, next_since: int | None = None) -> dict[str, Any]:
    """A GET /runs/{id}/metrics answer; `series` holds (split, component, modality, name, epochs, values)."""
    out = [{"split": sp, "component": c, "modality": m, "name": n, "epochs": list(e), "values": list(v)}
           for sp, c, m, n, e, v in series or []]
    newest = max((s["epochs"][-1] for s in out if s["epochs"]), default=-1)
    return {"run_id": run_id, "status": status, "epochs_done": epochs_done,
            "run": summary(run_id, status, epochs_done, attempt), "series": out,
            "next_since_epoch": newest if next_since is None else next_since}


def make(run_id: str = "r1", series: list[tuple] | None = None, status: str = "succeeded",
         epochs_done: int | None = None) -> RunSeries:
    rs = RunSeries(run_id)
    if epochs_done is None:
        epochs_done = 1 + max((max(s[4]) for s in series or [] if s[4]), default=-1)
    rs.merge(metrics_body(run_id, status, epochs_done, series=series))
    return rs
