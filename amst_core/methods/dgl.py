"""DGL (disentangled gradient learning; Wei et al., ICCV 2025; the official code's main_dgl.py).

The multimodal loss's gradient to the encoders is cut, and each encoder learns from its own unimodal loss only:
per batch, with o_m = the head's branch of modality m on E_m (the fusion head's own weights serve as the
unimodal classifiers, as the authors' ConcatFusion_DGL / SumFusion_DGL do),
    encoders: gradient of alpha * sum over m of CE(o_m, y)                  (the head's part of it is dropped);
    head:     gradient of CE(head(E.detach()), y)                         (it reaches no encoder);
then, with `clip_norm` > 0, the encoders' and head's gradients together are clipped to that global L2 norm,
and both step. Prediction is the head's fused output, as for naive fusion.
Logged per epoch (run-level, per modality): `dgl_unimodal_loss`, the mean of CE(o_m, y) over the batches.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from amst_core.methods.base import Embeddings, Method, TrainedNet
from amst_core.methods.epoch_means import EpochMeans


def disentangled_backward(trained: TrainedNet, fused: torch.Tensor, unimodal: torch.Tensor,
                          scale: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
    """Fill .grad: the encoders' from `unimodal` (a loss of the branches on the live embeddings) alone, the head's
    from `fused` (a loss of the head on detached embeddings) alone. `scale`: the fp16 loss scaler's."""
    scale = scale or (lambda loss: loss)
    head_opt = trained.optimizers["head"]
    for part in ("encoders", "head"):
        trained.optimizers[part].zero_grad(set_to_none=True)
    if unimodal.requires_grad:
        scale(unimodal).backward()
        head_opt.zero_grad(set_to_none=True)  # the unimodal loss's gradient in the head is dropped
    scale(fused).backward()


class Dgl(Method):
    name = "dgl"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.means = EpochMeans(self.modalities, self.device, per_modality=("dgl_unimodal_loss",))

    def update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        trained, embs = self.nets["model"], embeddings["model"]
        head = trained.net.head
        with self.autocast():
            fused = head({m: e.detach() for m, e in embs.items()})
            branches = {m: head.branch(m, embs[m]) for m in self.modalities if m in embs}
        losses = {m: self.loss(logits, labels) for m, logits in branches.items()}
        with torch.no_grad():
            self.means.add("dgl_unimodal_loss", torch.stack([
                losses[m].detach() if m in losses else torch.zeros((), device=self.device) for m in self.modalities]))
            self.means.batch()
        unimodal = self.params.alpha * sum(losses.values())
        disentangled_backward(trained, self.loss(fused, labels), unimodal, self.scaler.scale)
        self.finish_step([trained.optimizers["encoders"], trained.optimizers["head"]],
                         clip_norm=self.params.clip_norm)
