"""One source of defaults (amst_core.recipes): what a run gets for the fields its request leaves out, and where
each of its settings comes from."""

from __future__ import annotations

import pytest

from amst_core.config import ConfigError, load_config
from amst_core.datasets import DATASETS
from amst_core.recipes import config_origin, filled_in, recipe_for


def bare(dataset: str, method: str, **fields) -> dict:
    return {"dataset": {"name": dataset}, "method": method, **fields}


def test_a_bare_request_gets_the_dataset_recipe_and_reference_asks_for_the_paper() -> None:
    recipe = load_config(base=bare("avdigits", "amst_full"))
    assert (recipe.optim.lr, recipe.optim.lr_step, recipe.epochs, recipe.skip.audio) == (0.01, 15, 20, 3)
    assert recipe.dataset.preset == "hard" and recipe.model.image_size == 28  # recipe, and the data's shapes
    paper = load_config(base=bare("avdigits", "amst_full", recipe="reference"))
    assert (paper.optim.lr, paper.optim.lr_step, paper.epochs, paper.skip.audio) == (1e-3, 70, 100, 1)
    assert paper.model.image_size == 28  # shapes come from the data whatever the recipe


def test_the_papers_skip_factor_is_a_reference_setting_and_only_methods_that_skip_get_one() -> None:
    for mode in ("dataset", "reference"):
        assert load_config(base=bare("ave", "amst_alt", recipe=mode)).skip.audio == 2  # the paper's AVE factor
    assert load_config(base=bare("avdigits", "naive")).skip.audio == 1  # naive skips nothing
    assert "skip" not in recipe_for("avdigits", "naive") and "skip" not in filled_in("cremad", "naive")


def test_a_request_always_wins_over_every_layer() -> None:
    cfg = load_config(base=bare("avdigits", "amst_full", optim={"lr": 0.5}, skip={"audio": 2}, epochs=3,
                                model={"image_size": 32}))
    assert (cfg.optim.lr, cfg.skip.audio, cfg.epochs, cfg.model.image_size) == (0.5, 2, 3, 32)
    assert cfg.optim.lr_step == 15  # what it left out still comes from the recipe


def test_config_origin_names_each_settings_layer() -> None:
    cfg = load_config(base=bare("avdigits", "amst_full", optim={"lr": 0.5}, seed=3))
    origin = config_origin(cfg)
    assert origin["optim.lr"] == "request" and origin["seed"] == "request"
    assert origin["optim.lr_step"] == "recipe" and origin["dataset.preset"] == "recipe"
    assert origin["model.image_size"] == "data" and origin["optim.momentum"] == "reference"
    assert origin["method_params.skip_mode"] == "reference"
    assert "name" not in origin and "tags" not in origin and "method" not in origin
    # The same value the recipe would give reads as the recipe's, whoever typed it.
    assert config_origin(load_config(base=bare("avdigits", "amst_full", optim={"lr": 0.01})))["optim.lr"] == "recipe"
    paper = config_origin(load_config(base=bare("avdigits", "amst_full", recipe="reference")))
    assert paper["optim.lr"] == "reference" and paper["epochs"] == "reference" and paper["model.width"] == "data"
    assert config_origin(load_config(base=bare("cremad", "amst_alt")))["skip.audio"] == "reference"


def test_a_method_recipe_goes_on_top_of_the_dataset_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    spec = dataclasses.replace(DATASETS["avdigits"], method_recipes={"mla": {"optim": {"lr": 0.002}}})
    monkeypatch.setitem(DATASETS, "avdigits", spec)
    assert load_config(base=bare("avdigits", "mla")).optim.lr == 0.002
    assert load_config(base=bare("avdigits", "mla")).optim.lr_step == 15  # the dataset's recipe still holds
    assert load_config(base=bare("avdigits", "naive")).optim.lr == 0.01
    assert config_origin(load_config(base=bare("avdigits", "mla")))["optim.lr"] == "recipe"


def test_an_unknown_recipe_mode_is_named() -> None:
    with pytest.raises(ConfigError, match="recipe"):
        load_config(base=bare("avdigits", "naive", recipe="paper"))
