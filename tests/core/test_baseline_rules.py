"""Each baseline's defining rule on tiny tensors, checked against a hand computation (amst_method.md section 2,
decisions 8.3 and 8.4): OGM-GE's coefficient and gradient modulation, PMR's prototypes, momentum and loss choice,
MLA's combinations and entropy gating, MSLR's learning-rate rule, and unimodal training's data."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from amst_core.data import make_loader, source_for, to_device
from amst_core.engine import EpochData, Trainer
from amst_core.methods import build_method
from amst_core.methods.mla import combinations, entropy_gate
from amst_core.methods.ogm_ge import modulation
from amst_core.methods.pmr import class_means, prototype_logits
from amst_core.metrics import MetricPoint, plateau_epoch
from tests.kit.tiny import tiny_config, write_tiny_cremad

CPU = torch.device("cpu")


def first_batch(trainer: Trainer, split: str = "train") -> dict[str, torch.Tensor]:
    return to_device(next(iter(make_loader(trainer.datasets[split], 16, shuffle=False))), CPU)


# ---- OGM-GE -----------------------------------------------------------------------------------------------------

def test_ogm_coefficient_goes_to_the_dominant_modality_only() -> None:
    labels = torch.tensor([0, 1])
    # audio puts 0.9 and 0.8 on the right classes, visual 0.5 and 0.5: audio's score 1.7, visual's 1.0
    audio = torch.log(torch.tensor([[0.9, 0.1], [0.2, 0.8]]))
    visual = torch.log(torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
    coeffs, ratios = modulation({"audio": audio, "visual": visual}, labels, alpha=0.1, modalities=("audio", "visual"))
    assert ratios.tolist() == pytest.approx([1.7 / 1.0, 1.0 / 1.7])
    assert coeffs.tolist() == pytest.approx([1 - math.tanh(0.1 * 1.7), 1.0])  # relu(ratio), not relu(ratio - 1)


def ogm(epoch_window: tuple[int, int] = (0, 50)):
    cfg = tiny_config("ogm_ge", method_params={"modulation_start": epoch_window[0], "modulation_end": epoch_window[1]})
    return build_method(cfg, 4, CPU)


def test_ogm_modulates_only_4d_encoder_gradients_and_adds_noise_everywhere() -> None:
    method = ogm()
    trained = method.nets["model"]
    for p in trained.net.parameters():
        p.grad = torch.full_like(p, 0.5) + torch.arange(p.numel()).reshape(p.shape) / p.numel()
    before = {name: p.grad.clone() for name, p in trained.net.named_parameters()}
    method.coeffs = torch.tensor([0.25, 1.0])  # audio dominant
    torch.manual_seed(0)
    method.on_gradients(trained, ("head", "encoders"))
    torch.manual_seed(0)
    for name, p in trained.net.named_parameters():  # the same order the hook walks: audio's, then visual's
        if not name.startswith("encoders."):
            continue
        g = before[name]
        if g.dim() == 4:
            coeff = 0.25 if name.startswith("encoders.audio") else 1.0
            expected = g * coeff + torch.randn_like(g) * (g.std() + 1e-8)
            assert torch.equal(p.grad, expected), name
        else:
            assert torch.equal(p.grad, g), f"{name} is not a conv kernel: untouched"
    for name, p in trained.net.named_parameters():
        if not name.startswith("encoders."):
            assert torch.equal(p.grad, before[name]), f"{name}: the head and helpers are not modulated"


def test_ogm_outside_its_window_is_naive_fusion_with_lsum() -> None:
    """No modulation outside the window: one batch of OGM-GE at epoch 60 (window 0..50) moves every weight
    exactly as naive fusion with the same head does."""
    trainers = {}
    for method, extra in (("ogm_ge", {}), ("naive", {"fusion": "lsum"})):
        torch.manual_seed(0)
        trainers[method] = Trainer(tiny_config(method, **extra), progress=False)
    ogm_t, naive_t = trainers["ogm_ge"], trainers["naive"]
    naive_t.method.nets["model"].net.load_state_dict(ogm_t.method.nets["model"].net.state_dict())
    batch = first_batch(ogm_t)
    for t in (ogm_t, naive_t):
        t.method.train_mode(True)
        t.method.train_batch(batch, epoch=60)
    for (name, a), (_, b) in zip(ogm_t.method.nets["model"].net.state_dict().items(),
                                 naive_t.method.nets["model"].net.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    inside = ogm((0, 50))
    inside.nets["model"].net.load_state_dict(naive_t.method.nets["model"].net.state_dict())
    inside.train_mode(True)
    inside.train_batch(batch, epoch=3)
    assert inside.coeffs is not None and inside.means.batches == 1


# ---- PMR --------------------------------------------------------------------------------------------------------

def test_pmr_class_means_keep_the_previous_prototype_of_an_absent_class() -> None:
    sums = torch.tensor([[2.0, 4.0], [0.0, 0.0], [9.0, 3.0]])
    counts = torch.tensor([2.0, 0.0, 3.0])
    previous = torch.tensor([[7.0, 7.0], [5.0, 6.0], [7.0, 7.0]])
    assert class_means(sums, counts, previous).tolist() == [[1.0, 2.0], [5.0, 6.0], [3.0, 1.0]]
    assert not torch.isnan(class_means(sums, counts, None)).any(), "no NaN even before any prototype"


def pmr_trainer(**params) -> Trainer:
    return Trainer(tiny_config("pmr", method_params={"factor": 1.0, **params}), progress=False)


def test_pmr_prototypes_are_class_means_of_eval_mode_embeddings_then_move_with_momentum() -> None:
    trainer = pmr_trainer(momentum_coef=0.2)
    method, net = trainer.method, trainer.method.nets["model"].net
    method.before_epoch(0, EpochData(trainer, 0))
    net.train(False)
    with torch.no_grad():  # factor 1.0: every training sample; eval mode: each embedding is its own
        batch = to_device(next(iter(make_loader(trainer.datasets["train"], 10_000, shuffle=False))), CPU)
        embeddings = net.embed(batch, ("audio", "visual"))
    for m in ("audio", "visual"):
        expected = torch.stack([embeddings[m][batch["label"] == c].mean(0) for c in range(4)])
        assert torch.allclose(method.prototypes[m], expected, atol=1e-5), m
    old = {m: p + 1.0 for m, p in method.prototypes.items()}
    method.prototypes = old
    method.before_epoch(1, EpochData(trainer, 1))  # same weights: P_new is the same means again
    for m in ("audio", "visual"):
        expected_new = torch.stack([embeddings[m][batch["label"] == c].mean(0) for c in range(4)])
        assert torch.allclose(method.prototypes[m], 0.8 * expected_new + 0.2 * old[m], atol=1e-5)


def test_pmr_adds_the_prototype_loss_of_the_weaker_modality() -> None:
    trainer = pmr_trainer()
    method = trainer.method
    labels = torch.tensor([0, 1])
    protos = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 4.0]])
    method.prototypes = {"audio": protos, "visual": protos}
    strong = torch.tensor([[0.1, 0.0], [3.9, 0.0]])  # audio sits on its classes' prototypes
    weak = torch.tensor([[2.0, 2.0], [2.0, 2.0]])  # visual sits in the middle
    embs = {"audio": strong, "visual": weak}
    losses = {m: F.cross_entropy(prototype_logits(e, protos), labels) for m, e in embs.items()}
    assert torch.allclose(method.rebalance_loss(embs, labels), losses["visual"]), "audio stronger: visual's loss"
    swapped = method.rebalance_loss({"audio": weak, "visual": strong}, labels)
    assert torch.allclose(swapped, losses["visual"]), "now audio is the weaker: its loss, of the same embeddings"
    same = method.rebalance_loss({"audio": weak, "visual": weak}, labels)
    assert same.item() == 0.0, "equal scores: no term"


def test_pmr_refuses_a_dataset_of_three_modalities() -> None:
    from amst_core.config import ConfigError, load_config

    three = {"name": "synthetic", "synthetic": {"modalities": ["audio", "text", "visual"]}}
    with pytest.raises(ConfigError, match=r"^method: pmr needs a dataset of exactly 2 modalities"):
        load_config(base={"method": "pmr", "dataset": three})


# ---- MLA --------------------------------------------------------------------------------------------------------

def test_mla_combination_names_and_weights() -> None:
    pairs = combinations(("audio", "visual"))
    assert list(pairs) == ["a30_v70", "a40_v60", "a50_v50", "a60_v40", "a70_v30"]
    assert pairs["a30_v70"] == {"audio": 0.3, "visual": 0.7}
    assert combinations(("text", "visual"))["t40_v60"] == {"text": 0.4, "visual": 0.6}
    assert combinations(("audio", "text", "visual")) == {"a35_t40_v25": {"audio": 0.35, "text": 0.4, "visual": 0.25}}


def test_mla_entropy_gating_is_computed_from_the_branch_logits() -> None:
    confident = torch.tensor([[6.0, 0.0, 0.0]])
    flat = torch.tensor([[0.1, 0.0, -0.1]])

    def entropy(o: torch.Tensor) -> torch.Tensor:
        p = o.softmax(1)
        return -(p * p.log()).sum(1)

    h_c, h_f = entropy(confident), entropy(flat)
    top = torch.maximum(h_c, h_f)
    w_c = torch.exp(top - h_c) / (torch.exp(top - h_c) + torch.exp(top - h_f))
    expected = w_c[:, None] * confident + (1 - w_c)[:, None] * flat
    assert torch.allclose(entropy_gate({"audio": confident, "visual": flat}), expected)
    assert w_c.item() > 0.7, "the confident branch weighs more"
    assert torch.allclose(entropy_gate({"audio": flat, "visual": flat}), flat), "equal entropies: equal weights"


def test_mla_equals_amst_alt_without_skipping_and_evaluates_its_combinations() -> None:
    """The reference's sanity check: MLA and AMST-ALT coincide when no modality is skipped."""
    runs = {}
    for method in ("mla", "amst_alt"):
        torch.manual_seed(0)
        trainer = Trainer(tiny_config(method, epochs=1, skip={"audio": 1}), progress=False)
        runs[method] = trainer.evaluate("val", 0) + trainer.train_epoch(0)[0]
    common = {(p.split, p.component, p.modality, p.name): p.value for p in runs["amst_alt"]}
    mla = {(p.split, p.component, p.modality, p.name): p.value for p in runs["mla"]}
    assert {k: v for k, v in mla.items() if k in common} == common
    assert {k[1] for k in mla if k[1].startswith("combo:")} == {
        "combo:a30_v70", "combo:a40_v60", "combo:a50_v50", "combo:a60_v40", "combo:a70_v30", "combo:entropy"}
    assert mla[("val", "combo:a50_v50", None, "acc")] == mla[("val", "fused", None, "acc")], "a50_v50 is the mean"


