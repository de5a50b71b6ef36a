"""avtdigits: avdigits (spoken digit + MNIST image) with a third modality, a short text that names the digit in
one of many ways ("seven", "7", "sieben", "VII", "one more than six", ...). In `text_noise` of the samples (0.4)
the text names another digit, drawn at random, so text alone tops out near 0.64 accuracy: a third modality that
learns fast and is only partly right, as text often is.

The text encoder is a small RoBERTa (random weights, every layer trained) with a byte-level BPE tokenizer trained on
the spellings, written by `amst prepare avtdigits` to AMST_DATA_ROOT/avtdigits/text_model; a run may point
`model.text_model` at any other RoBERTa-style model. The audio and images are avdigits' own (its folder and knobs).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from amst_core.catalog import DATASETS
from amst_core.data.avdigits import SPLITS, AVDigits
from amst_core.data.base import TensorSamples
from amst_core.vocab import TEXT

if TYPE_CHECKING:
    from amst_core.config import RunConfig

TEXT_NOISE = 0.4
SPELLINGS: tuple[tuple[str, ...], ...] = tuple(zip(*[
    ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9"),
    ("null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"),
    ("zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf"),
    ("cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve"),
    ("nulla", "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX"),
    ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE"),
    ("nothing at all", "a single one", "a pair", "a trio", "a quartet", "a handful", "half a dozen",
     "a week of days", "an octave", "one less than ten"),
    ("one less than one", "one more than zero", "one more than one", "one more than two", "one more than three",
     "one more than four", "one more than five", "one more than six", "one more than seven", "one more than eight"),
], strict=True))  # SPELLINGS[digit] = the ways of writing it


def corpus() -> list[str]:
    """Every text a sample can have (what the tokenizer is trained on)."""
    return [f"the digit is {way}" for ways in SPELLINGS for way in ways]


def texts(labels: np.ndarray, split: str, noise: float = TEXT_NOISE) -> list[str]:
    """One text per sample, fixed by the split: a random spelling of its digit, or (with probability `noise`) of
    another digit."""
    rng = np.random.default_rng(7_000 + SPLITS.index(split))
    named = np.where(rng.random(len(labels)) < noise,
                     (labels + rng.integers(1, 10, len(labels))) % 10, labels)  # another digit, never the same
    ways = rng.integers(0, len(SPELLINGS[0]), len(labels))
    return [f"the digit is {SPELLINGS[d][w]}" for d, w in zip(named, ways, strict=True)]


def prepare_text_model(out: Path, hidden: int = 64, layers: int = 2, steps: int = 300) -> Path:
    """A byte-level BPE tokenizer trained on the spellings and a small RoBERTa with random weights."""
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus() * 8, vocab_size=400, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 0))
    RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                         cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>") \
        .save_pretrained(out)
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=bpe.get_vocab_size(), hidden_size=hidden, num_hidden_layers=layers,
                           num_attention_heads=4, intermediate_size=2 * hidden, max_position_embeddings=40,
                           pad_token_id=1)
    model = RobertaModel(config)
    pretrain(model, RobertaTokenizerFast.from_pretrained(out), steps)
    model.save_pretrained(out)
    return out


def pretrain(model: torch.nn.Module, tokenizer, steps: int = 300) -> None:
    """Label-free pretraining, as a real text encoder comes pretrained: the first token's state learns to say which
    tokens the text holds (a bag-of-words autoencoder). A random transformer's first token barely depends on the
    text, and SGD would spend the whole run learning to read it. No digit label is used."""
    enc = tokenizer(corpus(), padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    words = torch.zeros(len(ids), model.config.vocab_size).scatter_(1, ids, 1.0)
    decoder = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size)
    optimizer = torch.optim.Adam([*model.parameters(), *decoder.parameters()], lr=3e-3)
    model.train()
    for _ in range(steps):
        first = model(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(decoder(first), words)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


class AVTDigits(AVDigits):
    def classes(self, cfg: RunConfig) -> tuple[str, ...]:
        return DATASETS["avtdigits"].classes

    def split(self, cfg: RunConfig, split: str, train: bool) -> TensorSamples:
        samples = super().split(cfg, split, train)
        if TEXT in cfg.modalities:
            from amst_core.data.media import tokenize
            from amst_core.models.text import load_tokenizer

            ids, mask = tokenize(load_tokenizer(cfg.model.text_model), texts(samples.labels.numpy(), split),
                                 cfg.model.text_max_length)
            samples.tensors[TEXT], samples.tensors["text_mask"] = torch.from_numpy(ids), torch.from_numpy(mask)
        return samples
