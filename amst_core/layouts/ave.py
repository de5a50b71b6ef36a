"""AVE: 4,143 YouTube events of 28 classes, audio + video (the original annotation lists)."""

from amst_core.layouts.base import audio_visual

LAYOUT = audio_visual("ave", ("my_train_ave.txt", "my_val_ave.txt", "my_test_ave.txt"), ".mp4", "stat_ave.txt",
                      "IMAGE_KEPT_1_PER_SEC", "EsfJpLbBeb4.mp4 Church bell")
