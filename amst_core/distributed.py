"""One run on several processes (ranks), each with its own GPU (NCCL) or CPU cores (gloo): `resources.gpus`.

The rule that makes N ranks train what one process trains: every global batch is today's batch, in today's
(seed, epoch) order, and rank r takes a contiguous slice of it (`Ranks.share`). Before every optimizer step the
ranks average their gradients (`average_gradients`), each rank's mean losses weighted by its slice's share of the
global batch times the number of ranks (`Method.loss_scale`), so the step is the one-process step on the whole
batch. Meters and per-batch scores (OGM-GE, PMR) are summed across ranks, and a stop asked of any rank stops all.
BatchNorm layers see the global batch's statistics (`global_batchnorm`, on by default:
`resources.sync_batchnorm`).

Why not torch's DistributedDataParallel wrapper: AMST takes several backward passes per forward (one per
modality through the head, then one through the encoders), skips modalities for whole epochs, and OGM-GE edits
gradients between backward and step; DDP's reducer expects one backward per forward over a fixed set of
parameters. Averaging the gradients of exactly the parameters about to step, in one flat collective per step,
is what DDP computes, and fits every method unchanged. SyncBatchNorm is CUDA-only; on CPUs `GlobalBatchNorm2d` is the
same computation (all-reduced sums forward and backward) over gloo, which this project's tests can check.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

log = logging.getLogger("amst.distributed")
COLLECTIVE_TIMEOUT_S = 600  # a rank that stops answering fails the others' collectives after this, never a hang
_control: dist.ProcessGroup | None = None  # gloo beside NCCL, for the stop flags (None: the default group)


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: rank `rank` of `world`, its GPU index on this node `local_rank`."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes metrics, checkpoints and the log, heartbeats and decides to stop."""
        return self.rank == 0

    def share(self, n: int) -> tuple[int, int]:
        """[start, end) of this rank's slice of a global batch of n samples: contiguous, sizes differing by at
        most one (the first n % world ranks take one more)."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)


SINGLE = Ranks()


def ranks_from_env(env: dict[str, str] | os._Environ = os.environ) -> Ranks:
    """The ranks torchrun (torch.distributed.run) describes in the environment; one process without them."""
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return SINGLE
    return Ranks(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", env["RANK"])))


def start(ranks: Ranks, device: torch.device, timeout_s: float = COLLECTIVE_TIMEOUT_S) -> None:
    """Join the run's process group (torchrun's rendezvous in the environment): NCCL on GPUs, gloo on CPUs."""
    if not ranks.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout = datetime.timedelta(seconds=timeout_s)
    dist.init_process_group(backend, store=rendezvous_store(ranks, timeout), rank=ranks.rank,
                            world_size=ranks.world, timeout=timeout,
                            device_id=device if device.type == "cuda" else None)
    global _control
    # Stop flags travel between CPUs: over NCCL the flag's all-reduce and its read would wait for the GPU's
    # queued work at every batch, the one host sync per batch the engine otherwise avoids.
    _control = dist.new_group(backend="gloo") if backend == "nccl" else None
    log.info("rank %d of %d joined (%s on %s)", ranks.rank, ranks.world, backend, device)


def rendezvous_store(ranks: Ranks, timeout: datetime.timedelta) -> dist.Store:
    """The launcher's key-value store under a prefix of this round of ranks. Without it a restarted rank read the
    address a dead rank had published in the round before and failed to connect ("Connection refused", seen on
    this project's CPU when one rank's imports took longer: the restarted ranks met at the same MASTER_PORT, so
    the round before's keys were still there, whatever torch's comment on a store per retry says)."""
    agent_hosts_it = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(os.environ.get("MASTER_ADDR", "127.0.0.1"), int(os.environ.get("MASTER_PORT", "29500")),
                          ranks.world, is_master=ranks.is_main and not agent_hosts_it, timeout=timeout)
    return dist.PrefixStore(f"amst/round-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def stop() -> None:
    global _control
    _control = None
    if dist.is_initialized():
        dist.destroy_process_group()


# ---- data ---------------------------------------------------------------------------------------------------


class RankBatches(Sampler[list[int]]):
    """This rank's slice of each global batch of `order` (an index sampler, or range(n) unshuffled).

    Training drops a last global batch smaller than the number of ranks (a rank would get no sample, and its
    collectives would not match the others'); with one or two ranks that is exactly the one-process rule (a last
    batch of one sample waits for the next epoch). Evaluation keeps every sample: a rank whose slice of the last
    batch is empty skips that batch."""

    def __init__(self, order: Sampler[int] | Sequence[int], size: int, batch_size: int, ranks: Ranks, train: bool):
        self.order, self.size, self.batch_size, self.ranks, self.train = order, size, batch_size, ranks, train

    def global_sizes(self) -> list[int]:
        full, rest = divmod(self.size, self.batch_size)
        sizes = [self.batch_size] * full + ([rest] if rest else [])
        if self.train and sizes and sizes[-1] < max(2, self.ranks.world):
            sizes.pop()
        return sizes

    def __iter__(self) -> Iterator[list[int]]:
        indices = list(self.order)
        start = 0
        for n in self.global_sizes():
            lo, hi = self.ranks.share(n)
            if hi > lo:
                yield indices[start + lo:start + hi]
            start += n

    def __len__(self) -> int:
        return sum(1 for n in self.global_sizes() if self.ranks.share(n)[1] > self.ranks.share(n)[0])


# ---- collectives --------------------------------------------------------------------------------------------


def is_communication_error(err: BaseException) -> bool:
    """An error of the collectives themselves (another rank died, a peer closed its connection, a timeout), as
    opposed to this rank's own failure: the launcher's restart is the answer to the first kind only."""
    if isinstance(err, dist.DistError):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and any(word in text for word in ("gloo", "NCCL", "Connection reset",
                                                                          "Connection closed"))


def sum_across(tensor: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """The tensor summed over the ranks, in place (unchanged with one rank)."""
    if ranks.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(flag: bool, ranks: Ranks, device: torch.device) -> bool:
    """True on every rank when it is True on any (a stop asked of one rank stops all at the same batch)."""
    if not ranks.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device if _control is None else "cpu")
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=_control)
    return bool(value.item())


def average_tensors(tensors: list[torch.Tensor], ranks: Ranks) -> None:
    """Each tensor replaced, in place, by its mean over the ranks: one flat collective per dtype. Every rank passes
    tensors of the same shapes in the same order."""
    if not ranks.distributed:
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(ranks.world)
        offset = 0
        for t in group:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()


def average_gradients(params: Iterable[nn.Parameter], ranks: Ranks) -> None:
    """Every rank's gradients of `params` replaced by their mean over the ranks. Every rank has gradients on the
    same parameters (the same methods, skip schedule and epoch)."""
    if ranks.distributed:
        average_tensors([p.grad for p in params if p.grad is not None], ranks)


def share_rng_state(device: torch.device, ranks: Ranks) -> None:
    """Rank 0's state of the device's global RNG on every rank: draws that must be equal on every rank (OGM-GE's
    gradient noise) are, and with nothing drawn on one rank alone they are the one process's draws too."""
    if not ranks.distributed:
        return
    if device.type == "cuda":
        state = torch.cuda.get_rng_state(device).to(device)
        dist.broadcast(state, src=0)
        torch.cuda.set_rng_state(state.cpu(), device)
    else:
        state = torch.get_rng_state()
        dist.broadcast(state, src=0)
        torch.set_rng_state(state)