# ---- MSLR -------------------------------------------------------------------------------------------------------

def val_branch(epoch: int, audio: float, visual: float) -> list[MetricPoint]:
    return [MetricPoint("val", "branch", "audio", "acc", epoch, audio),
            MetricPoint("val", "branch", "visual", "acc", epoch, visual)]


def test_mslr_rates_follow_the_rule_after_each_window_and_stay_put_in_between() -> None:
    method = build_method(tiny_config("mslr", method_params={"lr_audio": 0.001, "lr_visual": 0.01, "window": 3}),
                          4, CPU)
    groups = method.nets["model"].encoder_groups()
    assert (groups["audio"]["lr"], groups["visual"]["lr"]) == (0.001, 0.01)
    assert method.nets["model"].optimizers["head"].param_groups[0]["lr"] == 0.05, "the head keeps optim.lr"
    accs = [(0.2, 0.1), (0.3, 0.2), (0.4, 0.2), (0.5, 0.1), (0.6, 0.3), (0.6, 0.3), (0.9, 0.6)]
    seen = []
    for epoch, (a, v) in enumerate(accs):
        method.after_validation(epoch, val_branch(epoch, a, v))
        seen.append((groups["audio"]["lr"], groups["visual"]["lr"]))
    assert seen[:3] == [(0.001, 0.01)] * 3, "epochs 0, 1, 2: no rule yet"
    audio_3 = 0.001 * 0.5 / ((0.3 + 0.4 + 0.5) / 3)
    visual_3 = 0.01 * 0.1 / ((0.2 + 0.2 + 0.1) / 3)
    assert seen[3] == pytest.approx((audio_3, visual_3)), "epoch 3: current over the mean of epochs 1..3"
    assert seen[4] == seen[5] == pytest.approx(seen[3]), "unchanged in between"
    assert seen[6] == pytest.approx((audio_3 * 0.9 / ((0.6 + 0.6 + 0.9) / 3), visual_3 * 0.6 / ((0.3 + 0.3 + 0.6) / 3)))


