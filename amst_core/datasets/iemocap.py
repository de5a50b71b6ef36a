"""IEMOCAP utterances (audio and video), 5 emotions, in the reference preprocessed layout."""

from amst_core.datasets.reference import reference_spec
from amst_core.vocab import AUDIO, VISUAL

CLASSES = ("ang", "exc", "fru", "neu", "sad")

SPEC = reference_spec("iemocap", "IEMOCAP utterances (audio and video) in the reference preprocessed layout",
                      (AUDIO, VISUAL), "amst_core.layouts.iemocap:LAYOUT", classes=CLASSES,
                      reference={"skip": {AUDIO: 4}})
