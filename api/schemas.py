"""Response models of the API, and how they are built from rows of the run store; the body of PATCH /runs/{id}."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, WithJsonSchema

from amst_core.config import PRINTABLE, RunConfig, TagName
from amst_core.recipes import Origin, config_origin
from amst_core.store.lifecycle import LIVE
from amst_core.store.models import ACTIVE, Attempt, Run, RunStatus, Worker
from amst_core.store.queries import LatestValue, SeriesPoints, finite
from amst_core.vocab import Modality, SeriesKind, Split, SweepStatus, WorkerState

# A stored config: a RunConfig in the OpenAPI schema (api.main.custom_openapi puts the reference where this
# marker is, so that a generated client gets the model), answered as it was stored (a config an older version
# stored is still answered, never validated again).
SCHEMA_REF = "x-amst-schema"
StoredConfig = Annotated[dict[str, Any], WithJsonSchema({"type": "object", SCHEMA_REF: "RunConfig"})]


class ErrorDetail(BaseModel):
    status: int
    message: str
    field: str | None = Field(None, description="the input the error is about: dotted body path, parameter, header")
    details: list[dict[str, Any]] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    error: ErrorDetail


class LiveOut(BaseModel):
    epoch: int = Field(description="the epoch in progress (0-based)")
    split: Split = Field(description="the pass in progress")
    batch: int = Field(description="batches of that pass done")
    batches: int
    samples_per_s: float | None
    updated_at: datetime = Field(description="when the last batch finished")

    @classmethod
    def of(cls, live: dict[str, Any] | None) -> LiveOut | None:
        if not live:
            return None
        return cls(**{**live, "updated_at": datetime.fromtimestamp(live["updated_at"], UTC)})


class RunSummary(BaseModel):
    id: str
    name: str
    status: RunStatus
    method: str
    dataset: str
    seed: int
    tags: list[str]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempt: int
    epochs_done: int
    epochs_total: int
    progress: float = Field(description="epochs_done / epochs_total, 0..1")
    best_epoch: int | None
    best_val_acc: float | None
    test_acc_at_best: float | None
    queue: str
    device: str | None
    heartbeat_age_s: float | None = Field(description="seconds since the worker's last heartbeat (live runs)")
    eta_s: float | None = Field(description="median epoch time x epochs left; null when unknown or finished")
    live: LiveOut | None = Field(description="progress inside the epoch, from the worker's heartbeat (live runs)")
    archived: bool = Field(description="archived runs are hidden from GET /runs unless it asks for them")
    archived_at: datetime | None
    config: StoredConfig | None = Field(None, description="the run's full config; in a list only with "
                                                          "with_config=true")

    @classmethod
    def fields_of(cls, run: Run, now: datetime) -> dict[str, Any]:
        live = run.status in LIVE and run.heartbeat_at is not None
        eta = None
        if run.status in ACTIVE and run.median_epoch_s is not None:
            eta = round(run.median_epoch_s * max(0, run.epochs_total - run.epochs_done), 3)
        return {
            "id": run.id, "name": run.name, "status": run.status, "method": run.method, "dataset": run.dataset,
            "seed": run.seed, "tags": run.tag_names, "created_at": run.created_at, "started_at": run.started_at,
            "finished_at": run.finished_at, "attempt": run.attempt, "epochs_done": run.epochs_done,
            "epochs_total": run.epochs_total,
            "progress": min(1.0, run.epochs_done / run.epochs_total) if run.epochs_total > 0 else 0.0,
            "best_epoch": run.best_epoch, "best_val_acc": finite(run.best_val_acc),
            "test_acc_at_best": finite(run.test_acc_at_best), "queue": run.queue, "device": run.device,
            "heartbeat_age_s": round((now - run.heartbeat_at).total_seconds(), 3) if live else None,
            "eta_s": finite(eta), "live": LiveOut.of(run.live) if run.status in LIVE else None,
            "archived": run.archived_at is not None, "archived_at": run.archived_at,
        }

    @classmethod
    def of(cls, run: Run, now: datetime, with_config: bool = False) -> RunSummary:
        """with_config reads run.config, which a run list loads only when asked (queries.list_runs)."""
        return cls(**cls.fields_of(run, now), config=run.config if with_config else None)


class RunPage(BaseModel):
    items: list[RunSummary]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class AttemptOut(BaseModel):
    number: int
    status: str
    worker_id: str | None
    start_epoch: int
    started_at: datetime
    ended_at: datetime | None
    error: str | None

    @classmethod
    def of(cls, a: Attempt) -> AttemptOut:
        return cls(number=a.number, status=a.status, worker_id=a.worker_id, start_epoch=a.start_epoch,
                   started_at=a.started_at, ended_at=a.ended_at, error=a.error)


class LatestOut(BaseModel):
    split: Split
    component: str
    modality: Modality | None
    name: str
    epoch: int
    value: float | None


class ArtifactsOut(BaseModel):
    bytes: int = Field(description="disk used by the run's folder under AMST_ARTIFACTS (checkpoints mostly)")
    files: dict[str, int] = Field(description="bytes per file, by path in the run's folder")


class RunDetail(RunSummary):
    config: StoredConfig
    notes: str | None = Field(description="what a person keeps with the run (PATCH /runs/{id})")
    error: str | None
    restarts: int
    max_restarts: int
    cancel_requested: bool
    worker_id: str | None
    queue_position: int | None = Field(description="queued runs ahead of this one on its queue")
    waiting_for: str | None = Field(None, description="a queued run that no live worker can hold: why, and what "
                                                      "would take it (a worker on its queue, or GPUs with more "
                                                      "memory); null otherwise")
    median_epoch_s: float | None
    last_epoch_at: datetime | None
    summary: dict[str, Any] | None = Field(description="the worker's final summary of the run, when it ended")
    attempts: list[AttemptOut]
    latest: list[LatestOut] = Field(description="the newest value of every series")
    artifacts: ArtifactsOut
    config_origin: dict[str, Origin] = Field(description="each setting of the config (dotted path) -> where its "
                                             "value is from: request (the submission's own), recipe (the dataset's "
                                             "recipe), data (what the dataset's files dictate), reference (the "
                                             "reference code's, the paper's); empty when the config no longer "
                                             "validates (a method or dataset since removed)")
    provenance: dict[str, Any] | None = Field(None, description="what the latest attempt recorded at its start "
                                              "(amst_core.provenance): code {version, commit, dirty}, environment "
                                              "{python, torch, cuda, cudnn, platform, host, device, device_name}, "
                                              "data (the dataset's fingerprint), config (the full resolved config), "
                                              "digests {code, environment, data}; null before a worker starts it "
                                              "(or for a run trained before runs recorded it)")
    rerun_of: str | None = Field(None, description="the run this one re-runs (POST /runs/{id}/rerun); null when "
                                                   "it re-runs none, or that run was deleted")

    @classmethod
    def build(cls, run: Run, now: datetime, queue_position: int | None, attempts: list[Attempt],
              latest: list[LatestValue], files: dict[str, int], waiting_for: str | None = None) -> RunDetail:
        return cls(
            **cls.fields_of(run, now), config=run.config, notes=run.notes, error=run.error, restarts=run.restarts,
            max_restarts=run.max_restarts, cancel_requested=run.cancel_requested, worker_id=run.worker_id,
            queue_position=queue_position, waiting_for=waiting_for, median_epoch_s=finite(run.median_epoch_s),
            last_epoch_at=run.last_epoch_at, summary=run.summary, attempts=[AttemptOut.of(a) for a in attempts],
            latest=[LatestOut(**vars(v)) for v in latest],
            artifacts=ArtifactsOut(bytes=sum(files.values()), files=files), config_origin=origin_of(run.config),
            provenance=run.provenance, rerun_of=run.rerun_of,
        )


class RerunOut(RunDetail):
    """The answer of POST /runs/{id}/rerun: the new run, and what a person should know about it."""

    warnings: list[str] = Field(default_factory=list, description="what the re-run could not check or had to let "
                                "go (data changed since the run trained, with force; no provenance recorded)")


class RerunIn(BaseModel):
    """The body of POST /runs/{id}/rerun (optional: nothing, or {} re-runs without force)."""

    model_config = ConfigDict(extra="forbid")

    force: StrictBool = Field(False, description="re-run even where the data changed since the run trained (the "
                                                 "answer's warnings say what changed); the new run then accepts the "
                                                 "data as they are")


class DifferencesOut(BaseModel):
    runs: list[str] = Field(description="the runs compared")
    differences: list[str] = Field(description="one line per aspect (code, environment, data) in which the runs "
                                               "differ, naming each value and how many runs have it; empty when "
                                               "they agree")


def origin_of(config: dict[str, Any]) -> dict[str, Origin]:
    try:
        return config_origin(RunConfig.model_validate(config))
    except ValueError:  # pydantic's ValidationError too: a stored config of a method or dataset since removed
        return {}


RunName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=PRINTABLE)]
NOTES_MAX = 20_000


class RunPatch(BaseModel):
    """The body of PATCH /runs/{id}: one or more of these; what it leaves out stays as it is. Labels only: the
    run's config (what it trains) never changes."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    name: RunName = Field(None, description="1-200 characters, no control characters; spaces at the ends are "
                                            "dropped")
    notes: str | None = Field(None, max_length=NOTES_MAX, description="free text (newlines allowed); null clears")
    tags: list[TagName] = Field(None, description="the run's tags from now on (replaces them; [] removes all)")
    archived: StrictBool = Field(None, description="true archives the run (hidden from run lists unless asked), "
                                                   "false brings it back")