def test_mslr_averages_the_window_with_the_current_epoch_as_the_reference_adjust_lr() -> None:
    """The authors' adjust_lr appends the epoch's accuracy to its history before averaging: at epoch 5 (window 5)
    with accuracies .30 .35 .42 .40 .50 .55 the lr is multiplied by .55 / mean(.35 .42 .40 .50 .55) = 1.2387,
    not by .55 / mean(epochs 0-4) = 1.396."""
    method = build_method(tiny_config("mslr", method_params={"lr_audio": 0.001, "window": 5}), 4, CPU)
    audio = method.nets["model"].encoder_groups()["audio"]
    for epoch, acc in enumerate((0.30, 0.35, 0.42, 0.40, 0.50, 0.55)):
        method.after_validation(epoch, val_branch(epoch, acc, 0.5))
    assert audio["lr"] / 0.001 == pytest.approx(1.2387, abs=1e-4)
    assert method.extra_state()["history"]["audio"] == [0.35, 0.42, 0.40, 0.50, 0.55]


def test_mslr_history_of_an_older_checkpoint_loads() -> None:
    """An older run saved the same history (the last `window` accuracies, the latest included): it loads as is,
    and a shorter one (a run stopped early) too."""
    method = build_method(tiny_config("mslr", method_params={"window": 3}), 4, CPU)
    method.load_extra_state({"history": {"audio": [0.2, 0.4], "visual": [0.1, 0.2, 0.3]}})
    method.after_validation(3, val_branch(3, 0.6, 0.3))
    groups = method.nets["model"].encoder_groups()
    assert groups["audio"]["lr"] == pytest.approx(0.001 * 0.6 / ((0.2 + 0.4 + 0.6) / 3))
    assert groups["visual"]["lr"] == pytest.approx(0.01 * 0.3 / ((0.2 + 0.3 + 0.3) / 3))


