"""Reference numerics (Doc/training.md, "Bit-identical updates"): on a CPU, in fp32, with the default layout
(`model.channels_last: auto` is off there), our methods' updates are bitwise those of a plain PyTorch loop that
follows the authors' rules: torch.optim.SGD with momentum and weight decay, one optimizer per part (encoders,
fusion head, helpers), a backward and a step per loss, the same batches. Three batches of an unskipped epoch,
then three of an epoch whose audio is skipped, compared with torch.equal on every parameter, buffer (BatchNorm
statistics) and momentum buffer. The loop below is written from the spec, not from the methods' code; it reuses
only the model (encoders, heads) and the batches.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from amst_core.methods.base import Method
from amst_core.models import MultimodalNet
from tests.kit.training import batches, method_for

MODALITIES = ("audio", "visual")


class PlainNet:
    """One network of the reference: a default-layout copy of ours and plain SGD per part."""

    def __init__(self, net: MultimodalNet, lr: float, momentum: float, weight_decay: float):
        self.net = copy.deepcopy(net).to(memory_format=torch.contiguous_format)
        parts = {"encoders": self.net.encoders, "head": self.net.head, "helpers": self.net.helpers}
        self.opt = {k: torch.optim.SGD(m.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
                    for k, m in parts.items()}

    def step(self, loss: torch.Tensor, parts: tuple[str, ...] = ("head", "encoders")) -> None:
        for part in parts:
            self.opt[part].zero_grad()
        loss.backward()
        for part in parts:
            self.opt[part].step()


def plain_embed(plain: PlainNet, batch: dict, updated: tuple[str, ...], forward_skipped: bool) -> dict:
    """Train-mode forward; a skipped encoder still runs (its BatchNorm statistics move) unless `fast`."""
    plain.net.train(True)
    return {m: plain.net.encoders[m](batch[m]) for m in MODALITIES if m in updated or forward_skipped}


def plain_helpers(plains: list[PlainNet], embeddings: list[dict], labels: torch.Tensor) -> None:
    losses = [F.cross_entropy(p.net.helpers.linears[m](e[m].detach()), labels)
              for p, e in zip(plains, embeddings, strict=True) for m in e]
    for p in plains:
        p.opt["helpers"].zero_grad()
    sum(losses).backward()
    for p in plains:
        p.opt["helpers"].step()


def plain_alternating(plain: PlainNet, emb: dict, labels: torch.Tensor, updated: tuple[str, ...]) -> None:
    """ALT: per updated modality in sorted order, CE of its branch, backward, step head and encoders."""
    for m in updated:
        plain.step(F.cross_entropy(plain.net.head.branch(m, emb[m]), labels))


def plain_joint(plain: PlainNet, emb: dict, labels: torch.Tensor, present: tuple[str, ...]) -> None:
    if present:
        plain.step(F.cross_entropy(plain.net.head({m: emb[m] for m in present}), labels))


def plain_ogm(plain: PlainNet, emb: dict, labels: torch.Tensor, alpha: float) -> None:
    """OGM-GE: fused CE; the dominant modality's conv gradients scaled by 1 - tanh(alpha * ratio), noise
    N(0, std(grad) + 1e-8) added to every conv gradient of every encoder."""
    with torch.no_grad():
        scores = [F.softmax(plain.net.head.branch(m, emb[m]), 1).gather(1, labels[:, None]).sum() for m in MODALITIES]
        ratios = [scores[0] / scores[1], scores[1] / scores[0]]
        top = 0 if ratios[0] >= ratios[1] else 1
        coeffs = [1 - torch.tanh(alpha * torch.relu(r)) if i == top else torch.tensor(1.0)
                  for i, r in enumerate(ratios)]
    loss = F.cross_entropy(plain.net.head(emb), labels)
    for part in ("head", "encoders"):
        plain.opt[part].zero_grad()
    loss.backward()
    for m, coeff in zip(MODALITIES, coeffs, strict=True):
        for p in plain.net.encoders[m].parameters():
            if p.grad is not None and p.grad.dim() == 4:
                noise = torch.randn_like(p.grad) * (p.grad.std() + 1e-8)
                p.grad = p.grad * coeff + noise
    for part in ("head", "encoders"):
        plain.opt[part].step()


def plain_pmr(plain: PlainNet, emb: dict, labels: torch.Tensor, prototypes: dict, alpha: float) -> None:
    """PMR: fused CE + alpha * the prototype CE of the modality whose prototype score is lower."""
    logits = {m: -torch.cdist(emb[m], prototypes[m]) for m in MODALITIES}
    scores = {m: F.softmax(s, 1).gather(1, labels[:, None]).sum().item() for m, s in logits.items()}
    loss = F.cross_entropy(plain.net.head(emb), labels)
    if scores["audio"] != scores["visual"]:
        weaker = "visual" if scores["audio"] > scores["visual"] else "audio"
        loss = loss + alpha * F.cross_entropy(logits[weaker], labels)
    plain.step(loss)


def plain_batch(name: str, plains: dict[str, PlainNet], batch: dict, updated: tuple[str, ...], params,
                forward_skipped: bool, prototypes: dict | None) -> None:
    labels = batch["label"]
    embs = {k: plain_embed(p, batch, updated, forward_skipped) for k, p in plains.items()}
    if name in ("amst_alt", "mla"):
        plain_alternating(plains["model"], embs["model"], labels, updated)
    elif name == "amst_full":
        plain_alternating(plains["alt"], embs["alt"], labels, updated)
        if params.full_joint_update == "alt":
            plain_alternating(plains["joint"], embs["joint"], labels, updated)
        else:
            plain_joint(plains["joint"], embs["joint"], labels, updated)
    elif name in ("naive", "amst_joint"):
        plain_joint(plains["model"], embs["model"], labels, updated)
    elif name == "ogm_ge":
        plain_ogm(plains["model"], embs["model"], labels, params.alpha)
    elif name == "pmr":
        plain_pmr(plains["model"], embs["model"], labels, prototypes, params.alpha)
    plain_helpers(list(plains.values()), list(embs.values()), labels)


def assert_bitwise_equal(method: Method, plains: dict[str, PlainNet]) -> None:
    for key, trained in method.nets.items():
        ours, theirs = trained.net.state_dict(), plains[key].net.state_dict()
        for name, value in ours.items():
            assert torch.equal(value, theirs[name]), f"{key}.{name}"
        momentum = {p: s["momentum_buffer"] for opt in trained.optimizers.values() for p, s in opt.state.items()}
        plain_momentum = {p: s["momentum_buffer"] for opt in plains[key].opt.values() for p, s in opt.state.items()}
        for (name, p), q in zip(trained.net.named_parameters(), plains[key].net.parameters(), strict=True):
            assert (p in momentum) == (q in plain_momentum), f"{key}.{name}: stepped in one loop only"
            if p in momentum:
                assert torch.equal(momentum[p], plain_momentum[q]), f"{key}.{name}: momentum"


CASES = [
    ("naive", {"fusion": "concat"}), ("amst_alt", {}), ("amst_joint", {}), ("amst_full", {}),
    ("amst_full", {"method_params": {"skip_mode": "fast"}}),
    ("amst_full", {"method_params": {"full_joint_update": "joint"}}),
    ("amst_alt", {"method_params": {"skip_mode": "fast"}}), ("ogm_ge", {}), ("pmr", {}), ("mla", {}),
]


@pytest.mark.parametrize(("name", "fields"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_cpu_fp32_default_layout_updates_are_bitwise_the_plain_reference_loop(name: str, fields: dict) -> None:
    method = method_for(name, skip={"audio": 2}, **fields)
    o = method.cfg.optim
    plains = {k: PlainNet(t.net, o.lr, o.momentum, o.weight_decay) for k, t in method.nets.items()}
    prototypes = None
    if name == "pmr":  # the prototypes of a previous epoch's pass, the same for both loops
        gen = torch.Generator().manual_seed(1)
        dim = method.nets["model"].net.encoders["audio"].dim
        prototypes = {m: torch.randn(4, dim, generator=gen) for m in MODALITIES}
        method.prototypes = prototypes
    forward_skipped = method.skip_mode == "faithful"
    for epoch in (0, 1):  # epoch 1: audio skipped (AMST methods; the baselines update every modality)
        updated = method.schedule.updated(epoch)
        for batch in batches(method.cfg, 3):
            torch.manual_seed(100 + epoch)  # OGM-GE's noise: the same draws in both loops
            method.train_mode(True)
            method.train_batch(batch, epoch)
            torch.manual_seed(100 + epoch)
            plain_batch(name, plains, batch, updated, method.params, forward_skipped, prototypes)
    assert_bitwise_equal(method, plains)
