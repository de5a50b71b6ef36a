"""The per-batch skeleton every method shares (amst_method.md section 1, "common per-batch skeleton").

1. forward the encoders in train mode (graph kept): all modalities, or in `fast` skip mode only the updated ones;
2. metrics pass without grad on detached embeddings (so train metrics reflect the weights before this update);
3. helper logits on detached embeddings;
4. the method's own update (`update`);
5. helper update (never skipped).
A method subclass says which networks it trains (`net_specs`), how they predict (`head_outputs`) and how
they learn (`update`). Hooks for what a method does outside that step, each a no-op here:
- `before_epoch(epoch, data)`: with the epoch's loaders (PMR's class prototypes); `begin_epoch`, which the engine
  calls, first resets the method's `EpochMeans` (`means`), which `after_validation` here reports;
- `on_gradients(trained, parts)`: between backward and the optimizer step, gradients unscaled (OGM-GE);
- `after_validation(epoch, points)`: with the epoch's val (and test) points; returns run-level points of its
  own (MSLR's learning-rate rule, OGM-GE's coefficients);
- `eval_outputs(outputs)`: more predictions evaluated on val and test (MLA's combinations), and `selections()`
  the ones model selection tracks like the fused prediction; `tests_every_epoch`;
- `extra_state()` / `load_extra_state()`: what a method keeps between epochs, for exact resume.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import SGD
from torch.optim.lr_scheduler import StepLR

from amst_core.catalog import METHODS
from amst_core.config import RunConfig
from amst_core.devices import channels_last_for
from amst_core.distributed import SINGLE, Ranks, average_gradients, global_batchnorm
from amst_core.methods.epoch_means import EpochMeans
from amst_core.metrics import Key, MetricPoint
from amst_core.models import MultimodalNet
from amst_core.skip import AutoSkipSchedule, SkipSchedule

Embeddings = dict[str, torch.Tensor]
PRECISION_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def build_net(modalities: tuple[str, ...], num_classes: int, fusion: str, cfg: RunConfig,
              device: torch.device, ranks: Ranks = SINGLE) -> MultimodalNet:
    """The convolutional encoders hold channels-last tensors where `model.channels_last` says so (auto: on a
    GPU; `devices.channels_last_for`); `compile: true` compiles each encoder (the first batches take longer).
    On several ranks BatchNorm normalises by the global batch unless `resources.sync_batchnorm` is false."""
    net = MultimodalNet(modalities, num_classes, fusion, cfg.model).to(device)
    if ranks.distributed and cfg.resources.sync_batchnorm:
        net = global_batchnorm(net, device)
    if channels_last_for(cfg.model.channels_last, device):
        for m, encoder in net.encoders.items():
            if m != "text":
                encoder.to(memory_format=torch.channels_last)
    if cfg.compile:
        for encoder in net.encoders.values():
            encoder.compile()
    return net


@dataclass
class TrainedNet:
    """A network with one SGD optimizer and one StepLR per part (encoders, head, helpers)."""

    net: MultimodalNet
    optimizers: dict[str, SGD]
    schedulers: dict[str, StepLR]
    prefix: str  # component prefix in metric names: "" or "alt_" / "joint_" (FULL)

    @classmethod
    def build(cls, net: MultimodalNet, cfg: RunConfig, prefix: str = "", fused: bool = False) -> TrainedNet:
        """`fused`: one kernel per step on a GPU (else the default, one multi-tensor pass per step)."""
        o = cfg.optim
        optimizers = {part: SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay,
                                fused=fused or None)
                      for part, groups in net.parts().items()}
        schedulers = {part: StepLR(opt, step_size=o.lr_step, gamma=o.lr_gamma) for part, opt in optimizers.items()}
        return cls(net, optimizers, schedulers, prefix)

    def state_dict(self) -> dict[str, Any]:
        return {
            "net": self.net.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        for k, o in self.optimizers.items():
            load_optimizer(o, split_param_groups(state["optimizers"][k], o))
        for k, s in self.schedulers.items():
            s.load_state_dict(state["schedulers"][k])

    def encoder_groups(self) -> dict[str, dict]:
        """The encoders optimizer's parameter group of each modality."""
        return {g["modality"]: g for g in self.optimizers["encoders"].param_groups}


