"""IEMOCAP: dialogue utterances of 5 emotions; `iemocap` is audio + visual, `iemocap3` adds the transcript.
Frames are kept at 2 per second (IMAGE_KEPT_2_PER_SEC); tokens sit directly in text_token/."""

from amst_core import vocab
from amst_core.layouts.base import Layout, Media

FILES = ("iemocap_train.txt", "iemocap_valid.txt", "iemocap_test.txt")
AUDIO, VISUAL = (vocab.AUDIO, Media("fbank", "fbank")), (vocab.VISUAL, Media("frames", "IMAGE_KEPT_2_PER_SEC"))
EXAMPLE = "Ses04F_script03_1_F012, neu, 63.6100, 65.0600 ### Who's they?"
# Ses04F_script03_1_M012: session 4, spoken by its male actor (the letter of the utterance, not of the dialogue,
# which names the actor wearing the markers): speaker Ses04M, one of 10 (two per session)
SPEAKER = r"(Ses\d\d)[FM]_.*_([FM])\d+$"

LAYOUT = Layout("iemocap", *FILES, separator=",", class_file="stat_iemocap.txt", line_example=EXAMPLE,
                media=(AUDIO, VISUAL), speaker_pattern=SPEAKER)
LAYOUT3 = Layout("iemocap3", *FILES, separator=",", class_file="stat_iemocap.txt", line_example=EXAMPLE,
                 media=(AUDIO, (vocab.TEXT, Media("tokens", "text_token")), VISUAL), speaker_pattern=SPEAKER)
