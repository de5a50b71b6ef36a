"""ReconBoost (Hua et al., ICML 2024; the authors' train.py and models/dynamic_net.py): alternating boosting.

Epochs come in stages of `stage_epochs + correct_epochs`. Stage s trains the learner (encoder + head branch) of
modality M_s = modalities[s % n] (sorted order), first for `stage_epochs` epochs by the boosting loss

    L = mean over the batch of (1/C) * (-weight1 + weight2 * q[y]) * log softmax(o_{M_s})[y],
    q = softmax(boost_rate * sum of the branch logits of the other learners already in the ensemble) (no grad),

with q[y] = 1 while no other learner is in the ensemble (the code's scalar c0 ensemble of stage 0). The
reconcilement term lowers a sample's weight where the others already predict it: the learner is pushed to what
they miss. Then M_s joins the ensemble (the learners of stages 0..s), and for `correct_epochs` epochs every
learner in it, the head and the ensemble weight are trained on CE(boost_rate * sum of their branch logits)
(global rectification). The prediction everywhere (train metrics, val, test) is that ensemble:
boost_rate * sum of the member branches' logits. Each phase starts with fresh SGD momentum, as the code builds a
new optimizer per phase. The code's "ga" (memory consolidation) term is an MSE between two detached softmaxes:
it has no gradient and is left out. Logged per epoch: `recon_stage` (1 for the modality the boosting loss trains),
`recon_rectify` (1 in a rectification epoch) and `recon_weight` (each learner's ensemble weight, 0 before it
joins).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import StepLR

from amst_core.config import RunConfig
from amst_core.distributed import Ranks
from amst_core.methods.base import Embeddings, Method
from amst_core.metrics import Key, MetricPoint


def boosting_loss(logits: torch.Tensor, labels: torch.Tensor, others: torch.Tensor | None, weight1: float,
                  weight2: float) -> torch.Tensor:
    """The code's boosting loss: -w1 * mean_c(t * log p) + w2 * mean_c(t * q * log p), t the one-hot target, p the
    learner's softmax, q the others' ensemble softmax (None: no other learner yet, q = 1); mean over the batch."""
    log_p = F.log_softmax(logits.float(), dim=1).gather(1, labels[:, None]).squeeze(1)
    q = others.float().gather(1, labels[:, None]).squeeze(1) if others is not None else torch.ones_like(log_p)
    return ((-weight1 + weight2 * q) * log_p / logits.shape[1]).mean()


def stage_of(epoch: int, stage_epochs: int, correct_epochs: int) -> tuple[int, bool]:
    """(stage, rectifying): the stage the epoch belongs to, and whether it is one of its rectification epochs."""
    stage, offset = divmod(epoch, stage_epochs + correct_epochs)
    return stage, offset >= stage_epochs


def members(stage: int, modalities: tuple[str, ...]) -> tuple[str, ...]:
    """The learners in the ensemble once stage `stage` has trained its own: those of stages 0..stage."""
    return modalities[:min(stage + 1, len(modalities))]


class ReconBoost(Method):
    name = "reconboost"

    def __init__(self, cfg: RunConfig, num_classes: int, device: torch.device, ranks: Ranks | None = None):
        super().__init__(cfg, num_classes, device, ranks)
        # The ensemble weight, stepped with the head (its own parameter group: the head optimizer's StepLR,
        # momentum and weight decay apply to it, as the code's ensemble optimizer does; its momentum is saved with
        # the head optimizer's state).
        self.boost_rate = torch.nn.Parameter(torch.tensor(float(self.params.boost_rate), device=device))
        trained = self.nets["model"]
        trained.optimizers["head"].add_param_group({"params": [self.boost_rate]})
        # The head's StepLR built again, so that its base rates (and a checkpoint's) cover the new group.
        o = cfg.optim
        trained.schedulers["head"] = StepLR(trained.optimizers["head"], step_size=o.lr_step, gamma=o.lr_gamma)
        self.stage, self.rectifying = 0, False

    def trained_modality(self) -> str:
        return self.modalities[self.stage % self.n]

    def before_epoch(self, epoch: int, data: Any) -> None:
        stage, rectifying = stage_of(epoch, self.params.stage_epochs, self.params.correct_epochs)
        if epoch == 0 or (stage, rectifying) != (self.stage, self.rectifying):
            for part in ("encoders", "head"):  # a new phase: the code builds a new SGD (no momentum yet)
                self.nets["model"].optimizers[part].state.clear()
        self.stage, self.rectifying = stage, rectifying

    def ensemble(self, branches: dict[str, torch.Tensor], learners: tuple[str, ...]) -> torch.Tensor:
        present = [branches[m] for m in learners if m in branches] or list(branches.values())
        return self.boost_rate.to(present[0].dtype) * torch.stack(present).sum(dim=0)

    def head_outputs(self, embeddings: dict[str, Embeddings]) -> dict[Key, torch.Tensor]:
        branches = self.nets["model"].net.head.branches(embeddings["model"])
        out: dict[Key, torch.Tensor] = {("fused", None): self.ensemble(branches, members(self.stage, self.modalities))}
        out.update({("branch", m): logits for m, logits in branches.items()})
        return out

    def update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        trained, embs = self.nets["model"], embeddings["model"]
        head = trained.net.head
        if self.rectifying:
            learners = members(self.stage, self.modalities)
            with self.autocast():
                logits = self.ensemble({m: head.branch(m, embs[m]) for m in learners}, learners)
            self.step(self.loss(logits, labels), trained, ("head", "encoders"))
            return
        m = self.trained_modality()
        others = tuple(o for o in members(self.stage - 1, self.modalities) if o != m) if self.stage > 0 else ()
        with self.autocast():
            logits = head.branch(m, embs[m])
            with torch.no_grad():
                q = (F.softmax(self.ensemble({o: head.branch(o, embs[o].detach()) for o in others}, others).float(),
                               dim=1) if others else None)
        loss = boosting_loss(logits, labels, q, self.params.weight1, self.params.weight2)
        self.step(self.scaled(loss), trained, ("head", "encoders"))

    def after_validation(self, epoch: int, points: list[MetricPoint]) -> list[MetricPoint]:
        trained_now = None if self.rectifying else self.trained_modality()
        learners, weight = members(self.stage, self.modalities), float(self.boost_rate.detach())
        out = [MetricPoint("train", "run", None, "recon_rectify", epoch, float(self.rectifying))]
        for m in self.modalities:
            out.append(MetricPoint("train", "run", m, "recon_stage", epoch, float(m == trained_now)))
            out.append(MetricPoint("train", "run", m, "recon_weight", epoch, weight if m in learners else 0.0))
        return out

    def extra_state(self) -> dict[str, Any]:
        return {"boost_rate": self.boost_rate.detach().clone(), "stage": self.stage, "rectifying": self.rectifying}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "boost_rate" in state:
            with torch.no_grad():
                self.boost_rate.copy_(state["boost_rate"].to(self.device))
        self.stage, self.rectifying = state.get("stage", 0), state.get("rectifying", False)
