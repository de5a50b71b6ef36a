"""Generated data for tests: each class has a random prototype per modality; a sample is
signal[m] * prototype + N(0, 1) noise, so `signal` decides how easy each modality is.
The data depend only on the synthetic settings (not on the run seed), so runs with different seeds share them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from amst_core.data.base import TensorSamples
from amst_core.vocab import AUDIO, SPLITS, TEXT, VISUAL

if TYPE_CHECKING:
    from amst_core.config import RunConfig, SyntheticConfig

SPLIT_OFFSET = {split: i for i, split in enumerate(SPLITS)}


def generate(spec: SyntheticConfig, split: str) -> TensorSamples:
    protos = torch.Generator().manual_seed(12_345)
    noise = torch.Generator().manual_seed(54_321 + SPLIT_OFFSET[split])
    n, c = spec.samples[split], spec.num_classes
    labels = torch.arange(n) % c  # balanced classes
    labels = labels[torch.randperm(n, generator=noise)]
    tensors: dict[str, torch.Tensor] = {}
    shapes = {AUDIO: (1, *spec.audio_shape), VISUAL: (3, spec.frames, spec.image_size, spec.image_size)}
    for modality in shapes:  # prototypes drawn for every modality: shapes stay independent of the set
        proto = torch.randn(c, *shapes[modality], generator=protos)
        if modality in spec.modalities:
            strength = spec.signal.get(modality, 1.0)
            tensors[modality] = strength * proto[labels] + torch.randn(n, *shapes[modality], generator=noise)
    if TEXT in spec.modalities:
        tensors[TEXT], tensors["text_mask"] = _text(spec, labels, noise)
    return TensorSamples(tensors, labels)


def _text(spec: SyntheticConfig, labels: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids: with probability p(signal) a token comes from the class's own slice of the vocabulary."""
    n, length, vocab, c = len(labels), spec.text_length, spec.vocab_size, spec.num_classes
    p_class = torch.sigmoid(torch.tensor(spec.signal.get(TEXT, 1.0))).item()
    slice_size = max(1, (vocab - 2) // c)
    own = 2 + labels[:, None] * slice_size + torch.randint(0, slice_size, (n, length), generator=g)
    anywhere = torch.randint(2, vocab, (n, length), generator=g)
    ids = torch.where(torch.rand(n, length, generator=g) < p_class, own, anywhere)
    ids[:, 0] = 0  # a CLS-like first token
    return ids.long(), torch.ones(n, length)


class Synthetic:
    def check(self, cfg: RunConfig) -> None:
        return None  # generated, nothing to find on disk

    def classes(self, cfg: RunConfig) -> tuple[str, ...]:
        assert cfg.dataset.synthetic is not None
        return tuple(f"class_{i}" for i in range(cfg.dataset.synthetic.num_classes))

    def split(self, cfg: RunConfig, split: str, train: bool) -> TensorSamples:
        """Generated for every modality of the spec (so a modality's data do not depend on the others being
        used), kept for the run's modalities."""
        assert cfg.dataset.synthetic is not None
        samples = generate(cfg.dataset.synthetic, split)
        keep = set(cfg.modalities) | ({"text_mask"} if TEXT in cfg.modalities else set())
        samples.tensors = {k: t for k, t in samples.tensors.items() if k in keep}
        return samples
