"""What a dataset is, said once and without torch: `DatasetSpec`.

A dataset is one module under `amst_core/datasets/` (or a plugin module named in AMST_PLUGINS) holding one
`DatasetSpec`, plus one line in `amst_core.datasets.BUILTIN` (a plugin calls `register` itself). Everything else
reads the spec: the catalog and the API (`GET /datasets`), the run config (its knobs and defaults), the data
checks (`amst_core.datafiles`), the CLI (`amst prepare`, `amst preprocess`, `amst cache`), the dashboard's form,
and the engine, which imports the torch source named by `source`.

A spec module imports only this module and `amst_core.vocab` at its top: the run config reads the registry, so a
spec cannot import the config (or `amst_core.datafiles`, which does) before the registry is built. Its functions
(check, sizes, cache) import what they need when they are called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from amst_core.registry import SpecError, resolve
from amst_core.vocab import SPLITS, Modality, Split

if TYPE_CHECKING:

    from amst_core.config import RunConfig
    from amst_core.datafiles import DataRoots, DatasetState
    from amst_core.layouts.schemes import SplitCounts

# (run config, data roots) -> the config resolved against the data (or None: unchanged); raises ConfigError
# naming the field when the data cannot serve the run.
Check = Callable[["RunConfig", "DataRoots"], "RunConfig | None"]
# (run config that passed the check, data roots) -> samples per split, where the data say.
Sizes = Callable[["RunConfig", "DataRoots"], "dict[str, int] | None"]
# (spec, data roots) -> what GET /datasets says of it, for a dataset whose readiness is not one run's check.
Describe = Callable[["DatasetSpec", "DataRoots"], "DatasetState"]
# (run config that passed the check, show progress) -> one line saying what was cached, for `amst cache`.
Cache = Callable[["RunConfig", bool], str]
# (run config that passed the check, data roots) -> per split: samples, class counts, speakers (GET /datasets).
Counts = Callable[["RunConfig", "DataRoots"], "dict[str, SplitCounts]"]

# Dataset options of the run config (`dataset.<knob>`) that only some datasets take; a spec names those it takes.
KNOBS: tuple[str, ...] = ("preset", "image_pca_energy", "audio_noise", "audio_rate", "synthetic", "split_scheme",
                          "split_seed", "test_session")
# How a run's samples are split (`dataset.split_scheme`): a reference layout's own split files, or a split drawn
# over the same samples that keeps each speaker in one split (amst_core.layouts.schemes).
REFERENCE_SPLIT = "reference"
SPEAKER_INDEPENDENT = "speaker_independent"
LEAVE_ONE_SESSION_OUT = "leave_one_session_out"
SplitScheme = Literal["reference", "speaker_independent", "leave_one_session_out"]
SPLIT_KNOBS = ("split_scheme", "split_seed")  # the knobs of a dataset that offers a drawn split


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    summary: str
    modalities: tuple[Modality, ...]
    check: Check | None = None  # required: a dataset whose files nobody checks would fail inside a run
    source: str = ""  # "module:attribute" of the torch DatasetSource (a class is instantiated)
    classes: tuple[str, ...] = field(default=())  # empty: discovered from the data
    splits: tuple[Split, ...] = SPLITS
    knobs: tuple[str, ...] = ()  # the KNOBS a run of it may set
    split_schemes: tuple[str, ...] = ()  # the drawn splits it offers besides its reference split (dataset.split_scheme)
    # Run-config fields the data dictate (input shapes): a request that leaves one out gets this value.
    defaults: dict = field(default_factory=dict)
    # The paper's settings for this dataset beyond the reference code's defaults (its skip factors): part of the
    # reference layer (amst_core.recipes), so `recipe: reference` reproduces the paper.
    reference: dict = field(default_factory=dict)
    # Run-config fields that train well on this dataset (a learning rate, a skip factor, epochs): what a run gets
    # for the fields its request leaves out, unless it asks for `recipe: reference` (amst_core.recipes).
    recipe: dict = field(default_factory=dict)
    # A method that needs settings of its own on this dataset: method name -> fields, on top of `recipe`.
    method_recipes: dict = field(default_factory=dict)
    prepare: str | None = None  # "module:function" (out, seed, force, log) behind `amst prepare NAME`
    preprocess: str | None = None  # "module:function" (raw, splits) -> Plan behind `amst preprocess NAME RAW_DIR`
    layout: str | None = None  # "module:attribute" of its reference `Layout`, if it has one
    cache: Cache | None = None  # `amst cache NAME`; None: nothing to cache (generated or held in memory)
    sizes: Sizes | None = None
    counts: Counts | None = None  # None: GET /datasets shows its sizes only
    describe: Describe | None = None  # None: ready when its default folder passes `check`
    always_cached: bool = False  # its raw media are decoded once: dataset.cache may not be false
    command: str | None = None  # what prepares it, when not `amst prepare NAME` / `amst preprocess NAME RAW_DIR`
    called: str = ""  # how messages name it (default: its name)

    def __post_init__(self) -> None:
        if not callable(self.check):
            raise SpecError(f"dataset {self.name!r}: its spec has no check; give DatasetSpec(check=...) a function "
                            "(run config, data roots) that raises ConfigError when the data cannot serve a run "
                            "(`lambda cfg, roots: None` for data generated in memory)")
        if not self.source or ":" not in self.source:
            raise SpecError(f"dataset {self.name!r}: source must name its torch DatasetSource as 'module:attribute'")
        unknown = sorted(set(self.knobs) - set(KNOBS))
        if unknown:
            raise SpecError(f"dataset {self.name!r}: unknown knobs {unknown}; known: {', '.join(KNOBS)}")

    @property
    def prepare_command(self) -> str | None:
        """What a person runs to get its data onto a server."""
        if self.command:
            return self.command
        if self.prepare:
            return f"amst prepare {self.name}"
        if self.preprocess:
            return f"amst preprocess {self.name} RAW_DIR"
        return None

    @property
    def label(self) -> str:
        return self.called or self.name

    @property
    def text_max_length(self) -> int:
        """Tokens per text its data are preprocessed to: the run default it dictates, else the reference's 128."""
        return int(self.defaults.get("model", {}).get("text_max_length", 128))


def deep_merge(base: dict, override: dict) -> dict:
    """`base` with `override` on top; nested sections merge, any other value of `override` wins."""
    out = dict(base)
    for key, value in override.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else value
    return out


class Resolved(Mapping[str, Any]):
    """Dataset name -> the object one of its spec's import-path fields names (its layout, its release's plan),
    for the datasets that have one; read when asked, since the registry may still be loading when this is
    built."""

    def __init__(self, field_name: str):
        self.field_name = field_name

    def _paths(self) -> dict[str, str]:
        from amst_core.datasets import DATASETS

        return {name: path for name, spec in DATASETS.items() if (path := getattr(spec, self.field_name))}

    def __getitem__(self, name: str) -> Any:
        return resolve(self._paths()[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths())

    def __len__(self) -> int:
        return len(self._paths())
