"""RunConfig: the one description of a training run, shared by the CLI, the API and the worker.

Defaults are the reference settings (amst_method.md section 4). Validation names the offending field, and
nothing here imports torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from amst_core.catalog import DATASETS, METHODS, MODALITIES, Fusion
from amst_core.datasets import KNOBS
from amst_core.datasets.avdigits import PRESETS as AVDIGITS_PRESETS
from amst_core.datasets.base import LEAVE_ONE_SESSION_OUT, REFERENCE_SPLIT, DatasetSpec, SplitScheme
from amst_core.recipes import RecipeMode, with_defaults
from amst_core.vocab import AUDIO, SPLITS, TEST, TEXT, TRAIN, VAL, VISUAL, Modality, Split


class ConfigError(ValueError):
    """A run configuration that cannot be trained; each line of the message starts with the field path."""

    def __init__(self, field: str | None, message: str):
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


INT32 = 2**31 - 1  # what the run store's integer columns hold
# The narrowest encoder that may run channels-last: with fewer than 16 input channels oneDNN's strided 1x1
# convolution (layer 2's downsample has `width` of them) corrupts memory in its backward pass on larger maps
# (torch 2.11; bench/channels_last.py --crash-map, Doc/reliability.md). The worker's device is unknown here.
MIN_CHANNELS_LAST_WIDTH = 16
# Names and tags end up in tables, file names, URLs and terminals: no control characters (C0, C1), line or
# paragraph separators, or bidirectional overrides and isolates (which make text read as something else), and
# something visible (not only spaces or zero-width characters). One rule for run names, sweep names and tags.
NOT_IN_LABELS = r"\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_BLANK = r"\s\u180e\u200b-\u200f\u2060\ufeff"
PRINTABLE = rf"^[^{NOT_IN_LABELS}]*[^{NOT_IN_LABELS}{_BLANK}][^{NOT_IN_LABELS}]*$"
# One tag, as a run request and PATCH /runs/{id} take it (the run_tags column is 100 wide).
TagName = Annotated[str, Field(min_length=1, max_length=100, pattern=PRINTABLE)]


def known(value: str, catalog: dict[str, Any], what: str) -> str:
    if value not in catalog:
        raise ValueError(f"unknown {what} {value!r}; known: {', '.join(catalog)}")
    return value


def registered(registry: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """A JSON schema enum read from a registry when the schema is built, so a plugin's name is in it too."""
    def extra(schema: dict[str, Any]) -> None:
        schema["enum"] = list(registry)
    return extra


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def relative_inside(value: str, what: str) -> str:
    """A path given relative to a trusted folder, that cannot leave it by its spelling (the data files module
    also resolves symlinks)."""
    path = PurePosixPath(value.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.parts or "\x00" in value:
        raise ValueError(f"{value!r} must be a path inside {what}, given relative to it (no '..')")
    return str(path)


class SplitFiles(_Strict):
    """Split files, relative to the dataset folder."""

    train: str = Field(min_length=1, max_length=500)
    val: str = Field(min_length=1, max_length=500)
    test: str = Field(min_length=1, max_length=500)

    @field_validator("train", "val", "test")
    @classmethod
    def _inside_dataset(cls, v: str) -> str:
        return relative_inside(v, "the dataset folder")


class SyntheticConfig(_Strict):
    """Generated data for tests: per-modality signal strength decides which modality is easy."""

    modalities: list[Modality] = [AUDIO, VISUAL]
    num_classes: int = Field(4, ge=2, le=1000)
    samples: dict[Split, Annotated[int, Field(ge=1, le=10_000_000)]] = {
        TRAIN: 64, VAL: 32, TEST: 32}
    signal: dict[Modality, Annotated[float, Field(ge=-1e6, le=1e6)]] = {
        AUDIO: 2.0, VISUAL: 0.5, TEXT: 1.0}
    audio_shape: tuple[Annotated[int, Field(ge=1, le=65_536)], Annotated[int, Field(ge=1, le=4096)]] = (16, 8)
    image_size: int = Field(8, ge=4, le=4096)
    frames: int = Field(1, ge=1, le=256)
    text_length: int = Field(8, ge=2, le=8192)
    vocab_size: int = Field(50, ge=8, le=10_000_000)

    @field_validator("modalities")
    @classmethod
    def _sorted_unique(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one modality is needed")
        return sorted(set(v))

    @field_validator("samples")
    @classmethod
    def _every_split(cls, v: dict[str, int]) -> dict[str, int]:
        missing = [s for s in SPLITS if s not in v]
        if missing:
            raise ValueError(f"samples needs a count for every split; missing {', '.join(missing)}")
        return v


# Why a knob is refused, where its name alone does not say.
DEFAULT_TEST_SESSION = 5  # leave_one_session_out holds out IEMOCAP's session 5 unless told otherwise, as is usual
KNOB_NOTES = {"audio_rate": "; the reference layouts keep each release's own rate (their fbanks are computed by "
                            "amst preprocess)"}


class DatasetConfig(_Strict):
    name: str = Field(json_schema_extra=registered(DATASETS))
    root: str | None = Field(None, min_length=1, max_length=1000, description="the dataset folder, relative to "
                             "AMST_DATA_ROOT (default: the dataset name); `amst train` also takes an absolute path, "
                             "the service reads only under AMST_DATA_ROOT")
    split_files: SplitFiles | None = None
    class_file: str | None = Field(None, min_length=1, max_length=500, description="the class file, relative to "
                                   "the dataset folder (default: the layout's, e.g. stat_cre.txt)")
    on_bad_sample: Literal["fail", "skip"] = Field(
        "fail", description="a sample whose media are missing or unreadable: fail names it before training; skip "
                            "drops it, and the run's summary says how many were dropped")
    cache: bool = Field(True, description="decode every sample once into the sample cache (AMST_CACHE) and augment "
                        "frames on the run's device; false reads and transforms each sample's files every epoch on "
                        "the loader processes, as the reference (a folder dataset is always cached)")
    preset: str | None = Field(None, description="avdigits difficulty preset: " + ", ".join(AVDIGITS_PRESETS))
    image_pca_energy: float | None = Field(
        None, ge=0.0, lt=1.0, description="avdigits: remove the top PCA components holding this share of energy"
    )
    audio_noise: float | None = Field(None, ge=0.0, description="avdigits: std of Gaussian noise on audio")
    synthetic: SyntheticConfig | None = None
    modalities_used: list[Modality] | None = Field(
        None, description="train on a subset of the dataset's modalities (e.g. [audio] for a unimodal run)"
    )
    audio_rate: int | None = Field(
        None, ge=1000, le=384_000, description="folder layout: every audio file and video soundtrack is resampled "
        "to this rate (Hz) before its fbank, so that every sample's mel bins span the same frequencies; default: the "
        "most common rate among the folder's files (the run's resolved config says which)")
    split_scheme: SplitScheme | None = Field(
        None, description="how the samples are split: reference (default: the split files), speaker_independent "
        "(CREMA-D: every actor in one split) or leave_one_session_out (IEMOCAP: one session is the test split); "
        "a drawn split takes the samples the split files list (Doc/datasets.md)")
    split_seed: int | None = Field(None, ge=0, le=2**31 - 1, description="a drawn split's seed (default 0, apart "
                                   "from the run's seed: runs of several seeds share one split)")
    test_session: int | None = Field(None, ge=1, le=5, description="leave_one_session_out: the IEMOCAP session "
                                     f"held out as the test split (default {DEFAULT_TEST_SESSION})")

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        return known(v, DATASETS, "dataset")

    @field_validator("root")
    @classmethod
    def _a_path(cls, v: str | None) -> str | None:
        if v is not None and "\x00" in v:
            raise ValueError("a path holds no NUL character")
        return v

    @field_validator("class_file")
    @classmethod
    def _class_file_inside(cls, v: str | None) -> str | None:
        return v if v is None else relative_inside(v, "the dataset folder")

    @model_validator(mode="after")
    def _knobs_fit_dataset(self) -> DatasetConfig:
        """A knob only the datasets whose spec names it take (avdigits' difficulty, folder's audio rate, ...)."""
        spec = DATASETS[self.name]
        for knob in KNOBS:
            if getattr(self, knob) is not None and knob not in spec.knobs:
                takers = " and ".join(d.label for d in DATASETS.values() if knob in d.knobs)
                raise ValueError(f"dataset.{knob} applies to {takers} only, not {self.name}"
                                 + KNOB_NOTES.get(knob, ""))
        if self.preset is not None and self.preset not in AVDIGITS_PRESETS:
            raise ValueError(f"dataset.preset: unknown preset {self.preset!r}; known: {', '.join(AVDIGITS_PRESETS)}")
        self._split_fits(spec)
        if spec.always_cached and not self.cache:
            raise ValueError(f"dataset.cache: a {self.name} dataset is always cached (its raw media are decoded once)")
        if "synthetic" in spec.knobs and self.synthetic is None:
            self.synthetic = SyntheticConfig()
        if self.modalities_used is not None:
            available = self.all_modalities
            extra = sorted(set(self.modalities_used) - set(available))
            if extra or not self.modalities_used:
                raise ValueError(f"dataset.modalities_used: {self.name} has modalities {', '.join(available)}; "
                                 f"got {self.modalities_used}")
        return self

    def _split_fits(self, spec: DatasetSpec) -> None:
        """A drawn split is one the dataset offers; its seed (0) and held-out session are filled in. The reference
        split draws nothing, so it takes neither."""
        offered = (REFERENCE_SPLIT, *spec.split_schemes)
        if self.split_scheme is not None and self.split_scheme not in offered:
            raise ValueError(f"dataset.split_scheme: {self.name} offers {' or '.join(offered)}, not "
                             f"{self.split_scheme}")
        loso = self.split_scheme == LEAVE_ONE_SESSION_OUT
        takers = {"split_seed": spec.split_schemes, "test_session": (LEAVE_ONE_SESSION_OUT,)}
        for knob, schemes in takers.items():
            if getattr(self, knob) is not None and self.split_scheme not in schemes:
                raise ValueError(f"dataset.{knob}: the {self.split_scheme or REFERENCE_SPLIT} split takes none; "
                                 f"set dataset.split_scheme: {' or '.join(schemes)}")
        if self.split_scheme in spec.split_schemes and self.split_seed is None:
            self.split_seed = 0
        if loso and self.test_session is None:
            self.test_session = DEFAULT_TEST_SESSION

    def knob(self, key: str) -> float:
        """An avdigits knob: explicit value, else the preset's, else off."""
        value = getattr(self, key)
        if value is not None:
            return float(value)
        return AVDIGITS_PRESETS.get(self.preset or "easy", {}).get(key, 0.0)

    @property
    def all_modalities(self) -> tuple[str, ...]:
        if self.synthetic is not None:
            return tuple(self.synthetic.modalities)
        return DATASETS[self.name].modalities

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities this run trains on, sorted."""
        return tuple(sorted(set(self.modalities_used))) if self.modalities_used else self.all_modalities


class AutoSkip(_Strict):
    """Skip factors chosen from measured learning speed (amst_core/skip.py, Doc/methods.md)."""

    warmup: int = Field(3, ge=2, le=10_000, description="epochs with every modality updated before the first "
                                                        "decision (a speed needs two points)")
    every: int = Field(3, ge=1, le=10_000, description="epochs between two decisions")
    max_factor: int = Field(8, ge=1, le=10_000, description="the largest factor a decision may give")


class SkipFactors(_Strict):
    """Modality m is updated in epoch e iff e % k_m == 0 (epochs counted from 0); `auto` (or `skip: auto`)
    chooses the factors during the run instead, from each modality's measured learning speed."""

    audio: int = Field(1, ge=1)
    visual: int = Field(1, ge=1)
    text: int = Field(1, ge=1)
    auto: AutoSkip | None = Field(None, description="set (`skip: auto` for the defaults): factors chosen from "
                                                    "the helpers' learning speed; the fixed factors are ignored")

    @model_validator(mode="before")
    @classmethod
    def _auto_shorthand(cls, data: Any) -> Any:
        return {"auto": {}} if data == "auto" else data

    def factor(self, modality: str) -> int:
        return int(getattr(self, modality))


class OptimConfig(_Strict):
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    lr_step: int = Field(70, ge=1)
    lr_gamma: float = Field(0.1, gt=0, le=1)


class ModelConfig(_Strict):
    frames: int = Field(3, ge=1, le=256, description="video frames per sample")
    image_size: int = Field(224, ge=8, le=4096)
    audio_frames: int = Field(1024, ge=4, le=65_536, description="time steps of the audio feature map")
    mel_bins: int = Field(128, ge=4, le=4096)
    text_model: str = Field("roberta-base", min_length=1, max_length=500, description="the text encoder: a local "
                            "folder of a RoBERTa-style model, or a Hugging Face hub name (from the local cache, or "
                            "downloaded where the machine is online)")
    text_trainable_layers: int = Field(5, ge=0, le=1000, description="transformer layers trained, counted from "
                                       "the last; the others and the embeddings stay frozen")
    text_max_length: int = Field(128, ge=2, le=8192, description="tokens per text (padded or cut): 256 MVSA, 128 "
                                 "the others")
    width: int = Field(64, ge=1, le=1024, description="ResNet-18 stage widths width x (1, 2, 4, 8): 64 is the "
                       "reference (512-d features); smaller for small inputs on a CPU")
    channels_last: bool | Literal["auto"] = Field(
        "auto", description="the convolutional encoders' memory layout. auto: channels-last on a GPU (the layout "
                            "cuDNN prefers), the default layout on a CPU, where updates are then bitwise the "
                            "reference's (Doc/training.md); true: channels-last everywhere (on a CPU faster steps, "
                            "BatchNorm statistics off by up to 0.5% at batch 64; needs width >= 16); false: the "
                            "default layout everywhere")

    @field_validator("channels_last")
    @classmethod
    def _layout_that_runs(cls, v: bool | str, info: Any) -> bool | str:
        width = info.data.get("width")
        if v is True and width is not None and width < MIN_CHANNELS_LAST_WIDTH:
            raise ValueError(f"true needs model.width >= {MIN_CHANNELS_LAST_WIDTH} (got {width}): PyTorch's CPU "
                             "convolutions (oneDNN) crash the process in the backward pass of a narrow channels-"
                             "last encoder on inputs of the reference's size; use auto (channels-last on a GPU "
                             "only) or false")
        return v


class ResourcesConfig(_Strict):
    """What a run needs of the worker that trains it (Doc/training.md, "Several GPUs")."""

    gpus: int = Field(1, ge=1, le=64, description="processes (ranks) the run trains on, one GPU each (NCCL); on a "
                      "CPU device, that many CPU processes (gloo). Every global batch is the one-process batch, "
                      "split between the ranks")
    min_gpu_memory_gb: float | None = Field(None, gt=0, le=100_000, description="only a worker whose GPUs each have "
                                            "at least this much memory takes the run (the others hand it back); "
                                            "while no live worker can, GET /runs/{id} says so (waiting_for)")
    sync_batchnorm: bool = Field(True, description="BatchNorm statistics over the global batch (as on one GPU); "
                                 "false: each rank normalises by its own slice's statistics, as plain DDP does")


MLFLOW_SCHEMES = ("http", "https", "sqlite")  # a tracking server, or a database file (MLflow 3 refuses file stores)


class ExportConfig(_Strict):
    """Live copies of the run's metrics in the tools people use, written as each epoch ends (Doc/exports.md)."""

    tensorboard: str | None = Field(None, min_length=1, max_length=1000, description="a folder: the run's event "
                                    "file goes to <folder>/<run id>/; on the service, a folder inside "
                                    "AMST_EXPORT_ROOT (a relative one is taken relative to it)")
    mlflow: str | None = Field(None, min_length=1, max_length=1000, description="an MLflow tracking URI: "
                               "http(s)://host:port (a tracking server) or sqlite:///path.db; on the service, a "
                               "sqlite file inside AMST_EXPORT_ROOT")
    mlflow_experiment: str = Field("amst", min_length=1, max_length=200, pattern=PRINTABLE,
                                   description="the MLflow experiment the run goes to (made if missing)")

    @field_validator("tensorboard")
    @classmethod
    def _a_folder(cls, v: str | None) -> str | None:
        if v is not None and "\x00" in v:
            raise ValueError("a path holds no NUL character")
        return v

    @field_validator("mlflow")
    @classmethod
    def _tracking_uri(cls, v: str | None) -> str | None:
        if v is None:
            return v
        scheme = v.partition("://")[0].lower() if "://" in v else ""
        if scheme in ("", "file"):
            raise ValueError(f"{v!r} is a file store, which MLflow 3 refuses (maintenance mode); give a database "
                             "file, sqlite:///path/mlflow.db, or a tracking server, http://host:5000")
        if scheme not in MLFLOW_SCHEMES:
            raise ValueError(f"{v!r}: unknown scheme {scheme}://; use http(s)://host:port (a tracking server) or "
                             "sqlite:///path/mlflow.db")
        if scheme == "sqlite" and not (v.lower().startswith("sqlite:///") and v[len("sqlite:///"):].strip("/")):
            raise ValueError(f"{v!r} names no database file; sqlite:///mlflow.db (relative) or "
                             "sqlite:////abs/path/mlflow.db")
        return v


class RunConfig(_Strict):
    name: str | None = Field(None, min_length=1, max_length=200, pattern=PRINTABLE)
    tags: list[TagName] = []
    dataset: DatasetConfig
    method: str = Field(json_schema_extra=registered(METHODS))
    fusion: Fusion | None = Field(None, description="fusion head for naive; AMST methods fix their own")
    skip: SkipFactors = SkipFactors()
    method_params: dict[str, Any] = {}
    optim: OptimConfig = OptimConfig()
    epochs: int = Field(100, ge=1, le=INT32)
    batch_size: int = Field(64, ge=1, le=INT32)
    seed: int = Field(0, ge=0, le=INT32)
    model: ModelConfig = ModelConfig()
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    resources: ResourcesConfig = ResourcesConfig()
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="bf16: mixed precision where the device has it (a GPU from Ampere on); fp16 with a "
                            "loss scaler; fp32 full precision")
    compile: bool = Field(False, description="compile the encoders (torch.compile): faster steps on a GPU after a "
                                             "slower first few batches")
    num_workers: Annotated[int, Field(ge=0, le=1024)] | Literal["auto"] = Field(
        "auto", description="data-loading processes: auto (none for data held in memory, else one per core but one "
                            "up to 8, half the cores when training on the CPU) or a number; it never changes the "
                            "result (each sample's augmentation has its own seed)")
    max_restarts: int = Field(2, ge=0, le=10_000)
    test_every_epoch: bool = Field(False, description="run the test split every epoch, not only on improvement")
    checkpoint_every: int = Field(1, ge=1, le=INT32, description="write last.pt every N epochs (and at the end)")
    recipe: RecipeMode = Field(
        "dataset", description="where the fields a request leaves out come from. dataset: the dataset's recipe "
                               "(settings that train well on it, per method where one needs its own; GET /datasets "
                               "`recipes`), then the reference's; reference: the reference code's settings, the "
                               "paper's, apart from the input shapes the dataset's files dictate")
    deterministic: bool | None = Field(
        None, description="true: exact reproducibility (cuDNN deterministic, no autotuning); false: cuDNN picks its "
                          "fastest kernels (results vary in the last digits); unset: true on a CPU, false on a GPU")
    data_fingerprint: str | None = Field(
        None, min_length=1, max_length=64, pattern=r"^[0-9a-f]+$",
        description="the data digest this run expects (a re-run's: its run's provenance.digests.data); a run whose "
                    "data differ fails before training, naming what changed; unset: any data")
    export: ExportConfig = Field(ExportConfig(), description="live copies of the metrics: a TensorBoard folder, "
                                 "an MLflow tracking URI (amst export copies a finished run)")

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        """Fields a request leaves out take its dataset's values (amst_core.recipes): the shapes its data
        dictate (avdigits: 13 MFCCs, 28x28 images), its recipe unless `recipe: reference`, then the reference's."""
        return with_defaults(data)

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        return known(v, METHODS, "method")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        ok = v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit())
        if not ok:
            raise ValueError(f"{v!r} is not a device; use auto, cpu, cuda or cuda:N")
        return v

    @model_validator(mode="after")
    def _method_fits(self) -> RunConfig:
        info = METHODS[self.method]
        try:
            params = info.params.model_validate(self.method_params)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            message = first["msg"].removeprefix("Value error, ")
            raise ValueError(f"method_params.{where}: {message}" if where else f"method_params.{message}") from None
        # Store the typed params back as a plain dict (defaults filled in) so the config round-trips as YAML/JSON.
        object.__setattr__(self, "method_params", params.model_dump())
        if self.fusion is not None and info.fusion_fixed and self.fusion != info.default_fusion:
            raise ValueError(f"fusion: {self.method} fixes its own heads; leave fusion unset")
        if self.skip.auto is not None and not info.uses_skip:
            skipping = ", ".join(name for name, m in METHODS.items() if m.uses_skip)
            raise ValueError(f"skip.auto: {self.method} does not skip modalities; automatic skip factors are for "
                             f"{skipping}")
        available = self.dataset.modalities
        if info.modalities is not None and len(available) != info.modalities:
            raise ValueError(f"method: {self.method} needs a dataset of exactly {info.modalities} modalities; "
                             f"this run has {len(available)} ({', '.join(available)})")
        if info.check is not None:
            info.check(self, params)  # the method's own rules (its spec module)
        if self.batch_size < self.resources.gpus:
            raise ValueError(f"batch_size: {self.batch_size} is smaller than resources.gpus ({self.resources.gpus}): "
                             "every rank needs a sample of every batch")
        if self.resources.gpus > 1 and self.device.startswith("cuda:"):
            raise ValueError(f"device: {self.device} names one GPU; a run on {self.resources.gpus} "
                             "(resources.gpus) takes auto, cuda (the worker's GPUs) or cpu (gloo processes)")
        return self

    @property
    def params(self) -> Any:
        return METHODS[self.method].params.model_validate(self.method_params)

    @property
    def fusion_head(self) -> str:
        return self.fusion or METHODS[self.method].default_fusion

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities this run trains on, sorted: the dataset's (or those of `dataset.modalities_used`), or
        the one a unimodal run names."""
        if self.method_params.get("modality"):  # a method whose params name one modality trains it alone
            return (self.method_params["modality"],)
        return self.dataset.modalities

    @property
    def display_name(self) -> str:
        return self.name or f"{self.method}_{self.dataset.name}_{self.seed}"


def format_validation_error(err: ValidationError) -> str:
    """One line per problem, each starting with the dotted field path."""
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {msg}" if where else msg)
    return "\n".join(lines)


def set_by_path(data: dict[str, Any], dotted: str, raw_value: str) -> None:
    """Apply one `--set key.path=value`; the value is parsed as YAML so numbers and lists work."""
    keys = dotted.split(".")
    if not all(keys):
        raise ConfigError(dotted, "empty key in --set path")
    node = data
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(dotted, f"{key} is not a section")
        node = child
    node[keys[-1]] = yaml.safe_load(raw_value)


def config_data(path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> dict[str, Any]:
    """A YAML config (or a dict) with `key=value` overrides applied, not validated yet. Raises ConfigError."""
    data: dict[str, Any] = dict(base or {})
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError("config", f"file not found: {path}") from None
        except yaml.YAMLError as err:
            raise ConfigError("config", f"{path} is not valid YAML: {err}") from None
        if not isinstance(loaded, dict):
            raise ConfigError("config", f"{path} must hold a mapping of fields")
        data.update(loaded)
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(item, "--set needs key.path=value")
        set_by_path(data, key.strip(), value)
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML config (or a dict), apply `key=value` overrides, validate. Raises ConfigError."""
    data = config_data(path, overrides, base)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(None, format_validation_error(err)) from None


def data_root() -> Path:
    return Path(os.environ.get("AMST_DATA_ROOT", "./data")).expanduser()


def cache_dir() -> Path:
    """Downloads and computed features (AMST_CACHE; default ~/.cache/amst)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "amst"
    return Path(os.environ.get("AMST_CACHE", default))


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


__all__ = ["MODALITIES", "ConfigError", "RunConfig", "dump_config", "load_config"]
