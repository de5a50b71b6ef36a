"""`amst preprocess` and the folder feature cache, measured side by side in one run:

1. preprocess throughput (samples/s) of a generated CREMA-D-style release, WAVs alone and WAVs plus MP4 videos
   (soundtrack-free 3 s clips, one frame per second kept), with 1 and with 2 worker processes;
2. a folder dataset's first run (features computed into the cache) against a second run's start (cache found).

    python bench/preprocess.py [--clips 600] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.kit

from amst_core.config import RunConfig
from amst_core.data.folder import cached_features
from amst_core.datafiles import any_data_path, check_dataset
from amst_core.preprocess import RELEASES
from amst_core.preprocess.base import execute
from tests.kit.tiny import write_mp4, write_tiny_folder

EMOTIONS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")


def fake_release(raw: Path, clips: int, videos: bool) -> None:
    import numpy as np
    import soundfile

    rate = 16000
    t = np.arange(int(2.5 * rate)) / rate  # CREMA-D clips last about 2.5 s
    for k in range(clips):
        clip_id = f"{1000 + k}_IEO_{EMOTIONS[k % 6]}_XX"
        (raw / "AudioWAV").mkdir(parents=True, exist_ok=True)
        soundfile.write(raw / "AudioWAV" / f"{clip_id}.wav", (0.3 * np.sin(2 * np.pi * (200 + k) * t)).astype(
            np.float32), rate)
        if videos:
            write_mp4(raw / "VideoFlash" / f"{clip_id}.mp4", seconds=3, colour=(k % 255, 90, 90), fps=25,
                      audio=False)


def preprocess_rate(raw: Path, workers: int, repeats: int) -> float:
    from amst_core.preprocess import base

    base.SAMPLES_PER_WORKER = 1  # measure the pool itself, whatever the size
    rates = []
    for _ in range(repeats):
        out = raw.parent / f"out-{workers}"
        shutil.rmtree(out, ignore_errors=True)
        plan = RELEASES["cremad"](raw)
        report = execute(plan, out, workers=workers, progress=False, log=lambda _msg: None)
        assert not report.failed, report.failed[:3]
        rates.append(report.done / report.seconds)
    return statistics.median(rates)


def folder_start(root: Path, cache: Path) -> tuple[float, float]:
    os.environ["AMST_CACHE"] = str(cache)
    cfg = RunConfig.model_validate({"method": "naive", "dataset": {"name": "folder", "root": str(root)},
                                    "model": {"frames": 1, "image_size": 112, "audio_frames": 512, "mel_bins": 128}})
    with any_data_path():
        started = time.perf_counter()
        cached_features(check_dataset(cfg), progress=False)
        first = time.perf_counter() - started
        started = time.perf_counter()
        cached_features(check_dataset(cfg), progress=False)
        second = time.perf_counter() - started
    return first, second


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; {args.clips} clips; median of {args.repeats}")
    with tempfile.TemporaryDirectory() as tmp:
        for videos in (False, True):
            raw = Path(tmp) / ("av" if videos else "audio") / "raw"
            fake_release(raw, args.clips, videos)
            one, two = preprocess_rate(raw, 1, args.repeats), preprocess_rate(raw, 2, args.repeats)
            what = "WAV + MP4 (3 s, 25 fps)" if videos else "WAV only (2.5 s)"
            print(f"preprocess {what:<24} 1 process {one:7.1f} samples/s | 2 processes {two:7.1f} samples/s | "
                  f"x {two / one:.2f}")
        root = write_tiny_folder(Path(tmp) / "folder", per_class=args.clips // 6, classes=("a", "b"), text=False)
        first, second = folder_start(root, Path(tmp) / "cache")
        samples = sum(1 for _ in root.glob("*/*/*.wav"))
        print(f"folder dataset of {samples} WAV+PNG samples: first run computes features in {first:.2f} s, a second "
              f"run finds them in {second:.3f} s (x {first / second:.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
