"""Tiny run configs shared by the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from amst_core.config import RunConfig, load_config


def tiny_config(method: str = "naive", **fields: Any) -> RunConfig:
    """A synthetic run small enough to train in well under a second per epoch on a CPU."""
    base: dict[str, Any] = {
        "method": method,
        "dataset": {"name": "synthetic", "synthetic": {"samples": {"train": 48, "val": 24, "test": 24}}},
        "model": {"frames": 1, "width": 8},
        "epochs": 2,
        "batch_size": 16,
        "device": "cpu",
        "optim": {"lr": 0.05},
    }
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return load_config(base=base)


def write_tiny_avdigits(root: Path, per_class: tuple[int, int, int] = (6, 2, 2), frames: int = 12,
                        signal: float = 0.3) -> Path:
    """A few avdigits-format samples whose audio and image both carry the label (tests build their own data);
    `signal`: how far apart the classes' audio lies, in noise standard deviations."""
    rng = np.random.default_rng(0)
    out = root / "avdigits"
    out.mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "val", "test"), per_class, strict=True):
        labels = np.repeat(np.arange(10), n)
        audio = rng.normal(size=(len(labels), frames, 13)).astype(np.float32) + labels[:, None, None] * signal
        image = (rng.uniform(0, 60, size=(len(labels), 28, 28)) + labels[:, None, None] * 15).astype(np.uint8)
        np.savez(out / f"{split}.npz", audio=audio, lengths=np.full(len(labels), frames), image=image, label=labels,
                 audio_index=np.arange(len(labels)), image_index=np.arange(len(labels)))
    return out


CREMAD_CLASSES = ("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad")


def write_tiny_cremad(root: Path, name: str = "cremad", per_split: int = 2) -> Path:
    """A CREMA-D folder in the reference layout with a few made-up clips (ids of the real form)."""
    from PIL import Image

    out = root / name
    (out / "fbank").mkdir(parents=True, exist_ok=True)
    (out / "stat_cre.txt").write_text("\n".join(CREMAD_CLASSES) + "\n")
    for s, file in enumerate(("80_train_cre.txt", "10_val_cre.txt", "10_test_cre.txt")):
        lines = []
        for i in range(per_split):
            clip = f"10{s}{i}_IEO_{CREMAD_CLASSES[i % 6][:3].upper()}_XX"
            lines.append(f"{clip}.flv {CREMAD_CLASSES[i % 6]}")
            np.save(out / "fbank" / f"{clip}.npy", np.full((40, 128), 0.5, dtype=np.float32))
            frames = out / "IMAGE_KEPT_1_PER_SEC" / clip
            frames.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (16, 16), (40 * i, 0, 0)).save(frames / "00001.jpg")
        (out / file).write_text("\n".join(lines) + "\n")
    return out


TINY_TEXTS = ("one two three four five six seven eight nine zero", "the cat sat on the mat and laughed",
              "a funny story about a dog", "not funny at all, a sad and boring day", "happy angry neutral sad")


def write_tiny_roberta(folder: Path, vocab_size: int = 300, layers: int = 2, hidden: int = 32,
                       max_positions: int = 260) -> Path:
    """A RoBERTa with random weights and a byte-level BPE tokenizer trained here on a few sentences: the text
    encoder's real code path with nothing downloaded."""
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's ids 0..4
    bpe.train_from_iterator(list(TINY_TEXTS) * 4, vocab_size=vocab_size, min_frequency=1, special_tokens=specials)
    bpe.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 0))
    RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                         cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>") \
        .save_pretrained(folder)
    import torch

    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                           intermediate_size=2 * hidden, max_position_embeddings=max_positions, pad_token_id=1)
    RobertaModel(config).save_pretrained(folder)
    return folder


TEXT_LAYOUT_CLASSES = {"mvsa": ("negative", "neutral", "positive"), "iemocap": ("ang", "exc", "fru", "neu", "sad"),
                       "iemocap3": ("ang", "exc", "fru", "neu", "sad"), "urfunny": ("FUNNY", "NOTFUNNY")}


def layout_line(dataset: str, sample_id: str, label: str, text: str) -> str:
    """A split-file line in the dataset's reference format (amst_method.md section 5)."""
    if dataset == "mvsa":
        return f"{sample_id}.jpg {label}"
    if dataset.startswith("iemocap"):
        return f"{sample_id}, {label}, 1.0000, 2.5000 ### {text}"
    return f"{sample_id}, {label}, ### {text}"


