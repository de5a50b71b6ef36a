"""`amst preprocess DATASET RAW_DIR`: one module per release (its `plan`), named by the dataset's spec
(`DatasetSpec.preprocess`); the tokens per text come from the spec too. `folder` is handled by the feature cache
(`amst cache`)."""

from amst_core.datasets.base import Resolved

RELEASES: Resolved = Resolved("preprocess")  # name -> plan(raw, splits)

__all__ = ["RELEASES"]
