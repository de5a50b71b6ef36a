"""Dataset registry: a dataset is one module plus one line here (and an entry in amst_core.catalog)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from amst_core.data import avdigits, avtdigits, folder, reference, synthetic
from amst_core.data.base import Batch, DatasetSource, Sample, TensorSamples, make_loader, to_device

if TYPE_CHECKING:
    from amst_core.config import RunConfig

DATASET_SOURCES: dict[str, DatasetSource] = {
    "avdigits": avdigits.AVDigits(),
    "avtdigits": avtdigits.AVTDigits(),
    "synthetic": synthetic.Synthetic(),
    "folder": folder.Folder(),
    **reference.SOURCES,  # every reference layout: cremad, ave, mvsa, iemocap, iemocap3, urfunny
}


def source_for(cfg: RunConfig) -> DatasetSource:
    return DATASET_SOURCES[cfg.dataset.name]


__all__ = ["DATASET_SOURCES", "Batch", "DatasetSource", "Sample", "TensorSamples", "make_loader", "source_for",
           "to_device"]