class SeriesOut(BaseModel):
    split: Split
    component: str
    modality: Modality | None = Field(description="null for run-level series")
    name: str
    epochs: list[int]
    values: list[float | None] = Field(description="null where the value was not finite (e.g. a diverged loss)")


class MetricsOut(BaseModel):
    run_id: str
    status: RunStatus
    epochs_done: int
    run: RunSummary = Field(description="the run as it was when these points were read, so that a live view "
                            "needs one call per refresh")
    series: list[SeriesOut]
    next_since_epoch: int = Field(description="pass as since_epoch to get only newer points")
    superseded_from: int | None = Field(None, description="the run's current attempt resumed at this epoch: "
                                        "points held from an earlier attempt (run.attempt changed since they "
                                        "were read) at this epoch and later are replaced; drop them and read "
                                        "again from here. Null for a first attempt")

    @classmethod
    def build(cls, run: Run, now: datetime, series: list[SeriesPoints], since_epoch: int,
              superseded_from: int | None = None) -> MetricsOut:
        newest = max((p.epochs[-1] for p in series if p.epochs), default=since_epoch)
        return cls(run_id=run.id, status=RunStatus(run.status), epochs_done=run.epochs_done,
                   run=RunSummary.of(run, now), series=[SeriesOut(**vars(p)) for p in series],
                   next_since_epoch=max(newest, since_epoch), superseded_from=superseded_from)


