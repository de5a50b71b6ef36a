"""Metric series on the dashboard's side: an incremental cache per run, and the views the pages draw
(curves, modality balance, skip strip, AMST-vs-baseline differences, final and best tables, CSV).

Pure functions of the API's JSON, so they are unit-tested without Streamlit.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from amst_client import Client
from ui.words import Words

Key = tuple[str, str, str | None, str]  # split, component, modality (None: whole run), name
COLUMNS = ["split", "component", "modality", "name", "epoch", "value"]
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

    def kept_before(self, epoch: int) -> RunSeries:
        """A copy holding only the points before `epoch` (those a resumed attempt did not supersede)."""
        points = {k: kept for k, values in self.points.items()
                  if (kept := {e: v for e, v in values.items() if e < epoch})}
        return RunSeries(self.run_id, self.run, min(self.next_since, epoch - 1), points)

    def settled(self, ended: Collection[str]) -> bool:
        """Finished (its status among `ended`: the vocabulary's terminal ones) and complete: nothing new will come
        (unless someone retries it)."""
        return self.run.get("status") in ended and self.next_since >= self.run.get("epochs_done", 0) - 1

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

    def components(self, words: Words) -> list[str]:
        """The predictions it has points of (not its run-level series nor its optimizer's parts)."""
        return sorted({k[1] for k in self.points if words.is_prediction(k[1])})


def refresh(client: Client, cache: dict[str, RunSeries], run_id: str, words: Words, **only: str) -> RunSeries:
    """One incremental call (points after the newest epoch held), of every series or `only` those matching
    (e.g. split="val", name="acc": what a page draws). A new attempt, or a run that went back in epochs,
    rewrote what came after its checkpoint: the points held from the epoch the API names (`superseded_from`: where
    the current attempt resumed, decided by the store) are dropped and read again; from the start when it names
    none. Progress going back within one attempt is a trigger too: a read between an attempt's start and its
    first write still sees the old points, which the store removes a moment later."""
    key = run_id + "".join(f"&{k}={v}" for k, v in sorted(only.items()))
    known = cache.get(key)
    if known is not None and known.settled(words.terminal) and time.monotonic() - known.fetched_at < SETTLED_RECHECK_S:
        return known
    current = known or RunSeries(run_id)
    body = client.metrics(run_id, current.next_since, **only)
    rewound = known is not None and (body["run"]["attempt"] != known.run.get("attempt")
                                     or body["epochs_done"] - 1 < known.next_since)
    if rewound:
        current = current.kept_before(body.get("superseded_from") or 0)
        body = client.metrics(run_id, current.next_since, **only)
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


EPOCH_TIME: Key = ("train", "run", None, "epoch_time")  # the engine's seconds per epoch, evaluation included


def wall_clock(rs: RunSeries) -> dict[int, float]:
    """Seconds since the run started at the end of each epoch (the sum of the epoch times before it)."""
    epochs, times = rs.series(EPOCH_TIME)
    total, out = 0.0, {}
    for e, t in zip(epochs, times, strict=True):
        total += t or 0.0
        out[e] = round(total, 3)
    return out


def fetch_clock(client: Client, cache: dict[str, RunSeries], run_id: str, words: Words) -> dict[int, float]:
    """A run's wall clock (wall_clock) read on its own: a page that fetches only the series it draws (Compare)
    has no epoch times among them, and an empty clock must not silently become the epochs."""
    split, _, _, name = EPOCH_TIME
    return wall_clock(refresh(client, cache, run_id, words, split=split, name=name))


def evaluated_on_improvement(rs: RunSeries, split: str, words: Words) -> bool:
    """Whether the run evaluated `split` at fewer epochs than it trained: the engine tests only when the
    validation accuracy improves (as the reference does; `test_every_epoch` changes that), so such a curve stops
    at the best epoch and has gaps. Read from the points, so it holds for any run and any setting."""
    epochs = {e for k, values in rs.points.items() if k[0] == split and words.is_prediction(k[1]) for e in values}
    return bool(epochs) and len(epochs) < rs.run.get("epochs_done", 0)


def resolve(words: Words, rs: RunSeries, split: str, component: str, modality: str | None, name: str) -> str:
    """`branch` and `helper` stand for their family: AMST-FULL has alt_branch and joint_branch instead."""
    return first_present(rs, split, words.family(component), modality, name) or component


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
    # modalities whose val probe never left chance: no plateau (a flat line at chance), no learning yet
    at_chance: list[str] = field(default_factory=list)


def balance(rs: RunSeries, words: Words, split: str | None = None, chance: float | None = None) -> Balance:
    """Branch and helper accuracy per modality at the latest epoch of `split` (the first split a model is judged
    on by default), and each modality's epochs to plateau (its val probe within a point of its best, as the engine
    reports it) unless that probe never left `chance` (1 / classes); the strongest-minus-weakest gap of the
    branches and of the probes over epochs, as the library computed and the API serves it (never recomputed here);
    the lagging modality (the weakest branch now)."""
    split = split or words.eval_splits[0]
    rows, latest, still = [], None, []
    for m in rs.modalities():
        row: dict[str, Any] = {"modality": m}
        for family in (words.branch, words.helper):
            c = first_present(rs, split, words.family(family), m, "acc")
            epochs, values = rs.series((split, c, m, "acc")) if c else ([], [])
            row[family] = values[-1] if values else None
            if epochs:
                latest = max(latest or -1, epochs[-1])
        if at_chance(rs, words, m, chance):
            still.append(m)
        row["plateau"] = None if m in still else last_plateau(rs, words, m)
        rows.append(row)
    gaps = {family: gap_series(rs, words, split, family) for family in (words.branch, words.helper)}
    ranked = sorted((r for r in rows if r[words.branch] is not None), key=lambda r: r[words.branch])
    lagging = ranked[0]["modality"] if len(ranked) >= 2 else None
    leading = ranked[-1]["modality"] if len(ranked) >= 2 else None
    served = gaps[words.branch][1]
    gap = served[-1] if lagging and served else None
    return Balance(split, latest, rows, *gaps[words.branch], lagging, leading, gap, *gaps[words.helper], still)


def gap_series(rs: RunSeries, words: Words, split: str, family: str) -> tuple[list[int], list[float | None]]:
    """The imbalance gap of a component family (its first member that has one), as the API serves it."""
    for name in words.gaps:
        c = first_present(rs, split, words.family(family), None, name)
        if c:
            return rs.series((split, c, None, name))
    return [], []


def last_plateau(rs: RunSeries, words: Words, modality: str) -> int | None:
    """The modality's epochs to plateau as the run last reported it (a run-level series of the engine)."""
    key = next((k for k in rs.points if k[1] == words.run and k[2] == modality and k[3] == "epochs_to_plateau"), None)
    values = rs.series(key)[1] if key else []
    return int(values[-1]) if values and values[-1] is not None else None


CHANCE_MARGIN = 0.05  # five accuracy points above chance: a probe below that has learnt nothing one can rely on


def at_chance(rs: RunSeries, words: Words, modality: str, chance: float | None) -> bool:
    """Whether the modality's val probe (the series its epochs to plateau are measured on) has stayed within
    CHANCE_MARGIN of chance at every epoch so far: a flat curve at chance is not a plateau. False when the chance
    level is unknown or the probe has no point yet."""
    probe = first_present(rs, "val", words.family(words.helper), modality, "acc")
    values = [v for v in rs.series(("val", probe, modality, "acc"))[1] if v is not None] if probe else []
    return chance is not None and bool(values) and max(values) <= chance + CHANCE_MARGIN


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


def whole_model(words: Words, component: str) -> str:
    """What the panel of the whole model draws: a combination of the branches when one is chosen (MLA's
    combo:<name>, which has no modality), else the fused prediction."""
    return component if words.is_combo(component) else words.fused


def compare_components(runs: Iterable[RunSeries], words: Words) -> list[str]:
    """What Compare offers per modality: the families (resolved per run), then every other prediction the runs
    logged, MLA's combinations (combo:*) included; the fused prediction and AMST-FULL's alt and joint ones are the
    whole model's panel."""
    present = {c for rs in runs for c in rs.components(words)}
    present -= {*words.families[words.fused], words.branch, words.helper}
    return [words.branch, words.helper, *sorted(present)]


def component_at(words: Words, rs: RunSeries, split: str, component: str, modality: str | None, name: str) -> str:
    """The component drawn for one panel: the whole model's (modality None) or `component` resolved per run."""
    if modality is None:
        return whole_model(words, component)
    return resolve(words, rs, split, component, modality, name)


def final_and_best(runs: list[RunSeries], labels: dict[str, str], words: Words, split: str | None = None,
                   component: str | None = None, name: str = "acc") -> pd.DataFrame:
    """One row per run, a final and a best column per modality (its `component`, resolved per run; branch by
    default) and for the whole model (fused, or the combination chosen): the last value and the best (max
    accuracy, min loss) of `split` `name` (the first split a model is judged on by default)."""
    split, component = split or words.eval_splits[0], component or words.branch
    whole = whole_model(words, component)
    panels = [*sorted({m for rs in runs for m in rs.modalities()}), None]
    columns = ["run", "epochs"] + [f"{m or whole} {what}" for m in panels for what in ("final", "best")]
    rows = []
    for rs in runs:
        row: dict[str, Any] = {"run": labels[rs.run_id], "epochs": 0}
        for modality in panels:
            comp = component_at(words, rs, split, component, modality, name)
            epochs, values = rs.series((split, comp, modality, name))
            finite = [v for v in values if v is not None]
            row[f"{modality or whole} final"] = finite[-1] if finite else None
            row[f"{modality or whole} best"] = best_of(name, values)
            row["epochs"] = max(row["epochs"], len(epochs))
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def coinciding(runs: list[RunSeries], labels: dict[str, str], words: Words, split: str, component: str,
               name: str) -> list[list[str]]:
    """Runs drawn exactly on top of each other on Compare (the same values in every panel: the same seed and
    config twice, or a copy), as groups of their labels: the one drawn last hides the others completely."""
    panels = [*sorted({m for rs in runs for m in rs.modalities()}), None]
    by_curves: dict[tuple, list[str]] = {}
    for rs in runs:
        drawn = tuple(tuple(zip(*rs.series((split, component_at(words, rs, split, component, m, name), m, name)),
                                strict=True)) for m in panels)
        if any(drawn):
            by_curves.setdefault(drawn, []).append(labels[rs.run_id])
    return [group for group in by_curves.values() if len(group) > 1]


def uneven_lengths(runs: list[dict[str, Any]]) -> str | None:
    """A warning when the runs compared are not equally long (finished or planned epochs differ): a short run's
    last value is not comparable with a long run's."""
    lengths = {(r["epochs_done"], r["epochs_total"]) for r in runs}
    if len(lengths) <= 1:
        return None
    parts = [f"{r['name']} {r['epochs_done']}/{r['epochs_total']}" for r in runs]
    return "These runs have different lengths (epochs done/planned): " + ", ".join(parts) + "."


def difference(a: RunSeries, b: RunSeries, key: Key, words: Words) -> tuple[list[int], list[float]]:
    """a - b over the epochs both have finite values for (branch and helper resolved per run)."""
    split, _, modality, name = key
    va = a.points.get((split, resolve(words, a, *key), modality, name), {})
    vb = b.points.get((split, resolve(words, b, *key), modality, name), {})
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
    seconds: list[float | None] = field(default_factory=list)  # the runs' mean wall clock at each epoch


def mean_seconds(clocks: list[dict[int, float]], epochs: list[int]) -> list[float | None]:
    """Per epoch, the mean of the runs' wall clocks that reached it (None where none has a clock)."""
    out: list[float | None] = []
    for e in epochs:
        known = [c[e] for c in clocks if e in c]
        out.append(statistics.fmean(known) if known else None)
    return out


def group_bands(runs: list[RunSeries], groups: dict[str, list[str]], split: str, component: str,
                name: str, words: Words, clocks: dict[str, dict[int, float]] | None = None
                ) -> dict[str, dict[str, Band]]:
    """Per panel (each modality, then the whole model), per group of run ids: the mean and +-1 std over the
    group's runs at every epoch any of them has (no width where only one has it). With the runs' wall `clocks`,
    each band also says when, on average, its runs reached each epoch (for a wall-time axis)."""
    by_id = {rs.run_id: rs for rs in runs}
    whole = whole_model(words, component)
    panels = [*sorted({m for rs in runs for m in rs.modalities()}), whole]
    out: dict[str, dict[str, Band]] = {}
    for panel in panels:
        modality = None if panel == whole else panel
        for label, ids in groups.items():
            per_epoch: dict[int, list[float]] = {}
            for run_id in ids:
                rs = by_id.get(run_id)
                if rs is None:
                    continue
                comp = component_at(words, rs, split, component, modality, name)
                for epoch, value in zip(*rs.series((split, comp, modality, name)), strict=True):
                    if value is not None:
                        per_epoch.setdefault(epoch, []).append(value)
            if not per_epoch:
                continue
            epochs = sorted(per_epoch)
            means = [statistics.fmean(per_epoch[e]) for e in epochs]
            stds = [statistics.stdev(per_epoch[e]) if len(per_epoch[e]) > 1 else 0.0 for e in epochs]
            seconds = mean_seconds([clocks[i] for i in ids if i in clocks], epochs) if clocks else []
            out.setdefault(panel, {})[label] = Band(epochs, means, [m - d for m, d in zip(means, stds, strict=True)],
                                                    [m + d for m, d in zip(means, stds, strict=True)], len(ids),
                                                    seconds)
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
