"""What every dataset module provides, and the loaders built on it.

A sample is a dict: one tensor per modality plus "label" (int). Shapes, per sample:
  audio  (1, T, F)          time x frequency feature map, one channel
  visual (3, frames, H, W)  channels first, then frames (the reference's C,T,H,W)
  text   (L,) token ids, with "text_mask" (L,) float, 1 for real tokens
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from amst_core.distributed import SINGLE, RankBatches, Ranks

if TYPE_CHECKING:
    from amst_core.config import RunConfig

Sample = dict[str, Any]
Batch = dict[str, torch.Tensor]


class DatasetSource(Protocol):
    """One dataset layout, named by its dataset's spec (`DatasetSpec.source`, amst_core.datasets)."""

    def check(self, cfg: RunConfig) -> None:
        """Raise ConfigError (naming dataset.root or the missing file) if the data cannot be read."""

    def classes(self, cfg: RunConfig) -> tuple[str, ...]:
        """Class names; the label of a sample is its index here."""

    def split(self, cfg: RunConfig, split: str, train: bool) -> Dataset:
        """The samples of one split; `train` selects training-time augmentation."""


class TensorSamples(Dataset):
    """Samples held in memory as stacked tensors (one per key); `expand` views are applied per item."""

    def __init__(self, tensors: dict[str, torch.Tensor], labels: torch.Tensor):
        n = len(labels)
        for key, t in tensors.items():
            if len(t) != n:
                raise ValueError(f"{key}: {len(t)} samples but {n} labels")
        self.tensors = tensors
        self.labels = labels.long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Sample:
        sample: Sample = {k: t[i] for k, t in self.tensors.items()}
        sample["label"] = self.labels[i]
        return sample


class SeededAugment:
    """A dataset whose training samples are randomly augmented, each with a seed of its own: mix(epoch_seed,
    index). The same sample gets the same crop and flip in a given epoch whatever the number of loader processes
    and however the batches are spread over them, so `num_workers` (and `auto` on another machine) never changes
    a run, and a resumed run sees what an uninterrupted one would have."""

    epoch_seed: int | None = None

    @contextmanager
    def sample_rng(self, index: int) -> Iterator[None]:
        if self.epoch_seed is None:
            yield
            return
        # The CPU generator alone, saved and restored around the sample: `torch.manual_seed` would also reseed
        # every CUDA generator (which fork_rng(devices=[]) does not restore), so each sample read in the main
        # process would reset the GPU draws of dropout and OGM-GE's noise, and `num_workers` would change a run.
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed((self.epoch_seed * 1_000_003 + index) % 2**63)
            yield


def loader_processes(requested: int | str, dataset: Dataset, device: torch.device) -> int:
    """`num_workers: auto`: no extra process for samples already in memory (avdigits, synthetic), else one per
    core but one, at most 8 (a GPU wants its batches decoded ahead; on a CPU the loaders share the cores with the
    model, so at most half of them)."""
    if requested != "auto":
        return int(requested)
    if isinstance(dataset, TensorSamples):
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, cores - 1 if device.type == "cuda" else cores // 2))


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The shuffle order of an epoch depends only on (seed, epoch), so a resumed run sees the same batches."""
    g = torch.Generator()
    g.manual_seed(seed * 1_000_003 + epoch)
    return g


class EpochSampler(Sampler[int]):
    """A shuffle set by (seed, epoch, stream) alone; `set_epoch` before each pass (the sampler runs in the main
    process, so a loader whose worker processes live across epochs still gets each epoch's order)."""

    def __init__(self, size: int, seed: int, stream: int = 0):
        self.size, self.seed, self.stream, self.epoch = size, seed, stream, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        generator = epoch_generator(self.seed, self.epoch + self.stream * 1_000_000)
        yield from torch.randperm(self.size, generator=generator).tolist()


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0,
                stream: int = 0, num_workers: int = 0, pin_memory: bool = False,
                persistent: bool = False, ranks: Ranks = SINGLE) -> DataLoader:
    """`stream` > 0 gives a shuffle of its own (a method's extra pass over a split), still set by (seed, epoch).
    On several ranks each takes its slice of every global batch (amst_core.distributed.RankBatches)."""
    sampler = None
    if shuffle:
        sampler = EpochSampler(len(dataset), seed, stream)
        sampler.set_epoch(epoch)
    common: dict[str, Any] = dict(
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=persistent and num_workers > 0,
        # A generator of its own for the worker seeds: a loader never draws from the run's global RNG, so the
        # number of loader processes cannot change what the run draws later.
        generator=epoch_generator(seed, epoch + 7_919),
    )
    if ranks.distributed:
        order = sampler if sampler is not None else range(len(dataset))
        return DataLoader(dataset, batch_sampler=RankBatches(order, len(dataset), batch_size, ranks, train=shuffle),
                          **common)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        # The reference keeps the last partial batch; a last batch of ONE training sample would crash BatchNorm
        # (the reference's own failure), so that one sample waits for the next epoch's shuffle.
        drop_last=shuffle and len(dataset) > 1 and len(dataset) % batch_size == 1,
        **common,
    )


class Loaders:
    """The loaders of a run. A dataset with nothing random in it (cached or in memory: augmentation happens on
    the device) keeps one loader per (split, stream) whose processes live across epochs, only its sampler's
    epoch changing; a dataset that augments on the loader processes (SeededAugment) gets a new loader per epoch,
    its epoch seed set first."""

    def __init__(self, batch_size: int, seed: int, pin_memory: bool, ranks: Ranks = SINGLE):
        self.batch_size, self.seed, self.pin_memory, self.ranks = batch_size, seed, pin_memory, ranks
        self.kept: dict[tuple, DataLoader] = {}

    def get(self, split: str, dataset: Dataset, epoch: int, *, shuffle: bool, stream: int,
            num_workers: int) -> DataLoader:
        if isinstance(dataset, SeededAugment):  # augmentation fixed by (seed, epoch, stream, sample)
            dataset.epoch_seed = (self.seed * 1_000_003 + epoch) * 7 + stream if shuffle else None
            return make_loader(dataset, self.batch_size, shuffle=shuffle, seed=self.seed, epoch=epoch, stream=stream,
                               num_workers=num_workers, pin_memory=self.pin_memory, ranks=self.ranks)
        key = (split, shuffle, stream, num_workers)
        if key not in self.kept:
            self.kept[key] = make_loader(dataset, self.batch_size, shuffle=shuffle, seed=self.seed, stream=stream,
                                         num_workers=num_workers, pin_memory=self.pin_memory, persistent=True,
                                         ranks=self.ranks)
        loader = self.kept[key]
        order = loader.batch_sampler.order if isinstance(loader.batch_sampler, RankBatches) else loader.sampler
        if isinstance(order, EpochSampler):
            order.set_epoch(epoch)
        return loader

    def close(self) -> None:
        """Let the kept loaders' processes go (they end with their loaders)."""
        self.kept.clear()


def to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
