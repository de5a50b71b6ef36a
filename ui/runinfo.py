"""The Run page's facts, as pure functions of the API's JSON (unit-tested without Streamlit): progress inside an
epoch and the ETA, the chance level a modality is judged against, what a re-run or a config download carries,
where each config value came from (GET /runs/{id}'s config_origin), and what the run can be traced to (its
provenance)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import yaml

from ui.series import CHANCE_MARGIN, Balance, flatten

# What a run is called and how it is labelled: the run's own, never part of what reproduces it. So is the data
# digest a re-run expects (data_fingerprint): a copy is checked against its data only when re-run exactly.
LABEL_FIELDS = ("name", "tags", "data_fingerprint")


# ---- progress inside an epoch ---------------------------------------------------------------------------------

def pass_seconds_left(run: dict[str, Any]) -> float | None:
    """Seconds left in the current pass (train, val or test) at the rate the worker measured."""
    live, batch_size = run.get("live") or {}, (run.get("config") or {}).get("batch_size")
    if not live.get("samples_per_s") or not batch_size or not live.get("batches"):
        return None
    return max(0, live["batches"] - live["batch"]) * batch_size / live["samples_per_s"]


def eta_seconds(run: dict[str, Any], now: datetime | None = None) -> float | None:
    """The API's ETA (median epoch time x epochs left) once an epoch has ended; inside the first epoch, one from
    the batches done and the rate: the epoch's length is its training pass (evaluation not counted yet), or,
    once evaluating, the time since the run started plus what is left of this pass."""
    if run.get("eta_s") is not None:
        return run["eta_s"]
    live, left = run.get("live") or {}, pass_seconds_left(run)
    if left is None:
        return None
    epochs_after = max(0, run["epochs_total"] - live["epoch"] - 1)
    if live["split"] == "train":
        epoch_s = live["batches"] * run["config"]["batch_size"] / live["samples_per_s"]
    else:
        started = since(run.get("started_at"), now)
        if started is None:
            return None
        epoch_s = started + left
    return left + epochs_after * epoch_s


def since(timestamp: str | None, now: datetime | None = None) -> float | None:
    """Seconds since an ISO time of the API (UTC)."""
    if not timestamp:
        return None
    then = datetime.fromisoformat(timestamp)
    then = then if then.tzinfo else then.replace(tzinfo=UTC)
    return max(0.0, ((now or datetime.now(UTC)) - then).total_seconds())


def live_line(run: dict[str, Any], left: str | None) -> str | None:
    """Progress inside the epoch from the worker's heartbeat: which pass, how far, how fast, when it ends
    (`left`: the pass's remaining time, formatted)."""
    live = run.get("live")
    if not live or not live.get("batches"):
        return None
    text = (f"Epoch {live['epoch'] + 1}/{run['epochs_total']}: {live['split']} batch {live['batch']}/"
            f"{live['batches']}")
    if live.get("samples_per_s"):
        text += f" · {live['samples_per_s']:.0f} samples/s"
    if left is not None:
        then = " (then validation and test)" if live["split"] == "train" else ""
        text += f" · this pass ends in ~{left}{then}"
    return text


def pass_fraction(run: dict[str, Any]) -> float | None:
    """How far the current pass is, 0..1 (the first epoch's bar)."""
    live = run.get("live") or {}
    return min(1.0, live["batch"] / live["batches"]) if live.get("batches") else None


# ---- the chance level ------------------------------------------------------------------------------------------

def chance_level(config: dict[str, Any], datasets: list[dict[str, Any]]) -> float | None:
    """1 / the number of classes: the dataset's classes (GET /datasets), or a synthetic dataset's num_classes;
    None where the classes are read from the data (a folder dataset)."""
    dataset = config.get("dataset") or {}
    info = next((d for d in datasets if d["name"] == dataset.get("name")), None)
    classes = len(info["classes"]) if info and info.get("classes") else None
    synthetic = dataset.get("synthetic")
    if classes is None and isinstance(synthetic, dict):
        classes = synthetic.get("num_classes")
    return 1 / classes if classes else None


def plateau_line(b: Balance, chance: float | None) -> str | None:
    """Each modality's epochs to plateau; one whose val probe never left chance is named as such, not as the
    modality that plateaued first."""
    parts = [f"{r['modality']}: still at chance" if r["modality"] in b.at_chance else f"{r['modality']} {r['plateau']}"
             for r in b.rows if r["modality"] in b.at_chance or r.get("plateau") is not None]
    if not parts:
        return None
    note = f"; still at chance: never above {chance + CHANCE_MARGIN:.2f}, chance being {chance:.2f}" \
        if chance is not None and b.at_chance else ""
    return f"Epochs to plateau (val probe within a point of its best so far{note}): " + " · ".join(parts)


# ---- what a re-run and a download carry ------------------------------------------------------------------------

def reproducible(config: dict[str, Any]) -> dict[str, Any]:
    """The config that trains the same run again: without the run's name and tags (a re-run is a new run, named
    and tagged by whoever starts it)."""
    kept = copy.deepcopy(config)
    for label in LABEL_FIELDS:
        kept.pop(label, None)
    return kept


def reproducible_yaml(config: dict[str, Any]) -> bytes:
    """The YAML download: `amst train --config` and POST /runs take it as it is."""
    return yaml.safe_dump(reproducible(config), sort_keys=False).encode()


# ---- where config values came from -----------------------------------------------------------------------------

# GET /runs/{id}'s config_origin values, in the order a reader asks about them, with what each means.
ORIGINS = {"request": "the submission", "recipe": "the {dataset} recipe", "data": "the dataset's files",
           "reference": "the reference defaults (the paper's settings)"}


def origin_rows(config: dict[str, Any], origin: dict[str, str] | None) -> list[dict[str, Any]]:
    """The config as rows of dotted key, value and (when the API says) where the value came from."""
    rows = []
    for key, value in flatten(reproducible(config)).items():
        row = {"key": key, "value": value if isinstance(value, str) else json.dumps(value)}
        if origin is not None:
            row["from"] = origin.get(key, "")
        rows.append(row)
    return rows


def origin_caption(config: dict[str, Any], origin: dict[str, str] | None, listed: int = 6) -> str | None:
    """One sentence on the defaults: the values the dataset's recipe and its files chose (named, with their
    values), how many are the reference's (the paper's settings: most of a config, so counted, not listed); None
    when the API does not say (an older API)."""
    if not origin:
        return None
    values = flatten(config)
    dataset = (config.get("dataset") or {}).get("name", "dataset")
    parts = []
    for kind in ("recipe", "data"):
        keys = sorted(k for k, o in origin.items() if o == kind)
        if keys:
            named = ", ".join(f"{k} {values.get(k)}" for k in keys[:listed])
            more = f" and {len(keys) - listed} more" if len(keys) > listed else ""
            parts.append(f"from {ORIGINS[kind].format(dataset=dataset)}: {named}{more}")
    reference = sum(1 for o in origin.values() if o == "reference")
    if reference:
        parts.append(f"{reference} more from {ORIGINS['reference']}")
    if not parts:
        return "Every setting was set by the submission."
    asked = " (this run asked for the reference's settings: recipe reference)" if config.get("recipe") == "reference" \
        else ""
    return "Defaults" + asked + " — " + "; ".join(parts) + "."


# ---- what the run can be traced to (GET /runs/{id}'s provenance) ------------------------------------------------

def code_label(code: dict[str, Any]) -> str:
    """3f2a1c0, 3f2a1c0-dirty (a modified tree), or the version where the code ran from no git checkout."""
    if not code.get("commit"):
        return f"v{code.get('version', '?')}"
    return code["commit"][:7] + ("-dirty" if code.get("dirty") else "")


def provenance_label(prov: dict[str, Any]) -> str:
    """The panel's title: the code, torch, the device and the data at a glance."""
    env = prov.get("environment") or {}
    return (f"Provenance · {code_label(prov.get('code') or {})} · torch {env.get('torch', '?')} · "
            f"{env.get('device', '?')} · data {(prov.get('digests') or {}).get('data', '?')[:8]}")


def provenance_rows(prov: dict[str, Any]) -> list[dict[str, str]]:
    """What the run ran: code, environment, host and device, and the data, each in a row a person reads."""
    code, env, data = prov.get("code") or {}, prov.get("environment") or {}, prov.get("data") or {}
    commit = code.get("commit")
    rows = [("code", f"version {code.get('version', '?')} · "
                     + (f"commit {commit[:12]}" + (" · modified tree" if code.get("dirty") else " · clean tree")
                        if commit else "not run from a git checkout")),
            ("python", env.get("python")), ("torch", env.get("torch")),
            ("CUDA", env.get("cuda") or "none (a CPU build)"), ("cuDNN", env.get("cudnn") or "—"),
            ("platform", env.get("platform")), ("host", env.get("host")),
            ("device", f"{env.get('device', '?')} ({env.get('device_name') or 'unnamed'})"),
            ("data", f"{data.get('dataset', '?')} · digest {data.get('digest', '?')}"),
            ("data covers", data_coverage(data))]
    if prov.get("attempt"):
        rows.append(("recorded by", f"attempt {prov['attempt']}"))
    return [{"what": what, "value": str(value) if value is not None else "—"} for what, value in rows]


def data_coverage(data: dict[str, Any]) -> str:
    """What the data digest stands for: the dataset folder's files, its split files, the preprocessing settings."""
    files = data.get("files")
    parts = [f"{files['count']:,} files ({files['bytes']:,} bytes) under {data.get('root', '?')}/: path, size, "
             "modification time" if files else "no dataset folder (generated data)"]
    if data.get("split_files"):
        parts.append("the contents of the split and class files (" + ", ".join(sorted(data["split_files"])) + ")")
    settings = data.get("preprocessing") or {}
    if settings:
        parts.append(f"{len(flatten(settings))} preprocessing settings ({', '.join(sorted(settings))})")
    if data.get("text_model"):
        parts.append("the text model's files")
    return "; ".join(parts)
