"""G2D (gradient-guided distillation; Rakib and Bagavathi, ICCV 2025; the authors' student.py and utils.py).

Phase 1 is UMT's (`amst_core.methods.umt.TeacherPhase`): epochs [0, teacher_epochs) train one teacher per
modality alone (its encoder and its own linear classifier), then the teachers are frozen. Phase 2 trains the
student, per batch, on
    L = CE(fused, y) + sum_m [ logit_weight * T^2 * KL(softmax(t_m / T) || softmax(fused / T))
                               + feature_weight * MSE(E_m, E^T_m) ],
t_m the teacher's logits of modality m, E_m / E^T_m the student's / teacher's embeddings, T the temperature
(KL averaged over the batch). Sequential Modality Prioritization (SMP): the teachers' scores
s_m = sum over the batch of softmax(t_m)[y] say which modality dominates; inside the window, the gradients of the
encoder of the modality with the highest score (the conv kernels, as the authors' code; every parameter with
`suppress: all`) are multiplied by 0 after backward, so the others, the weaker ones, are prioritised; a tie
suppresses none. Run-level series: `phase` and, per modality, `g2d_priority`, the share of the epoch's batches
in which it was prioritised (another modality suppressed, not it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from amst_core.config import RunConfig
from amst_core.distributed import SINGLE, Ranks, sum_across
from amst_core.methods.base import Embeddings, TrainedNet, encoder_gradients
from amst_core.methods.epoch_means import EpochMeans
from amst_core.methods.umt import TEACHER, TeacherPhase, feature_distance


def logit_distillation(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch (float32)."""
    target = F.softmax(teacher.float() / temperature, dim=1)
    return F.kl_div(F.log_softmax(student.float() / temperature, dim=1), target,
                    reduction="batchmean") * temperature ** 2


def smp_coefficients(teacher_logits: dict[str, torch.Tensor], labels: torch.Tensor, modalities: tuple[str, ...],
                     ranks: Ranks = SINGLE) -> tuple[torch.Tensor, torch.Tensor]:
    """(coefficients, teacher scores), one per modality in `modalities` order, on the device (no host sync):
    coefficient 0 for the modality whose teacher gives the true classes the highest summed probability, 1 for the
    others; all 1 when the highest score is shared. On several ranks the scores are the global batch's."""
    scores = sum_across(torch.stack([F.softmax(teacher_logits[m].float(), dim=1).gather(1, labels[:, None]).sum()
                                     for m in modalities]), ranks)
    top = scores == scores.max()
    dominant = top & (top.sum() == 1)
    return torch.where(dominant, torch.zeros_like(scores), torch.ones_like(scores)), scores


def prioritised(coeffs: torch.Tensor) -> torch.Tensor:
    """1 for each modality not suppressed while another is, else 0."""
    return ((coeffs == 1) & (coeffs.min() == 0)).to(coeffs.dtype)


class G2d(TeacherPhase):
    name = "g2d"

    def __init__(self, cfg: RunConfig, num_classes: int, device: torch.device, ranks: Ranks | None = None):
        super().__init__(cfg, num_classes, device, ranks)
        self.coeffs: torch.Tensor | None = None  # this batch's, in phase 2 inside the window
        # zero outside the window (phase 1 included): the mean over every batch of the epoch
        self.means = EpochMeans(self.modalities, self.device, per_modality=("g2d_priority",))

    def update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        self.coeffs = None
        self.means.batch()
        super().update(embeddings, labels, epoch)

    def student_update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        trained, embs, teacher = self.nets["model"], embeddings["model"], embeddings[TEACHER]
        p = self.params
        with torch.no_grad(), self.autocast():
            teacher_logits = self.nets[TEACHER].net.head.branches(teacher)
        if p.active(epoch):
            self.coeffs, _ = smp_coefficients(teacher_logits, labels, self.modalities, self.ranks)
            self.means.add("g2d_priority", prioritised(self.coeffs))
        with self.autocast():
            fused = trained.net.head(embs)
        distill = sum(p.logit_weight * logit_distillation(fused, teacher_logits[m], p.temperature)
                      + p.feature_weight * feature_distance(embs[m], teacher[m]) for m in self.modalities)
        self.step(self.loss(fused, labels) + self.scaled(distill), trained, ("head", "encoders"))

    def on_gradients(self, trained: TrainedNet, parts: tuple[str, ...]) -> None:
        if self.coeffs is None or trained is not self.nets["model"]:
            return
        for i, m in enumerate(self.modalities):
            grads = encoder_gradients(trained.net.encoders[m], conv_only=self.params.suppress != "all")
            if grads:
                torch._foreach_mul_(grads, self.coeffs[i].to(grads[0].dtype))
