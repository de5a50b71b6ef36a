"""Metric series on the dashboard's side: an incremental cache per run, and the views the pages draw
(curves, modality balance, skip strip, AMST-vs-baseline differences, final and best tables, CSV).

Pure functions of the API's JSON, so they are unit-tested without Streamlit.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from amst_client import Client

Key = tuple[str, str, str | None, str]  # split, component, modality (None: whole run), name
TERMINAL = ("succeeded", "failed", "cancelled", "lost")
COLUMNS = ["split", "component", "modality", "name", "epoch", "value"]
BRANCH_COMPONENTS = ("branch", "alt_branch", "joint_branch")
HELPER_COMPONENTS = ("helper", "alt_helper", "joint_helper")
SETTLED_RECHECK_S = 60.0  # a finished run is asked again after this long (it may have been retried)


@dataclass
class RunSeries:
    """Everything known of one run's curves; `merge` applies one GET /runs/{id}/metrics answer."""

    run_id: str
    run: dict[str, Any] = field(default_factory=dict)
    next_since: int = -1
    points: dict[Key, dict[int, float | None]] = field(default_factory=dict)
    fetched_at: float = 0.0

    def merge(self, body: dict[str, Any]) -> None:
        for s in body["series"]:
            values = self.points.setdefault((s["split"], s["component"], s["modality"], s["name"]), {})
            values.update(zip(s["epochs"], s["values"], strict=True))
        self.run = body["run"]
        self.next_since = max(self.next_since, body["next_since_epoch"])
        self.fetched_at = time.monotonic()

    @property
    def settled(self) -> bool:
        """Finished and complete: nothing new will come (unless someone retries it)."""
        return self.run.get("status") in TERMINAL and self.next_since >= self.run.get("epochs_done", 0) - 1

    def series(self, key: Key) -> tuple[list[int], list[float | None]]:
        values = self.points.get(key, {})
        epochs = sorted(values)
        return epochs, [values[e] for e in epochs]

    def series_keys(self) -> list[Key]:
        return sorted(self.points, key=lambda k: (k[0], k[1], k[2] or "", k[3]))

    def frame(self) -> pd.DataFrame:
        rows = [(*k, e, v) for k, values in self.points.items() for e, v in values.items()]
        return pd.DataFrame(rows, columns=COLUMNS).sort_values(["split", "component", "modality", "name", "epoch"],
                                                               na_position="first", ignore_index=True)

    def modalities(self) -> list[str]:
        return sorted({k[2] for k in self.points if k[2] is not None})

    def components(self) -> list[str]:
        return sorted({k[1] for k in self.points if k[1] != "run"})


def refresh(client: Client, cache: dict[str, RunSeries], run_id: str, **only: str) -> RunSeries:
    """One incremental call (points after the newest epoch held), of every series or `only` those matching
    (e.g. split="val", name="acc": what a page draws). A new attempt, or a run that went back in epochs,
    rewrites what came after its checkpoint: then the run is read again from the start."""
    key = run_id + "".join(f"&{k}={v}" for k, v in sorted(only.items()))
    known = cache.get(key)
    if known is not None and known.settled and time.monotonic() - known.fetched_at < SETTLED_RECHECK_S:
        return known
    current = known or RunSeries(run_id)
    body = client.metrics(run_id, current.next_since, **only)
    rewound = known is not None and (body["run"]["attempt"] != known.run.get("attempt")
                                     or body["epochs_done"] - 1 < known.next_since)
    if rewound:
        current = RunSeries(run_id)
        body = client.metrics(run_id, -1, **only)
    current.merge(body)
    cache[key] = current
    return current


# ---- views --------------------------------------------------------------------------------------------------

def smooth(values: list[float | None], weight: float) -> list[float | None]:
    """Exponential moving average (TensorBoard's smoothing); gaps (non-finite values) stay gaps."""
    if weight <= 0:
        return list(values)
    out: list[float | None] = []
    last = None
    for v in values:
        if v is None:
            out.append(None)
            continue
        last = v if last is None else weight * last + (1 - weight) * v
        out.append(last)
    return out


def wall_clock(rs: RunSeries) -> dict[int, float]:
    """Seconds since the run started at the end of each epoch (the sum of the epoch times before it)."""
    epochs, times = rs.series(("train", "run", None, "epoch_time"))
    total, out = 0.0, {}
    for e, t in zip(epochs, times, strict=True):
        total += t or 0.0
        out[e] = round(total, 3)
    return out


def resolve(rs: RunSeries, split: str, component: str, modality: str | None, name: str) -> str:
    """`branch` and `helper` stand for their family: AMST-FULL has alt_branch and joint_branch instead."""
    family = {"branch": BRANCH_COMPONENTS, "helper": HELPER_COMPONENTS}.get(component, (component,))
    return first_present(rs, split, family, modality, name) or component


def first_present(rs: RunSeries, split: str, components: Iterable[str], modality: str | None, name: str) -> str | None:
    return next((c for c in components if (split, c, modality, name) in rs.points), None)


