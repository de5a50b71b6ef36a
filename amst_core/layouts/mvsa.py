"""MVSA-Single: tweets of one image and one text, 3 sentiments (text + visual)."""

from amst_core.layouts.base import Layout, Media
from amst_core.vocab import TEXT, VISUAL

LAYOUT = Layout("mvsa", "my_train_mvsa.txt", "my_val_mvsa.txt", "my_test_mvsa.txt", separator=".jpg ",
                class_file="stat_mvsa.txt", line_example="4333.jpg negative",
                media=((TEXT, Media("tokens", "text_token/roberta-base")), (VISUAL, Media("image", "visual"))))
