"""Diagnosing & Re-learning (Wei, Li, Hu, ECCV 2024; the authors' ours.py): one fused CE, as naive fusion, and
every `diagnose_every` epochs a diagnosis and a soft re-initialisation of each encoder.

After epoch e > 0 with e % diagnose_every == 0, at most `max_reinits` times (here: before epoch e + 1, which sees
the same weights), each modality's embeddings of the whole train split and of the whole val split are taken in
eval mode without gradients; each set is scaled per feature to [-1, 1] (min-max), clustered by k-means into C
clusters (C classes; k-means++ seeds, `kmeans_restarts` runs, the least inertia kept) and scored by purity (the
share of samples whose cluster's majority label is their own). The learning state is the purity gap
g_m = |purity_train - purity_val|: a large gap is an encoder that learned its train set past what generalises.
Each encoder's trainable parameters move back towards their initial values:

    alpha_m = tanh(move_lambda * g_m),   theta_m = (1 - alpha_m) * theta_m + alpha_m * theta_m_init.

The head, the helpers, BatchNorm's running statistics and the optimizer state are left as they are. Logged per
epoch and modality: `learning_state` (g_m at the last diagnosis, 0 before any) and `reinit_strength` (alpha_m
in the epoch it was applied before, else 0). On several ranks rank 0's diagnosis (of its slice) is every rank's.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from amst_core.config import RunConfig
from amst_core.distributed import Ranks, sum_across
from amst_core.methods.base import Embeddings, Method
from amst_core.metrics import MetricPoint

KMEANS_SEED = 0  # the code's KMeans(random_state=0)


def minmax_scale(x: torch.Tensor) -> torch.Tensor:
    """Each feature to [-1, 1] over the samples (sklearn's MinMaxScaler((-1, 1)): a constant feature becomes -1)."""
    low, high = x.min(dim=0).values, x.max(dim=0).values
    span = torch.where(high > low, high - low, torch.ones_like(high))
    return (x - low) / span * 2 - 1


def kmeans_pp(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeds: the first uniformly, each next with probability proportional to the squared distance to
    the nearest seed so far (kept up to date with one new seed's distances per draw)."""
    first = x[torch.randint(len(x), (1,), generator=generator, device=x.device)]
    centers, d2 = [first.squeeze(0)], (x - first).pow(2).sum(dim=1)
    for _ in range(1, k):
        weights = d2 if float(d2.sum()) > 0 else torch.ones_like(d2)
        center = x[torch.multinomial(weights, 1, generator=generator)]
        centers.append(center.squeeze(0))
        d2 = torch.minimum(d2, (x - center).pow(2).sum(dim=1))
    return torch.stack(centers)


def nearest(x: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Index of each row's nearest center: argmin of |c|^2 - 2 x.c (|x|^2, the same for every center, left out;
    one matrix product)."""
    return (centers.pow(2).sum(dim=1) - 2 * x @ centers.T).argmin(dim=1)


def kmeans(x: torch.Tensor, k: int, restarts: int, iters: int, seed: int = KMEANS_SEED) -> torch.Tensor:
    """Cluster of each row (Lloyd's algorithm, stopped when the centers move less than sklearn's tolerance,
    1e-4 x the mean feature variance); of `restarts` runs, the one of least inertia. An emptied cluster keeps its
    center. On `x`'s device, in float64, from a generator of that device seeded with `seed`: the same clusters
    every time on a device."""
    x = x.double()
    generator = torch.Generator(device=x.device).manual_seed(seed)
    tol = 1e-4 * float(x.var(dim=0, unbiased=False).mean())
    best, best_inertia = None, math.inf
    for _ in range(restarts):
        centers = kmeans_pp(x, k, generator)
        for _ in range(iters):
            assign = nearest(x, centers)
            sums = torch.zeros_like(centers).index_add_(0, assign, x)
            counts = torch.bincount(assign, minlength=k).to(x.dtype)
            moved = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centers)
            shift, centers = float((moved - centers).pow(2).sum()), moved
            if shift <= tol:
                break
        assign = nearest(x, centers)
        inertia = float((x - centers[assign]).pow(2).sum())
        if inertia < best_inertia:
            best, best_inertia = assign, inertia
    return best


def purity(clusters: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of samples whose cluster's most frequent label is their own."""
    counts = torch.zeros(int(clusters.max()) + 1, int(labels.max()) + 1, dtype=torch.long, device=labels.device)
    counts.index_put_((clusters.long(), labels.long()), torch.ones_like(labels, dtype=torch.long), accumulate=True)
    return float(counts.max(dim=1).values.sum()) / len(labels)


def reinit_strength(gap: float, move_lambda: float) -> float:
    return math.tanh(move_lambda * gap)


def soften(current: torch.Tensor, initial: torch.Tensor, alpha: float) -> torch.Tensor:
    """The code's new_weight = alpha * init + (1 - alpha) * current."""
    return alpha * initial + (1 - alpha) * current


class Relearning(Method):
    name = "relearning"

    def __init__(self, cfg: RunConfig, num_classes: int, device: torch.device, ranks: Ranks | None = None):
        super().__init__(cfg, num_classes, device, ranks)
        self.num_classes = num_classes
        encoders = self.nets["model"].net.encoders
        self.initial = {m: [p.detach().clone() for p in encoders[m].parameters() if p.requires_grad]
                        for m in self.modalities}
        self.state = {m: 0.0 for m in self.modalities}  # purity gap at the last diagnosis
        self.applied = {m: 0.0 for m in self.modalities}  # alpha applied before this epoch

    def diagnoses_before(self, epoch: int) -> bool:
        """After epoch e = epoch - 1 > 0 with e % diagnose_every == 0, the first `max_reinits` times."""
        done = epoch - 1
        return done > 0 and done % self.params.diagnose_every == 0 and \
            done // self.params.diagnose_every <= self.params.max_reinits

    @torch.no_grad()
    def features(self, data: Any, split: str) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        net = self.nets["model"].net
        net.train(False)  # the code's model.eval(): BatchNorm statistics do not move
        feats: dict[str, list[torch.Tensor]] = {m: [] for m in self.modalities}
        labels = []
        for batch in data.batches(split):
            with self.autocast():
                embeddings = net.embed(batch, self.modalities)
            for m, e in embeddings.items():
                feats[m].append(e.float())  # k-means runs on the run's device
            labels.append(batch["label"])
        return {m: torch.cat(f) for m, f in feats.items()}, torch.cat(labels)

    def diagnose(self, data: Any) -> dict[str, float]:
        """Each modality's purity gap between its train and val features."""
        p = self.params
        (train, train_y), (val, val_y) = self.features(data, "train"), self.features(data, "val")
        return {m: abs(purity(kmeans(minmax_scale(train[m]), self.num_classes, p.kmeans_restarts, p.kmeans_iters),
                              train_y)
                       - purity(kmeans(minmax_scale(val[m]), self.num_classes, p.kmeans_restarts, p.kmeans_iters),
                                val_y))
                for m in self.modalities}

    def before_epoch(self, epoch: int, data: Any) -> None:
        self.applied = {m: 0.0 for m in self.modalities}
        if not self.diagnoses_before(epoch):
            return
        gaps = self.diagnose(data)
        if self.ranks.distributed:  # every rank takes rank 0's diagnosis
            shared = torch.tensor([gaps[m] if self.ranks.is_main else 0.0 for m in self.modalities],
                                  device=self.device, dtype=torch.float64)
            gaps = dict(zip(self.modalities, sum_across(shared, self.ranks).tolist(), strict=True))
        self.state = gaps
        encoders = self.nets["model"].net.encoders
        for m in self.modalities:
            alpha = self.applied[m] = reinit_strength(gaps[m], self.params.move_lambda)
            trainable = [p for p in encoders[m].parameters() if p.requires_grad]
            with torch.no_grad():
                for param, initial in zip(trainable, self.initial[m], strict=True):
                    param.copy_(soften(param, initial, alpha))

    def update(self, embeddings: dict[str, Embeddings], labels: torch.Tensor, epoch: int) -> None:
        self.joint_update(self.nets["model"], embeddings["model"], labels, self.modalities)

    def after_validation(self, epoch: int, points: list[MetricPoint]) -> list[MetricPoint]:
        return [MetricPoint("train", "run", m, name, epoch, value) for m in self.modalities
                for name, value in (("learning_state", self.state[m]), ("reinit_strength", self.applied[m]))]

    def extra_state(self) -> dict[str, Any]:
        return {"initial": self.initial, "state": dict(self.state)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "initial" in state:
            self.initial = {m: [t.to(self.device) for t in state["initial"][m]] for m in self.modalities}
        self.state = {m: float(state.get("state", {}).get(m, 0.0)) for m in self.modalities}

    def model_state_dict(self) -> dict[str, Any]:
        """Predicting needs no initial weights: best.pt keeps its size."""
        state = super().model_state_dict()
        state["extra"] = {k: v for k, v in state["extra"].items() if k != "initial"}
        return state
