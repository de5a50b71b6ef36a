"""The Runs page (issue 23, finding 9): default columns that fit the window, a column choice that survives a
search, a search key that names nothing answered with the known keys, ticked runs opened in Compare. Pure
functions of ui.runstable first, then the page in AppTest against the seeded API (tests/ui/conftest.py)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from ui.runstable import (
    FIT_PX,
    MORE,
    core_columns,
    default_hyperparameters,
    default_more,
    hyperparameter_options,
    now_line,
    selection_links,
    shown_columns,
    width,
)

LIVE, ACTIVE = ("running",), ("queued", "starting", "running")
PREFERRED = ["optim.lr", "skip.audio", "skip.visual", "fusion", "epochs", "batch_size"]


def run(run_id: str, status: str = "succeeded", dataset: str = "avdigits", tags: tuple[str, ...] = (),
        **config: Any) -> dict[str, Any]:
    return {"id": run_id, "status": status, "name": run_id, "method": "naive", "dataset": dataset, "seed": 0,
            "tags": list(tags), "config": config}


def everything_differs(active: bool) -> list[dict[str, Any]]:
    """Runs that differ in every preferred key and more, over two datasets, with tags: the widest default view."""
    return [run(f"r{i}", "running" if active and i == 0 else "succeeded", ["avdigits", "cremad"][i % 2],
                ("t",) if i else (), optim={"lr": 0.01 * (i + 1), "lr_step": 10 + i}, skip={"audio": i + 1,
                "visual": i + 2}, fusion=["concat", "lsum"][i % 2], epochs=10 + i, batch_size=16 * (i + 1),
                model={"width": 16 + i}) for i in range(3)]


def default_view(runs: list[dict[str, Any]], active: bool) -> list[str]:
    options = hyperparameter_options(runs, [])
    hyperparameters = default_hyperparameters(options, PREFERRED, active)
    return shown_columns(active, hyperparameters, default_more(runs, hyperparameters, active))


@pytest.mark.parametrize("active", [True, False])
def test_the_default_columns_fit_the_table_at_1400_px(active: bool) -> None:
    """best val acc, progress and "now" were off-screen at 1400 px: every column came by default, and the
    hyperparameters before them."""
    shown = default_view(everything_differs(active), active)
    assert sum(width(c) for c in shown) <= FIT_PX, shown
    assert shown[:5] == ["status", "name", "val acc", "test acc", "progress"]  # how it did, first
    assert ("now" in shown) is active and "optim.lr" in shown  # what it is doing; the first setting that differs


def test_columns_the_user_adds_go_after_and_a_long_key_gets_its_room() -> None:
    shown = shown_columns(True, ["optim.lr"], ["tags", "dataset"])
    assert shown == [*core_columns(True)[:-2], "optim.lr", "method", "seed", "dataset", "tags"]
    assert width("method_params.full_joint_update") >= 7 * len("method_params.full_joint_update") + 16


def test_more_columns_come_only_when_they_tell_runs_apart() -> None:
    alike = [run("a"), run("b")]  # one dataset, no tags
    assert default_more(alike, [], False) == ["epochs done", "age"]
    assert set(MORE) >= {"dataset", "tags", "id"}


def test_a_chosen_column_stays_offered_when_a_search_leaves_runs_alike_in_it() -> None:
    alike = [run("a", optim={"lr": 0.01}), run("b", optim={"lr": 0.01}, epochs=5)]
    assert hyperparameter_options(alike, []) == ["epochs"]
    assert hyperparameter_options(alike, ["optim.lr", "epochs"]) == ["epochs", "optim.lr"]


def test_now_says_where_inside_the_epoch() -> None:
    live = {**run("a", "running"), "live": {"epoch": 6, "split": "train", "batch": 17, "batches": 38,
                                            "samples_per_s": 213.0}}
    assert now_line(live, LIVE, ACTIVE) == "epoch 7: train 17/38 · 213/s"
    assert now_line(run("q", "queued"), LIVE, ACTIVE) == "queued" and now_line(run("d"), LIVE, ACTIVE) == ""


def test_ticked_rows_lead_to_their_run_or_to_compare() -> None:
    frame = pd.DataFrame([{"id": "id0", "name": "first"}, {"id": "id1", "name": None}, {"id": "id2", "name": "x"}])
    assert selection_links(frame, []) == {}
    assert selection_links(frame, [1]) == {"run": {"label": "Open id1", "query_params": {"run": "id1"}}}
    assert selection_links(frame, [2, 0]) == {
        "compare": {"label": "Compare these 2 runs", "query_params": {"runs": "id0,id2"}}}


# ---- the page in AppTest -------------------------------------------------------------------------------------

def search(at, q: str):
    return next(t for t in at.text_input if t.label == "Search").set_value(q).run()


def columns_widget(at):
    return next(m for m in at.multiselect if m.label == "Hyperparameter columns")


def test_the_users_columns_survive_a_search_and_its_clearing(app, seeded_api) -> None:
    """A search that left only runs alike in a chosen column took the column away, and clearing the search did
    not bring it back."""
    at = app.run()
    assert not at.exception
    at = columns_widget(at).set_value(["epochs"]).run()
    at = search(at, "epochs=30")
    assert not at.exception and set(at.dataframe[0].value["epochs"]) == {"30"}
    assert columns_widget(at).value == ["epochs"]
    at = search(at, "")
    assert columns_widget(at).value == ["epochs"] and "epochs" in at.dataframe[0].value.columns


def test_a_search_key_that_names_nothing_is_an_error_naming_the_known_keys(app, seeded_api) -> None:
    """`foo.bar=1` silently matched nothing: it read as "No runs match"."""
    at = search(app.run(), "foo.bar=1")
    errors = "\n".join(str(e.value) for e in at.error)
    assert "unknown key foo" in errors and "best_val_acc" in errors and "optim" in errors, errors
    assert not at.dataframe
