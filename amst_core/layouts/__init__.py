"""The reference layouts by dataset name: one module each, one line here."""

from amst_core.layouts import ave, cremad, iemocap, mvsa, urfunny
from amst_core.layouts.base import SPLITS, Layout, Media

LAYOUTS: dict[str, Layout] = {
    "cremad": cremad.LAYOUT,
    "ave": ave.LAYOUT,
    "mvsa": mvsa.LAYOUT,
    "iemocap": iemocap.LAYOUT,
    "iemocap3": iemocap.LAYOUT3,
    "urfunny": urfunny.LAYOUT,
}

__all__ = ["LAYOUTS", "SPLITS", "Layout", "Media"]
