"""ui.form: the New run form's body, its starting config, where an API error is shown, and parameter widgets."""

from __future__ import annotations

import copy

from amst_core.catalog import METHODS
from amst_core.vocab import MODALITIES
from ui.form import deep_merge, param_widgets, run_body, slot_for, starting_config

NAIVE = {"name": "naive", "fusion_fixed": False, "uses_skip": False, "default_fusion": "concat"}
AMST_FULL = {"name": "amst_full", "fusion_fixed": True, "uses_skip": True, "default_fusion": "concat"}
AVDIGITS = {"name": "avdigits", "modalities": ["audio", "visual"],
            "suggested": {"dataset": {"preset": "hard"}, "skip": {"audio": 3}, "optim": {"lr": 0.01}}}
SYNTHETIC = {"name": "synthetic", "modalities": ["audio", "visual"],
             "suggested": {"model": {"frames": 1}, "optim": {"lr": 0.05}, "epochs": 5}}

PREFILL = {  # a stored run's config, as GET /runs/{id} gives it to "Re-run"
    "id": "old-run", "status": "succeeded", "name": "old", "tags": ["a"], "method": "naive", "fusion": "lsum",
    "dataset": {"name": "avdigits", "preset": "hard", "audio_noise": 0.5},
    "skip": {"audio": 1, "visual": 1, "text": 1}, "method_params": {},
    "optim": {"lr": 0.01, "momentum": 0.8, "weight_decay": 0.001, "lr_step": 30, "lr_gamma": 0.5},
    "model": {"frames": 2, "image_size": 64, "audio_frames": 256, "mel_bins": 64},
    "epochs": 30, "batch_size": 32, "seed": 4, "device": "cpu",
}


def test_deep_merge_merges_nested_dicts_without_touching_its_inputs():
    base = {"a": {"x": 1, "y": {"p": 1}}, "b": [1]}
    update = {"a": {"y": {"q": 2}, "z": 3}, "b": [2], "c": {"n": 1}}
    before = copy.deepcopy((base, update))
    out = deep_merge(base, update)
    assert out == {"a": {"x": 1, "y": {"p": 1, "q": 2}, "z": 3}, "b": [2], "c": {"n": 1}}
    assert (base, update) == before
    out["c"]["n"] = 9
    assert update["c"]["n"] == 1


