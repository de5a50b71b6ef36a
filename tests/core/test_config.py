"""RunConfig: reference defaults, YAML + --set loading, validation that names the field, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from amst_core.config import ConfigError, RunConfig, dump_config, load_config

AVDIGITS = {"dataset": {"name": "avdigits"}, "method": "amst_alt"}


def write_yaml(tmp_path: Path, data: object, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def config_error(data: object, tmp_path: Path, overrides: list[str] | None = None) -> str:
    path = write_yaml(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    return str(info.value)


def with_(**changes: object) -> dict:
    data = {"dataset": {"name": "avdigits"}, "method": "amst_alt"}
    data.update(changes)
    return data


# ---- defaults ------------------------------------------------------------------------------------------------


def test_defaults_are_the_reference_settings():
    """CREMA-D is the reference's own dataset: what a request leaves out is the reference code's setting (its
    skip factor too; amst_core.recipes)."""
    cfg = RunConfig.model_validate({**AVDIGITS, "dataset": {"name": "cremad"}})
    assert cfg.optim.lr == 1e-3
    assert cfg.optim.momentum == 0.9
    assert cfg.optim.weight_decay == 1e-4
    assert cfg.optim.lr_step == 70
    assert cfg.optim.lr_gamma == 0.1
    assert cfg.epochs == 100
    assert cfg.batch_size == 64
    assert cfg.seed == 0
    assert (cfg.model.frames, cfg.model.image_size, cfg.model.audio_frames, cfg.model.mel_bins) == (3, 224, 1024, 128)
    assert cfg.model.text_trainable_layers == 5
    assert (cfg.skip.audio, cfg.skip.visual, cfg.skip.text) == (5, 1, 1)  # the paper's CREMA-D factor
    assert cfg.device == "auto"
    assert cfg.precision == "fp32"
    assert cfg.fusion is None
    assert cfg.tags == []


def test_fields_left_out_take_the_datasets_own_values():
    """The README's request: avdigits gets its MFCC and MNIST shapes, not CREMA-D's 1024 x 128 fbank."""
    cfg = RunConfig.model_validate({"method": "amst_full", "dataset": {"name": "avdigits", "preset": "hard"},
                                    "skip": {"audio": 3}, "epochs": 20})
    assert (cfg.model.frames, cfg.model.image_size, cfg.model.audio_frames, cfg.model.mel_bins) == (1, 28, 48, 13)
    given = RunConfig.model_validate({**AVDIGITS, "model": {"image_size": 56}})
    assert (given.model.image_size, given.model.mel_bins) == (56, 13)  # what is given wins, the rest defaults
    assert RunConfig.model_validate(given.model_dump()).model == given.model  # a stored config round-trips
    with pytest.raises(ValidationError, match="model"):
        RunConfig.model_validate({**AVDIGITS, "model": 5})  # a wrong type is still reported, not merged


def test_split_files_cannot_leave_the_dataset_folder():
    for bad in ("/etc/passwd", "../other/train.txt", "a/../../b", ""):
        with pytest.raises(ValidationError, match=r"split_files\.train"):
            RunConfig.model_validate({**AVDIGITS, "dataset": {"name": "cremad", "split_files": {
                "train": bad, "val": "v.txt", "test": "t.txt"}}})
    ok = RunConfig.model_validate({**AVDIGITS, "dataset": {"name": "cremad", "split_files": {
        "train": "splits/train.txt", "val": "v.txt", "test": "t.txt"}}})
    assert ok.dataset.split_files.train == "splits/train.txt"


def test_defaults_are_not_shared_between_instances():
    a = RunConfig.model_validate(AVDIGITS)
    b = RunConfig.model_validate(AVDIGITS)
    a.tags.append("x")
    a.optim.lr = 0.5
    assert b.tags == []
    assert b.optim.lr == 0.01  # avdigits' recipe


@pytest.mark.parametrize(
    ("method", "params", "fusion_head"),
    [
        ("naive", {}, "concat"),
        ("amst_alt", {"skip_mode": "faithful"}, "msum"),
        ("amst_joint", {"skip_mode": "faithful"}, "concat"),
        ("amst_full", {"skip_mode": "faithful", "full_joint_update": "alt"}, "concat"),
    ],
)
def test_method_params_defaults_filled(method, params, fusion_head):
    cfg = RunConfig.model_validate({"dataset": {"name": "avdigits"}, "method": method})
    assert cfg.method_params == params
    assert cfg.fusion_head == fusion_head


def test_method_params_given_values_kept():
    cfg = RunConfig.model_validate({"dataset": {"name": "avdigits"}, "method": "amst_full",
                                    "method_params": {"full_joint_update": "joint", "skip_mode": "fast"}})
    assert cfg.method_params == {"skip_mode": "fast", "full_joint_update": "joint"}
    assert cfg.params.full_joint_update == "joint"


# ---- loading -------------------------------------------------------------------------------------------------


def test_load_yaml_file(tmp_path):
    path = write_yaml(tmp_path, {"dataset": {"name": "avdigits", "preset": "hard"}, "method": "amst_full",
                                 "skip": {"audio": 3}, "epochs": 20, "optim": {"lr": 0.01}})
    cfg = load_config(path)
    assert cfg.method == "amst_full"
    assert cfg.dataset.preset == "hard"
    assert cfg.dataset.knob("image_pca_energy") == 0.95
    assert cfg.dataset.knob("audio_noise") == 1.0
    assert cfg.skip.audio == 3
    assert cfg.skip.visual == 1
    assert cfg.epochs == 20
    assert cfg.optim.lr == 0.01
    assert cfg.optim.momentum == 0.9  # untouched sibling keeps its default


def test_overrides_nested_typed_and_lists(tmp_path):
    path = write_yaml(tmp_path, {"dataset": {"name": "avdigits"}, "method": "amst_alt", "optim": {"lr": 0.01}})
    cfg = load_config(path, [
        "optim.lr=0.05",            # nested, float
        "skip.audio=4",             # nested, int
        "epochs=7",
        "deterministic=false",      # YAML bool
        "tags=[a, b]",              # YAML list
        "dataset.modalities_used=[audio]",
        "model.frames = 2",         # spaces around the key are tolerated
        "method_params.skip_mode=fast",
        "name=my run",
    ])
    assert cfg.optim.lr == 0.05
    assert cfg.optim.momentum == 0.9
    assert cfg.skip.audio == 4
    assert cfg.epochs == 7
    assert cfg.deterministic is False
    assert cfg.tags == ["a", "b"]
    assert cfg.modalities == ("audio",)
    assert cfg.model.frames == 2
    assert cfg.method_params == {"skip_mode": "fast"}
    assert cfg.name == "my run"


def test_overrides_create_missing_sections(tmp_path):
    path = write_yaml(tmp_path, {"dataset": {"name": "avdigits"}, "method": "amst_alt"})
    cfg = load_config(path, ["model.mel_bins=13", "dataset.audio_noise=0.5"])
    assert cfg.model.mel_bins == 13
    assert cfg.model.image_size == 28  # avdigits' own default
    assert cfg.dataset.knob("audio_noise") == 0.5


def test_override_value_with_equals_sign(tmp_path):
    path = write_yaml(tmp_path, AVDIGITS)
    cfg = load_config(path, ["name=a=b"])
    assert cfg.name == "a=b"


def test_overrides_without_file_use_base():
    cfg = load_config(None, ["epochs=3"], base=dict(AVDIGITS))
    assert cfg.epochs == 3
    assert cfg.method == "amst_alt"


# ---- errors name the field ----------------------------------------------------------------------------------


def _lines_starting(message: str, field: str) -> list[str]:
    return [line for line in message.splitlines() if line.startswith(field)]


def test_unknown_method(tmp_path):
    msg = config_error(with_(method="amst_nope"), tmp_path)
    assert _lines_starting(msg, "method:"), msg
    assert "amst_nope" in msg


@pytest.mark.parametrize("factor", [0, -2])
def test_skip_factor_below_one(tmp_path, factor):
    msg = config_error(with_(skip={"audio": factor}), tmp_path)
    assert _lines_starting(msg, "skip.audio:"), msg


def test_skip_factor_zero_via_set(tmp_path):
    path = write_yaml(tmp_path, AVDIGITS)
    with pytest.raises(ConfigError) as info:
        load_config(path, ["skip.text=0"])
    assert _lines_starting(str(info.value), "skip.text:"), str(info.value)


def test_unknown_dataset(tmp_path):
    msg = config_error({"dataset": {"name": "mnist9"}, "method": "naive"}, tmp_path)
    assert _lines_starting(msg, "dataset.name:"), msg
    assert "mnist9" in msg


@pytest.mark.parametrize("root", ["/abs/avdigits", "../outside", "data/../../x", "a/../.."])
def test_dataset_root_outside_data_root_is_refused_by_the_service_not_the_cli(tmp_path, monkeypatch, root):
    """A config may name any folder (`amst train` reads the user's own paths); the service's check confines it."""
    from amst_core import datafiles

    monkeypatch.setenv("AMST_DATA_ROOT", str(tmp_path / "data"))
    cfg = load_config(write_yaml(tmp_path, {"dataset": {"name": "avdigits", "root": root}, "method": "naive"}))
    with pytest.raises(ConfigError, match=r"^dataset\.root: .*outside AMST_DATA_ROOT"):
        datafiles.check_dataset(cfg)
    monkeypatch.setattr(datafiles, "_confined", False)  # what the CLI's train and evaluate do
    with pytest.raises(ConfigError, match=r"^dataset\.root: .*no avdigits data"):
        datafiles.check_dataset(cfg)


def test_an_empty_dataset_root_is_refused(tmp_path):
    msg = config_error({"dataset": {"name": "avdigits", "root": ""}, "method": "naive"}, tmp_path)
    assert _lines_starting(msg, "dataset.root:"), msg


@pytest.mark.parametrize("root", ["avdigits", "sub/avdigits_v2"])
def test_dataset_root_relative_ok(tmp_path, root):
    cfg = load_config(write_yaml(tmp_path, {"dataset": {"name": "avdigits", "root": root}, "method": "naive"}))
    assert cfg.dataset.root == root


def test_unknown_preset(tmp_path):
    msg = config_error({"dataset": {"name": "avdigits", "preset": "brutal"}, "method": "naive"}, tmp_path)
    assert "dataset.preset" in msg, msg
    assert "brutal" in msg


@pytest.mark.parametrize(("knob", "value"), [("preset", "hard"), ("image_pca_energy", 0.5), ("audio_noise", 0.1)])
def test_avdigits_knobs_on_other_dataset(tmp_path, knob, value):
    msg = config_error({"dataset": {"name": "synthetic", knob: value}, "method": "naive"}, tmp_path)
    assert f"dataset.{knob}" in msg, msg
    assert "avdigits" in msg


def test_pca_energy_out_of_range(tmp_path):
    msg = config_error({"dataset": {"name": "avdigits", "image_pca_energy": 1.0}, "method": "naive"}, tmp_path)
    assert _lines_starting(msg, "dataset.image_pca_energy:"), msg


def test_unknown_method_param(tmp_path):
    msg = config_error(with_(method="amst_alt", method_params={"alpha": 0.1}), tmp_path)
    assert "method_params.alpha" in msg, msg


def test_method_param_on_method_without_params(tmp_path):
    msg = config_error(with_(method="naive", method_params={"skip_mode": "fast"}), tmp_path)
    assert "method_params.skip_mode" in msg, msg


def test_bad_full_joint_update(tmp_path):
    msg = config_error(with_(method="amst_full", method_params={"full_joint_update": "both"}), tmp_path)
    assert "method_params.full_joint_update" in msg, msg


def test_full_joint_update_only_for_full(tmp_path):
    msg = config_error(with_(method="amst_alt", method_params={"full_joint_update": "joint"}), tmp_path)
    assert "method_params.full_joint_update" in msg, msg


@pytest.mark.parametrize(("method", "fusion"), [("amst_alt", "lsum"), ("amst_alt", "concat"),
                                                 ("amst_joint", "msum"), ("amst_full", "lsum")])
def test_fusion_on_amst_method(tmp_path, method, fusion):
    msg = config_error(with_(method=method, fusion=fusion), tmp_path)
    assert _lines_starting(msg, "fusion:"), msg


@pytest.mark.parametrize("fusion", ["concat", "lsum", "msum"])
def test_fusion_on_naive_is_free(fusion):
    cfg = RunConfig.model_validate(with_(method="naive", fusion=fusion))
    assert cfg.fusion_head == fusion


def test_unknown_fusion(tmp_path):
    msg = config_error(with_(method="naive", fusion="gated"), tmp_path)
    assert _lines_starting(msg, "fusion:"), msg


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:x", "cuda:-1", "CPU", "mps0"])
def test_bad_device(tmp_path, device):
    msg = config_error(with_(device=device), tmp_path)
    assert _lines_starting(msg, "device:"), msg


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_good_device(device):
    assert RunConfig.model_validate(with_(device=device)).device == device


def test_unknown_top_level_field(tmp_path):
    msg = config_error(with_(learning_rate=0.1), tmp_path)
    assert _lines_starting(msg, "learning_rate:"), msg


def test_unknown_nested_field(tmp_path):
    msg = config_error(with_(optim={"lr": 0.1, "nesterov": True}), tmp_path)
    assert _lines_starting(msg, "optim.nesterov:"), msg


def test_every_problem_reported_on_its_own_line(tmp_path):
    msg = config_error(with_(skip={"audio": 0, "visual": 0}, epochs=0), tmp_path)
    assert _lines_starting(msg, "skip.audio:")
    assert _lines_starting(msg, "skip.visual:")
    assert _lines_starting(msg, "epochs:")


@pytest.mark.parametrize("content", ["- a\n- b\n", "just a string\n", "42\n", ""])
def test_non_mapping_yaml(tmp_path, content):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.field == "config"
    assert str(info.value).startswith("config:")


def test_invalid_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("dataset: {name: avdigits\nmethod: [\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.field == "config"


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert info.value.field == "config"
    assert "nope.yaml" in str(info.value)


def test_set_without_equals(tmp_path):
    path = write_yaml(tmp_path, AVDIGITS)
    with pytest.raises(ConfigError) as info:
        load_config(path, ["optim.lr"])
    assert info.value.field == "optim.lr"
    assert "key.path=value" in str(info.value)


def test_set_through_a_scalar(tmp_path):
    path = write_yaml(tmp_path, AVDIGITS)
    with pytest.raises(ConfigError) as info:
        load_config(path, ["method.name=naive"])
    assert info.value.field == "method.name"
    assert "not a section" in str(info.value)


def test_set_with_empty_key_part(tmp_path):
    path = write_yaml(tmp_path, AVDIGITS)
    with pytest.raises(ConfigError) as info:
        load_config(path, ["optim..lr=0.1"])
    assert "optim..lr" in str(info.value)


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)
    err = ConfigError("skip.audio", "too small")
    assert str(err) == "skip.audio: too small"
    assert err.field == "skip.audio"


# ---- modalities ------------------------------------------------------------------------------------------------


def test_modalities_default_to_the_dataset():
    assert RunConfig.model_validate(AVDIGITS).modalities == ("audio", "visual")


@pytest.mark.parametrize(("used", "expected"), [(["audio"], ("audio",)), (["visual"], ("visual",)),
                                                (["visual", "audio"], ("audio", "visual"))])
def test_modalities_used_subset(used, expected):
    cfg = RunConfig.model_validate({"dataset": {"name": "avdigits", "modalities_used": used}, "method": "naive"})
    assert cfg.modalities == expected
    assert cfg.dataset.all_modalities == ("audio", "visual")


@pytest.mark.parametrize("used", [["text"], ["audio", "text"], []])
def test_modalities_used_rejects_missing_modality(tmp_path, used):
    msg = config_error({"dataset": {"name": "avdigits", "modalities_used": used}, "method": "naive"}, tmp_path)
    assert "dataset.modalities_used" in msg, msg


def test_modalities_used_follows_synthetic_modalities(tmp_path):
    data = {"dataset": {"name": "synthetic", "synthetic": {"modalities": ["text", "audio"]},
                        "modalities_used": ["text"]}, "method": "naive"}
    cfg = RunConfig.model_validate(data)
    assert cfg.dataset.all_modalities == ("audio", "text")
    assert cfg.modalities == ("text",)
    data["dataset"]["modalities_used"] = ["visual"]
    msg = config_error(data, tmp_path)
    assert "dataset.modalities_used" in msg


def test_skip_factor_for_absent_modality_is_accepted():
    cfg = RunConfig.model_validate(with_(skip={"audio": 5, "text": 10}))
    assert cfg.skip.factor("text") == 10
    assert cfg.skip.factor("audio") == 5
    assert "text" not in cfg.modalities


def test_synthetic_block_only_for_synthetic(tmp_path):
    msg = config_error({"dataset": {"name": "avdigits", "synthetic": {"num_classes": 3}}, "method": "naive"},
                       tmp_path)
    assert "dataset.synthetic" in msg


def test_synthetic_defaults_filled():
    cfg = RunConfig.model_validate({"dataset": {"name": "synthetic"}, "method": "naive"})
    assert cfg.dataset.synthetic is not None
    assert cfg.modalities == ("audio", "visual")


# ---- round trip ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [
    AVDIGITS,
    {"name": "full", "tags": ["x", "y"], "dataset": {"name": "avdigits", "preset": "hard", "audio_noise": 0.3,
                                                      "modalities_used": ["audio", "visual"]},
     "method": "amst_full", "method_params": {"full_joint_update": "joint"}, "skip": {"audio": 5, "text": 10},
     "optim": {"lr": 0.02, "lr_step": 15}, "epochs": 3, "device": "cuda:1", "precision": "bf16"},
    {"dataset": {"name": "synthetic", "synthetic": {"modalities": ["audio", "text", "visual"], "num_classes": 3,
                                                    "samples": {"train": 12, "val": 6, "test": 6},
                                                    "audio_shape": [8, 4]}},
     "method": "naive", "fusion": "lsum", "seed": 7},
])
def test_dump_and_load_round_trip(tmp_path, data):
    cfg = RunConfig.model_validate(data)
    text = dump_config(cfg)
    path = tmp_path / "dumped.yaml"
    path.write_text(text)
    again = load_config(path)
    assert again == cfg
    assert again.model_dump(mode="json") == cfg.model_dump(mode="json")
    assert dump_config(again) == text
    # The dump is the full resolved config: defaults are written out.
    dumped = yaml.safe_load(text)
    assert dumped["optim"]["momentum"] == 0.9
    assert dumped["model"]["frames"] == cfg.model.frames
    assert dumped["method_params"] == cfg.method_params


def test_deterministic_unset_means_exact_on_a_cpu_and_autotuned_on_a_gpu():
    import torch

    from amst_core.engine import deterministic_for

    assert load_config(base={"method": "naive", "dataset": {"name": "synthetic"}}).deterministic is None
    assert deterministic_for(None, torch.device("cpu")) is True
    assert deterministic_for(None, torch.device("cuda")) is False
    assert deterministic_for(True, torch.device("cuda")) is True
    assert deterministic_for(False, torch.device("cpu")) is False
