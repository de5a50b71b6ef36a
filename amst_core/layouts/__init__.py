"""The reference layouts (torch-free `Layout`s, one module each), by dataset name: a view over the dataset specs
that name one (`DatasetSpec.layout`), so there is no second table to keep in step."""

from amst_core.datasets.base import Resolved
from amst_core.layouts.base import SPLITS, Layout, Media

LAYOUTS: Resolved = Resolved("layout")  # name -> Layout

__all__ = ["LAYOUTS", "SPLITS", "Layout", "Media"]
