"""ui.form: the New run form's body, its starting config, where an API error is shown, and parameter widgets."""

from __future__ import annotations

import copy

from amst_core.catalog import METHODS
from amst_core.vocab import MODALITIES
from ui.form import (
    LR_FORMAT,
    deep_merge,
    param_widgets,
    printable,
    recipe_note,
    restart_fields,
    run_body,
    slot_for,
    starting_config,
)

NAIVE = {"name": "naive", "fusion_fixed": False, "uses_skip": False, "default_fusion": "concat"}
AMST_FULL = {"name": "amst_full", "fusion_fixed": True, "uses_skip": True, "default_fusion": "concat"}
# GET /datasets items as the API serves them since issue 23: `defaults` (what the data dictate), `recipes` and
# `reference` (per method: what the server fills in for a run that leaves a field out, without and with
# `recipe: reference`). Hand-made, so the form's rules are tested apart from any dataset's actual recipe.
AVDIGITS = {"name": "avdigits", "modalities": ["audio", "visual"], "defaults": {"model": {"image_size": 28}},
            "recipes": {"amst_full": {"model": {"image_size": 28}, "dataset": {"preset": "hard"}, "skip": {"audio": 3},
                                      "optim": {"lr": 0.01, "lr_step": 15}, "epochs": 20},
                        "naive": {"model": {"image_size": 28}, "dataset": {"preset": "hard"},
                                  "optim": {"lr": 0.01, "lr_step": 15}, "epochs": 20}},
            "reference": {"amst_full": {"model": {"image_size": 28}}, "naive": {"model": {"image_size": 28}}}}
SYNTHETIC = {"name": "synthetic", "modalities": ["audio", "visual"], "defaults": {"model": {"frames": 1}},
             "recipes": {"amst_full": {"model": {"frames": 1}, "optim": {"lr": 0.05}, "epochs": 5}},
             "reference": {"amst_full": {"model": {"frames": 1}}}}

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
    start = starting_config(PREFILL, AVDIGITS, "naive")
    assert start == PREFILL
    assert start is not PREFILL
    start["optim"]["lr"] = 1.0
    assert PREFILL["optim"]["lr"] == 0.01


def test_a_rerun_of_a_sweeps_run_leaves_the_servers_sweep_tag_out():
    """Since issue 21 a request may not set `sweep:` tags; a sweep's run copied before that carries one."""
    prefill = {**PREFILL, "tags": ["mine", "sweep:0123456789abcdef"]}
    assert starting_config(prefill, AVDIGITS, "naive")["tags"] == ["mine"]


def test_starting_config_is_the_recipe_the_server_fills_in_for_the_method():
    """The form used to start from GET /datasets' `suggested` (lr 0.01, lr_step 15 on avdigits) while POST /runs
    filled in the reference's (lr 0.001, lr_step 70): it now starts from the very values the server applies."""
    assert starting_config(PREFILL, SYNTHETIC, "amst_full") == {"dataset": {"name": "synthetic"},
                                                               "model": {"frames": 1}, "optim": {"lr": 0.05},
                                                               "epochs": 5}
    assert starting_config(None, AVDIGITS, "amst_full") == {
        "dataset": {"name": "avdigits", "preset": "hard"}, "model": {"image_size": 28}, "skip": {"audio": 3},
        "optim": {"lr": 0.01, "lr_step": 15}, "epochs": 20}
    assert "skip" not in starting_config(None, AVDIGITS, "naive")  # the method's own recipe
    assert starting_config({}, {"name": "bare"}, "naive") == {"dataset": {"name": "bare"}}


def test_the_papers_reference_settings_are_one_switch_away():
    start = starting_config(None, AVDIGITS, "amst_full", reference=True)
    assert start == {"dataset": {"name": "avdigits"}, "model": {"image_size": 28}, "recipe": "reference"}
    body = run_body(start, AMST_FULL, AVDIGITS, {"epochs": 100, "lr": 0.001})
    assert body["recipe"] == "reference"  # what the form does not show comes from the reference too
    assert "recipe" not in run_body(starting_config(None, AVDIGITS, "amst_full"), AMST_FULL, AVDIGITS, {})
    # A dataset the API serves no reference entry for starts from its data's defaults.
    assert starting_config(None, {"name": "x", "defaults": {"model": {"frames": 2}}}, "naive", reference=True) == {
        "dataset": {"name": "x"}, "model": {"frames": 2}, "recipe": "reference"}


