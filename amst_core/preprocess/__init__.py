"""`amst preprocess DATASET RAW_DIR`: one module per release (its `plan`), one line here. `folder` is handled by the
feature cache (`amst cache`)."""

from amst_core.preprocess import ave, cremad, iemocap, mvsa, urfunny

RELEASES = {"cremad": cremad.plan, "ave": ave.plan, "mvsa": mvsa.plan, "iemocap": iemocap.plan,
            "urfunny": urfunny.plan}
TEXT_LENGTH = {"mvsa": 256}  # tokens; 128 for the others (amst_method.md section 3)

__all__ = ["RELEASES", "TEXT_LENGTH"]
