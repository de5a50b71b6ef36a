"""Method registry: a method is one module plus one line here (and an entry in amst_core.catalog)."""

from __future__ import annotations

import torch

from amst_core.config import RunConfig
from amst_core.methods.amst_alt import AmstAlt
from amst_core.methods.amst_full import AmstFull
from amst_core.methods.amst_joint import AmstJoint
from amst_core.methods.base import Method, TrainedNet
from amst_core.methods.mla import Mla
from amst_core.methods.mslr import Mslr
from amst_core.methods.naive import Naive
from amst_core.methods.ogm_ge import OgmGe
from amst_core.methods.pmr import Pmr
from amst_core.methods.unimodal import Unimodal

METHOD_CLASSES: dict[str, type[Method]] = {
    "naive": Naive,
    "amst_alt": AmstAlt,
    "amst_joint": AmstJoint,
    "amst_full": AmstFull,
    "ogm_ge": OgmGe,
    "pmr": Pmr,
    "mla": Mla,
    "mslr": Mslr,
    "unimodal": Unimodal,
}


def build_method(cfg: RunConfig, num_classes: int, device: torch.device) -> Method:
    return METHOD_CLASSES[cfg.method](cfg, num_classes, device)


__all__ = ["METHOD_CLASSES", "Method", "TrainedNet", "build_method"]
