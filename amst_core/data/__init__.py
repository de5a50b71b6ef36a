"""The torch side of the datasets: each dataset's spec (amst_core.datasets) names its `DatasetSource` by import
path; `source_for` imports it when a run needs it. There is no table here to keep in step."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from amst_core.data.base import Batch, DatasetSource, Sample, TensorSamples, make_loader, to_device
from amst_core.datasets import DATASETS, resolve

if TYPE_CHECKING:
    from amst_core.config import RunConfig


class Sources(Mapping[str, DatasetSource]):
    """Dataset name -> its source, imported on first use (a plugin's source module may import this package)."""

    def __init__(self) -> None:
        self._loaded: dict[str, DatasetSource] = {}

    def __getitem__(self, name: str) -> DatasetSource:
        if name not in self._loaded:
            found = resolve(DATASETS[name].source)
            self._loaded[name] = found() if isinstance(found, type) else found
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(DATASETS)

    def __len__(self) -> int:
        return len(DATASETS)


DATASET_SOURCES = Sources()


def source_for(cfg: RunConfig) -> DatasetSource:
    return DATASET_SOURCES[cfg.dataset.name]


__all__ = ["DATASET_SOURCES", "Batch", "DatasetSource", "Sample", "TensorSamples", "make_loader", "source_for",
           "to_device"]
