"""Raw media to features, exactly as the reference preprocessing (amst_method.md section 5), shared by the
folder layout's feature cache and `amst preprocess`:

  audio   a file (soundfile: WAV, FLAC, MP3, OGG) or a video's soundtrack (PyAV); first channel; for a folder
          dataset resampled to one rate (soxr, the resampler librosa uses by default); mean removed,
          Kaldi-compatible log-mel fbank (torchaudio): 25 ms Hanning window, 10 ms shift, htk_compat, no energy,
          dither 0; padded with zeros or cut to `frames` (1024 = 10.24 s)
  frames  a video's frames (PyAV): in each one-second window of int(fps) frames, `per_second` frames spaced
          int(fps / per_second) apart; or a folder of images in name order; resized to a square for storage
  text    the text model's own tokenizer: special tokens, padded to and cut at `max_length`
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from amst_core.extras import require

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".flv")


class MediaError(ValueError):
    """A media file that cannot be read or holds nothing usable; the message says what, never the content."""


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """(first channel as float32, sample rate) of an audio file or of a video's soundtrack."""
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        return soundtrack(path)
    import soundfile

    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, OSError) as err:
        raise MediaError(f"is not a readable audio file ({type(err).__name__})") from None
    if data.shape[0] == 0:
        raise MediaError("holds no audio samples")
    return np.ascontiguousarray(data[:, 0]), int(rate)


def soundtrack(path: Path) -> tuple[np.ndarray, int]:
    """A video's first audio stream, first channel, decoded with PyAV."""
    av = require("av", "media", "a video's soundtrack")

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError("has no audio stream")
            stream = container.streams.audio[0]
            chunks = [first_channel(frame) for frame in container.decode(stream)]
            rate = stream.rate
    except (av.error.FFmpegError, OSError) as err:
        raise MediaError(f"is not a readable video ({type(err).__name__})") from None
    if not chunks:
        raise MediaError("has an empty audio stream")
    first = np.concatenate(chunks)
    return first, int(rate)


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """`wave` at `target` Hz: soxr's high quality, what librosa.resample uses by default ('soxr_hq')."""
    import soxr

    try:
        out = soxr.resample(wave, rate, target, quality="HQ")
    except (ValueError, RuntimeError) as err:
        raise MediaError(f"cannot be resampled from {rate} Hz to {target} Hz ({type(err).__name__})") from None
    return np.ascontiguousarray(out, dtype=np.float32)


def first_channel(frame) -> np.ndarray:
    """One decoded audio frame's first channel as float32 in [-1, 1]: planar formats hold (channels, samples),
    packed ones interleave the channels."""
    arr = frame.to_ndarray()
    channel = arr[0] if frame.format.is_planar else arr.reshape(-1, len(frame.layout.channels))[:, 0]
    if np.issubdtype(channel.dtype, np.integer):
        return channel.astype(np.float32) / float(np.iinfo(channel.dtype).max)
    return channel.astype(np.float32)


def fbank(wave: np.ndarray, rate: int, mel_bins: int = 128, frames: int = 1024) -> np.ndarray:
    """(frames, mel_bins) float32 Kaldi log-mel fbank with the reference's settings, padded or cut."""
    import torchaudio.compliance.kaldi as kaldi

    signal = torch.from_numpy(np.asarray(wave, dtype=np.float32))
    signal = (signal - signal.mean())[None]
    if signal.shape[1] < int(0.025 * rate):
        raise MediaError(f"is shorter than one 25 ms window ({signal.shape[1]} samples at {rate} Hz)")
    features = kaldi.fbank(signal, htk_compat=True, sample_frequency=rate, use_energy=False,
                           window_type="hanning", num_mel_bins=mel_bins, dither=0.0, frame_shift=10)
    out = np.zeros((frames, mel_bins), dtype=np.float32)
    n = min(frames, features.shape[0])
    out[:n] = features[:n].numpy()
    return out


def video_frames(path: Path, per_second: int = 1, start: float = 0.0, end: float | None = None) -> list[Image.Image]:
    """The reference's frame sampling: per one-second window of int(fps) frames, keep `per_second` frames
    spaced int(fps / per_second) apart; only frames in [start, end) seconds (an utterance of a longer video)."""
    av = require("av", "media", "a video's frames")

    kept: list[Image.Image] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError("has no video stream")
            stream = container.streams.video[0]
            fps = max(1, int(float(stream.average_rate or stream.guessed_rate or 1)))
            step = max(1, fps // per_second)
            i = 0
            for frame in container.decode(stream):
                t = frame.time or 0.0
                if t < start:
                    continue
                if end is not None and t >= end:
                    break
                if i % fps % step == 0 and (i % fps) // step < per_second:
                    kept.append(frame.to_image())
                i += 1
    except (av.error.FFmpegError, OSError) as err:
        raise MediaError(f"is not a readable video ({type(err).__name__})") from None
    if not kept:
        raise MediaError("has no video frames" + (f" between {start:.2f} s and {end:.2f} s" if end else ""))
    return kept


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def open_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise MediaError(f"is not a readable image ({type(err).__name__})") from None


def square(image: Image.Image, size: int) -> np.ndarray:
    """(size, size, 3) uint8: the image resized to a square (what the loader's crops and resizes start from)."""
    return np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.uint8)


def read_text_file(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise MediaError("is not UTF-8 text") from None
    except OSError as err:
        raise MediaError(f"cannot be read ({type(err).__name__})") from None
    if not text:
        raise MediaError("is empty")
    return text


TOKENIZER_LOCK = threading.Lock()


def tokenize(tokenizer, texts: list[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids int64, mask float32), each (len(texts), max_length). One call at a time: a fast tokenizer sets its
    padding and truncation on the shared Rust object per call, and two threads at once (the cache's decoding
    threads) fail with 'Already borrowed'; tokenizing is a small share of decoding a sample."""
    with TOKENIZER_LOCK:
        enc = tokenizer(texts, padding="max_length", truncation=True, max_length=max_length)
    return np.asarray(enc["input_ids"], dtype=np.int64), np.asarray(enc["attention_mask"], dtype=np.float32)