@dataclass
class Balance:
    split: str
    epoch: int | None
    rows: list[dict[str, Any]]  # modality, branch, helper (accuracy at the latest epoch), plateau (epochs to it)
    gap_epochs: list[int]
    gap_values: list[float | None]
    lagging: str | None
    leading: str | None
    gap: float | None
    helper_gap_epochs: list[int] = field(default_factory=list)
    helper_gap_values: list[float | None] = field(default_factory=list)


def balance(rs: RunSeries, split: str = "val") -> Balance:
    """Branch and helper accuracy per modality at the latest epoch, and each modality's epochs to plateau (its
    val probe within a point of its best, as the engine reports it); the strongest-minus-weakest gap of the
    branches and of the probes over epochs; the lagging modality (the weakest branch now)."""
    rows, latest = [], None
    for m in rs.modalities():
        row: dict[str, Any] = {"modality": m}
        for label, components in (("branch", BRANCH_COMPONENTS), ("helper", HELPER_COMPONENTS)):
            c = first_present(rs, split, components, m, "acc")
            epochs, values = rs.series((split, c, m, "acc")) if c else ([], [])
            row[label] = values[-1] if values else None
            if epochs:
                latest = max(latest or -1, epochs[-1])
        plateau = rs.series(("val", "run", m, "epochs_to_plateau"))[1]
        row["plateau"] = int(plateau[-1]) if plateau and plateau[-1] is not None else None
        rows.append(row)
    gaps = {}
    for label, components in (("branch", BRANCH_COMPONENTS), ("helper", HELPER_COMPONENTS)):
        c = first_present(rs, split, components, None, "acc_gap")
        gaps[label] = rs.series((split, c, None, "acc_gap")) if c else ([], [])
    ranked = sorted((r for r in rows if r["branch"] is not None), key=lambda r: r["branch"])
    lagging = ranked[0]["modality"] if len(ranked) >= 2 else None
    leading = ranked[-1]["modality"] if len(ranked) >= 2 else None
    gap = ranked[-1]["branch"] - ranked[0]["branch"] if len(ranked) >= 2 else None
    return Balance(split, latest, rows, *gaps["branch"], lagging, leading, gap, *gaps["helper"])


def skip_strip(rs: RunSeries) -> tuple[list[str], list[int], list[list[float | None]]]:
    """Which modality was updated (1) or skipped (0) in which epoch: modalities x epochs."""
    modalities = [m for m in rs.modalities() if ("train", "run", m, "skip") in rs.points]
    epochs = sorted({e for m in modalities for e in rs.points[("train", "run", m, "skip")]})
    grid = [[rs.points[("train", "run", m, "skip")].get(e) for e in epochs] for m in modalities]
    return modalities, epochs, grid


def skip_factors(rs: RunSeries) -> dict[str, dict[int, float]]:
    """The skip factor in force per modality and epoch (run/<m>/skip_factor)."""
    keys = {m: ("train", "run", m, "skip_factor") for m in rs.modalities()}
    return {m: dict(rs.points[key]) for m, key in keys.items() if key in rs.points}


def skip_decisions(rs: RunSeries) -> list[dict[str, object]]:
    """`skip: auto`'s decisions: after which epoch, each modality's measured speed and the factor it gave (in
    force from the next epoch)."""
    speeds = {m: rs.points[key] for m in rs.modalities() if (key := ("train", "run", m, "skip_speed")) in rs.points}
    factors = skip_factors(rs)
    rows = []
    for epoch in sorted({e for by_epoch in speeds.values() for e in by_epoch}):
        row: dict[str, object] = {"after epoch": epoch}
        for m, by_epoch in sorted(speeds.items()):
            if epoch in by_epoch:
                row[f"{m} speed"] = round(by_epoch[epoch], 4)
                row[f"{m} factor"] = factors.get(m, {}).get(epoch + 1)
        rows.append(row)
    return rows


def best_of(name: str, values: Iterable[float | None]) -> float | None:
    finite = [v for v in values if v is not None]
    if not finite:
        return None
    return min(finite) if name == "loss" else max(finite)


def final_and_best(runs: list[RunSeries], labels: dict[str, str], split: str = "val", component: str = "branch",
                   name: str = "acc") -> pd.DataFrame:
    """One row per run, a final and a best column per modality (its `component`, resolved per run) and for the
    fused prediction: the last value and the best (max accuracy, min loss) of `split` `name`."""
    panels = [*sorted({m for rs in runs for m in rs.modalities()}), None]
    columns = ["run", "epochs"] + [f"{m or 'fused'} {what}" for m in panels for what in ("final", "best")]
    rows = []
    for rs in runs:
        row: dict[str, Any] = {"run": labels[rs.run_id], "epochs": 0}
        for modality in panels:
            comp = "fused" if modality is None else resolve(rs, split, component, modality, name)
            epochs, values = rs.series((split, comp, modality, name))
            finite = [v for v in values if v is not None]
            row[f"{modality or 'fused'} final"] = finite[-1] if finite else None
            row[f"{modality or 'fused'} best"] = best_of(name, values)
            row["epochs"] = max(row["epochs"], len(epochs))
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def uneven_lengths(runs: list[dict[str, Any]]) -> str | None:
    """A warning when the runs compared are not equally long (finished or planned epochs differ): a short run's
    last value is not comparable with a long run's."""
    lengths = {(r["epochs_done"], r["epochs_total"]) for r in runs}
    if len(lengths) <= 1:
        return None
    parts = [f"{r['name']} {r['epochs_done']}/{r['epochs_total']}" for r in runs]
    return "These runs have different lengths (epochs done/planned): " + ", ".join(parts) + "."