class RunSeriesOut(BaseModel):
    name: str
    kind: SeriesKind = Field(description="bounded (in [0, 1]), loss, count or quantity")
    per_modality: bool
    description: str
    split: Split


class ComponentsOut(BaseModel):
    fused: str = Field(description="the model's prediction")
    branch: str = Field(description="the fusion head's logits of one modality")
    helper: str = Field(description="a linear probe on one modality's detached embedding")
    prototype: str = Field(description="PMR: nearest-prototype prediction of one modality")
    run: str = Field(description="run-level series: not a prediction")
    combo_prefix: str = Field(description="MLA: a named combination of the branches, e.g. combo:entropy")
    module_prefixes: list[str] = Field(description="AMST-FULL logs each of its two modules under a prefix")
    families: dict[str, list[str]] = Field(description="every component of a family, the plain one first")
    optimizer_parts: list[str] = Field(description="components of `lr` points: the optimizer's parts")


class MetricKindsOut(BaseModel):
    bounded: list[str] = Field(description="per-prediction metrics in [0, 1]")
    loss: list[str] = Field(description="per-prediction losses (log scale meaningful)")
    gap: list[str] = Field(description="strongest minus weakest modality of a component (modality null), in [0, 1]")


class StatusesOut(BaseModel):
    all: list[RunStatus]
    active: list[RunStatus] = Field(description="the run may still change by itself")
    terminal: list[RunStatus] = Field(description="the run has ended (a retry may start it again)")
    live: list[RunStatus] = Field(description="a worker holds the run")
    pending: list[RunStatus] = Field(description="no epoch of the run is under way yet")
    retryable: list[RunStatus] = Field(description="POST /runs/{id}/retry takes the run up again")


