"""The synthetic dataset: shapes, balance, determinism, and `signal` controlling how easy a modality is."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from amst_core.config import RunConfig, SyntheticConfig
from amst_core.data import source_for
from amst_core.data.synthetic import Synthetic, generate


def cfg_with(seed: int = 0, **synthetic: object) -> RunConfig:
    return RunConfig.model_validate({"dataset": {"name": "synthetic", "synthetic": synthetic}, "method": "naive",
                                     "seed": seed})


def stacked(ds, key: str) -> torch.Tensor:
    return torch.stack([ds[i][key] for i in range(len(ds))])


def test_shapes_per_modality():
    spec = SyntheticConfig(modalities=["visual", "text", "audio"], num_classes=3,
                           samples={"train": 12, "val": 6, "test": 9}, audio_shape=(10, 6), image_size=5,
                           frames=2, text_length=7, vocab_size=20)
    ds = generate(spec, "train")
    assert len(ds) == 12
    sample = ds[0]
    assert set(sample) == {"audio", "visual", "text", "text_mask", "label"}
    assert sample["audio"].shape == (1, 10, 6)
    assert sample["visual"].shape == (3, 2, 5, 5)
    assert sample["text"].shape == (7,)
    assert sample["text"].dtype == torch.long
    assert sample["text_mask"].shape == (7,)
    assert sample["text_mask"].dtype == torch.float32
    assert torch.all(sample["text_mask"] == 1)
    assert sample["audio"].dtype == torch.float32
    assert len(generate(spec, "val")) == 6
    assert len(generate(spec, "test")) == 9
    text = stacked(ds, "text")
    assert torch.all(text[:, 0] == 0)
    assert text[:, 1:].min() >= 2 and text.max() < 20


def test_only_configured_modalities():
    ds = generate(SyntheticConfig(modalities=["audio"]), "train")
    assert set(ds[0]) == {"audio", "label"}
    ds = generate(SyntheticConfig(modalities=["visual"]), "val")
    assert set(ds[0]) == {"visual", "label"}


@pytest.mark.parametrize(("n", "classes"), [(64, 4), (30, 3), (12, 6)])
def test_balanced_labels(n, classes):
    spec = SyntheticConfig(num_classes=classes, samples={"train": n, "val": n, "test": n})
    for split in ("train", "val", "test"):
        labels = generate(spec, split).labels
        assert Counter(labels.tolist()) == {c: n // classes for c in range(classes)}
    # shuffled, not in class order
    assert generate(spec, "train").labels.tolist() != sorted(generate(spec, "train").labels.tolist())


def test_deterministic():
    spec = SyntheticConfig(modalities=["audio", "text", "visual"])
    a, b = generate(spec, "train"), generate(spec, "train")
    for key in ("audio", "visual", "text", "text_mask"):
        torch.testing.assert_close(a.tensors[key], b.tensors[key], rtol=0, atol=0)
    assert torch.equal(a.labels, b.labels)


def test_splits_differ():
    spec = SyntheticConfig()
    train, val = generate(spec, "train"), generate(spec, "val")
    assert not torch.allclose(train.tensors["audio"][:32], val.tensors["audio"])


def test_independent_of_run_seed():
    a = source_for(cfg_with(seed=0)).split(cfg_with(seed=0), "train", train=True)
    b = Synthetic().split(cfg_with(seed=9), "train", train=True)
    torch.testing.assert_close(a.tensors["audio"], b.tensors["audio"], rtol=0, atol=0)
    torch.testing.assert_close(a.tensors["visual"], b.tensors["visual"], rtol=0, atol=0)
    assert torch.equal(a.labels, b.labels)


def test_classes_names():
    assert Synthetic().classes(cfg_with(num_classes=3)) == ("class_0", "class_1", "class_2")
    Synthetic().check(cfg_with())  # nothing on disk to miss


def test_prototypes_shared_between_splits():
    """Class structure carries over: class means of train and val (high signal) point the same way."""
    spec = SyntheticConfig(signal={"audio": 3.0, "visual": 0.5}, samples={"train": 200, "val": 200, "test": 8})
    train, val = generate(spec, "train"), generate(spec, "val")
    for c in range(spec.num_classes):
        mt = train.tensors["audio"][train.labels == c].mean(0).flatten()
        mv = val.tensors["audio"][val.labels == c].mean(0).flatten()
        assert torch.nn.functional.cosine_similarity(mt, mv, dim=0) > 0.9


def nearest_mean_accuracy(spec: SyntheticConfig, modality: str) -> float:
    """Class means from train, nearest-mean prediction on val (held out: in-sample means overfit in high dims)."""
    train, val = generate(spec, "train"), generate(spec, "val")
    x = train.tensors[modality].flatten(1)
    means = torch.stack([x[train.labels == c].mean(0) for c in range(spec.num_classes)])
    pred = torch.cdist(val.tensors[modality].flatten(1), means).argmin(dim=1)
    return (pred == val.labels).float().mean().item()


SIZES = {"train": 256, "val": 128, "test": 8}


def test_higher_signal_is_easier():
    spec = SyntheticConfig(signal={"audio": 3.0, "visual": 0.1}, samples=SIZES)
    audio_acc, visual_acc = nearest_mean_accuracy(spec, "audio"), nearest_mean_accuracy(spec, "visual")
    assert audio_acc > 0.95
    assert visual_acc < 0.6
    assert audio_acc > visual_acc + 0.3


def test_signal_swap_swaps_difficulty():
    spec = SyntheticConfig(signal={"audio": 0.1, "visual": 3.0}, samples=SIZES)
    audio_acc, visual_acc = nearest_mean_accuracy(spec, "audio"), nearest_mean_accuracy(spec, "visual")
    assert visual_acc > 0.95
    assert visual_acc > audio_acc + 0.3


def test_text_signal_puts_tokens_in_the_class_slice():
    def own_share(signal: float) -> float:
        spec = SyntheticConfig(modalities=["text"], signal={"text": signal}, num_classes=4, vocab_size=42,
                               text_length=16, samples={"train": 64, "val": 8, "test": 8})
        ds = generate(spec, "train")
        ids = ds.tensors["text"][:, 1:]
        slice_size = (42 - 2) // 4
        lo = 2 + ds.labels[:, None] * slice_size
        return ((ids >= lo) & (ids < lo + slice_size)).float().mean().item()

    strong, weak = own_share(4.0), own_share(-4.0)
    assert strong > 0.95
    assert weak < 0.35


def test_a_last_training_batch_of_one_sample_waits_for_the_next_epoch() -> None:
    """BatchNorm cannot train on one sample: the reference crashes there; we keep every other partial batch."""
    import torch

    from amst_core.data.base import TensorSamples, make_loader

    def batches(n: int, shuffle: bool) -> list[int]:
        data = TensorSamples({"audio": torch.zeros(n, 1)}, torch.zeros(n))
        return [len(b["label"]) for b in make_loader(data, 4, shuffle=shuffle)]

    assert batches(5, shuffle=True) == [4]
    assert batches(5, shuffle=False) == [4, 1]  # evaluation sees every sample
    assert batches(6, shuffle=True) == [4, 2]
    assert batches(1, shuffle=True) == [1]
