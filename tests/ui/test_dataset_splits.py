"""The New run page: a dataset's splits (classes and speakers, the speakers train and test share) and the split
options of the form, against a real API over a tiny CREMA-D."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.kit.speakers import CREMAD_FILES, listed_ids, write_cremad
from ui.form import run_body, speaker_leak, split_rows, split_settings

SPLITS = ("train", "val", "test")


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def test_split_settings_send_only_what_the_chosen_split_takes() -> None:
    iemocap = {"knobs": ["split_scheme", "split_seed", "test_session"]}
    assert split_settings(iemocap, {"split_scheme": "reference", "split_seed": 4, "test_session": 2}) == {
        "split_scheme": None, "split_seed": None, "test_session": None}
    assert split_settings(iemocap, {"split_scheme": "leave_one_session_out", "split_seed": 4, "test_session": 2}) == {
        "split_scheme": "leave_one_session_out", "split_seed": 4, "test_session": 2}
    cremad = {"name": "cremad", "knobs": ["split_scheme", "split_seed"]}
    body = run_body({"dataset": {"name": "cremad", "split_scheme": "speaker_independent", "split_seed": 1}},
                    {"name": "naive", "uses_skip": False, "fusion_fixed": False}, cremad,
                    {"split_scheme": "reference", "split_seed": 1})
    assert body["dataset"] == {"name": "cremad", "split_scheme": None, "split_seed": None, "test_session": None}


def test_split_rows_and_the_leak_come_from_the_servers_counts() -> None:
    dataset = {"split_schemes": ["reference", "speaker_independent"], "shared_speakers": {"train/test": 91},
               "split_counts": {"train": {"samples": 3, "classes": {"Anger": 2, "Sad": 1}, "speakers": ["1001"]},
                                "test": {"samples": 1, "classes": {"Anger": 0, "Sad": 1}, "speakers": []}}}
    assert split_rows(dataset) == [{"split": "train", "samples": 3, "Anger": 2, "Sad": 1, "speakers": 1},
                                   {"split": "test", "samples": 1, "Anger": 0, "Sad": 1}]
    assert "91 speakers in both train and test" in speaker_leak(dataset)
    assert "`speaker_independent` keeps every speaker in one split" in speaker_leak(dataset)
    assert speaker_leak({**dataset, "shared_speakers": {"train/test": 0}}) is None
    assert split_rows({"split_counts": None}) == []


def listed(folder: Path, split: str) -> list[tuple[str, str]]:
    return listed_ids(folder, CREMAD_FILES[SPLITS.index(split)], ".flv")


def test_the_new_run_page_shows_the_splits_and_submits_a_drawn_split(app, seeded_api) -> None:
    folder = seeded_api.artifacts.parent / "data" / "cremad"  # under the API's data root; one folder for this module
    if not folder.exists():
        write_cremad(folder, actors=4, clips=1, media=True)
    app.run()
    at = app.switch_page("views/new_run.py").run()
    at.selectbox[1].set_value("cremad").run()
    assert not at.exception, texts(at.exception)
    table = at.dataframe[0].value
    assert list(table["split"]) == list(SPLITS)
    for row, split in zip(table.to_dict("records"), SPLITS, strict=True):
        listed_ = listed(folder, split)
        assert row["samples"] == len(listed_) and row["Anger"] == sum(label == "Anger" for _, label in listed_)
        assert row["speakers"] == len({sample_id[:4] for sample_id, _ in listed_})
    train_speakers = sorted({sample_id[:4] for sample_id, _ in listed(folder, "train")})
    assert f"**train** speakers: {', '.join(train_speakers)}" in texts(at.caption)
    shared = {i[:4] for i, _ in listed(folder, "train")} & {i[:4] for i, _ in listed(folder, "test")}
    assert len(shared) == 3  # the 3 actors of the test split, all trained on
    assert f"The reference split has {len(shared)} speakers in both train and test" in texts(at.warning)
    split = next(s for s in at.selectbox if s.label == "Split")
    assert split.options == ["reference", "speaker_independent"] and split.value == "reference"
    assert not any(n.label == "Held-out session" for n in at.number_input)  # CREMA-D has no sessions
    split.set_value("speaker_independent")
    next(n for n in at.number_input if n.label == "Split seed").set_value(3)
    next(t for t in at.text_input if t.label == "Name").set_value("actors-apart")
    at.get("form_submit_button")[0].click().run()
    assert not at.error, texts(at.error)
    run = httpx.get(f"{seeded_api.url}/runs", params={"q": "name=actors-apart"}).json()["items"][0]
    dataset = httpx.get(f"{seeded_api.url}/runs/{run['id']}").json()["config"]["dataset"]
    assert (dataset["split_scheme"], dataset["split_seed"], dataset["test_session"]) == ("speaker_independent", 3,
                                                                                         None)


def test_the_splits_panel_shows_the_counts_of_a_drawn_split_with_no_speaker_in_two(app, seeded_api) -> None:
    folder = seeded_api.artifacts.parent / "data" / "cremad"  # one folder for this module: its API is shared
    if not folder.exists():
        write_cremad(folder, actors=4, clips=1, media=True)
    app.run()
    at = app.switch_page("views/new_run.py").run()
    at.selectbox[1].set_value("cremad").run()
    shown = next(s for s in at.selectbox if s.label == "Counts of the split")
    assert shown.value == "reference" and "in both train and test" in texts(at.warning)
    shown.set_value("speaker_independent").run()
    assert not at.exception, texts(at.exception)
    table = at.dataframe[0].value
    assert sum(table["samples"]) == len({i for split in SPLITS for i in listed(folder, split)})
    speakers = {split: set(c.value.partition(": ")[2].split(", ")) for split in SPLITS
                for c in at.caption if c.value.startswith(f"**{split}** speakers")}
    assert speakers["train"] and speakers["test"] and not speakers["train"] & speakers["test"], speakers
    assert "in both train and test" not in texts(at.warning)
    expected = httpx.get(f"{seeded_api.url}/datasets/cremad/splits",
                         params={"split_scheme": "speaker_independent", "split_seed": 0}).json()
    assert list(table["samples"]) == [expected["split_counts"][s]["samples"] for s in SPLITS]