def test_a_field_restarts_with_the_recipe_unless_the_user_changed_it():
    state: dict = {}
    restart_fields(state, {"optim.lr": 0.01, "epochs": 20, "skip.audio": 3})
    assert (state["form:optim.lr"], state["form:epochs"], state["form:skip.audio"]) == (0.01, 20, 3)
    state["form:epochs"] = 8  # the user's own
    restart_fields(state, {"optim.lr": 0.05, "epochs": 30, "skip.audio": 3})  # another method's recipe
    assert (state["form:optim.lr"], state["form:epochs"], state["form:skip.audio"]) == (0.05, 8, 3)
    del state["form:skip.audio"]  # a field not drawn (a method without skip) loses its widget state
    restart_fields(state, {"optim.lr": 0.05, "epochs": 30, "skip.audio": 2})
    assert state["form:skip.audio"] == 2 and state["form:epochs"] == 8


def test_the_note_says_which_values_are_the_recipes_and_which_the_datas():
    note = recipe_note(AVDIGITS, "amst_full", False, {"optim.lr", "epochs"})
    assert note.startswith("Starts from the avdigits recipe for amst_full: dataset.preset hard · skip.audio 3 · "
                           "**optim.lr** 0.01 · optim.lr_step 15 · **epochs** 20.")
    assert "From the data's shapes: model.image_size 28." in note and "image_size 28 ·" not in note.split("\n")[0]
    paper = recipe_note(AVDIGITS, "amst_full", True, set())
    assert paper.startswith("Starts from the paper's reference settings: nothing beyond the defaults.")
    assert "as the reference code has it" in paper


def test_small_learning_rates_read_as_numbers():
    """The field's format was %.5f: 3e-6 read 0.00000."""
    assert LR_FORMAT % 3e-6 == "3e-06" and LR_FORMAT % 0.01 == "0.01" and LR_FORMAT % 0.00025 == "0.00025"
    assert printable(3e-6) == "3e-06"


def test_run_body_keeps_what_the_form_does_not_show():
    values = {"name": "again", "tags": ["x", "y"], "preset": "hard", "skip": {"audio": 4, "visual": 2},
              "method_params": {"skip_mode": "fast", "full_joint_update": "joint"}, "epochs": 12, "batch_size": 16,
              "seed": 7, "device": "cuda", "lr": 0.003}
    body = run_body(starting_config(PREFILL, AVDIGITS, "naive"), AMST_FULL, AVDIGITS, values)
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


def test_run_body_sets_the_gpus_and_keeps_the_rest_of_resources():
    start = {**starting_config(PREFILL, AVDIGITS, "naive"), "resources": {"min_gpu_memory_gb": 40}}
    body = run_body(start, AMST_FULL, AVDIGITS, {"gpus": 2})
    assert body["resources"] == {"min_gpu_memory_gb": 40, "gpus": 2}


def test_run_body_for_a_method_without_skip_empties_skip_and_sets_fusion():
    values = {"name": "", "tags": [], "fusion": "msum", "epochs": 3, "lr": 0.5}
    body = run_body(starting_config(PREFILL, AVDIGITS, "naive"), NAIVE, AVDIGITS, values)
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
    body = run_body(starting_config(PREFILL, AVDIGITS, "naive"), NAIVE, AVDIGITS, {"name": "n"})
    assert body["fusion"] == "lsum"


def test_run_body_from_a_dataset_recipe():
    values = {"name": "fresh", "tags": ["t"], "skip": {"audio": 3, "visual": 1},
              "method_params": {"skip_mode": "faithful", "full_joint_update": "alt"}, "epochs": 5, "batch_size": 8,
              "seed": 0, "device": "auto", "lr": 0.05, "model": {"image_size": 32}}
    body = run_body(starting_config(None, SYNTHETIC, "amst_full"), AMST_FULL, SYNTHETIC, values)
    assert body == {"dataset": {"name": "synthetic"}, "model": {"frames": 1, "image_size": 32},
                    "optim": {"lr": 0.05}, "epochs": 5, "method": "amst_full", "name": "fresh", "tags": ["t"],
                    "skip": {"audio": 3, "visual": 1},
                    "method_params": {"skip_mode": "faithful", "full_joint_update": "alt"},
                    "batch_size": 8, "seed": 0, "device": "auto"}