# How an optimizer steps on this device, not what it learned: a checkpoint carries its device's choice in every
# parameter group, and a run resumed on another kind of device (a CPU run retried on a GPU worker, or back) keeps
# the choice of the device it runs on now.
DEVICE_FLAGS = ("fused", "foreach", "capturable", "differentiable")


def load_optimizer(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """`Optimizer.load_state_dict` without the saved kernel flags: restoring a CPU checkpoint's `fused=None` on a
    GPU loses fused SGD (and with fp16, whose scaler hands a fused step its scale, fails the first step); a GPU's
    `fused=True` on a CPU asks for a kernel choice made for another device."""
    flags = [{k: g[k] for k in DEVICE_FLAGS if k in g} for g in optimizer.param_groups]
    optimizer.load_state_dict(saved)
    for group, own in zip(optimizer.param_groups, flags, strict=True):
        group.update(own)


def split_param_groups(saved: dict[str, Any], optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """A checkpoint written when the encoders shared one parameter group, fitted to one group per modality (the
    same hyperparameters, parameters in the same order): runs checkpointed before the change resume."""
    groups = optimizer.param_groups
    if len(saved["param_groups"]) != 1 or len(groups) == 1:
        return saved
    (old,) = saved["param_groups"]
    ids, start, new = old["params"], 0, []
    for group in groups:
        size = len(group["params"])
        new.append({**old, **{k: v for k, v in group.items() if k not in old and k != "params"},
                    "params": ids[start:start + size]})
        start += size
    return {**saved, "param_groups": new}


def encoder_gradients(encoder: nn.Module, conv_only: bool = True) -> list[torch.Tensor]:
    """The gradients of an encoder's trainable parameters: of its convolution kernels (4-D) only, or all of them
    (a text encoder has no convolution)."""
    return [p.grad for p in encoder.parameters()
            if p.requires_grad and p.grad is not None and (not conv_only or p.grad.dim() == 4)]


def clip_to_norm(optimizers: list[torch.optim.Optimizer], max_norm: float) -> None:
    """Every gradient these optimizers step, clipped together to one global L2 norm (unscaled gradients)."""
    nn.utils.clip_grad_norm_([p for o in optimizers for g in o.param_groups for p in g["params"]], max_norm)


class Method(ABC):
    name: ClassVar[str]
    tests_every_epoch: ClassVar[bool] = False  # evaluate the test split every epoch, not only on improvement
    means: EpochMeans | None = None  # the per-epoch means a method logs, if it makes them

    def __init__(self, cfg: RunConfig, num_classes: int, device: torch.device, ranks: Ranks | None = None):
        self.cfg = cfg
        self.ranks = ranks or SINGLE
        self.loss_scale = 1.0  # on several ranks, set per batch by the engine: ranks x this rank's share
        self.modalities = tuple(sorted(cfg.modalities))
        self.n = len(self.modalities)
        self.device = device
        info = METHODS[self.name]
        factors = {m: cfg.skip.factor(m) if info.uses_skip else 1 for m in self.modalities}
        auto = cfg.skip.auto if info.uses_skip else None
        self.schedule = (AutoSkipSchedule(self.modalities, auto.warmup, auto.every, auto.max_factor) if auto
                         else SkipSchedule(factors))
        self.params = cfg.params  # validated once, read every batch
        self.skip_mode = getattr(self.params, "skip_mode", "faithful")
        self.nets: dict[str, TrainedNet] = {
            key: TrainedNet.build(build_net(self.modalities, num_classes, fusion, cfg, device, self.ranks), cfg, prefix,
                                  fused=device.type == "cuda")
            for key, (fusion, prefix) in self.net_specs().items()
        }
        self.amp_dtype = PRECISION_DTYPES.get(cfg.precision)
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
        self.gradient_hook = type(self).on_gradients is not Method.on_gradients
        # One backward over the encoders after the head's steps (`alternating_update`), unless fp16's loss scale
        # or a gradient hook wants a backward and a step per loss.
        self.one_encoder_backward = not self.gradient_hook and not self.scaler.is_enabled()

    # ---- what a method defines --------------------------------------------------------------------------------

    def net_specs(self) -> dict[str, tuple[str, str]]:
        """name -> (fusion head, metric component prefix). One network unless a method needs more."""
        return {"model": (self.cfg.fusion_head, "")}

    def head_outputs(self, embeddings: dict[str, Embeddings]) -> dict[Key, torch.Tensor]:
        """Prediction ("fused") and per-modality branch logits, from embeddings of the present modalities."""
        head = self.nets["model"].net.head
        branches = head.branches(embeddings["model"])
        out: dict[Key, torch.Tensor] = {("fused", None): head.combine(list(branches.values()))}
        out.update({("branch", m): logits for m, logits in branches.items()})
        return out

    @abstractmethod
    def update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        """The method's own step(s) on this batch, given embeddings with their graphs."""

    # ---- hooks around the batch step (no-ops unless a method needs them) -------------------------------------

    def begin_epoch(self, epoch: int, data: Any) -> None:
        """What the engine calls before an epoch's training batches: the epoch's means start from zero here, so a
        method's `before_epoch` is only for what it does itself (and need not call super for this)."""
        if self.means is not None:
            self.means.reset()
        self.before_epoch(epoch, data)

    def before_epoch(self, epoch: int, data: Any) -> None:  # noqa: B027 (a hook: most methods need none)
        """Before the epoch's training batches; `data` is the engine's EpochData (batches of any split)."""

    def on_gradients(self, trained: TrainedNet, parts: tuple[str, ...]) -> None:  # noqa: B027
        """Between backward and the optimizer step of `parts` of `trained`; gradients are unscaled."""

    def after_validation(self, epoch: int, points: list[MetricPoint]) -> list[MetricPoint]:
        """After the epoch's evaluation, with its points; returns the method's own run-level points: here its
        epoch means, if it keeps them."""
        return self.means.points(epoch) if self.means is not None else []

    def eval_outputs(self, outputs: dict[Key, torch.Tensor]) -> dict[Key, torch.Tensor]:
        """More predictions to evaluate on val and test, made from the head outputs of a batch."""
        return {}

    def selections(self) -> tuple[str, ...]:
        """Components chosen by model selection like the fused prediction (reported, never for best.pt)."""
        return ()

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:  # noqa: B027
        """Restore what `extra_state` returned."""

    # ---- shared machinery --------------------------------------------------------------------------------------

    def forward_modalities(self, epoch: int) -> tuple[str, ...]:
        if self.skip_mode == "fast":
            return self.schedule.updated(epoch)  # a skipped encoder does no work at all
        return self.modalities

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def scaled(self, loss: torch.Tensor) -> torch.Tensor:
        """A mean over this rank's samples, on several ranks weighted by its share of the global batch (the
        gradients averaged over the ranks are then those of the global batch's mean)."""
        return loss * self.loss_scale if self.ranks.distributed else loss

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The mean cross-entropy of the batch (`scaled` on several ranks)."""
        return self.scaled(F.cross_entropy(logits.float(), labels))

    def average_gradients(self, *optimizers: torch.optim.Optimizer) -> None:
        """On several ranks, the gradients of the parameters these optimizers step, averaged over the ranks: after
        every backward, before any hook, unscale or step reads them (no-op on one rank)."""
        if self.ranks.distributed:
            average_gradients((p for o in optimizers for g in o.param_groups for p in g["params"]), self.ranks)

    def step(self, loss: torch.Tensor, trained: TrainedNet, parts: tuple[str, ...]) -> None:
        """zero_grad (to None: parts without a gradient are not moved at all), backward, step each part."""
        for part in parts:
            trained.optimizers[part].zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        hook = (lambda: self.on_gradients(trained, parts)) if self.gradient_hook else None
        self.finish_step([trained.optimizers[part] for part in parts], hook)

    def finish_step(self, optimizers: list[torch.optim.Optimizer], hook: Callable[[], None] | None = None,
                    clip_norm: float = 0.0) -> None:
        """After a backward: the gradients averaged over the ranks; unscaled (fp16) where a hook or a clip reads
        them, so both see true gradients; the hook; a clip of all of them to one global norm (`clip_norm` > 0);
        a step of each optimizer (fp16: skipped on overflow) and the scaler's update."""
        self.average_gradients(*optimizers)
        if hook is not None or clip_norm > 0:
            for optimizer in optimizers:
                self.scaler.unscale_(optimizer)
        if hook is not None:
            hook()
        if clip_norm > 0:
            clip_to_norm(optimizers, clip_norm)
        for optimizer in optimizers:
            self.scaler.step(optimizer)
        self.scaler.update()

    def train_mode(self, training: bool) -> None:
        for trained in self.nets.values():
            trained.net.train(training)

    def train_batch(self, batch: dict[str, torch.Tensor], epoch: int) -> dict[Key, torch.Tensor]:
        """One batch of training; returns detached logits for the train metrics (pre-update weights)."""
        labels = batch["label"]
        modalities = self.forward_modalities(epoch)
        if not modalities:
            return {}
        with self.autocast():
            embeddings = {k: self.embed_for_training(t, batch, modalities, epoch) for k, t in self.nets.items()}
            helper_logits = {k: t.net.helpers(embeddings[k]) for k, t in self.nets.items()}
            with torch.no_grad():
                detached = {k: {m: e.detach() for m, e in embs.items()} for k, embs in embeddings.items()}
                outputs = self.head_outputs(detached)
        outputs.update(self._helper_keys({k: {m: h.detach() for m, h in hl.items()}
                                          for k, hl in helper_logits.items()}))
        self.update(embeddings, labels, epoch)
        self.update_helpers(helper_logits, labels)
        return outputs

    def embed_for_training(self, trained: TrainedNet, batch: dict[str, torch.Tensor], modalities: tuple[str, ...],
                           epoch: int) -> Embeddings:
        """Train-mode forward; a skipped modality's forward (faithful mode) builds no graph: no loss ever
        backpropagates into it, and its BatchNorm statistics move all the same."""
        updated = set(self.schedule.updated(epoch))
        out = trained.net.embed(batch, [m for m in modalities if m in updated])
        with torch.no_grad():
            out.update(trained.net.embed(batch, [m for m in modalities if m not in updated]))
        return out

    def update_helpers(self, helper_logits: dict[str, dict[str, torch.Tensor]], labels: torch.Tensor) -> None:
        loss = sum(self.loss(logits, labels) for hl in helper_logits.values() for logits in hl.values())
        for key in helper_logits:
            self.nets[key].optimizers["helpers"].zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.average_gradients(*(self.nets[key].optimizers["helpers"] for key in helper_logits))
        for key in helper_logits:
            self.scaler.step(self.nets[key].optimizers["helpers"])
        self.scaler.update()

    @torch.no_grad()
    def eval_batch(self, batch: dict[str, torch.Tensor]) -> dict[Key, torch.Tensor]:
        with self.autocast():
            embeddings = {k: t.net.embed(batch, self.modalities) for k, t in self.nets.items()}
            outputs = self.head_outputs(embeddings)
            outputs.update(self.eval_outputs(outputs))
            outputs.update(self._helper_keys({k: t.net.helpers(embeddings[k]) for k, t in self.nets.items()}))
        return outputs

    def _helper_keys(self, helper_logits: dict[str, dict[str, torch.Tensor]]) -> dict[Key, torch.Tensor]:
        return {(self.nets[k].prefix + "helper", m): logits
                for k, hl in helper_logits.items() for m, logits in hl.items()}

    def scheduler_step(self) -> None:
        for trained in self.nets.values():
            for scheduler in trained.schedulers.values():
                scheduler.step()

    def learning_rates(self) -> dict[str, float]:
        """lr of each part of the first network, and of each modality's encoder group (`encoders:<m>`)."""
        first = next(iter(self.nets.values()))
        rates = {part: opt.param_groups[0]["lr"] for part, opt in first.optimizers.items()}
        rates.update({f"encoders:{m}": g["lr"] for m, g in first.encoder_groups().items()})
        return rates

    def modules(self) -> Iterator[nn.Module]:
        for trained in self.nets.values():
            yield trained.net

    def state_dict(self) -> dict[str, Any]:
        return {"nets": {k: t.state_dict() for k, t in self.nets.items()}, "scaler": self.scaler.state_dict(),
                "extra": self.extra_state(), "skip": self.schedule.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, t in self.nets.items():
            t.load_state_dict(state["nets"][k])
        self.scaler.load_state_dict(state["scaler"])
        self.load_extra_state(state.get("extra", {}))
        self.schedule.load_state_dict(state.get("skip", {}))

    def model_state_dict(self) -> dict[str, Any]:
        """What predicting needs (best.pt): the networks' weights and buffers, and the method's own state (PMR's
        prototypes); no optimizer, scheduler or scaler state, which only resuming needs."""
        return {"nets": {k: {"net": t.net.state_dict()} for k, t in self.nets.items()},
                "extra": self.extra_state(), "skip": self.schedule.state_dict()}

    def load_model_state_dict(self, state: dict[str, Any]) -> None:
        """From `model_state_dict` or from a full `state_dict` (last.pt, and best.pt before issue 21)."""
        for k, t in self.nets.items():
            t.net.load_state_dict(state["nets"][k]["net"])
        self.load_extra_state(state.get("extra", {}))
        self.schedule.load_state_dict(state.get("skip", {}))

    # ---- update building blocks used by several methods -------------------------------------------------------

    def alternating_update(self, trained: TrainedNet, embeddings: Embeddings, labels: torch.Tensor,
                           epoch: int) -> None:
        """AMST-ALT: for each modality in sorted order, a unimodal loss through its head branch; the head
        steps once per updated modality, each encoder at most once. Skipped modalities get no backward.

        Each encoder's gradient comes from its own loss alone, taken through the head as it is at that loss, so
        the same update takes fewer passes: per modality a backward into the head and the embedding only and a
        head step, then one backward through every updated encoder and one encoder step (equal to a backward
        and a step of both parts per modality: tests/core/test_method_rules.py)."""
        updated = self.schedule.updated(epoch)
        if not self.one_encoder_backward:
            for m in updated:
                with self.autocast():
                    logits = trained.net.head.branch(m, embeddings[m])
                self.step(self.loss(logits, labels), trained, ("head", "encoders"))
            return
        head, head_params = trained.optimizers["head"], [p for p in trained.net.head.parameters() if p.requires_grad]
        # The head's losses start from a detached copy of each embedding, whose .grad collects the embedding's
        # gradient: a backward that stopped at the encoder's output itself would enter a compiled encoder's
        # graph and free it ("backward through the graph a second time" with `compile: true`).
        leaves = {m: embeddings[m].detach().requires_grad_() for m in updated}
        for m in updated:
            with self.autocast():
                logits = trained.net.head.branch(m, leaves[m])
            head.zero_grad(set_to_none=True)
            self.loss(logits, labels).backward(inputs=[*head_params, leaves[m]])
            self.average_gradients(head)  # the embedding's gradient is per sample: it stays this rank's
            head.step()
        if updated:
            encoders = trained.optimizers["encoders"]
            encoders.zero_grad(set_to_none=True)
            torch.autograd.backward([embeddings[m] for m in updated], [leaves[m].grad for m in updated])
            self.average_gradients(encoders)
            encoders.step()

    def joint_update(self, trained: TrainedNet, embeddings: Embeddings, labels: torch.Tensor,
                     present: tuple[str, ...]) -> None:
        """One fused loss over the present modalities (absent ones left out of the head)."""
        if not present:
            return
        with self.autocast():
            logits = trained.net.head({m: embeddings[m] for m in present})
        self.step(self.loss(logits, labels), trained, ("head", "encoders"))