def broadcast_state(module: nn.Module, ranks: Ranks) -> None:
    """Rank 0's parameters and buffers on every rank (they start equal from one seed; this makes it certain)."""
    if not ranks.distributed:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


# ---- BatchNorm over the global batch ------------------------------------------------------------------------


class _GlobalNorm(torch.autograd.Function):
    """x normalised by the statistics of every rank's x together, with the backward pass that matches: the
    computation of torch's SyncBatchNorm (per channel, each rank's sums all-reduced, in the forward pass and again
    for the gradient), written with plain tensor ops so that it runs over gloo too."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        channels, dims = x.shape[1], (0, 2, 3)
        count = float(x.numel() // channels)
        # Two all-reduces: the counts and sums give the global mean, then the squared deviations around it give
        # the variance (sums of squares around zero would lose the variance of a channel with a large mean).
        local_mean = x.mean(dim=dims) if x.numel() else x.new_zeros(channels)
        sums = torch.cat([x.new_tensor([count]), local_mean * count])
        dist.all_reduce(sums)
        total, mean = sums[0], sums[1:] / sums[0]
        m2 = ((x - mean[None, :, None, None]) ** 2).sum(dim=dims)
        dist.all_reduce(m2)
        var = m2 / total
        invstd = torch.rsqrt(var + eps)
        xhat = (x - mean[None, :, None, None]) * invstd[None, :, None, None]
        ctx.save_for_backward(xhat, invstd, total)
        unbiased = m2 / (total - 1).clamp(min=1)  # what BatchNorm keeps as running_var
        ctx.mark_non_differentiable(mean, unbiased)
        return xhat, mean, unbiased

    @staticmethod
    def backward(ctx: Any, grad_xhat: torch.Tensor, *_statistics: Any) -> tuple[torch.Tensor, None]:
        xhat, invstd, total = ctx.saved_tensors
        dims = (0, 2, 3)
        sums = torch.cat([grad_xhat.sum(dim=dims), (grad_xhat * xhat).sum(dim=dims)])
        dist.all_reduce(sums)  # over the global batch: every rank's loss reaches every x through the statistics
        sum_g, sum_gx = sums.chunk(2)
        grad_x = (grad_xhat - (sum_g / total)[None, :, None, None]
                  - xhat * (sum_gx / total)[None, :, None, None]) * invstd[None, :, None, None]
        return grad_x, None


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch (`_GlobalNorm`). The same parameters and
    buffers as BatchNorm2d, so checkpoints move between 1 and N ranks; in eval mode, or on one rank, it is
    BatchNorm2d. The affine parameters' gradients are this rank's part, averaged with the others' before the step
    like every gradient (average_gradients)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        xhat, mean, unbiased_var = _GlobalNorm.apply(x.float(), self.eps)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            self.num_batches_tracked.add_(1)
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            with torch.no_grad():
                self.running_mean.mul_(1 - momentum).add_(mean * momentum)
                self.running_var.mul_(1 - momentum).add_(unbiased_var * momentum)
        y = xhat
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(x.dtype)


def global_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm2d of `module` normalising by the global batch, in place (the same parameters, buffers and
    state-dict keys): torch's SyncBatchNorm on GPUs (fused kernels over NCCL), GlobalBatchNorm2d on CPUs, where
    SyncBatchNorm refuses to run (the same computation over gloo)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for sub in module.modules():
        if type(sub) is nn.BatchNorm2d:
            sub.__class__ = GlobalBatchNorm2d
    return module


def check_split_sizes(sizes: dict[str, int], ranks: Ranks) -> None:
    """Every split needs a sample per rank: a rank with nothing to evaluate would leave the others waiting."""
    small = {split: n for split, n in sizes.items() if n < ranks.world}
    if ranks.distributed and small:
        from amst_core.config import ConfigError

        listed = ", ".join(f"{split} ({n})" for split, n in small.items())
        raise ConfigError("resources.gpus", f"{ranks.world} ranks need at least {ranks.world} samples in every "
                                            f"split; these have fewer: {listed}")

