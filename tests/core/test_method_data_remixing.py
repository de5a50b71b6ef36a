"""Data Remixing's rule on tiny tensors against hand computations: the per-sample divergence from a uniform
prediction, the assignment to the modality that has learnt a sample least, unimodal steps that train only the
assigned modality's encoder, the warm-up/remix boundary, a resume inside the remixing phase; bad params refused."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from amst_core.config import ConfigError, load_config
from amst_core.data import make_loader, to_device
from amst_core.engine import Trainer
from amst_core.methods.data_remixing import assign, kl_to_uniform
from tests.kit.tiny import tiny_config
from tests.kit.training import stopped_and_resumed

CPU = torch.device("cpu")


def test_kl_to_uniform_in_bits() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.5], [0.75, 0.25], [1.0, 0.0]]))
    kl = kl_to_uniform(logits)
    expected_1 = 0.75 * math.log2(1.5) + 0.25 * math.log2(0.5)  # 0.1887...
    assert kl.tolist() == pytest.approx([0.0, expected_1, 1.0], abs=1e-6)  # the zero clipped to 1e-9: ~1 bit


def test_each_sample_goes_to_the_modality_with_the_smallest_kl_ties_to_the_later() -> None:
    kl = torch.tensor([[0.9, 0.1, 0.4, 0.3],    # audio
                       [0.2, 0.5, 0.4, 0.3],    # visual
                       [0.5, 0.6, 0.7, 0.3]])   # a third modality
    assert assign(kl).tolist() == [1, 0, 1, 2]
    assert assign(kl[:2]).tolist() == [1, 0, 1, 1], "two modalities: KL_a < KL_v -> audio, else visual"


def trainer_for(method: str, **params) -> Trainer:
    torch.manual_seed(0)
    return Trainer(tiny_config(method, fusion="concat", method_params=params), progress=False)


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.method.nets["model"].net.named_parameters()}


def moved(before: dict[str, torch.Tensor], trainer: Trainer, prefix: str) -> bool:
    return any(not torch.equal(v, before[k]) for k, v in trainer.method.nets["model"].net.named_parameters()
               if k.startswith(prefix))


def test_a_remix_step_trains_only_the_encoder_of_the_modality_its_samples_were_assigned_to(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import amst_core.methods.data_remixing as remixing

    trainer = trainer_for("data_remixing", warmup_epochs=1)
    batch = to_device(next(iter(make_loader(trainer.datasets["train"], 16, shuffle=False))), CPU)
    method = trainer.method
    method.train_mode(True)
    before = weights(trainer)
    method.train_batch(batch, epoch=0)  # warm-up: every modality learns
    assert moved(before, trainer, "encoders.audio") and moved(before, trainer, "encoders.visual")
    assert method.after_validation(0, [])[0].value == 1.0
    monkeypatch.setattr(remixing, "assign", lambda kl: torch.ones(kl.shape[1], dtype=torch.long))  # all: visual
    before = weights(trainer)
    method.train_batch(batch, epoch=1)
    assert not moved(before, trainer, "encoders.audio"), "no sample assigned: audio's encoder does not move"
    assert moved(before, trainer, "encoders.visual") and moved(before, trainer, "head.")
    shares = {p.modality: p.value for p in method.after_validation(1, [])}
    assert shares == {"audio": 0.0, "visual": 1.0}


def test_a_unimodal_step_is_the_fused_loss_with_the_others_zeroed_plus_the_branch_loss() -> None:
    trainer = trainer_for("data_remixing", warmup_epochs=0, unimodal_weight=0.5)
    method, head = trainer.method, trainer.method.nets["model"].net.head
    torch.manual_seed(1)
    # audio's embeddings near zero (near-uniform predictions, KL ~ 0), visual's large: every sample goes to audio
    embs = {"audio": (1e-4 * torch.randn(3, head.weights["audio"].in_features)).requires_grad_(),
            "visual": (10 * torch.randn(3, head.weights["visual"].in_features)).requires_grad_()}
    labels = torch.tensor([0, 1, 2])
    with torch.no_grad():
        owner = assign(torch.stack([kl_to_uniform(head.branch(m, embs[m])) for m in ("audio", "visual")]))
    assert owner.tolist() == [0, 0, 0]
    idx = torch.arange(3)
    w, b = head.weights["audio"].weight.detach().clone(), head.bias.detach().clone()
    fused = embs["audio"][idx].detach() @ w.T + b  # concat: W_a E_a + b, visual's part zero
    branch = embs["audio"][idx].detach() @ w.T + b / 2
    expected = (torch.nn.functional.cross_entropy(fused, labels[idx])
                + 0.5 * torch.nn.functional.cross_entropy(branch, labels[idx]))
    losses = []
    method.step = lambda loss, trained, parts: losses.append(loss.detach())  # type: ignore[method-assign]
    method.update({"model": embs}, labels, epoch=0)
    assert losses[0].item() == pytest.approx(expected.item(), rel=1e-5)


def test_resume_inside_the_remixing_phase_is_exact(tmp_path: Path) -> None:
    cfg = tiny_config("data_remixing", epochs=3, method_params={"warmup_epochs": 1})
    stopped_and_resumed(tmp_path, cfg, stop=2)


@pytest.mark.parametrize(("params", "field"), [({"warmup_epochs": -1}, "warmup_epochs"),
                                               ({"warmup_weight": -0.5}, "warmup_weight"),
                                               ({"unimodal_weight": -1}, "unimodal_weight")])
def test_bad_params_are_refused_naming_the_field(params: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(base={"dataset": {"name": "synthetic"}, "method": "data_remixing", "method_params": params})
    assert str(err.value).startswith(f"method_params.{field}: "), str(err.value)


def test_the_subset_loss_is_the_mean_over_the_assigned_samples_weighted_for_several_ranks() -> None:
    from amst_core.distributed import Ranks

    method = trainer_for("data_remixing").method
    logits = torch.tensor([[0.0, 0.0], [10.0, 0.0], [math.log(3.0), 0.0]])
    labels = torch.tensor([0, 1, 0])
    mask = torch.tensor([True, False, True])
    # samples 0 and 2: CE log 2 = 0.693147 and -log 0.75 = 0.287682; sample 1 (CE 10.00005) is masked out
    assert method.subset_loss(logits, labels, mask, 2).item() == pytest.approx(0.490415, abs=1e-6)
    # on 2 ranks, over 4 assigned samples of the global batch: this rank's sum / 4, times 2 (gradients averaged)
    method.ranks = Ranks(0, 2)
    assert method.subset_loss(logits, labels, mask, 4).item() == pytest.approx(0.490415, abs=1e-6)
