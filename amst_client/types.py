"""What the API answers, as typed dictionaries: plain JSON at run time (so it prints, compares and serialises as
the API sent it), typed for editors and type checkers. The fields are the API's (OpenAPI at /docs); a field
that only some answers carry (a run's `config` in a list, the detail fields of one run) is marked NotRequired.
tests/client checks these against the API's schemas."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class Live(TypedDict):
    epoch: int
    split: str
    batch: int
    batches: int
    samples_per_s: float | None
    updated_at: str


class Latest(TypedDict):
    split: str
    component: str
    modality: str | None
    name: str
    epoch: int
    value: float | None


class Attempt(TypedDict):
    number: int
    status: str
    worker_id: str | None
    start_epoch: int
    started_at: str
    ended_at: str | None
    error: str | None


class Run(TypedDict):
    """GET /runs/{id} (every field) or one item of GET /runs (the fields up to `config`, which a list carries only
    when asked)."""

    id: str
    name: str
    status: str
    method: str
    dataset: str
    seed: int
    tags: list[str]
    created_at: str
    started_at: str | None
    finished_at: str | None
    attempt: int
    epochs_done: int
    epochs_total: int
    progress: float
    best_epoch: int | None
    best_val_acc: float | None
    test_acc_at_best: float | None
    queue: str
    device: str | None
    heartbeat_age_s: float | None
    eta_s: float | None
    live: Live | None
    archived: bool
    archived_at: str | None
    config: NotRequired[dict[str, Any] | None]
    notes: NotRequired[str | None]
    error: NotRequired[str | None]
    restarts: NotRequired[int]
    max_restarts: NotRequired[int]
    cancel_requested: NotRequired[bool]
    worker_id: NotRequired[str | None]
    queue_position: NotRequired[int | None]
    waiting_for: NotRequired[str | None]
    median_epoch_s: NotRequired[float | None]
    last_epoch_at: NotRequired[str | None]
    summary: NotRequired[dict[str, Any] | None]
    attempts: NotRequired[list[Attempt]]
    latest: NotRequired[list[Latest]]
    artifacts: NotRequired[dict[str, Any]]
    config_origin: NotRequired[dict[str, str]]
    provenance: NotRequired[dict[str, Any] | None]  # what its latest attempt recorded: code, environment, data, ...
    rerun_of: NotRequired[str | None]  # the run it re-runs


class Rerun(Run):
    """POST /runs/{id}/rerun: the new run, and what the re-run could not check or had to let go."""

    warnings: list[str]


class Differences(TypedDict):
    """GET /differences: one line per aspect (code, environment, data) in which the runs differ."""

    runs: list[str]
    differences: list[str]


class SeriesPoints(TypedDict):
    split: str
    component: str
    modality: str | None
    name: str
    epochs: list[int]
    values: list[float | None]


class Metrics(TypedDict):
    """GET /runs/{id}/metrics: points after `since_epoch`, and the run as it was when they were read."""

    run_id: str
    status: str
    epochs_done: int
    run: Run
    series: list[SeriesPoints]
    next_since_epoch: int
    superseded_from: NotRequired[int | None]  # a later attempt resumed here: points held from here on are replaced


class Log(TypedDict):
    text: str
    offset: int
    next_offset: int
    size: int
    truncated: bool


class Sweep(TypedDict):
    """GET /sweeps/{id} (every field) or one item of GET /sweeps (the fields up to `progress`)."""

    id: str
    name: str
    status: str
    created_at: str
    grid: dict[str, Any]
    baseline: dict[str, Any] | None
    max_concurrent: int
    progress: dict[str, Any]
    base: NotRequired[dict[str, Any]]
    runs: NotRequired[list[Run]]
    cells: NotRequired[list[dict[str, Any]]]
    matrix: NotRequired[list[dict[str, Any]]]
    differences: NotRequired[list[str]]  # how its runs differ in code, environment or data


class Method(TypedDict):
    name: str
    summary: str
    default_fusion: str
    fusion_fixed: bool
    uses_skip: bool
    params_schema: dict[str, Any]
    params_defaults: dict[str, Any]
    series: list[dict[str, Any]]


class Dataset(TypedDict):
    name: str
    summary: str
    modalities: list[str]
    classes: list[str]
    splits: list[str]
    prepared: bool
    problem: str | None
    sizes: dict[str, int] | None
    folders: list[str]
    text: bool
    prepare_command: str | None
    defaults: dict[str, Any]
    recipes: dict[str, dict[str, Any]]
    reference: dict[str, dict[str, Any]]
    knobs: NotRequired[list[str]]  # the dataset options (dataset.<knob>) a run of it may set
    split_counts: NotRequired[dict[str, SplitCounts] | None]  # per split of its reference split, where counted
    shared_speakers: NotRequired[dict[str, int]]  # speakers found in two splits, per pair ("train/test")
    split_schemes: NotRequired[list[str]]  # the dataset.split_scheme values a run of it may set


class SplitCounts(TypedDict):
    samples: int
    classes: dict[str, int]  # class -> samples of it
    speakers: list[str]  # sorted; empty where the sample ids do not say who speaks


class Gpu(TypedDict):
    index: int  # cuda:<index> in the worker's process
    name: str
    memory_mib: int


class SlurmJob(TypedDict):
    job_id: str
    job_name: str | None
    partition: str | None


class Pod(TypedDict):
    name: str
    namespace: str | None


class Worker(TypedDict):
    """One worker: where it runs (`hostname`, `pid`, `slurm`, `pod`), its GPUs (None: it did not say), what it
    trains (`current_run_id`, `current_run_name`) and `state`: alive, lost or stopped."""

    id: str
    hostname: str
    pid: int
    queues: list[str]
    device: str
    gpus: list[Gpu] | None
    slurm: SlurmJob | None
    pod: Pod | None
    started_at: str
    heartbeat_at: str
    heartbeat_age_s: float
    alive: bool
    state: str
    current_run_id: str | None
    current_run_name: str | None
    stopped_at: str | None


class Health(TypedDict):
    """`status`: ok, or degraded/unavailable with `database` and `broker` saying which is down."""

    status: str
    database: dict[str, Any]
    broker: dict[str, Any]
    version: str


class Vocabulary(TypedDict):
    """The product's words (modalities, splits, components, run-level series, statuses) as the server declares them."""

    modalities: list[str]
    splits: list[str]
    eval_splits: NotRequired[list[str]]  # the splits a run is evaluated on each epoch
    components: dict[str, Any]
    metrics: dict[str, list[str]]
    series_kinds: list[str]
    engine_series: list[dict[str, Any]]
    statuses: dict[str, list[str]]
    sweep_statuses: dict[str, list[str]]