def test_mslr_without_the_dynamic_rule_keeps_its_rates() -> None:
    method = build_method(tiny_config("mslr", method_params={"dynamic": False, "window": 1}), 4, CPU)
    for epoch in range(4):
        method.after_validation(epoch, val_branch(epoch, 0.1 * (epoch + 1), 0.5))
    assert method.nets["model"].encoder_groups()["visual"]["lr"] == 0.01


# ---- unimodal ---------------------------------------------------------------------------------------------------

def test_unimodal_reads_nothing_of_the_other_modality(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMST_DATA_ROOT", str(tmp_path))
    folder = write_tiny_cremad(tmp_path)
    shutil.rmtree(folder / "IMAGE_KEPT_1_PER_SEC")  # no video at all
    cfg = tiny_config("unimodal", dataset={"name": "cremad", "synthetic": None}, method_params={"modality": "audio"},
                      model={"frames": 1, "image_size": 16, "audio_frames": 40, "mel_bins": 128}, batch_size=4,
                      epochs=1)
    trainer = Trainer(cfg, progress=False)
    assert set(trainer.datasets["train"][0]) == {"audio", "label"}
    assert set(trainer.method.nets["model"].net.encoders) == {"audio"}
    summary = trainer.fit()
    assert summary["best_epoch"] == 0
    synthetic = source_for(tiny_config("unimodal", method_params={"modality": "visual"}))
    sample = synthetic.split(tiny_config("unimodal", method_params={"modality": "visual"}), "val", train=False)[0]
    assert set(sample) == {"visual", "label"}


# ---- imbalance ---------------------------------------------------------------------------------------------------

def test_epochs_to_plateau() -> None:
    assert plateau_epoch([0.1, 0.5, 0.8, 0.805, 0.79, 0.81]) == 5, "0.79 is two points under the best"
    assert plateau_epoch([0.1, 0.5, 0.8, 0.805, 0.80, 0.81]) == 2
    assert plateau_epoch([0.5]) == 0
