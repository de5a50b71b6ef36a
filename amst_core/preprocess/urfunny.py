"""UR-FUNNY v2 as released: videos/<id>.mp4, humor_label_sdk.pkl ({id: 0 or 1}) and language_sdk.pkl ({id:
{"punchline_sentence": ...}}). The text is the punchline only; audio the video's first 10.24 s; frames one per
second; ids sorted, shuffled with seed 0 and cut 80/10/10, as the reference (or its files with --splits).
The pickles are read with pickle: preprocess only a release you trust."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

from amst_core.config import ConfigError
from amst_core.layouts import LAYOUTS
from amst_core.preprocess.base import Job, Plan, Sample, reference_splits
from amst_core.vocab import SPLITS

LABELS = {1: "FUNNY", 0: "NOTFUNNY"}


def load(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError("RAW_DIR", f"{path} does not exist; UR-FUNNY v2's release has videos/, "
                                     "humor_label_sdk.pkl and language_sdk.pkl")
    with path.open("rb") as f:
        return pickle.load(f)


def plan(raw: Path, splits: Path | None = None) -> Plan:
    labels, language = load(raw / "humor_label_sdk.pkl"), load(raw / "language_sdk.pkl")
    samples, jobs = {}, []
    for key in sorted(labels, key=str):
        sample_id, video = str(key), raw / "videos" / f"{key}.mp4"
        text = str(language.get(key, {}).get("punchline_sentence", "")).strip()
        samples[sample_id] = Sample(sample_id, LABELS[int(labels[key])], text)
        jobs.append(Job(sample_id, audio=video, video=video))
    layout = LAYOUTS["urfunny"]
    by_split = reference_splits(splits, layout, samples)
    if by_split is None:
        ids = sorted(samples)
        random.Random(0).shuffle(ids)
        n_train, n_val = round(0.8 * len(ids)), round(0.1 * len(ids))
        cuts = dict(zip(SPLITS, (ids[:n_train], ids[n_train:n_train + n_val], ids[n_train + n_val:]), strict=True))
        by_split = {split: [samples[i] for i in chosen] for split, chosen in cuts.items()}
    return Plan(layout, ("FUNNY", "NOTFUNNY"), by_split, jobs, lambda s: f"{s.sample_id}, {s.label}, ### {s.text}")