class SweepStatusesOut(BaseModel):
    all: list[SweepStatus]
    active: list[SweepStatus] = Field(description="some of the sweep's runs may still change by themselves")


class VocabularyOut(BaseModel):
    """The product's words (amst_core.vocab), so that a client draws what the library declares."""

    modalities: list[Modality]
    splits: list[Split]
    eval_splits: list[Split] = Field(description="the splits a model is judged on")
    components: ComponentsOut
    metrics: MetricKindsOut
    series_kinds: list[SeriesKind]
    engine_series: list[RunSeriesOut] = Field(description="run-level series every run logs, whatever its method")
    statuses: StatusesOut
    sweep_statuses: SweepStatusesOut


class MethodOut(BaseModel):
    name: str
    summary: str
    default_fusion: str
    fusion_fixed: bool
    uses_skip: bool
    params_schema: dict[str, Any]
    params_defaults: dict[str, Any]
    series: list[RunSeriesOut] = Field([], description="run-level series (component `run`) the method logs beyond "
                                                       "the engine's (GET /vocabulary: engine_series)")


class PairOut(BaseModel):
    run_id: str = Field(description="an AMST run (its method skips: GET /methods uses_skip)")
    baseline_id: str = Field(description="the baseline run it is compared with: same dataset and seed")


class SplitCountsOut(BaseModel):
    samples: int
    classes: dict[str, int] = Field(description="class -> samples of it in this split, in class order")
    speakers: list[str] = Field(description="who speaks in this split (CREMA-D's actors, IEMOCAP's Ses01F ...), "
                                            "sorted; empty where the sample ids do not say")

    @classmethod
    def of_splits(cls, counts: Mapping[str, Any] | None) -> dict[str, SplitCountsOut] | None:
        """amst_core.layouts.schemes.SplitCounts per split, as served."""
        if counts is None:
            return None
        return {split: cls(samples=c.samples, classes=c.classes, speakers=list(c.speakers))
                for split, c in counts.items()}


class DatasetSplitsOut(BaseModel):
    dataset: str
    split_scheme: str = Field(description="reference (the split files) or a drawn split (dataset.split_scheme)")
    split_seed: int | None = Field(description="a drawn split's seed, as a run with these settings gets it")
    test_session: int | None = Field(description="leave_one_session_out: the held-out session")
    split_counts: dict[str, SplitCountsOut]
    shared_speakers: dict[str, int] = Field(description="speakers found in two splits, per pair")


class DatasetOut(BaseModel):
    name: str
    summary: str
    modalities: list[Modality]
    classes: list[str] = Field(description="empty when the classes are read from the data")
    splits: list[Split]
    prepared: bool = Field(description="its data pass the check a run gets, in its default folder under "
                                       "AMST_DATA_ROOT (always true for synthetic; folder: some folder holds a train/)")
    problem: str | None = Field(None, description="why it is not prepared: what the check found")
    sizes: dict[str, int] | None = Field(None, description="samples per split, where the data say")
    split_counts: dict[str, SplitCountsOut] | None = Field(
        None, description="per split of its reference split (its split files): class counts and speakers, where "
                          "its files say; GET /datasets/{name}/splits gives them for a drawn split")
    shared_speakers: dict[str, int] = Field({}, description="speakers found in two splits, per pair (train/test: "
                                                            "the samples of a speaker on both sides of the test)")
    split_schemes: list[str] = Field([], description="the dataset.split_scheme values a run of it may set")
    folders: list[str] = Field([], description="folder layout: the folders under AMST_DATA_ROOT with a train/")
    text: bool = Field(False, description="it has a text modality (a run may set model.text_model)")
    prepare_command: str | None
    knobs: list[str] = Field([], description="the dataset options (dataset.<knob>) a run of it may set, e.g. preset")
    defaults: dict[str, Any] = Field(description="run-config fields its data dictate (input shapes): what a request "
                                                "that leaves them out gets")
    recipes: dict[str, dict[str, Any]] = Field(description="method -> the run-config fields a run of this dataset and "
                                               "method gets where its request leaves them out (its data's defaults "
                                               "and the dataset's recipe: a learning rate, epochs, a skip factor "
                                               "that train well on it); where a form starts")
    reference: dict[str, dict[str, Any]] = Field(description="method -> the same with `recipe: reference`: the "
                                                 "paper's settings for this dataset, with its data's defaults")


