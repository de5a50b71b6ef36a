"""CREMA-D: 7,442 acted clips, 6 emotions, audio + video (a random 80/10/10 split of the reference)."""

from amst_core.layouts.base import audio_visual

ACTOR = r"(\d{4})_"  # 1040_IOM_NEU_XX: actor 1040 (91 actors, each speaking every emotion)

LAYOUT = audio_visual("cremad", ("80_train_cre.txt", "10_val_cre.txt", "10_test_cre.txt"), ".flv", "stat_cre.txt",
                      "IMAGE_KEPT_1_PER_SEC", "1040_IOM_NEU_XX.flv Neutral", speaker_pattern=ACTOR)
