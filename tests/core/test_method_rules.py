"""The rules of AMST (amst_method.md sections 1 and 8) checked on real updates of tiny models."""

from __future__ import annotations

import copy

import pytest
import torch

from amst_core.methods.base import Method
from tests.kit.training import batches, method_for

AMST = ["amst_alt", "amst_joint", "amst_full"]


def train(method: Method, epoch: int, n: int = 3) -> None:
    method.train_mode(True)
    for batch in batches(method.cfg, n):
        method.train_batch(batch, epoch)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def momentum(method: Method, key: str, modality: str) -> list[torch.Tensor]:
    trained = method.nets[key]
    opt = trained.optimizers["encoders"]
    return [opt.state[p]["momentum_buffer"].clone() for p in trained.net.encoders[modality].parameters()]


def params_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], with_bn_stats: bool) -> bool:
    keys = [k for k in a if with_bn_stats or not ("running" in k or "num_batches" in k)]
    return all(torch.equal(a[k], b[k]) for k in keys)


def bn_stats(state: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    return [v for k, v in state.items() if "running_mean" in k]


@pytest.mark.parametrize("mode", ["faithful", "fast"])
@pytest.mark.parametrize("name", AMST)
def test_skipped_encoder_and_its_head_slice_do_not_move(name: str, mode: str) -> None:
    method = method_for(name, skip={"audio": 2}, method_params={"skip_mode": mode})
    train(method, epoch=0)  # both modalities trained: momentum buffers exist for every encoder
    before = {k: snapshot(t.net.encoders["audio"]) for k, t in method.nets.items()}
    visual_before = {k: snapshot(t.net.encoders["visual"]) for k, t in method.nets.items()}
    heads = {k: snapshot(t.net.head) for k, t in method.nets.items()}
    moms = {k: momentum(method, k, "audio") for k in method.nets}

    train(method, epoch=1)  # 1 % 2 != 0: audio skipped

    for key, trained in method.nets.items():
        after = snapshot(trained.net.encoders["audio"])
        assert params_equal(before[key], after, with_bn_stats=False), f"{key}: audio weights moved"
        for old, new in zip(moms[key], momentum(method, key, "audio"), strict=True):
            assert torch.equal(old, new), f"{key}: audio momentum moved"
        bn_moved = any(not torch.equal(o, n) for o, n in zip(bn_stats(before[key]), bn_stats(after), strict=True))
        assert bn_moved == (mode == "faithful"), f"{key}: BN statistics rule broken in {mode} mode"
        assert not params_equal(visual_before[key], snapshot(trained.net.encoders["visual"]), with_bn_stats=False)
        head_after = snapshot(trained.net.head)
        if "weights.audio.weight" in head_after:  # concat head: per-modality slice W_audio
            assert torch.equal(heads[key]["weights.audio.weight"], head_after["weights.audio.weight"])
            assert not torch.equal(heads[key]["weights.visual.weight"], head_after["weights.visual.weight"])
            assert not torch.equal(heads[key]["bias"], head_after["bias"]), "the shared bias still trains"


@pytest.mark.parametrize("name", AMST)
def test_updated_epoch_moves_every_encoder(name: str) -> None:
    method = method_for(name, skip={"audio": 2})
    before = {k: snapshot(t.net.encoders["audio"]) for k, t in method.nets.items()}
    train(method, epoch=2)  # 2 % 2 == 0
    for key, trained in method.nets.items():
        assert not params_equal(before[key], snapshot(trained.net.encoders["audio"]), with_bn_stats=False)


def count_steps(method: Method, key: str, part: str) -> list[int]:
    calls = [0]
    opt = method.nets[key].optimizers[part]
    original = opt.step

    def counted(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    opt.step = counted
    return calls


@pytest.mark.parametrize(("epoch", "head_steps"), [(0, 2), (1, 1)])
def test_alt_steps_shared_head_once_per_updated_modality(epoch: int, head_steps: int) -> None:
    method = method_for("amst_alt", skip={"audio": 2})
    head, enc = count_steps(method, "model", "head"), count_steps(method, "model", "encoders")
    train(method, epoch=epoch, n=2)
    assert head[0] == 2 * head_steps
    assert enc[0] == 2  # one encoder step per batch after the head's steps: each encoder still moves once
    method.one_encoder_backward = False  # fp16 / gradient hooks: a backward and a step of both parts per loss
    train(method, epoch=epoch, n=2)
    assert head[0] == 4 * head_steps and enc[0] == 2 + 2 * head_steps


def test_alt_update_matches_hand_written_reference() -> None:
    """One batch of AMST-ALT equals: for m in sorted order, CE(W E_m + b) -> backward -> step head and encoder."""
    method = method_for("amst_alt")
    reference = copy.deepcopy(method)
    batch = batches(method.cfg, 1)[0]
    method.train_mode(True)
    method.train_batch(batch, epoch=0)

    trained = reference.nets["model"]
    trained.net.train(True)
    embeddings = trained.net.embed(batch, ("audio", "visual"))
    for m in ("audio", "visual"):
        logits = trained.net.head.linear(embeddings[m])
        loss = torch.nn.functional.cross_entropy(logits, batch["label"])
        for part in ("head", "encoders"):
            trained.optimizers[part].zero_grad(set_to_none=True)
        loss.backward()
        trained.optimizers["head"].step()
        trained.optimizers["encoders"].step()
    for (name, a), b in zip(method.nets["model"].net.named_parameters(), trained.net.parameters(), strict=True):
        if not name.startswith("helpers"):
            torch.testing.assert_close(a, b, msg=name)


def test_joint_leaves_skipped_modality_out_of_the_sum() -> None:
    method = method_for("amst_joint", skip={"audio": 2})
    seen: list[tuple[str, ...]] = []
    head = method.nets["model"].net.head
    original = head.forward

    def recording(embeddings):
        seen.append(tuple(m for m, e in embeddings.items() if e is not None))
        return original(embeddings)

    head.forward = recording
    train(method, epoch=1, n=1)
    assert seen == [("visual",)]


def test_joint_skips_batch_when_every_modality_is_skipped() -> None:
    method = method_for("amst_joint", skip={"audio": 2, "visual": 3})
    enc = count_steps(method, "model", "encoders")
    train(method, epoch=1, n=2)
    assert enc[0] == 0


@pytest.mark.parametrize("update", ["alt", "joint"])
def test_full_prediction_averages_n_alt_branches_and_joint(update: str) -> None:
    method = method_for("amst_full", method_params={"full_joint_update": update})
    train(method, epoch=0, n=1)
    method.train_mode(False)
    batch = batches(method.cfg, 1)[0]
    out = method.eval_batch(batch)
    n = 2
    alt_mean = (out[("alt_branch", "audio")] + out[("alt_branch", "visual")]) / 2
    torch.testing.assert_close(out[("alt", None)], alt_mean)
    torch.testing.assert_close(out[("joint", None)], out[("joint_branch", "audio")] + out[("joint_branch", "visual")])
    torch.testing.assert_close(out[("fused", None)], (n * alt_mean + out[("joint", None)]) / (n + 1))
    for component in ("alt_helper", "joint_helper"):  # decision 5: both sub-models' helpers are reported
        assert (component, "audio") in out and (component, "visual") in out


def test_full_joint_update_modes_differ() -> None:
    alt, joint = method_for("amst_full"), method_for("amst_full", method_params={"full_joint_update": "joint"})
    train(alt, epoch=0, n=1)
    train(joint, epoch=0, n=1)
    assert torch.equal(alt.nets["alt"].net.head.linear.weight, joint.nets["alt"].net.head.linear.weight)
    assert not torch.equal(alt.nets["joint"].net.head.bias, joint.nets["joint"].net.head.bias)


def test_helpers_never_touch_encoders() -> None:
    method = method_for("naive")
    trained = method.nets["model"]
    batch = batches(method.cfg, 1)[0]
    embeddings = trained.net.embed(batch, ("audio", "visual"))
    helper_logits = trained.net.helpers(embeddings)
    sum(h.sum() for h in helper_logits.values()).backward()
    assert all(p.grad is None for p in trained.net.encoders.parameters())


def test_fast_mode_skipped_modality_absent_from_train_outputs() -> None:
    method = method_for("amst_alt", skip={"audio": 2}, method_params={"skip_mode": "fast"})
    method.train_mode(True)
    out = method.train_batch(batches(method.cfg, 1)[0], epoch=1)
    assert ("branch", "audio") not in out and ("helper", "audio") not in out
    assert ("branch", "visual") in out and ("fused", None) in out


@pytest.mark.parametrize("name", AMST)
def test_fast_and_faithful_train_the_same_weights(name: str) -> None:
    """BatchNorm uses batch statistics in training, so skipping the forward changes no weight, only BN buffers."""
    faithful = method_for(name, skip={"audio": 2})
    fast = method_for(name, skip={"audio": 2}, method_params={"skip_mode": "fast"})
    for epoch in (0, 1):
        train(faithful, epoch, n=2)
        train(fast, epoch, n=2)
    for key in faithful.nets:
        a = dict(faithful.nets[key].net.named_parameters())
        b = dict(fast.nets[key].net.named_parameters())
        for param_name, value in a.items():
            if param_name.startswith("helpers.linears.audio"):
                assert not torch.equal(value, b[param_name]), "the skipped helper trains only in faithful mode"
            else:
                assert torch.equal(value, b[param_name]), f"{key}.{param_name}"


@pytest.mark.parametrize(("name", "fields"), [
    ("amst_full", {}), ("amst_full", {"skip": {"audio": 2}}), ("amst_alt", {}), ("mla", {}),
    ("amst_full", {"method_params": {"full_joint_update": "joint"}}),
])
def test_one_encoder_backward_equals_a_backward_and_step_per_modality(name: str, fields: dict) -> None:
    """The restructured alternating update (head steps per modality, then one backward through the encoders and
    one encoder step) moves every weight and momentum buffer exactly as a backward and a step of head and
    encoders per modality, over several batches (momentum and weight decay in play) and a skipped epoch."""
    per_loss, restructured = method_for(name, **fields), method_for(name, **fields)
    restructured.load_state_dict(copy.deepcopy(per_loss.state_dict()))
    assert restructured.one_encoder_backward
    per_loss.one_encoder_backward = False
    for epoch in (0, 1):
        train(per_loss, epoch)
        train(restructured, epoch)
    for key, trained in per_loss.nets.items():
        other = restructured.nets[key]
        assert params_equal(snapshot(trained.net), snapshot(other.net), with_bn_stats=True), key
        for part, opt in trained.optimizers.items():
            mine = [opt.state[p].get("momentum_buffer") for p in trained.net.parameters() if p in opt.state]
            theirs = [other.optimizers[part].state[p].get("momentum_buffer") for p in other.net.parameters()
                      if p in other.optimizers[part].state]
            assert len(mine) == len(theirs) and all(torch.equal(a, b) for a, b in zip(mine, theirs, strict=True))


def test_fp16_and_gradient_hooks_keep_a_backward_per_loss() -> None:
    assert not method_for("ogm_ge").one_encoder_backward  # its hook modulates each step's encoder gradients
    assert method_for("amst_full", precision="bf16").one_encoder_backward
