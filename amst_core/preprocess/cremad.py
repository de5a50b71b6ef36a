"""CREMA-D as released: AudioWAV/<id>.wav and VideoFlash/<id>.flv (7,442 clips of 91 actors); the label is the
id's third field (ANG, DIS, FEA, HAP, NEU, SAD). The reference's split is random and not reproducible from a seed:
pass its files with --splits (e.g. the folder holding 80_train_cre.txt); without them a stratified 80/10/10 split
with seed 0 is written."""

from __future__ import annotations

from pathlib import Path

from amst_core.config import ConfigError
from amst_core.layouts import LAYOUTS
from amst_core.preprocess.base import Job, Plan, Sample, reference_splits, stratified

EMOTIONS = {"ANG": "Anger", "DIS": "Disgust", "FEA": "Fear", "HAP": "Happy", "NEU": "Neutral", "SAD": "Sad"}


def plan(raw: Path, splits: Path | None = None) -> Plan:
    layout = LAYOUTS["cremad"]
    wavs = sorted((raw / "AudioWAV").glob("*.wav"))
    if not wavs:
        raise ConfigError("RAW_DIR", f"{raw / 'AudioWAV'} holds no .wav files; CREMA-D's release has AudioWAV/ and "
                                     "VideoFlash/")
    samples, jobs = {}, []
    for wav in wavs:
        parts = wav.stem.split("_")
        label = EMOTIONS.get(parts[2]) if len(parts) >= 3 else None
        if label is None:
            continue
        video = next((v for ext in (".flv", ".mp4") if (v := raw / "VideoFlash" / f"{wav.stem}{ext}").is_file()), None)
        samples[wav.stem] = Sample(wav.stem, label)
        jobs.append(Job(wav.stem, audio=wav, video=video))
    by_split = reference_splits(splits, layout, samples) or stratified(list(samples.values()))
    return Plan(layout, tuple(sorted(EMOTIONS.values())), by_split, jobs, lambda s: f"{s.sample_id}.flv {s.label}")
