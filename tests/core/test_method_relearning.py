"""Diagnosing & Re-learning's rule on tiny tensors, against hand computations: min-max scaling, k-means purity,
the re-initialisation strength and the soft re-initialisation, the diagnosis schedule, the neutral case (a zero
purity gap moves nothing), the initial weights kept for a resume, and bad params refused naming the field."""

from __future__ import annotations

import math

import pytest
import torch

from amst_core.config import ConfigError, load_config
from amst_core.methods.relearning import kmeans, minmax_scale, purity, reinit_strength, soften
from tests.kit.training import method_for


def test_minmax_scale_maps_each_feature_to_minus_one_one() -> None:
    x = torch.tensor([[0.0, 5.0], [2.0, 5.0], [4.0, 5.0]])
    # column 0: 0, 2, 4 -> -1, 0, 1; column 1 is constant -> -1 (sklearn's MinMaxScaler)
    assert minmax_scale(x).tolist() == [[-1.0, -1.0], [0.0, -1.0], [1.0, -1.0]]


def test_purity_is_the_share_in_their_clusters_majority_label() -> None:
    clusters = torch.tensor([0, 0, 0, 1, 1])
    labels = torch.tensor([0, 0, 1, 1, 1])
    assert purity(clusters, labels) == pytest.approx(4 / 5)  # cluster 0: 2 of 3 are 0; cluster 1: 2 of 2 are 1
    assert purity(torch.zeros(4, dtype=torch.long), torch.tensor([0, 1, 2, 2])) == pytest.approx(2 / 4)


def test_kmeans_finds_separated_clusters() -> None:
    x = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [5.0, 5.0], [5.1, 5.0], [5.0, 5.1]])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    clusters = kmeans(x, 2, restarts=2, iters=20)
    assert purity(clusters, labels) == 1.0
    assert clusters[0] == clusters[1] == clusters[2] != clusters[3] == clusters[4] == clusters[5]
    assert torch.equal(kmeans(x, 2, 2, 20), clusters), "seeded: the same clusters every time"


def test_reinit_strength_and_soft_reinitialisation() -> None:
    assert reinit_strength(0.2, 3.0) == pytest.approx(math.tanh(0.6)) == pytest.approx(0.5370496)
    assert reinit_strength(0.0, 3.0) == 0.0
    current, initial = torch.tensor([2.0, -1.0]), torch.tensor([0.0, 1.0])
    assert soften(current, initial, 0.25).tolist() == [1.5, -0.5]  # 0.75 * current + 0.25 * init


def test_diagnoses_after_every_nth_epoch_at_most_max_reinits_times() -> None:
    method = method_for("relearning", method_params={"diagnose_every": 20, "max_reinits": 3})
    # after epochs 20, 40, 60 (so before 21, 41, 61); never after epoch 0; not a fourth time
    assert [e for e in range(100) if method.diagnoses_before(e)] == [21, 41, 61]
    never = method_for("relearning", method_params={"max_reinits": 0})
    assert not any(never.diagnoses_before(e) for e in range(100))


def encoder_params(method, m: str) -> list[torch.Tensor]:
    return [p.detach().clone() for p in method.nets["model"].net.encoders[m].parameters()]


def test_the_encoders_move_back_towards_their_initial_weights_by_alpha() -> None:
    method = method_for("relearning", method_params={"diagnose_every": 1, "move_lambda": 3.0})
    initial = {m: encoder_params(method, m) for m in method.modalities}
    with torch.no_grad():  # training moved the weights
        for m in method.modalities:
            for p in method.nets["model"].net.encoders[m].parameters():
                p.add_(1.0)
    trained = {m: encoder_params(method, m) for m in method.modalities}
    method.diagnose = lambda data: {"audio": 0.2, "visual": 0.0}  # visual: train and val cluster alike
    method.before_epoch(2, None)
    alpha = math.tanh(3.0 * 0.2)
    for before, init, now in zip(trained["audio"], initial["audio"], encoder_params(method, "audio"), strict=True):
        assert torch.allclose(now, (1 - alpha) * before + alpha * init)
    for before, now in zip(trained["visual"], encoder_params(method, "visual"), strict=True):
        assert torch.equal(now, before), "no purity gap: not re-initialised at all"
    points = {(p.modality, p.name): p.value for p in method.after_validation(2, [])}
    assert points[("audio", "reinit_strength")] == pytest.approx(alpha)
    assert points[("audio", "learning_state")] == pytest.approx(0.2) and points[("visual", "reinit_strength")] == 0
    method.diagnose = lambda data: pytest.fail("a fourth re-initialisation (max_reinits 3)")
    method.before_epoch(5, None)  # after epochs 1, 2, 3 (before 2, 3, 4), not after epoch 4
    assert method.after_validation(5, [])[1].value == 0.0, "reinit_strength 0 in an epoch without one"


def test_the_initial_weights_survive_a_resume_and_stay_out_of_best_pt() -> None:
    method = method_for("relearning")
    initial = encoder_params(method, "visual")
    state = method.state_dict()
    resumed = method_for("relearning")
    resumed.initial = {m: [torch.zeros_like(t) for t in ts] for m, ts in resumed.initial.items()}
    resumed.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(resumed.initial["visual"], initial, strict=True))
    assert "initial" not in method.model_state_dict()["extra"]


@pytest.mark.parametrize(("params", "field"), [
    ({"diagnose_every": 0}, "diagnose_every"), ({"max_reinits": -1}, "max_reinits"),
    ({"move_lambda": -1.0}, "move_lambda"), ({"kmeans_restarts": 0}, "kmeans_restarts"),
])
def test_bad_params_are_refused_naming_the_field(params: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(base={"dataset": {"name": "synthetic"}, "method": "relearning", "method_params": params})
    assert str(err.value).startswith(f"method_params.{field}: "), str(err.value)
