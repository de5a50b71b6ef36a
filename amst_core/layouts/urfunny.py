"""UR-FUNNY v2: TED punchlines, funny or not (text + audio + visual)."""

from amst_core.layouts.base import Layout, Media
from amst_core.vocab import AUDIO, TEXT, VISUAL

LAYOUT = Layout("urfunny", "ur_funny_train.txt", "ur_funny_valid.txt", "ur_funny_test.txt", separator=",",
                class_file="ur_funny_stat.txt", line_example="4109, FUNNY, ### wherever he went ...",
                media=((AUDIO, Media("fbank", "fbank")), (TEXT, Media("tokens", "text_token/roberta-base")),
                       (VISUAL, Media("frames", "IMAGE_KEPT_1_PER_SEC"))))
