"""`amst predict`: a trained run's predictions on a folder of samples, a CSV of paths or a dataset root, equal to
what evaluation computes for the same samples; bad input named in one line."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from amst_core.cli import main
from amst_core.datafiles import any_data_path
from amst_core.evaluation import evaluate_run
from tests.kit.trained import evaluation_probabilities, own_data_root, trained_folder_run

CLASSES = ("cat", "dog")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("predict")
    with own_data_root(base):
        return trained_folder_run(base)


@pytest.fixture(scope="module")
def expected(run: Path) -> dict[str, tuple[list[float], str]]:
    """Sample id -> (fused probabilities, true label) of the test split, as evaluation computes them."""
    with own_data_root(run.parent.parent):
        ids, probs, labels = evaluation_probabilities(run)
    return {i: (p.tolist(), CLASSES[label]) for i, p, label in zip(ids, probs, labels, strict=True)}


def split_folder(run: Path) -> Path:
    return run.parent.parent / "data" / "mine" / "test"


def predicted(run: Path, source: Path, out: Path, *more: str) -> list[dict]:
    assert main(["predict", str(run), str(source), "--out", str(out), *more]) == 0
    if out.suffix == ".jsonl":
        return [json.loads(line) for line in out.read_text().splitlines()]
    with out.open(newline="") as f:
        return list(csv.DictReader(f))


def assert_equal_to_evaluation(rows: list[dict], expected: dict, labelled: bool) -> None:
    assert sorted(r["id"] for r in rows) == sorted(expected)
    for r in rows:
        fused = [float(r[f"p_fused_{c}"]) for c in CLASSES]
        want, label = expected[r["id"]]
        assert fused == pytest.approx(want, abs=1e-5)
        assert r["predicted"] == CLASSES[max(range(2), key=fused.__getitem__)]
        for prediction in ("fused", "audio", "visual"):
            assert sum(float(r[f"p_{prediction}_{c}"]) for c in CLASSES) == pytest.approx(1.0, abs=1e-5)
        assert (r["label"] or None) == (label if labelled else None)


def test_a_folder_of_samples_with_and_without_label_folders(run: Path, expected: dict, tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for path in split_folder(run).rglob("*.*"):
        shutil.copy(path, flat / path.name)
    assert_equal_to_evaluation(predicted(run, flat, tmp_path / "flat.csv"), expected, labelled=False)
    rows = predicted(run, split_folder(run), tmp_path / "labelled.jsonl")  # <label>/<id>.*: labels known
    assert_equal_to_evaluation(rows, expected, labelled=True)


def test_a_csv_of_paths(run: Path, expected: dict, tmp_path: Path) -> None:
    listing = tmp_path / "samples.csv"
    lines = ["id,visual,audio,label"]  # columns in any order; a path absolute or relative to the CSV's folder
    for label in CLASSES:
        for wav in sorted((split_folder(run) / label).glob("*.wav")):
            lines.append(f"{wav.stem},{os.path.relpath(wav.with_suffix('.png'), tmp_path)},{wav},{label}")
    listing.write_text("\n".join(lines) + "\n")
    assert_equal_to_evaluation(predicted(run, listing, tmp_path / "out.csv"), expected, labelled=True)


def test_a_dataset_root_is_read_by_the_datasets_own_code(run: Path, expected: dict, tmp_path: Path) -> None:
    rows = predicted(run, run.parent.parent / "data" / "mine", tmp_path / "root.csv", "--split", "test")
    assert_equal_to_evaluation(rows, expected, labelled=True)
    accuracy = sum(r["predicted"] == r["label"] for r in rows) / len(rows)
    with own_data_root(run.parent.parent), any_data_path():
        points = evaluate_run(run)
    fused_acc = next(p.value for p in points if p.component == "fused" and p.name == "acc")
    assert accuracy == pytest.approx(fused_acc)


def bad_input(tmp_path: Path, run: Path, case: str) -> tuple[Path, Path]:
    """(RUN, INPUT) of one kind of bad input."""
    wav = next(split_folder(run).rglob("*.wav"))
    png = wav.with_suffix(".png")
    if case == "image as audio":
        source = tmp_path / "x.csv"
        source.write_text(f"audio,visual\n{png},{png}\n")
    elif case == "unreadable audio":
        folder = tmp_path / "samples"
        folder.mkdir()
        (folder / "a.wav").write_bytes(b"not a wav at all")
        shutil.copy(png, folder / "a.png")
        source = folder
    elif case == "missing modality":
        folder = tmp_path / "images-only"
        folder.mkdir()
        shutil.copy(png, folder / "a.png")
        source = folder
    elif case == "csv without a column":
        source = tmp_path / "x.csv"
        source.write_text(f"id,visual\na,{png}\n")
    elif case == "empty folder":
        source = tmp_path / "empty"
        source.mkdir()
    elif case == "unknown label":
        source = tmp_path / "x.csv"
        source.write_text(f"audio,visual,label\n{wav},{png},cow\n")
    else:  # no checkpoint
        bare = tmp_path / "bare"
        bare.mkdir()
        (bare / "config.yaml").write_text((run / "config.yaml").read_text())
        return bare, split_folder(run)
    return run, source


@pytest.mark.parametrize("case, said", [
    ("image as audio", "the audio column names"),
    ("unreadable audio", "is not a readable audio file"),
    ("missing modality", "has no audio file"),
    ("csv without a column", "has no audio column"),
    ("empty folder", "holds no sample files"),
    ("unknown label", "labelled 'cow', which is not one of the run's classes"),
    ("no checkpoint", "has no best checkpoint"),
])
def test_bad_input_is_one_clear_line(case: str, said: str, run: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    target, source = bad_input(tmp_path, run, case)
    out = tmp_path / "out.csv"
    assert main(["predict", str(target), str(source), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and said in err, err
    assert not out.exists()


def test_probabilities_are_of_the_fused_and_each_branch(run: Path, tmp_path: Path) -> None:
    rows = predicted(run, split_folder(run), tmp_path / "p.csv")
    assert list(rows[0]) == ["id", "label", "predicted", "p_fused_cat", "p_fused_dog", "p_audio_cat", "p_audio_dog",
                             "p_visual_cat", "p_visual_dog"]
    assert all(torch.isfinite(torch.tensor([float(v) for k, v in r.items() if k.startswith("p_")])).all()
               for r in rows)