def pair_baselines(runs: list[dict[str, Any]], candidates: list[dict[str, Any]],
                   baseline_method: str = "naive") -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each AMST run with a baseline of the same dataset and seed: a selected one first, else the newest
    succeeded one among `candidates` (newest first), else the newest of any status."""
    def key(r: dict[str, Any]) -> tuple[str, int]:
        return r["dataset"], r["seed"]

    pool = [r for r in runs if r["method"] == baseline_method]
    pool += sorted((r for r in candidates if r["method"] == baseline_method and r not in pool),
                   key=lambda r: r["status"] != "succeeded")  # stable: newest first within each group
    pairs = []
    for run in runs:
        if run["method"].startswith("amst"):
            base = next((b for b in pool if key(b) == key(run)), None)
            if base is not None:
                pairs.append((run, base))
    return pairs


def difference(a: RunSeries, b: RunSeries, key: Key) -> tuple[list[int], list[float]]:
    """a - b over the epochs both have finite values for (branch and helper resolved per run)."""
    split, _, modality, name = key
    va = a.points.get((split, resolve(a, *key), modality, name), {})
    vb = b.points.get((split, resolve(b, *key), modality, name), {})
    epochs = sorted(e for e in va.keys() & vb.keys() if va[e] is not None and vb[e] is not None)
    return epochs, [va[e] - vb[e] for e in epochs]


def to_csv(rs: RunSeries) -> bytes:
    buffer = io.StringIO()
    frame = rs.frame()
    frame.insert(0, "run_id", rs.run_id)
    frame.to_csv(buffer, index=False)
    return buffer.getvalue().encode()


@dataclass
class Band:
    """One group's curve: mean over its runs per epoch, and the band of one standard deviation around it."""

    epochs: list[int]
    mean: list[float]
    low: list[float]
    high: list[float]
    runs: int


def group_bands(runs: list[RunSeries], groups: dict[str, list[str]], split: str, component: str,
                name: str) -> dict[str, dict[str, Band]]:
    """Per panel (each modality, then fused), per group of run ids: the mean and +-1 std over the group's runs at
    every epoch any of them has (no width where only one has it)."""
    by_id = {rs.run_id: rs for rs in runs}
    panels = [*sorted({m for rs in runs for m in rs.modalities()}), "fused"]
    out: dict[str, dict[str, Band]] = {}
    for panel in panels:
        modality = None if panel == "fused" else panel
        for label, ids in groups.items():
            per_epoch: dict[int, list[float]] = {}
            for run_id in ids:
                rs = by_id.get(run_id)
                if rs is None:
                    continue
                comp = "fused" if modality is None else resolve(rs, split, component, modality, name)
                for epoch, value in zip(*rs.series((split, comp, modality, name)), strict=True):
                    if value is not None:
                        per_epoch.setdefault(epoch, []).append(value)
            if not per_epoch:
                continue
            epochs = sorted(per_epoch)
            means = [statistics.fmean(per_epoch[e]) for e in epochs]
            stds = [statistics.stdev(per_epoch[e]) if len(per_epoch[e]) > 1 else 0.0 for e in epochs]
            out.setdefault(panel, {})[label] = Band(epochs, means, [m - d for m, d in zip(means, stds, strict=True)],
                                                    [m + d for m, d in zip(means, stds, strict=True)], len(ids))
    return out


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested run config as dotted keys: {"skip": {"audio": 3}} -> {"skip.audio": 3}."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


IDENTITY_KEYS = ("name", "tags", "seed")  # never a grouping: every run has its own


def differing_keys(configs: list[dict[str, Any]]) -> list[str]:
    """Dotted keys whose values differ among these flattened configs (what runs could be grouped by)."""
    keys = sorted({k for c in configs for k in c} - set(IDENTITY_KEYS))
    return [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]


def group_runs(runs: list[dict[str, Any]], configs: dict[str, dict[str, Any]], keys: list[str]) -> dict[str, list[str]]:
    """Run ids by their values of `keys`, labelled "key=value, ..."."""
    groups: dict[str, list[str]] = {}
    for run in runs:
        label = ", ".join(f"{k}={configs[run['id']].get(k)}" for k in keys)
        groups.setdefault(label, []).append(run["id"])
    return groups
