"""UR-FUNNY v2: TED punchlines, funny or not (text + audio + visual)."""

from amst_core.layouts.base import Layout, Media

LAYOUT = Layout("urfunny", "ur_funny_train.txt", "ur_funny_valid.txt", "ur_funny_test.txt", separator=",",
                class_file="ur_funny_stat.txt", line_example="4109, FUNNY, ### wherever he went ...",
                media=(("audio", Media("fbank", "fbank")), ("text", Media("tokens", "text_token/roberta-base")),
                       ("visual", Media("frames", "IMAGE_KEPT_1_PER_SEC"))))
