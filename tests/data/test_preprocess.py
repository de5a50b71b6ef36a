"""`amst preprocess`: fake releases built here (WAVs, MP4s with a soundtrack written with PyAV, images, text,
pickles) become layouts the loaders accept; a killed run started again skips what it finished; failures are
summarised by id and reason."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from amst_core.config import RunConfig
from amst_core.data import source_for
from amst_core.datafiles import check_dataset
from amst_core.preprocess import RELEASES
from amst_core.preprocess.base import execute
from tests.kit.tiny import TINY_TEXTS, model_sample, write_mp4, write_tiny_roberta

ROOT = Path(__file__).resolve().parents[2]
EMOTIONS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")


def write_wav(path: Path, pitch: float, seconds: float = 0.5, rate: int = 8000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * pitch * t)).astype(np.float32), rate)


def fake_cremad(raw: Path, per_class: int = 3, videos: bool = True) -> list[str]:
    ids = []
    for c, emotion in enumerate(EMOTIONS):
        for k in range(per_class):
            clip_id = f"10{c}{k}_IEO_{emotion}_XX"
            write_wav(raw / "AudioWAV" / f"{clip_id}.wav", 200 + 100 * c)
            if videos:
                write_mp4(raw / "VideoFlash" / f"{clip_id}.mp4", seconds=1.2, colour=(30 * c, 100, 50), audio=False)
            ids.append(clip_id)
    return ids


def cfg_for(dataset: str, **model) -> RunConfig:
    return RunConfig.model_validate({"method": "naive", "dataset": {"name": dataset}, "device": "cpu",
                                     "model": {"frames": 1, "image_size": 32, "width": 8, **model}})


def test_cremad_wavs_and_videos_become_the_layout_the_loader_reads(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AMST_DATA_ROOT", str(tmp_path / "data"))
    ids = fake_cremad(tmp_path / "raw")
    report = execute(RELEASES["cremad"](tmp_path / "raw"), tmp_path / "data" / "cremad", workers=2, progress=False)
    assert (report.done, report.skipped, report.failed) == (18, 0, [])
    cfg = check_dataset(cfg_for("cremad"))
    assert source_for(cfg).classes(cfg) == ("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad")
    fbank = np.load(tmp_path / "data/cremad/fbank" / f"{ids[0]}.npy")
    assert fbank.shape == (1024, 128) and fbank.dtype == np.float32
    assert np.all(fbank[60:] == 0) and np.any(fbank[:40] != 0)  # 0.5 s of audio, then zero padding
    frames = sorted((tmp_path / "data/cremad/IMAGE_KEPT_1_PER_SEC" / ids[0]).iterdir())
    assert [f.name for f in frames] == ["00000.jpg", "00001.jpg"]  # 1.2 s at one frame per second
    sample = model_sample(source_for(cfg).split(cfg, "train", train=True), 0, cfg.model.image_size, train=True)
    assert sample["audio"].shape == (1, 1024, 128) and sample["visual"].shape == (3, 1, 32, 32)
    sizes = {s: len(items) for s, items in RELEASES["cremad"](tmp_path / "raw").splits.items()}
    assert sizes == {"train": 6, "val": 6, "test": 6}  # stratified: one of each class in val and test


@pytest.mark.slow  # `amst preprocess` started twice in a child process, killed half-way the first time: 3-11 s
def test_a_killed_run_started_again_skips_what_it_finished(tmp_path: Path) -> None:
    fake_cremad(tmp_path / "raw", per_class=4)  # 24 clips
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AMST_DATA_ROOT": str(tmp_path)}
    command = [sys.executable, "-m", "launch", "preprocess", "cremad", str(tmp_path / "raw"), "--out", str(out),
               "--workers", "1", "--no-progress"]
    first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list((out / "fbank").glob("*.npy")) if (out / "fbank").is_dir()
                                              else []) < 4:
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in (out / "fbank").glob("*.npy")}
    assert 4 <= len(finished) < 24, "killed half-way"
    (out / "fbank" / ".half.npy.tmp-1-abc").write_bytes(b"half")  # what a kill mid-write leaves: never counts
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "24 samples written" not in again.stderr and "already done" in again.stderr, again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in (out / "fbank").glob("*.npy") if p.name in finished} == finished
    assert len(list((out / "fbank").glob("*.npy"))) == 24
    assert len([p for p in (out / "IMAGE_KEPT_1_PER_SEC").iterdir() if p.is_dir()]) == 24
    assert not list(out.glob("*/.*.tmp-*")), "what the killed run left half-written is gone"


def test_failures_are_summarised_by_id_and_reason(tmp_path: Path) -> None:
    ids = fake_cremad(tmp_path / "raw", videos=False)
    (tmp_path / "raw/AudioWAV" / f"{ids[3]}.wav").write_bytes(b"RIFF broken")
    report = execute(RELEASES["cremad"](tmp_path / "raw"), tmp_path / "out", workers=1, progress=False)
    assert report.done == 17 and [i for i, _ in report.failed] == [ids[3]]
    assert "not a readable audio file" in report.failed[0][1] and f"{ids[3]}.wav" in report.failed[0][1]
    assert (tmp_path / "out/preprocess_failures.txt").read_text().startswith(ids[3])


@pytest.fixture(scope="module")
def roberta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_roberta(tmp_path_factory.mktemp("models") / "tiny-roberta")


def test_urfunny_videos_and_pickles_become_tokens_fbanks_and_frames(tmp_path: Path, roberta: Path,
                                                                      monkeypatch) -> None:
    raw = tmp_path / "raw"
    labels, language = {}, {}
    for k in range(10):
        write_mp4(raw / "videos" / f"{100 + k}.mp4", seconds=1.0, colour=(20 * k, 80, 80))
        labels[100 + k], language[100 + k] = k % 2, {"punchline_sentence": TINY_TEXTS[k % 2], "context": []}
    for name, value in (("humor_label_sdk.pkl", labels), ("language_sdk.pkl", language)):
        (raw / name).write_bytes(pickle.dumps(value))
    out = tmp_path / "data" / "urfunny"
    monkeypatch.setenv("AMST_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("AMST_DATA_EXTRA_ROOTS", str(roberta.parent))
    report = execute(RELEASES["urfunny"](raw), out, workers=1, text_model=str(roberta), text_max_length=16,
                     progress=False)
    assert report.failed == [] and report.done == 10
    lines = (out / "ur_funny_train.txt").read_text().splitlines()
    assert len(lines) == 8 and lines[0].split(", ")[1] in ("FUNNY", "NOTFUNNY") and "###" in lines[0]
    cfg = check_dataset(cfg_for("urfunny", text_model=str(roberta), text_max_length=16))
    sample = model_sample(source_for(cfg).split(cfg, "val", train=False), 0, cfg.model.image_size)
    assert sample["text"].shape == (16,) and sample["text"][0] == 0 and sample["audio"].abs().sum() > 0


def test_mvsa_keeps_the_reference_label_rule(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    (raw / "data").mkdir(parents=True)
    pairs = ["positive,positive", "positive,negative", "neutral,negative", "neutral,neutral", "negative,neutral"]
    for k in range(1, 6):
        Image.new("RGB", (8, 8), (k * 40, 0, 0)).save(raw / "data" / f"{k}.jpg")
        (raw / "data" / f"{k}.txt").write_text(f"post {k}")
    (raw / "labelResultAll.txt").write_text("ID\ttext,image\n" + "".join(f"{k}\t{p}\n" for k, p in
                                                                           enumerate(pairs, start=1)))
    plan = RELEASES["mvsa"](raw)
    labels = {s.sample_id: s.label for items in plan.splits.values() for s in items}
    assert labels == {"1": "positive", "3": "negative", "4": "neutral", "5": "negative"}  # 2 (pos vs neg) dropped
