"""UMT (Uni-Modal Teacher; Du et al., ICML 2023; BalanceBenchmark's UMT_trainer.py), and the teacher phase that
UMT and G2D share (`TeacherPhase`).

One run in two phases, both epoch ranges set by `teacher_epochs`:
- phase 1, epochs [0, teacher_epochs): a second network (component prefix `teacher_`, lsum head) holds one
  teacher per modality, its encoder and its own linear classifier; each is trained alone on CE(T_m(x_m), y)
  (one backward of the sum of the modalities' losses: with an lsum head they share no parameter). The student
  is not trained (its forward runs without a graph, for the train metrics and its helpers).
- phase 2, epochs [teacher_epochs, epochs): the teachers are frozen (eval mode, no graph, their optimizers and
  schedulers idle) and the student trains on
      L = CE(fused, y) + distill_weight * sum_m MSE(E_m, E^T_m),
  E_m the student's embedding of modality m, E^T_m its teacher's (the encoders' outputs, which the heads read).
Each network's StepLR counts only its own phase's epochs (helpers: every epoch). The teachers' predictions are
logged as components `teacher` (their lsum) and `teacher_branch` on every split. Run-level series: `phase` (1 or
2) and `umt_distill` per modality, the epoch's mean feature MSE (measured in phase 1 too, training nothing).
Teachers, optimizers and schedulers are in the checkpoint: a run resumes in either phase.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch
import torch.nn.functional as F

from amst_core.config import RunConfig
from amst_core.distributed import Ranks
from amst_core.method_specs.umt import TEACHER_PREFIX
from amst_core.methods.base import Embeddings, Method, TrainedNet
from amst_core.methods.epoch_means import EpochMeans
from amst_core.metrics import Key, MetricPoint
from amst_core.vocab import BRANCH, FUSED, component

TEACHER = "teacher"  # the teachers' key in `nets`


def feature_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """MSE between a student embedding and its teacher's (mean over samples and dimensions), in float32."""
    return F.mse_loss(student.float(), teacher.float())


class TeacherPhase(Method):
    """Phase 1 trains unimodal teachers, phase 2 the student (`student_update`), as the module docstring says."""

    def __init__(self, cfg: RunConfig, num_classes: int, device: torch.device, ranks: Ranks | None = None):
        super().__init__(cfg, num_classes, device, ranks)
        self.epoch = 0  # set before each epoch's batches

    def net_specs(self) -> dict[str, tuple[str, str]]:
        return {"model": (self.cfg.fusion_head, ""), TEACHER: ("lsum", TEACHER_PREFIX)}

    def teaching(self, epoch: int) -> bool:
        return self.params.teaching(epoch)

    def phase(self, epoch: int) -> int:
        return 1 if self.teaching(epoch) else 2

    def before_epoch(self, epoch: int, data: Any) -> None:
        self.epoch = epoch

    def train_mode(self, training: bool) -> None:
        super().train_mode(training)
        if training and not self.teaching(self.epoch):
            self.nets[TEACHER].net.train(False)  # frozen: its BatchNorm statistics stay as phase 1 left them

    def embed_for_training(self, trained: TrainedNet, batch: dict[str, torch.Tensor], modalities: tuple[str, ...],
                           epoch: int) -> Embeddings:
        """The network this phase does not train runs without a graph."""
        idle = self.nets["model"] if self.teaching(epoch) else self.nets[TEACHER]
        if trained is idle:
            with torch.no_grad():
                return trained.net.embed(batch, modalities)
        return super().embed_for_training(trained, batch, modalities, epoch)

    def head_outputs(self, embeddings: dict[str, Embeddings]) -> dict[Key, torch.Tensor]:
        out = super().head_outputs(embeddings)
        head = self.nets[TEACHER].net.head
        branches = head.branches(embeddings[TEACHER])
        out[(component(FUSED, TEACHER_PREFIX), None)] = head.combine(list(branches.values()))
        out.update({(component(BRANCH, TEACHER_PREFIX), m): logits for m, logits in branches.items()})
        return out

    def update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        if self.teaching(epoch):
            self.teacher_update(embeddings[TEACHER], labels)
        else:
            self.student_update(embeddings, labels, epoch)

    def teacher_update(self, embs: Embeddings, labels: torch.Tensor) -> None:
        """Each modality's teacher on its own CE (one backward: the lsum branches share no parameter)."""
        trained = self.nets[TEACHER]
        with self.autocast():
            branches = trained.net.head.branches(embs)
        loss = sum(self.loss(logits, labels) for logits in branches.values())
        self.step(loss, trained, ("head", "encoders"))

    @abstractmethod
    def student_update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        """The student's step after the teacher phase: what UMT and G2D each distil."""

    def scheduler_step(self) -> None:
        """Each network's encoder and head schedules count the epochs of its own phase; helpers every epoch."""
        active = TEACHER if self.teaching(self.epoch) else "model"
        for key, trained in self.nets.items():
            for part, scheduler in trained.schedulers.items():
                if key == active or part == "helpers":
                    scheduler.step()

    def after_validation(self, epoch: int, points: list[MetricPoint]) -> list[MetricPoint]:
        """The phase, then a subclass's epoch means."""
        return [MetricPoint("train", "run", None, "phase", epoch, float(self.phase(epoch))),
                *super().after_validation(epoch, points)]


class Umt(TeacherPhase):
    name = "umt"

    def __init__(self, cfg: RunConfig, num_classes: int, device: torch.device, ranks: Ranks | None = None):
        super().__init__(cfg, num_classes, device, ranks)
        self.means = EpochMeans(self.modalities, self.device, per_modality=("umt_distill",))

    def update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        if self.teaching(epoch):  # measured only: the student is not trained in phase 1
            with torch.no_grad():
                self.record([feature_distance(embeddings["model"][m], embeddings[TEACHER][m])
                             for m in self.modalities])
        super().update(embeddings, labels, epoch)

    def record(self, distances: list[torch.Tensor]) -> None:
        self.means.add("umt_distill", torch.stack([d.detach() for d in distances]))
        self.means.batch()

    def student_update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        trained, embs, teacher = self.nets["model"], embeddings["model"], embeddings[TEACHER]
        distances = [feature_distance(embs[m], teacher[m]) for m in self.modalities]
        self.record(distances)
        with self.autocast():
            logits = trained.net.head(embs)
        loss = self.loss(logits, labels) + self.params.distill_weight * self.scaled(sum(distances))
        self.step(loss, trained, ("head", "encoders"))
