"""Fusion heads, helper probes, initialisation and the ResNet-18 encoders (amst_method.md section 3)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from amst_core.models.encoders import AudioEncoder, VisualEncoder, embedding_dim
from amst_core.models.fusion import ConcatHead, HelperHeads, LateSumHead, SharedMeanHead, build_head

D, C, B = 6, 4, 5
AV = ("audio", "visual")
AVT = ("audio", "text", "visual")




@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def embeddings(modalities=AV) -> dict[str, torch.Tensor]:
    return {m: torch.randn(B, D) for m in modalities}


def randomise_biases(head: nn.Module) -> None:
    """Init sets biases to zero; give them values so the bias rules are visible."""
    with torch.no_grad():
        for name, p in head.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn_like(p))


# ---- concat ----------------------------------------------------------------------------------------------------


def test_concat_branch_uses_bias_over_head_modalities():
    head = ConcatHead(AVT, D, C)
    randomise_biases(head)
    e = embeddings(AVT)
    for m in AVT:
        expected = e[m] @ head.weights[m].weight.T + head.bias / 3
        torch.testing.assert_close(head.branch(m, e[m]), expected)


def test_concat_absent_modality_keeps_n():
    head = ConcatHead(AVT, D, C)
    randomise_biases(head)
    e = embeddings(AVT)
    out = head({"audio": e["audio"], "text": None, "visual": e["visual"]})
    expected = (e["audio"] @ head.weights["audio"].weight.T + e["visual"] @ head.weights["visual"].weight.T
                + head.bias * 2 / 3)
    torch.testing.assert_close(out, expected)
    only_audio = head({"audio": e["audio"], "visual": None})  # text missing from the dict entirely
    torch.testing.assert_close(only_audio, e["audio"] @ head.weights["audio"].weight.T + head.bias / 3)


def test_concat_all_present_equals_linear_on_concatenation():
    head = ConcatHead(AV, D, C)
    randomise_biases(head)
    e = embeddings()
    linear = nn.Linear(2 * D, C)
    with torch.no_grad():
        linear.weight.copy_(torch.cat([head.weights["audio"].weight, head.weights["visual"].weight], dim=1))
        linear.bias.copy_(head.bias)
    torch.testing.assert_close(head(e), linear(torch.cat([e["audio"], e["visual"]], dim=1)))


def test_concat_branches_sum_to_fused():
    head = ConcatHead(AV, D, C)
    randomise_biases(head)
    e = embeddings()
    branches = head.branches(e)
    assert list(branches) == ["audio", "visual"]
    torch.testing.assert_close(head(e), branches["audio"] + branches["visual"])


def test_concat_has_no_per_modality_bias():
    head = ConcatHead(AV, D, C)
    assert all(lin.bias is None for lin in head.weights.values())
    assert head.bias.shape == (C,)


def test_concat_skipped_modality_gets_no_gradient():
    head = ConcatHead(AV, D, C)
    e = embeddings()
    head({"audio": e["audio"], "visual": None}).sum().backward()
    assert head.weights["visual"].weight.grad is None
    assert head.weights["audio"].weight.grad is not None
    assert head.bias.grad is not None
    # the bias enters with 1/n = 1/2 per present branch
    torch.testing.assert_close(head.bias.grad, torch.full((C,), B / 2))


# ---- lsum ------------------------------------------------------------------------------------------------------


def test_lsum_sum_of_present_branches_with_own_bias():
    head = LateSumHead(AVT, D, C)
    randomise_biases(head)
    e = embeddings(AVT)
    lin = head.linears
    assert all(lin[m].bias is not None for m in AVT)
    branch = {m: e[m] @ lin[m].weight.T + lin[m].bias for m in AVT}
    torch.testing.assert_close(head(e), branch["audio"] + branch["text"] + branch["visual"])
    torch.testing.assert_close(head({**e, "text": None}), branch["audio"] + branch["visual"])
    torch.testing.assert_close(head({"visual": e["visual"]}), branch["visual"])
    for m in AVT:
        torch.testing.assert_close(head.branch(m, e[m]), branch[m])


# ---- msum ------------------------------------------------------------------------------------------------------


def test_msum_one_shared_linear():
    head = SharedMeanHead(AV, D, C)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 1
    assert sum(p.numel() for p in head.parameters()) == D * C + C


def test_msum_mean_of_present_branches():
    head = SharedMeanHead(AVT, D, C)
    randomise_biases(head)
    e = embeddings(AVT)
    w, b = head.linear.weight, head.linear.bias
    branch = {m: e[m] @ w.T + b for m in AVT}
    torch.testing.assert_close(head(e), (branch["audio"] + branch["text"] + branch["visual"]) / 3)
    torch.testing.assert_close(head({**e, "audio": None}), (branch["text"] + branch["visual"]) / 2)
    torch.testing.assert_close(head({"audio": e["audio"], "text": None, "visual": None}), branch["audio"])
    torch.testing.assert_close(head.combine([branch["audio"], branch["visual"]]),
                               (branch["audio"] + branch["visual"]) / 2)


# ---- common ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["concat", "lsum", "msum"])
def test_all_absent_raises(kind):
    head = build_head(kind, AV, D, C)
    with pytest.raises(ValueError):
        head({"audio": None, "visual": None})
    with pytest.raises(ValueError):
        head({})


@pytest.mark.parametrize("kind", ["concat", "lsum", "msum"])
def test_none_is_omitted_from_branches(kind):
    head = build_head(kind, AV, D, C)
    e = embeddings()
    branches = head.branches({"audio": None, "visual": e["visual"]})
    assert list(branches) == ["visual"]
    torch.testing.assert_close(branches["visual"], head.branch("visual", e["visual"]))


@pytest.mark.parametrize("kind", ["concat", "lsum", "msum"])
def test_unknown_modality_rejected(kind):
    head = build_head(kind, AV, D, C)
    with pytest.raises(KeyError):
        head({"audio": torch.randn(B, D), "text": torch.randn(B, D)})


@pytest.mark.parametrize(("kind", "cls"), [("concat", ConcatHead), ("lsum", LateSumHead), ("msum", SharedMeanHead)])
def test_build_head_kinds(kind, cls):
    head = build_head(kind, ("visual", "audio"), D, C)
    assert type(head) is cls
    assert head.modalities == ("audio", "visual")
    assert head(embeddings()).shape == (B, C)


def test_branch_order_is_sorted_whatever_the_input_order():
    head = build_head("lsum", AV, D, C)
    e = embeddings()
    assert list(head.branches({"visual": e["visual"], "audio": e["audio"]})) == ["audio", "visual"]


# ---- helpers ---------------------------------------------------------------------------------------------------


def test_helpers_detach_embeddings():
    helpers = HelperHeads(AV, D, C)
    e = {m: torch.randn(B, D, requires_grad=True) for m in AV}
    out = helpers(e)
    assert set(out) == set(AV)
    sum(o.sum() for o in out.values()).backward()
    assert all(e[m].grad is None for m in AV)
    assert all(helpers.linears[m].weight.grad is not None for m in AV)
    lin = helpers.linears["audio"]
    torch.testing.assert_close(out["audio"], e["audio"].detach() @ lin.weight.T + lin.bias)


def test_helpers_grad_does_not_reach_encoder():
    encoder = nn.Linear(3, D)
    helpers = HelperHeads(("audio",), D, C)
    helpers({"audio": encoder(torch.randn(B, 3))})["audio"].sum().backward()
    assert encoder.weight.grad is None


# ---- init ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["concat", "lsum", "msum"])
def test_init_linear_weights_nonzero_biases_zero(kind):
    head = build_head(kind, AV, 512, 10)
    helpers = HelperHeads(AV, 512, 10)
    for module in (head, helpers):
        for name, p in module.named_parameters():
            if name.endswith("bias"):
                assert torch.count_nonzero(p) == 0, name
            else:
                assert torch.count_nonzero(p) == p.numel(), name
                # Xavier-normal: std = sqrt(2 / (fan_in + fan_out))
                assert p.std().item() == pytest.approx((2 / (512 + 10)) ** 0.5, rel=0.1), name


# ---- encoders --------------------------------------------------------------------------------------------------


def test_audio_encoder_shape():
    enc = AudioEncoder()
    out = enc(torch.randn(2, 1, 32, 16))
    assert out.shape == (2, 512)
    assert enc.trunk[0].in_channels == 1


def test_visual_encoder_shape_and_frame_mean():
    enc = VisualEncoder().eval()  # eval: BN uses running stats, so per-frame and folded batches agree
    video = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        out = enc(video)
        per_frame = torch.stack([enc.trunk(video[:, :, t]).mean(dim=(2, 3)) for t in range(3)], dim=1)
    assert out.shape == (2, 512)
    torch.testing.assert_close(out, per_frame.mean(dim=1), rtol=1e-4, atol=1e-5)


def test_visual_encoder_frames_folded_into_batch_in_train_mode():
    """Train mode: BN statistics come from all B*T frames at once, as in the reference."""
    enc = VisualEncoder().train()
    video = torch.randn(2, 3, 2, 32, 32)
    with torch.no_grad():
        out = enc(video)
        folded = video.transpose(1, 2).reshape(4, 3, 32, 32)
        maps = enc.trunk(folded).mean(dim=(2, 3)).reshape(2, 2, 512)
    torch.testing.assert_close(out, maps.mean(dim=1), rtol=1e-4, atol=1e-5)


def test_visual_encoder_single_frame():
    enc = VisualEncoder().eval()
    video = torch.randn(2, 3, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(enc(video), enc.trunk(video[:, :, 0]).mean(dim=(2, 3)), rtol=1e-4, atol=1e-5)


def test_768_projection():
    audio, visual = AudioEncoder(dim=768), VisualEncoder(dim=768)
    assert audio(torch.randn(2, 1, 32, 16)).shape == (2, 768)
    assert visual(torch.randn(2, 3, 2, 32, 32)).shape == (2, 768)
    proj = visual.proj
    assert isinstance(proj, nn.Conv2d)
    assert (proj.in_channels, proj.out_channels, proj.kernel_size, proj.bias) == (512, 768, (1, 1), None)
    assert isinstance(AudioEncoder().proj, nn.Identity)


def test_visual_768_equals_projected_frame_mean():
    enc = VisualEncoder(dim=768).eval()
    video = torch.randn(1, 3, 2, 32, 32)
    with torch.no_grad():
        per_frame = [enc.proj(enc.trunk(video[:, :, t])).mean(dim=(2, 3)) for t in range(2)]
        torch.testing.assert_close(enc(video), (per_frame[0] + per_frame[1]) / 2, rtol=1e-4, atol=1e-5)


def test_encoder_init():
    enc = AudioEncoder()
    bns = [m for m in enc.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in bns)
    conv1 = enc.trunk[0]
    # kaiming normal, fan_out, relu: std = sqrt(2 / (out_channels * k * k))
    assert conv1.weight.std().item() == pytest.approx((2 / (64 * 7 * 7)) ** 0.5, rel=0.1)


def test_embedding_dim():
    assert embedding_dim(AV) == 512
    assert embedding_dim(("audio",)) == 512
    assert embedding_dim(AVT) == 768
    assert embedding_dim(("text", "visual")) == 768


def test_reference_width_trunk_is_torchvisions_resnet18():
    """Same modules, names and shapes as torchvision's resnet18 (checkpoints of either load into the other)."""
    from torchvision.models import resnet18

    from amst_core.models.encoders import resnet18_trunk

    tv = resnet18(weights=None)
    reference = nn.Sequential(tv.conv1, tv.bn1, tv.relu, tv.maxpool, tv.layer1, tv.layer2, tv.layer3, tv.layer4)
    ours = resnet18_trunk(in_channels=3)
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
        {k: v.shape for k, v in reference.state_dict().items()}


@pytest.mark.parametrize("width", [8, 16])
def test_narrow_encoders(width):
    from amst_core.config import ModelConfig
    from amst_core.models.encoders import build_encoder

    model = ModelConfig(width=width)
    audio = build_encoder("audio", model, embedding_dim(AV, width))
    visual = build_encoder("visual", model, embedding_dim(AVT, width))
    assert audio(torch.randn(2, 1, 32, 16)).shape == (2, 8 * width)
    assert visual(torch.randn(2, 3, 2, 32, 32)).shape == (2, 768)  # projected to the text width
    assert [m.out_channels for m in audio.trunk.modules() if isinstance(m, nn.Conv2d)][-1] == 8 * width
    assert embedding_dim(AV, width) == 8 * width
