"""CREMA-D: 7,442 acted clips, 6 emotions, audio + video, in the reference preprocessed layout; its actors can
also be split apart (`dataset.split_scheme: speaker_independent`): the reference split has every actor in every
split."""

from amst_core.datasets.base import SPEAKER_INDEPENDENT, SPLIT_KNOBS
from amst_core.datasets.reference import reference_spec
from amst_core.vocab import AUDIO, VISUAL

SPEC = reference_spec("cremad", "CREMA-D in the reference preprocessed layout", (AUDIO, VISUAL),
                      "amst_core.layouts.cremad:LAYOUT",
                      classes=("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad"),
                      reference={"skip": {AUDIO: 5}}, knobs=SPLIT_KNOBS, split_schemes=(SPEAKER_INDEPENDENT,))
