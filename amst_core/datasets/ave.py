"""AVE: audio-visual events, 28 classes read from its class file, in the reference preprocessed layout."""

from amst_core.datasets.reference import reference_spec
from amst_core.vocab import AUDIO, VISUAL

SPEC = reference_spec("ave", "AVE in the reference preprocessed layout", (AUDIO, VISUAL),
                      "amst_core.layouts.ave:LAYOUT", reference={"skip": {AUDIO: 2}})
