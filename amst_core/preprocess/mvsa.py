"""MVSA-Single as released: data/<id>.jpg and data/<id>.txt, and labelResultAll.txt (`ID<TAB>text,image` with
positive / neutral / negative). The reference's label rule: posts whose text and image disagree as positive vs
negative are dropped; neutral with X is X; equal labels stay. Its split is random without a seed: pass its files with
--splits; without them a stratified 80/10/10 split with seed 0 is written."""

from __future__ import annotations

from pathlib import Path

from amst_core.config import ConfigError
from amst_core.layouts import LAYOUTS
from amst_core.preprocess.base import Job, Plan, Sample, reference_splits, stratified

LABELS = ("negative", "neutral", "positive")


def post_label(text_label: str, image_label: str) -> str | None:
    if {text_label, image_label} == {"positive", "negative"}:
        return None
    if text_label == "neutral":
        return image_label
    return text_label  # image neutral, or both equal


def plan(raw: Path, splits: Path | None = None) -> Plan:
    labels_file = raw / "labelResultAll.txt"
    if not labels_file.is_file():
        raise ConfigError("RAW_DIR", f"{labels_file} does not exist; MVSA-Single's release has data/ and "
                                     "labelResultAll.txt")
    samples, jobs = {}, []
    for line in labels_file.read_text(encoding="utf-8", errors="replace").splitlines()[1:]:
        post, _, pair = line.partition("\t")
        text_label, _, image_label = pair.strip().partition(",")
        label = post_label(text_label.strip(), image_label.strip())
        image, text_file = raw / "data" / f"{post.strip()}.jpg", raw / "data" / f"{post.strip()}.txt"
        if label not in LABELS or not image.is_file() or not text_file.is_file():
            continue
        text = text_file.read_bytes().decode("utf-8", errors="replace").strip()
        samples[post.strip()] = Sample(post.strip(), label, text)
        jobs.append(Job(post.strip(), image=image))
    layout = LAYOUTS["mvsa"]
    by_split = reference_splits(splits, layout, samples) or stratified(list(samples.values()))
    return Plan(layout, LABELS, by_split, jobs, lambda s: f"{s.sample_id}.jpg {s.label}")
