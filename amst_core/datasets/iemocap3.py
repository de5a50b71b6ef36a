"""iemocap3: IEMOCAP's files with their transcripts as a third modality (`amst preprocess iemocap` writes both)."""

from amst_core.datasets.iemocap import CLASSES, SESSION_SPLITS
from amst_core.datasets.reference import reference_spec
from amst_core.vocab import AUDIO, TEXT, VISUAL

SPEC = reference_spec("iemocap3", "IEMOCAP utterances with their transcripts (text, audio, video)",
                      (AUDIO, TEXT, VISUAL), "amst_core.layouts.iemocap:LAYOUT3", classes=CLASSES,
                      preprocess=None, command="amst preprocess iemocap RAW_DIR",
                      defaults={"dataset": {"root": "iemocap"}},  # the same files as iemocap, with the transcripts
                      reference={"skip": {AUDIO: 4, TEXT: 10}}, **SESSION_SPLITS)
