"""IEMOCAP as released: Session1..5/dialog/EmoEvaluation/<dialog>.txt (utterance lines `[start - end]<TAB>id<TAB>
emotion<TAB>[V, A, D]`), Session*/dialog/transcriptions/<dialog>.txt (`id [start-end]: text`) and the session videos
Session*/dialog/avi/DivX/<dialog>.avi. Each utterance is cut out of its dialogue's video (soundtrack and frames, 2
per second); ang, exc, fru, neu and sad are kept (hap is not merged into exc), split per class 80/10/10 with seed 0
(or the reference's files with --splits). Writes the iemocap layout, which iemocap3 reads too (with the text)."""

from __future__ import annotations

import re
from pathlib import Path

from amst_core.config import ConfigError
from amst_core.layouts import LAYOUTS
from amst_core.preprocess.base import Job, Plan, Sample, reference_splits, stratified

KEPT = ("ang", "exc", "fru", "neu", "sad")
UTTERANCE = re.compile(r"^\[(\d+\.\d+) - (\d+\.\d+)\]\t(\S+)\t(\w+)\t")
TRANSCRIPT = re.compile(r"^(\S+) \[[\d.]+-[\d.]+\]: (.*)$")


def plan(raw: Path, splits: Path | None = None) -> Plan:
    evaluations = sorted(raw.glob("Session*/dialog/EmoEvaluation/*.txt"))
    if not evaluations:
        raise ConfigError("RAW_DIR", f"{raw} has no Session*/dialog/EmoEvaluation/*.txt; IEMOCAP's release has "
                                     "Session1..5 with dialog/EmoEvaluation, dialog/transcriptions and dialog/avi")
    samples, jobs = {}, []
    for evaluation in evaluations:
        dialog = evaluation.stem
        session = evaluation.parents[2]
        texts = {}
        transcript = session / "dialog" / "transcriptions" / f"{dialog}.txt"
        if transcript.is_file():
            for line in transcript.read_text(encoding="utf-8", errors="replace").splitlines():
                if m := TRANSCRIPT.match(line.strip()):
                    texts[m.group(1)] = m.group(2).strip()
        video = session / "dialog" / "avi" / "DivX" / f"{dialog}.avi"
        for line in evaluation.read_text(encoding="utf-8", errors="replace").splitlines():
            m = UTTERANCE.match(line)
            if not m or m.group(4) not in KEPT:
                continue
            start, end, utterance = float(m.group(1)), float(m.group(2)), m.group(3)
            samples[utterance] = Sample(utterance, m.group(4), texts.get(utterance, ""), f"{start:.4f}, {end:.4f}")
            jobs.append(Job(utterance, audio=video, video=video, start=start, end=end))
    layout = LAYOUTS["iemocap3"]
    by_split = reference_splits(splits, layout, samples) or stratified(list(samples.values()))
    return Plan(layout, KEPT, by_split, jobs, lambda s: f"{s.sample_id}, {s.label}, {s.extra} ### {s.text}",
                frames_per_second=2)
