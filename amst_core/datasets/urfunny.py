"""UR-FUNNY v2: punchlines (text, audio, video), funny or not, in the reference layout."""

from amst_core.datasets.reference import reference_spec
from amst_core.vocab import AUDIO, TEXT, VISUAL

SPEC = reference_spec("urfunny", "UR-FUNNY v2 punchlines (text, audio, video) in the reference layout",
                      (AUDIO, TEXT, VISUAL), "amst_core.layouts.urfunny:LAYOUT", classes=("FUNNY", "NOTFUNNY"),
                      reference={"skip": {AUDIO: 6, TEXT: 10}})
