"""MMPareto: the Pareto weights of two conflicting gradients, the norm-restoring rescale, and one batch's encoder
gradients against the authors' procedure (a backward per loss, gradients read from .grad)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from amst_core.config import ConfigError, load_config
from amst_core.methods import mmpareto
from amst_core.methods.mmpareto import combined_gradients, pareto_weights
from tests.kit.training import batches, method_for


def test_conflicting_gradients_get_the_min_norm_weights() -> None:
    # g_mm.g_mm = 1, g_mm.g_uni = -1, g_uni.g_uni = 2: c = (2 + 1) / (1 + 2 + 2) = 0.6 on g_mm, 0.4 on g_uni
    cos, w_uni = pareto_weights(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0]))
    assert cos.item() == pytest.approx(-1 / math.sqrt(2))
    assert w_uni.item() == pytest.approx(0.4)


def test_agreeing_gradients_get_equal_weights() -> None:
    cos, w_uni = pareto_weights(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]))
    assert cos.item() == pytest.approx(1 / math.sqrt(2)) and w_uni.item() == 0.5


def test_min_norm_solver_clips_as_the_authors_do() -> None:
    # no multimodal gradient: cos 0 is not > 0, and g_mm.g_uni = 0 >= |g_mm|^2 = 0 gives c = 0.999
    _, w_uni = pareto_weights(torch.zeros(2), torch.tensor([1.0, 1.0]))
    assert w_uni.item() == pytest.approx(0.001, abs=1e-6)
    # g_mm.g_uni = 0 >= |g_uni|^2 = 0: c = 0.001
    _, w_uni = pareto_weights(torch.tensor([1.0, 1.0]), torch.zeros(2))
    assert w_uni.item() == pytest.approx(0.999, abs=1e-6)


def combined_gradient(g_mm: torch.Tensor, g_uni: torch.Tensor, w_uni: torch.Tensor, gamma: float) -> torch.Tensor:
    return combined_gradients([g_mm], [g_uni], w_uni, gamma)[0]


def test_combined_gradient_takes_the_plain_sums_norm_when_larger_then_gamma() -> None:
    g_mm, g_uni = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 4.0])
    # equal weights: 2 * 0.5 * (g_mm + g_uni) = [3, 4], the plain sum itself (ratio 1): times gamma only
    assert combined_gradient(g_mm, g_uni, torch.tensor(0.5), 1.5).tolist() == pytest.approx([4.5, 6.0])
    # weights 0.6 / 0.4: new = [3.6, 3.2], |new| = sqrt(23.2) < |[3, 4]| = 5: scaled up to norm 5, then x1.5
    out = combined_gradient(g_mm, g_uni, torch.tensor(0.4), 1.5)
    assert out.tolist() == pytest.approx([3.6 * 5 / math.sqrt(23.2) * 1.5, 3.2 * 5 / math.sqrt(23.2) * 1.5])
    assert out.norm().item() == pytest.approx(7.5)
    # opposite gradients: the plain sum vanishes (ratio 0 < 1), new = 2 * 0.999 * [1, 0] + 2 * 0.001 * [-1, 0]
    out = combined_gradient(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.0]), torch.tensor(0.001), 1.5)
    assert out.tolist() == pytest.approx([1.996 * 1.5, 0.0])


def test_each_tensor_is_rescaled_by_its_own_ratio() -> None:
    # tensor 1 as above (ratio 5 / sqrt(23.2)); tensor 2: g_mm = [1], g_uni = [-1], new = 1.2 - 0.8 = 0.4, plain 0
    out = combined_gradients([torch.tensor([3.0, 0.0]), torch.tensor([1.0])],
                             [torch.tensor([0.0, 4.0]), torch.tensor([-1.0])], torch.tensor(0.4), 2.0)
    assert out[0].tolist() == pytest.approx([3.6 * 5 / math.sqrt(23.2) * 2, 3.2 * 5 / math.sqrt(23.2) * 2])
    assert out[1].tolist() == pytest.approx([0.8])


def test_one_batch_matches_the_authors_procedure() -> None:
    """Gradients of each loss by its own backward (as MMPareto.py reads them from .grad), combined by hand per
    modality; the method's encoder gradients at the step must be those."""
    method = method_for("mmpareto", method_params={"gamma": 1.5})
    trained = method.nets["model"]
    net = trained.net
    batch = batches(method.cfg, 1)[0]
    labels = batch["label"]
    method.train_mode(True)
    state = {k: v.clone() for k, v in net.state_dict().items()}

    embs = net.embed(batch, method.modalities)
    branches = net.head.branches(embs)
    losses = {"both": F.cross_entropy(net.head.combine(list(branches.values())), labels),
              **{m: F.cross_entropy(branches[m], labels) for m in method.modalities}}
    grads = {}
    for name, loss in losses.items():
        net.zero_grad(set_to_none=True)
        loss.backward(retain_graph=True)
        grads[name] = {m: [p.grad.clone() if p.grad is not None else torch.zeros_like(p)
                           for p in net.encoders[m].parameters()] for m in method.modalities}
    expected = {}
    for m in method.modalities:
        flat_mm = torch.cat([g.flatten() for g in grads["both"][m]])
        flat_m = torch.cat([g.flatten() for g in grads[m][m]])
        cos = F.cosine_similarity(flat_mm, flat_m, dim=0).item()
        if cos > 0:
            c = 0.5
        else:  # two tasks, no clipping case here
            v11, v12, v22 = (flat_mm @ flat_mm).item(), (flat_mm @ flat_m).item(), (flat_m @ flat_m).item()
            c = (v22 - v12) / (v11 + v22 - 2 * v12)
        out = []
        for a, b in zip(grads["both"][m], grads[m][m], strict=True):
            new = 2 * c * a + 2 * (1 - c) * b
            ratio = (a + b).norm() / new.norm() if new.norm() > 0 else torch.tensor(0.0)
            out.append((ratio * new if ratio > 1 else new) * 1.5)
        expected[m] = out

    net.load_state_dict(state)
    net.zero_grad(set_to_none=True)
    seen = {}
    encoders = trained.optimizers["encoders"]
    original = encoders.step

    def capture(*args, **kwargs):
        seen.update({m: [p.grad.clone() for p in net.encoders[m].parameters()] for m in method.modalities})
        return original(*args, **kwargs)

    encoders.step = capture
    torch.manual_seed(0)
    embs = net.embed(batch, method.modalities)  # the same forward (train mode, BatchNorm statistics aside)
    method.update({"model": embs}, labels, epoch=0)
    for m in method.modalities:
        for got, want in zip(seen[m], expected[m], strict=True):
            assert torch.allclose(got, want, rtol=1e-4, atol=1e-6), m
    weight_sum = method.means.sums["mmpareto_weight"]
    assert method.means.batches == 1 and weight_sum.min() >= 0 and weight_sum.max() <= 1


