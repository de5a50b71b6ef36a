"""MVSA-Single: tweets of one image and one text, 3 sentiments (text + visual)."""

from amst_core.layouts.base import Layout, Media

LAYOUT = Layout("mvsa", "my_train_mvsa.txt", "my_val_mvsa.txt", "my_test_mvsa.txt", separator=".jpg ",
                class_file="stat_mvsa.txt", line_example="4333.jpg negative",
                media=(("text", Media("tokens", "text_token/roberta-base")), ("visual", Media("image", "visual"))))
