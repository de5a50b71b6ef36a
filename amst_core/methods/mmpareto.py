"""MMPareto (Wei & Hu, ICML 2024; the authors' code/MMPareto.py), for any number of modalities.

Per batch, losses L_mm = CE(fused logits) and L_m = CE(o_m) for each modality m (o_m: the modality's branch of the
fusion head). For each encoder m, with g_mm and g_m the gradients of L_mm and L_m on all its trainable parameters
(flattened together): cos_m = cos(g_mm, g_m); if cos_m > 0 the weights are (w_mm, w_m) = (0.5, 0.5), else the
two-task min-norm (MGDA) solution of min_c |c g_mm + (1 - c) g_m|: c = (g_m.g_m - g_mm.g_m) /
|g_mm - g_m|^2, or 0.999 when g_mm.g_m >= |g_mm|^2, or 0.001 when g_mm.g_m >= |g_m|^2 (the authors' MinNormSolver),
and (w_mm, w_m) = (c, 1 - c). Then, per parameter tensor t of the encoder, as the code does:
new_t = 2 w_mm g_mm,t + 2 w_m g_m,t; r_t = |g_mm,t + g_m,t| / |new_t| (the norm of the plain summed gradient);
grad_t = gamma * r_t * new_t when r_t > 1, else gamma * new_t (gamma 1.5). The fusion head steps on the gradient
of L_mm + sum_m L_m. Logged per epoch (run-level, per modality): `mmpareto_cos`, the mean cos_m, and
`mmpareto_weight`, the mean w_m (over the batches whose gradients were finite: fp16 overflows left out).

Passes: each loss is backpropagated to the (detached) embeddings through the head, then two vector-Jacobian
products per encoder (L_mm's and L_m's embedding gradients); L_k, k != m, never reaches encoder m, so the summed
gradient is g_mm + g_m without a fourth backward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from amst_core.distributed import average_tensors
from amst_core.methods.base import Embeddings, Method
from amst_core.methods.epoch_means import EpochMeans


def pareto_weights(g_mm: torch.Tensor, g_uni: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, w_uni) of two flat gradients, on the device (no host sync); w_mm = 1 - w_uni."""
    g_mm, g_uni = g_mm.float(), g_uni.float()
    v11, v12, v22 = g_mm @ g_mm, g_mm @ g_uni, g_uni @ g_uni
    cos = F.cosine_similarity(g_mm, g_uni, dim=0)
    c = torch.where(v12 >= v11, torch.full_like(v11, 0.999),
                    torch.where(v12 >= v22, torch.full_like(v11, 0.001), (v22 - v12) / (v11 + v22 - 2 * v12)))
    c = torch.where(cos > 0, torch.full_like(c, 0.5), c)
    return cos, 1 - c


def combined_gradients(g_mm: list[torch.Tensor], g_uni: list[torch.Tensor], w_uni: torch.Tensor,
                       gamma: float) -> list[torch.Tensor]:
    """Each parameter tensor's new gradient: the weighted sum, rescaled to the plain sum's norm when that is
    larger, times gamma. Multi-tensor kernels over the encoder's tensors, no host sync."""
    new = torch._foreach_mul(g_mm, 2 * (1 - w_uni))
    torch._foreach_add_(new, torch._foreach_mul(g_uni, 2 * w_uni))
    plain = torch.stack(torch._foreach_norm(torch._foreach_add(g_mm, g_uni)))
    ratios = plain / torch.stack(torch._foreach_norm(new)).clamp(min=1e-30)
    factors = torch.where(ratios > 1, ratios, torch.ones_like(ratios)) * gamma
    torch._foreach_mul_(new, list(factors.unbind()))
    return new


class MmPareto(Method):
    name = "mmpareto"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        series = ("mmpareto_cos", "mmpareto_weight")  # each over its modality's finite batches
        self.means = EpochMeans(self.modalities, self.device, per_modality=series, counted=series)

    def update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        trained, embs = self.nets["model"], embeddings["model"]
        head, scale = trained.net.head, self.scaler.scale
        encoders, head_opt = trained.optimizers["encoders"], trained.optimizers["head"]
        updated = [m for m in self.modalities if m in embs and embs[m].requires_grad]
        leaves = {m: e.detach().requires_grad_(m in updated) for m, e in embs.items()}
        with self.autocast():
            branches = head.branches(leaves)
            loss_mm = self.loss(head.combine(list(branches.values())), labels)
            unimodal = {m: self.loss(branches[m], labels) for m in updated}
        head_params = [p for p in head.parameters() if p.requires_grad]
        encoders.zero_grad(set_to_none=True)
        head_opt.zero_grad(set_to_none=True)
        if not updated:
            scale(loss_mm).backward(inputs=head_params)
            self.average_gradients(head_opt)
            self.scaler.step(head_opt)
            self.scaler.update()
            return
        d_mm = dict(zip(updated, torch.autograd.grad(scale(loss_mm), [leaves[m] for m in updated],
                                                     retain_graph=True), strict=True))
        d_uni = {m: torch.autograd.grad(scale(unimodal[m]), leaves[m], retain_graph=True)[0] for m in updated}
        scale(loss_mm + sum(unimodal.values())).backward(inputs=head_params)
        self.average_gradients(head_opt)
        cos, weight = torch.ones(self.n, device=self.device), torch.full((self.n,), 0.5, device=self.device)
        for m in updated:
            params = [p for p in trained.net.encoders[m].parameters() if p.requires_grad]
            g_mm = torch.autograd.grad(embs[m], params, d_mm[m], retain_graph=True, allow_unused=True)
            g_uni = torch.autograd.grad(embs[m], params, d_uni[m], allow_unused=True)
            used = [i for i, (a, b) in enumerate(zip(g_mm, g_uni, strict=True)) if a is not None or b is not None]
            both = [g[i] if g[i] is not None else torch.zeros_like(params[i]) for g in (g_mm, g_uni) for i in used]
            average_tensors(both, self.ranks)  # one collective for both losses
            g_mm, g_uni = both[:len(used)], both[len(used):]
            i = self.modalities.index(m)
            cos[i], weight[i] = pareto_weights(torch.cat([g.reshape(-1) for g in g_mm]),
                                               torch.cat([g.reshape(-1) for g in g_uni]))
            combined = combined_gradients([g.view_as(params[k]) for k, g in zip(used, g_mm, strict=True)],
                                          [g.view_as(params[k]) for k, g in zip(used, g_uni, strict=True)],
                                          weight[i], self.params.gamma)
            for k, g in zip(used, combined, strict=True):
                params[k].grad = g.to(params[k].dtype)
        # fp16: a batch whose scaled gradients overflowed (the scaler skips its step) has NaN weights; the epoch's
        # means leave it out rather than turn NaN
        finite = torch.isfinite(cos) & torch.isfinite(weight)
        self.means.add("mmpareto_cos", torch.where(finite, cos, 0.0), count=finite)
        self.means.add("mmpareto_weight", torch.where(finite, weight, 0.0), count=finite)
        self.means.batch()
        self.scaler.step(encoders)
        self.scaler.step(head_opt)
        self.scaler.update()