def test_deep_merge_replaces_a_non_dict_with_a_dict():
    assert deep_merge({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}
    assert deep_merge({"a": {"b": 2}}, {"a": None}) == {"a": None}


def test_starting_config_uses_the_prefill_for_the_same_dataset():
    start = starting_config(PREFILL, AVDIGITS)
    assert start == PREFILL
    assert start is not PREFILL
    start["optim"]["lr"] = 1.0
    assert PREFILL["optim"]["lr"] == 0.01


def test_a_rerun_of_a_sweeps_run_leaves_the_servers_sweep_tag_out():
    """Since issue 21 a request may not set `sweep:` tags; a sweep's run copied before that carries one."""
    prefill = {**PREFILL, "tags": ["mine", "sweep:0123456789abcdef"]}
    assert starting_config(prefill, AVDIGITS)["tags"] == ["mine"]


def test_starting_config_uses_the_dataset_suggestion_for_another_dataset():
    assert starting_config(PREFILL, SYNTHETIC) == {"dataset": {"name": "synthetic"}, "model": {"frames": 1},
                                                   "optim": {"lr": 0.05}, "epochs": 5}
    assert starting_config(None, AVDIGITS) == {"dataset": {"name": "avdigits", "preset": "hard"},
                                               "skip": {"audio": 3}, "optim": {"lr": 0.01}}
    assert starting_config({}, {"name": "bare"}) == {"dataset": {"name": "bare"}}


def test_run_body_keeps_what_the_form_does_not_show():
    values = {"name": "again", "tags": ["x", "y"], "preset": "hard", "skip": {"audio": 4, "visual": 2},
              "method_params": {"skip_mode": "fast", "full_joint_update": "joint"}, "epochs": 12, "batch_size": 16,
              "seed": 7, "device": "cuda", "lr": 0.003}
    body = run_body(starting_config(PREFILL, AVDIGITS), AMST_FULL, AVDIGITS, values)
    assert body == {
        "name": "again", "tags": ["x", "y"], "method": "amst_full",
        "dataset": {"name": "avdigits", "preset": "hard", "audio_noise": 0.5},
        "skip": {"audio": 4, "visual": 2, "text": 1},
        "method_params": {"skip_mode": "fast", "full_joint_update": "joint"},
        "optim": {"lr": 0.003, "momentum": 0.8, "weight_decay": 0.001, "lr_step": 30, "lr_gamma": 0.5},
        "model": {"frames": 2, "image_size": 64, "audio_frames": 256, "mel_bins": 64},
        "epochs": 12, "batch_size": 16, "seed": 7, "device": "cuda",
    }
    assert "fusion" not in body  # AMST methods fix their own fusion
    assert "id" not in body and "status" not in body
    assert PREFILL["fusion"] == "lsum" and PREFILL["optim"]["lr"] == 0.01  # the prefill is left alone


def test_run_body_for_a_method_without_skip_empties_skip_and_sets_fusion():
    values = {"name": "", "tags": [], "fusion": "msum", "epochs": 3, "lr": 0.5}
    body = run_body(starting_config(PREFILL, AVDIGITS), NAIVE, AVDIGITS, values)
    assert body["skip"] == {}
    assert body["fusion"] == "msum"
    assert body["name"] is None
    assert body["tags"] == []
    assert body["method"] == "naive"
    assert body["method_params"] == {}
    assert body["optim"]["lr"] == 0.5 and body["optim"]["momentum"] == 0.8
    assert body["model"]["image_size"] == 64
    assert body["epochs"] == 3 and body["batch_size"] == 32 and body["seed"] == 4  # unset values: as they were


def test_run_body_keeps_the_prefilled_fusion_when_the_form_gives_none():
    body = run_body(starting_config(PREFILL, AVDIGITS), NAIVE, AVDIGITS, {"name": "n"})
    assert body["fusion"] == "lsum"


def test_run_body_from_a_dataset_suggestion():
    values = {"name": "fresh", "tags": ["t"], "skip": {"audio": 3, "visual": 1},
              "method_params": {"skip_mode": "faithful", "full_joint_update": "alt"}, "epochs": 5, "batch_size": 8,
              "seed": 0, "device": "auto", "lr": 0.05, "model": {"image_size": 32}}
    body = run_body(starting_config(None, SYNTHETIC), AMST_FULL, SYNTHETIC, values)
    assert body == {"dataset": {"name": "synthetic"}, "model": {"frames": 1, "image_size": 32},
                    "optim": {"lr": 0.05}, "epochs": 5, "method": "amst_full", "name": "fresh", "tags": ["t"],
                    "skip": {"audio": 3, "visual": 1},
                    "method_params": {"skip_mode": "faithful", "full_joint_update": "alt"},
                    "batch_size": 8, "seed": 0, "device": "auto"}


def test_run_body_empty_preset_is_none():
    body = run_body(starting_config(PREFILL, AVDIGITS), NAIVE, AVDIGITS, {"preset": ""})
    assert body["dataset"] == {"name": "avdigits", "preset": None, "audio_noise": 0.5}


SLOTS = ["name", "tags", "dataset.preset", "skip.audio", "skip.visual", "skip", "method_params.skip_mode",
         "method_params", "epochs", "optim.lr"]


def test_slot_for_exact_match():
    assert slot_for("skip.audio", SLOTS) == "skip.audio"
    assert slot_for("optim.lr", SLOTS) == "optim.lr"
    assert slot_for("epochs", SLOTS) == "epochs"


def test_slot_for_prefix_match_takes_the_longest():
    assert slot_for("skip.text", SLOTS) == "skip"
    assert slot_for("method_params.skip_mode.x", SLOTS) == "method_params.skip_mode"
    assert slot_for("method_params.unknown", SLOTS) == "method_params"
    assert slot_for("dataset", SLOTS) == "dataset.preset"  # a parent field: the one slot under it


def test_slot_for_none():
    assert slot_for(None, SLOTS) is None
    assert slot_for("", SLOTS) is None
    assert slot_for("optim.momentum", SLOTS) is None
    assert slot_for("skipper", SLOTS) is None  # a prefix of the name, not of the dotted path
    assert slot_for("Authorization", SLOTS) is None


def test_param_widgets_of_the_amst_full_schema():
    schema = METHODS["amst_full"].params.model_json_schema()
    widgets = param_widgets(schema)
    assert [(name, kind) for name, kind, _ in widgets] == [("skip_mode", "select"), ("full_joint_update", "select")]
    assert widgets[0][2]["enum"] == ["faithful", "fast"]
    assert widgets[1][2]["enum"] == ["alt", "joint"]


def test_param_widgets_of_a_method_without_params():
    assert param_widgets(METHODS["naive"].params.model_json_schema()) == []
    assert param_widgets({}) == []


def test_param_widgets_kinds():
    schema = {"properties": {"flag": {"type": "boolean"}, "n": {"type": "integer"}, "w": {"type": "number"},
                             "label": {"type": "string"}, "mode": {"type": "string", "enum": ["a", "b"]},
                             "any": {"anyOf": [{"type": "integer"}, {"type": "null"}]}}}
    assert [(n, k) for n, k, _ in param_widgets(schema)] == [("flag", "bool"), ("n", "int"), ("w", "float"),
                                                             ("label", "text"), ("mode", "select"), ("any", "text")]


def test_param_widgets_of_every_baseline():
    """Each parameter with its description and default, from the schema the API publishes."""
    kinds = {name: [(n, k) for n, k, _ in param_widgets(METHODS[name].params.model_json_schema(), ["audio", "visual"])]
             for name in ("ogm_ge", "pmr", "mslr", "unimodal")}
    assert kinds["ogm_ge"] == [("modulation_start", "int"), ("modulation_end", "int"), ("alpha", "float")]
    assert ("factor", "float") in kinds["pmr"] and ("momentum_coef", "float") in kinds["pmr"]
    assert kinds["mslr"] == [("lr_audio", "float"), ("lr_visual", "float"), ("lr_text", "float"), ("window", "int"),
                             ("dynamic", "bool")]
    [(name, kind, spec)] = param_widgets(METHODS["unimodal"].params.model_json_schema(), ["audio", "visual"],
                                         MODALITIES)  # the served vocabulary's modalities
    assert (name, kind, spec["enum"]) == ("modality", "select", ["audio", "visual"]), "only the dataset's"
    for _, _, spec in param_widgets(METHODS["pmr"].params.model_json_schema()):
        assert spec.get("description") and "default" in spec
