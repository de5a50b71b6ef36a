"""MVSA-Single: tweets (text and image), 3 sentiments, in the reference preprocessed layout."""

from amst_core.datasets.reference import reference_spec
from amst_core.vocab import TEXT, VISUAL

SPEC = reference_spec("mvsa", "MVSA-Single (tweets: text and image) in the reference preprocessed layout",
                      (TEXT, VISUAL), "amst_core.layouts.mvsa:LAYOUT", classes=("negative", "neutral", "positive"),
                      defaults={"model": {"frames": 1, "text_max_length": 256}}, reference={"skip": {TEXT: 10}})