def test_run_body_empty_preset_is_none():
    body = run_body(starting_config(PREFILL, AVDIGITS, "naive"), NAIVE, AVDIGITS, {"preset": ""})
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


def test_every_registered_method_gets_a_typed_widget_per_parameter():
    """The New run form offers every method of the registry (the field's too): each parameter a widget of its type,
    with its description, and its default unless it is required."""
    for name, spec in METHODS.items():
        schema = spec.params.model_json_schema()
        for param, kind, widget in param_widgets(schema, ["audio", "visual"], MODALITIES):
            assert kind != "text" or widget.get("type") == "string", (name, param, widget)
            assert widget.get("description"), (name, param)
            assert "default" in widget or param in schema.get("required", []), (name, param)


# ---- the form itself (AppTest against the seeded API) -----------------------------------------------------------

def new_run_form(app):
    app.run()
    at = app.switch_page("views/new_run.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def field(at, label: str):
    return next(n for n in at.number_input if n.label == label)


def test_the_form_starts_from_the_servers_recipe_and_says_so_and_the_paper_is_one_switch_away(app, seeded_api):
    import httpx

    at = new_run_form(app)
    recipe = httpx.get(f"{seeded_api.url}/datasets").json()
    recipe = next(d for d in recipe if d["name"] == "avdigits")["recipes"]["amst_full"]
    assert field(at, "Learning rate").value == recipe["optim"]["lr"] and field(at, "Epochs").value == recipe["epochs"]
    assert all(isinstance(field(at, f).value, int) for f in ("Epochs", "Batch size", "Seed"))  # not "20.00"
    note = "\n".join(c.value for c in at.caption)
    assert "Starts from the avdigits recipe for amst_full:" in note and "**optim.lr** 0.01" in note
    assert "avdigits recipe: 0.01" in field(at, "Learning rate").help
    at = next(t for t in at.toggle if t.label == "Start from the paper's reference settings").set_value(True).run()
    assert field(at, "Learning rate").value == 0.001 and field(at, "Epochs").value == 100
    assert "Starts from the paper's reference settings" in "\n".join(c.value for c in at.caption)
    next(t for t in at.text_input if t.label == "Name").set_value("as-in-the-paper")
    field(at, "Epochs").set_value(2)
    at.get("form_submit_button")[0].click().run()
    assert not at.error, [e.value for e in at.error]
    run = next(r for r in httpx.get(f"{seeded_api.url}/runs", params={"q": "name=as-in-the-paper"}).json()["items"])
    config = httpx.get(f"{seeded_api.url}/runs/{run['id']}").json()["config"]
    assert config["recipe"] == "reference" and config["optim"]["lr_step"] == 70 and config["epochs"] == 2


def test_a_small_learning_rate_reads_as_a_number_in_the_field(app, seeded_api):
    """The field's format was %.5f: 3e-6 read 0.00000 (and was sent correctly)."""
    at = new_run_form(app)
    field(at, "Learning rate").set_value(3e-6)
    field(at, "Epochs").set_value(0)  # refused: the form stays, showing what was sent
    at.get("form_submit_button")[0].click().run()
    lr = field(at, "Learning rate")
    assert lr.value == 3e-6 and lr.proto.format % lr.value == "3e-06"


def test_the_batch_size_limit_is_named_under_the_field_on_the_first_submit(app, seeded_api):
    """1e12 was answered "less than or equal to 2147483647" (RunConfig's bound), and this server's limit came
    only on a second submit once that was fixed; with another mistake in the form, it came even later."""
    at = new_run_form(app)
    field(at, "Batch size").set_value(10**12)
    field(at, "Epochs").set_value(0)
    at.get("form_submit_button")[0].click().run()
    errors = [str(e.value) for e in at.error]
    assert any("at most 4096 samples on this server (AMST_MAX_BATCH_SIZE)" in e for e in errors), errors
    assert any("greater than or equal to 1" in e for e in errors), errors  # the epochs, in the same answer
    assert not any("2147483647" in e for e in errors), errors