def write_tiny_text_layout(root: Path, dataset: str, tokenizer_dir: Path, per_class: int = 2, fbank_frames: int = 24,
                           mel_bins: int = 16, text_length: int = 16) -> Path:
    """A dataset folder in the reference layout of `dataset` (mvsa, iemocap, iemocap3, urfunny): class file, split
    files, fbanks, frame folders or images, token files from the tokenizer in `tokenizer_dir`; every modality
    carries the label."""
    import torch
    from PIL import Image
    from transformers import AutoTokenizer

    from amst_core.layouts import LAYOUTS

    layout, classes = LAYOUTS[dataset], TEXT_LAYOUT_CLASSES[dataset]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    out = root / ("iemocap" if dataset == "iemocap3" else dataset)  # iemocap3 reads iemocap's folder
    out.mkdir(parents=True, exist_ok=True)
    (out / layout.class_file).write_text("\n".join(reversed(classes)))  # unsorted: the loader sorts
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        lines = []
        for k in range(per_class * len(classes)):
            label = k % len(classes)
            sample_id = f"{split}{k:03d}"
            text = " ".join([TINY_TEXTS[label % len(TINY_TEXTS)]] * 2)
            lines.append(layout_line(dataset, sample_id, classes[label], text))
            for _, media in layout.media:
                folder = out / media.folder
                folder.mkdir(parents=True, exist_ok=True)
                if media.kind == "fbank":
                    fbank = rng.normal(size=(fbank_frames, mel_bins)).astype(np.float32) + label
                    np.save(folder / f"{sample_id}.npy", fbank)
                elif media.kind in ("frames", "image"):
                    colour = (40 + 60 * label, 90, 200 - 40 * label)
                    if media.kind == "image":
                        Image.new("RGB", (20, 20), colour).save(folder / f"{sample_id}.jpg")
                    else:
                        (folder / sample_id).mkdir(exist_ok=True)
                        for f in range(3):
                            Image.new("RGB", (20, 20), colour).save(folder / sample_id / f"{f:05d}.jpg")
                else:
                    enc = tokenizer(text, padding="max_length", max_length=text_length, truncation=True)
                    torch.save(torch.tensor(enc["input_ids"], dtype=torch.long), folder / f"{sample_id}_token.pt")
                    torch.save(torch.tensor(enc["attention_mask"], dtype=torch.float), folder / f"{sample_id}_pm.pt")
        (out / layout.default_split_file(split)).write_text("\n".join(lines) + "\n")
    return out


def text_layout_run(dataset: str, text_model: Path | str, method: str = "amst_full", **overrides: Any) -> dict:
    """A tiny run on a `write_tiny_text_layout` folder (a dict for RunConfig or POST /runs)."""
    body: dict[str, Any] = {
        "method": method, "dataset": {"name": dataset}, "epochs": 2, "batch_size": 4, "device": "cpu",
        "model": {"frames": 2, "image_size": 16, "audio_frames": 24, "mel_bins": 16, "width": 8,
                  "text_model": str(text_model), "text_max_length": 16, "text_trainable_layers": 1},
        "optim": {"lr": 0.05},
    }
    body.update(overrides)
    return body


def write_tiny_folder(root: Path, splits: tuple[str, ...] = ("train", "val", "test"), per_class: int = 3,
                      classes: tuple[str, ...] = ("cat", "dog"), text: bool = True) -> Path:
    """A folder-layout dataset of generated files: per sample a WAV (a tone whose pitch is the class), a PNG
    (a colour) and a TXT, all carrying the label."""
    import soundfile
    from PIL import Image

    rate = 8000
    t = np.arange(int(0.3 * rate)) / rate
    for split in splits:
        for c, label in enumerate(classes):
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                sample_id = f"{label}_{split}_{k}"
                tone = 0.3 * np.sin(2 * np.pi * (300 + 400 * c + 10 * k) * t)
                soundfile.write(folder / f"{sample_id}.wav", tone.astype(np.float32), rate)
                Image.new("RGB", (24, 20), (40 + 150 * c, 80, 200 - 150 * c)).save(folder / f"{sample_id}.png")
                if text:
                    (folder / f"{sample_id}.txt").write_text(TINY_TEXTS[c % len(TINY_TEXTS)] + f" {k}")
    return root


def folder_run(root: str, text_model: Path | str | None = None, method: str = "naive", **overrides: Any) -> dict:
    body: dict[str, Any] = {
        "method": method, "dataset": {"name": "folder", "root": root}, "epochs": 2, "batch_size": 4,
        "device": "cpu", "optim": {"lr": 0.05},
        "model": {"frames": 1, "image_size": 16, "audio_frames": 32, "mel_bins": 16, "width": 8,
                  "text_max_length": 16, "text_trainable_layers": 1,
                  **({"text_model": str(text_model)} if text_model else {})},
    }
    body.update(overrides)
    return body


def write_mp4(path: Path, seconds: float = 2.0, colour: tuple[int, int, int] = (200, 30, 30), fps: int = 10,
              rate: int = 16000, audio: bool = True) -> Path:
    """A small MP4 written with PyAV: solid-colour frames and (optionally) a 440 Hz soundtrack."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        sound = out.add_stream("aac", rate=rate) if audio else None
        for _ in range(int(seconds * fps)):
            image = np.full((32, 32, 3), colour, np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if sound is not None:
            t = np.arange(int(seconds * rate)) / rate
            wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for start in range(0, len(wave), 1024):
                frame = av.AudioFrame.from_ndarray(wave[None, start:start + 1024], format="fltp", layout="mono")
                frame.sample_rate, frame.pts = rate, start
                for packet in sound.encode(frame):
                    out.mux(packet)
            for packet in sound.encode():
                out.mux(packet)
    return path


def model_sample(data: Any, index: int, image_size: int, train: bool = False, seed: int = 0) -> dict[str, Any]:
    """One sample as the model takes it: a cached sample's frames resized (or augmented) and its audio widened,
    as the engine does on the run's device; the batch dimension dropped."""
    import torch
    from torch.utils.data import default_collate

    from amst_core.data.augment import FrameAugment, batch_generator, finish_batch

    batch = default_collate([data[index]])
    generator = batch_generator(torch.device("cpu"), seed, 0, index) if train else None
    batch = finish_batch(batch, FrameAugment(image_size), train=train, generator=generator)
    return {k: v[0] for k, v in batch.items()}
