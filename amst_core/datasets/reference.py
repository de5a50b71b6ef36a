"""What the datasets in a reference preprocessed layout (amst_method.md section 5) share: one check, sizes and
cache over their `Layout`, and `reference_spec` to declare one of them in a line or two."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from amst_core.datasets.base import DatasetSpec, resolve
from amst_core.vocab import SPLITS

if TYPE_CHECKING:
    from amst_core.config import RunConfig
    from amst_core.datafiles import DataRoots, ReferenceFiles
    from amst_core.layouts.schemes import SplitCounts


def files(cfg: RunConfig, roots: DataRoots | None = None) -> ReferenceFiles:
    from amst_core.datafiles import ReferenceFiles
    from amst_core.datasets import DATASETS

    return ReferenceFiles(resolve(DATASETS[cfg.dataset.name].layout), cfg, roots)


def check(cfg: RunConfig, roots: DataRoots) -> None:
    files(cfg, roots).check()


def sizes(cfg: RunConfig, roots: DataRoots) -> dict[str, int]:
    found = files(cfg, roots)
    return {split: len(found.items(split)) for split in SPLITS}


def counts(cfg: RunConfig, roots: DataRoots) -> dict[str, SplitCounts]:
    """Each split's class counts and speakers, from the split files (and the run's split scheme)."""
    from amst_core.layouts.schemes import count_splits

    found = files(cfg, roots)
    return count_splits({split: found.items(split) for split in SPLITS}, found.classes(), found.layout)


def cache(cfg: RunConfig, progress: bool) -> str:
    from amst_core.config import cache_dir
    from amst_core.data import source_for

    if not cfg.dataset.cache:
        return "dataset.cache is false: runs read the files directly, nothing to cache"
    source = source_for(cfg)
    splits = {split: source.split(cfg, split, train=False, progress=progress) for split in SPLITS}
    counts = ", ".join(f"{split} {len(data)}" + (f" ({len(data.dropped)} bad)" if data.dropped else "")
                       for split, data in splits.items())
    return f"{cfg.dataset.name} ({', '.join(cfg.modalities)}): {counts}; cached in {cache_dir() / 'samples'}"


def reference_spec(name: str, summary: str, modalities: tuple, layout: str, **fields: Any) -> DatasetSpec:
    """A dataset in a reference layout: `layout` names its `Layout` ('module:attribute'), its release is turned
    into that layout by `amst_core.preprocess.<name>:plan` unless `preprocess` says otherwise."""
    fields.setdefault("preprocess", f"amst_core.preprocess.{name}:plan")
    return DatasetSpec(name, summary, modalities, check=check, sizes=sizes, counts=counts, cache=cache, layout=layout,
                       source=f"amst_core.data.reference:SOURCES.{name}", **fields)
