"""Per-epoch means of per-batch quantities: the run-level series many methods log once an epoch has been validated
(OGM-GE's coefficients, AGM's scores, CML's penalty ...), said once.

A method makes one `EpochMeans` as `self.means`; `Method.begin_epoch` resets it before each epoch's training batches
and `Method.after_validation` returns its points, so a method neither resets nor reports it itself.
"""

from __future__ import annotations

import torch

from amst_core.distributed import Ranks, sum_across
from amst_core.metrics import MetricPoint


class EpochMeans:
    """Named float64 sums kept on the device, read once per epoch: no host sync per batch.

    `per_modality` series hold one value per modality (logged with it), `scalars` one value (logged without). A
    series' mean is its sum over the epoch's batches (`batch()`) unless it is `counted`: then over its own count,
    which `add` is given (MMPareto's finite batches, MMCosine's samples). With `ranks`, sums and own counts are
    summed over the ranks when read, in one collective: a method whose ranks see different samples weights each
    rank's values by its share (CML) or counts its samples (MMCosine); the batch count is every rank's own.
    """

    def __init__(self, modalities: tuple[str, ...], device: torch.device, per_modality: tuple[str, ...] = (),
                 scalars: tuple[str, ...] = (), counted: tuple[str, ...] = (), ranks: Ranks | None = None) -> None:
        self.modalities = modalities
        self.device = device
        self.shapes = {**{name: () for name in scalars}, **{name: (len(modalities),) for name in per_modality}}
        self.scalars, self.per_modality = scalars, per_modality
        self.counted = counted
        self.ranks = ranks
        self.reset()

    def reset(self) -> None:
        """Zero sums and counts for a new epoch (float64 from the start: the sums' precision as the methods had)."""
        self.sums = {name: self.zeros(shape) for name, shape in self.shapes.items()}
        self.counts = {name: self.zeros(self.shapes[name]) for name in self.counted}
        self.batches = 0

    def zeros(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.zeros(shape, device=self.device, dtype=torch.float64)

    def add(self, name: str, value: torch.Tensor | float, count: torch.Tensor | float | None = None) -> None:
        """This batch's value of a series (a float: the same for every modality, a rule's neutral value when it is
        inactive), and for a `counted` series how much it counts."""
        self.sums[name] += value.double() if isinstance(value, torch.Tensor) else value
        if count is not None:
            self.counts[name] += count.double() if isinstance(count, torch.Tensor) else count

    def batch(self) -> None:
        """One more batch in the means of the series without their own count."""
        self.batches += 1

    def points(self, epoch: int) -> list[MetricPoint]:
        """The epoch's means as run-level train points: the scalars, then per modality each series in the order
        declared; none after an epoch without a batch."""
        if not self.batches:
            return []
        sums, counts = self.sums, self.counts
        if self.ranks is not None and self.ranks.distributed:
            sums, counts = self.summed_across(self.ranks)
        means = {name: s / counts.get(name, self.batches) for name, s in sums.items()}
        flat = torch.cat([m.reshape(-1) for m in means.values()]).tolist()  # one host copy for every series
        values, start = {}, 0
        for name, m in means.items():
            values[name], start = flat[start:start + m.numel()], start + m.numel()
        out = [MetricPoint("train", "run", None, name, epoch, values[name][0]) for name in self.scalars]
        out += [MetricPoint("train", "run", m, name, epoch, values[name][i])
                for i, m in enumerate(self.modalities) for name in self.per_modality]
        return out

    def summed_across(self, ranks: Ranks) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Sums and counts summed over the ranks in one all-reduce (a copy: the epoch's own sums stay as they are)."""
        parts = [*self.sums.values(), *self.counts.values()]
        flat = sum_across(torch.cat([p.reshape(-1) for p in parts]), ranks)
        pieces = iter(p.view_as(q) for p, q in zip(flat.split([q.numel() for q in parts]), parts, strict=True))
        return ({name: next(pieces) for name in self.sums}, {name: next(pieces) for name in self.counts})