def test_an_overflowed_batch_is_left_out_of_the_epoch_means(monkeypatch: pytest.MonkeyPatch) -> None:
    """fp16: a batch whose scaled gradients hold inf gives NaN weights and is not stepped; the series skip it."""
    method = method_for("mmpareto")
    batch = batches(method.cfg, 1)[0]
    method.train_mode(True)
    values = iter([(torch.tensor(float("nan")), torch.tensor(float("nan"))), (torch.tensor(-0.5), torch.tensor(0.3))])
    monkeypatch.setattr(mmpareto, "pareto_weights", lambda a, b: next(values))
    for _ in range(2):
        embs = method.nets["model"].net.embed(batch, ("audio",))
        method.update({"model": embs}, batch["label"], epoch=0)
    points = {(p.modality, p.name): p.value for p in method.after_validation(0, [])}
    assert points[("audio", "mmpareto_cos")] == pytest.approx(-0.5)
    assert points[("audio", "mmpareto_weight")] == pytest.approx(0.3)
    assert points[("visual", "mmpareto_weight")] == 0.5  # not updated: the neutral weight


def test_bad_gamma_is_refused_naming_the_field() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(base={"dataset": {"name": "synthetic"}, "method": "mmpareto", "method_params": {"gamma": 0}})
    assert str(err.value).startswith("method_params.gamma: ")
