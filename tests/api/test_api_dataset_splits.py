"""GET /datasets: per split class counts and speakers; GET /datasets/{name}/splits: those of a drawn split."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.kit.speakers import CREMAD_FILES, SPLITS, listed_ids, write_cremad, write_iemocap


def cremad_of(client: TestClient) -> dict:
    return next(d for d in client.get("/datasets").json() if d["name"] == "cremad")


def test_a_ready_dataset_lists_each_splits_classes_and_speakers(client: TestClient, data_root: Path) -> None:
    assert cremad_of(client)["split_counts"] is None  # not prepared: nothing counted
    write_cremad(data_root / "cremad", actors=4, clips=1, media=True)
    cremad = cremad_of(client)
    assert cremad["prepared"] and cremad["split_schemes"] == ["reference", "speaker_independent"]
    for split, name in zip(SPLITS, CREMAD_FILES, strict=True):
        listed = listed_ids(data_root / "cremad", name, ".flv")
        counts = cremad["split_counts"][split]
        assert counts["samples"] == cremad["sizes"][split] == len(listed)
        assert list(counts["classes"]) == cremad["classes"]
        assert counts["classes"] == {c: sum(label == c for _, label in listed) for c in cremad["classes"]}
        assert counts["speakers"] == sorted({sample_id[:4] for sample_id, _ in listed})
    shared = set(cremad["split_counts"]["train"]["speakers"]) & set(cremad["split_counts"]["test"]["speakers"])
    assert cremad["shared_speakers"]["train/test"] == len(shared)
    synthetic = next(d for d in client.get("/datasets").json() if d["name"] == "synthetic")
    assert synthetic["split_counts"] is None and synthetic["shared_speakers"] == {} and synthetic["split_schemes"] == []


def test_the_counts_of_a_drawn_split(client: TestClient, data_root: Path) -> None:
    write_iemocap(data_root / "iemocap")  # split files only: counting reads no media
    got = client.get("/datasets/iemocap/splits", params={"split_scheme": "leave_one_session_out",
                                                         "test_session": 2})
    assert got.status_code == 200, got.text
    body = got.json()
    assert (body["split_scheme"], body["split_seed"], body["test_session"]) == ("leave_one_session_out", 0, 2)
    assert body["split_counts"]["test"]["speakers"] == ["Ses02F", "Ses02M"]
    assert body["shared_speakers"]["train/test"] == body["shared_speakers"]["val/test"] == 0
    reference = client.get("/datasets/iemocap/splits").json()
    assert reference["split_scheme"] == "reference" and reference["shared_speakers"]["train/test"] == 10
    assert sum(c["samples"] for c in reference["split_counts"].values()) == 100


def test_bad_split_settings_are_a_422_naming_the_field(client: TestClient, data_root: Path) -> None:
    write_iemocap(data_root / "iemocap")
    for params, field in (({"split_scheme": "speaker_independent"}, "dataset.split_scheme"),
                          ({"test_session": 3}, "dataset.test_session"),
                          ({"split_scheme": "leave_one_session_out", "test_session": 9}, "test_session"),
                          ({"split_scheme": "sideways"}, "split_scheme")):
        got = client.get("/datasets/iemocap/splits", params=params)
        assert got.status_code == 422, (params, got.text)
        assert got.json()["error"]["field"] == field, got.json()
    missing = client.get("/datasets/cremad/splits")  # no files under the data root
    assert missing.status_code == 422 and missing.json()["error"]["field"] == "dataset.root"
    assert client.get("/datasets/nope/splits").status_code == 404
    assert client.get("/datasets/synthetic/splits").status_code == 404
