"""IEMOCAP utterances (audio and video), 5 emotions, in the reference preprocessed layout."""

from amst_core.datasets.base import LEAVE_ONE_SESSION_OUT, SPLIT_KNOBS
from amst_core.datasets.reference import reference_spec
from amst_core.vocab import AUDIO, VISUAL

CLASSES = ("ang", "exc", "fru", "neu", "sad")
# Leave one of the 5 sessions out (`dataset.split_scheme: leave_one_session_out`, `dataset.test_session`)
SESSION_SPLITS = {"knobs": (*SPLIT_KNOBS, "test_session"), "split_schemes": (LEAVE_ONE_SESSION_OUT,)}

SPEC = reference_spec("iemocap", "IEMOCAP utterances (audio and video) in the reference preprocessed layout",
                      (AUDIO, VISUAL), "amst_core.layouts.iemocap:LAYOUT", classes=CLASSES,
                      reference={"skip": {AUDIO: 4}}, **SESSION_SPLITS)