class GpuOut(BaseModel):
    index: int = Field(description="the GPU's number in the worker's process (cuda:<index>; a worker pinned with "
                                   "--gpu N sees its one GPU as 0)")
    name: str = Field(description="the card's name, as CUDA says it (e.g. NVIDIA H100 80GB HBM3)")
    memory_mib: int = Field(description="its total memory in MiB")


class SlurmJobOut(BaseModel):
    job_id: str = Field(description="SLURM_JOB_ID: what `scancel` and `squeue -j` take")
    job_name: str | None
    partition: str | None


class PodOut(BaseModel):
    name: str = Field(description="POD_NAME (the downward API), else the pod's HOSTNAME")
    namespace: str | None = Field(description="POD_NAMESPACE, when the manifest sets it")


class WorkerOut(BaseModel):
    id: str
    hostname: str
    pid: int
    queues: list[str]
    device: str
    gpus: list[GpuOut] | None = Field(description="the GPUs the worker may use, as it announced them at start; [] "
                                                  "on a CPU worker; null: it registered before workers said")
    slurm: SlurmJobOut | None = Field(description="the Slurm job the worker runs in; null outside Slurm")
    pod: PodOut | None = Field(description="the Kubernetes pod the worker runs in; null outside Kubernetes")
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age_s: float
    alive: bool = Field(description="not stopped, and a heartbeat within the lost limit (AMST_HEARTBEAT_S x "
                                    "AMST_LOST_AFTER)")
    state: WorkerState = Field(description="alive; lost: its heartbeats stopped without a word (killed, its node "
                                           "or job gone); stopped: it said it was stopping")
    current_run_id: str | None = Field(description="the run it trains now (a lost worker: the run it trained when "
                                                   "it went silent)")
    current_run_name: str | None = Field(description="that run's name (null when the run was deleted since)")
    stopped_at: datetime | None

    @classmethod
    def of(cls, w: Worker, now: datetime, lost_after_s: float, run_names: Mapping[str, str]) -> WorkerOut:
        age = (now - w.heartbeat_at).total_seconds()
        state: WorkerState = "stopped" if w.stopped_at is not None else "lost" if age > lost_after_s else "alive"
        return cls(id=w.id, hostname=w.hostname, pid=w.pid, queues=[q for q in w.queues.split(",") if q],
                   device=w.device, gpus=w.gpus,
                   slurm=SlurmJobOut(job_id=w.slurm_job_id, job_name=w.slurm_job_name, partition=w.slurm_partition)
                   if w.slurm_job_id else None,
                   pod=PodOut(name=w.pod_name, namespace=w.pod_namespace) if w.pod_name else None,
                   started_at=w.started_at, heartbeat_at=w.heartbeat_at, heartbeat_age_s=round(age, 3),
                   alive=state == "alive", state=state, current_run_id=w.current_run_id,
                   current_run_name=run_names.get(w.current_run_id) if w.current_run_id else None,
                   stopped_at=w.stopped_at)


class DependencyOut(BaseModel):
    backend: str = Field(description="database: sqlite or postgresql; broker: the URL scheme (redis, sqla+sqlite)")
    reachable: bool
    error: str | None = Field(description="the kind of failure when not reachable (no address or credentials)")
    latency_ms: float | None = Field(description="how long the check took")


class HealthOut(BaseModel):
    status: str = Field(description="ok (200); degraded (503): the database answers but the broker does not, so "
                                    "runs can be read but not queued; unavailable (503): the database is down")
    database: DependencyOut
    broker: DependencyOut
    version: str
