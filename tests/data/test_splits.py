"""Drawn splits (`dataset.split_scheme`): CREMA-D speaker-independent and IEMOCAP leave-one-session-out, over
tiny fake split files (and the real ones, where the workplace has them), their cache keys and their counts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from amst_core.config import ConfigError, RunConfig
from amst_core.datafiles import DataRoots, ReferenceFiles
from amst_core.layouts import LAYOUTS
from amst_core.layouts.schemes import count_splits, shared_speakers
from tests.kit.speakers import EMOTIONS, SPLITS, listed_ids, real_splits_dir, write_cremad, write_iemocap


def config(name: str, **dataset) -> RunConfig:
    return RunConfig.model_validate({"method": "naive", "dataset": {"name": name, **dataset}})


def drawn(tmp_path: Path, name: str, **dataset) -> dict[str, list[tuple[str, int]]]:
    files = ReferenceFiles(LAYOUTS[name], config(name, **dataset), DataRoots(tmp_path))
    return {split: files.items(split) for split in SPLITS}


@pytest.fixture
def cremad(tmp_path: Path) -> list[str]:
    return write_cremad(tmp_path / "cremad")


@pytest.fixture
def iemocap(tmp_path: Path) -> list[str]:
    return write_iemocap(tmp_path / "iemocap")


def actor(sample_id: str) -> str:
    return sample_id[:4]


# ---------------------------------------------------------------- CREMA-D speaker-independent


def test_speaker_independent_puts_every_clip_in_one_split_and_every_actor_in_one(tmp_path: Path,
                                                                                  cremad: list[str]) -> None:
    parts = drawn(tmp_path, "cremad", split_scheme="speaker_independent")
    ids = [sample_id for split in SPLITS for sample_id, _ in parts[split]]
    assert sorted(ids) == sorted(line.split(".flv")[0] for line in cremad)  # each clip exactly once
    actors = {split: {actor(i) for i, _ in parts[split]} for split in SPLITS}
    assert all(actors[split] for split in SPLITS)
    assert not (actors["train"] & actors["val"] or actors["train"] & actors["test"] or actors["val"] & actors["test"])


def test_speaker_independent_keeps_the_reference_proportions_and_class_shares(tmp_path: Path,
                                                                               cremad: list[str]) -> None:
    parts = drawn(tmp_path, "cremad", split_scheme="speaker_independent")
    per_actor = len(cremad) // 20
    assert len(parts["val"]) == len(parts["test"]) == 2 * per_actor  # 10 % of 20 actors
    whole = Counter(label for split in SPLITS for _, label in parts[split])
    for split in SPLITS:
        shares = Counter(label for _, label in parts[split])
        assert all(abs(shares[c] / len(parts[split]) - whole[c] / len(cremad)) < 1e-9 for c in whole)


def test_the_same_seed_draws_the_same_split_and_another_seed_another(tmp_path: Path, cremad: list[str]) -> None:
    first = drawn(tmp_path, "cremad", split_scheme="speaker_independent")
    assert drawn(tmp_path, "cremad", split_scheme="speaker_independent", split_seed=0) == first
    other = drawn(tmp_path, "cremad", split_scheme="speaker_independent", split_seed=1)
    assert {actor(i) for i, _ in other["test"]} != {actor(i) for i, _ in first["test"]}


def test_the_split_does_not_depend_on_the_order_of_the_split_files(tmp_path: Path, cremad: list[str]) -> None:
    before = drawn(tmp_path, "cremad", split_scheme="speaker_independent")
    for name in ("80_train_cre.txt", "10_val_cre.txt"):
        path = tmp_path / "cremad" / name
        path.write_text("\n".join(reversed(path.read_text().splitlines())) + "\n")
    after = drawn(tmp_path, "cremad", split_scheme="speaker_independent")
    assert {s: sorted(after[s]) for s in SPLITS} == {s: sorted(before[s]) for s in SPLITS}


def test_a_clip_listed_in_two_reference_splits_is_drawn_once(tmp_path: Path, cremad: list[str]) -> None:
    val = tmp_path / "cremad" / "10_val_cre.txt"
    test_file = tmp_path / "cremad" / "10_test_cre.txt"
    test_file.write_text(test_file.read_text() + val.read_text().splitlines()[0] + "\n")  # as CREMA-D's 4 clips
    ids = [i for split in SPLITS for i, _ in drawn(tmp_path, "cremad", split_scheme="speaker_independent")[split]]
    assert len(ids) == len(set(ids)) == len(cremad)


def test_the_reference_split_is_the_split_files(tmp_path: Path, cremad: list[str]) -> None:
    files = ReferenceFiles(LAYOUTS["cremad"], config("cremad"), DataRoots(tmp_path))
    for scheme in ({}, {"split_scheme": "reference"}):
        assert drawn(tmp_path, "cremad", **scheme) == {s: files.listed(s) for s in SPLITS}


def test_an_id_that_names_no_actor_is_refused_naming_the_field(tmp_path: Path, cremad: list[str]) -> None:
    train = tmp_path / "cremad" / "80_train_cre.txt"
    train.write_text(train.read_text() + "clip_ANG.flv Anger\n")
    with pytest.raises(ConfigError, match=r"^dataset.split_scheme: 1 sample ids name no speaker .*'clip_ANG'"):
        drawn(tmp_path, "cremad", split_scheme="speaker_independent")


def test_too_few_actors_to_split_are_refused(tmp_path: Path) -> None:
    write_cremad(tmp_path / "cremad", actors=2)
    with pytest.raises(ConfigError, match=r"^dataset.split_scheme: the split files name 2 speakers"):
        drawn(tmp_path, "cremad", split_scheme="speaker_independent")


# ---------------------------------------------------------------- IEMOCAP leave-one-session-out


@pytest.mark.parametrize("session", [1, 3, 5])
def test_leave_one_session_out_holds_out_exactly_that_session(tmp_path: Path, iemocap: list[str],
                                                              session: int) -> None:
    parts = drawn(tmp_path, "iemocap", split_scheme="leave_one_session_out", test_session=session)
    held = f"Ses{session:02d}"
    assert {i[:5] for i, _ in parts["test"]} == {held}
    assert len(parts["test"]) == len(iemocap) // 5
    assert all(not i.startswith(held) for split in ("train", "val") for i, _ in parts[split])
    ids = [i for split in SPLITS for i, _ in parts[split]]
    assert sorted(ids) == sorted(line.split(",")[0] for line in iemocap)


def test_leave_one_session_out_draws_val_per_class_from_the_other_sessions(tmp_path: Path,
                                                                          iemocap: list[str]) -> None:
    parts = drawn(tmp_path, "iemocap", split_scheme="leave_one_session_out")  # session 5 by default
    assert {i[:5] for i, _ in parts["test"]} == {"Ses05"}
    rest = Counter(label for split in ("train", "val") for _, label in parts[split])
    val = Counter(label for _, label in parts["val"])
    share = 10 / 90  # the reference files' val / (train + val)
    assert all(val[c] == round(share * rest[c]) for c in rest)
    assert drawn(tmp_path, "iemocap", split_scheme="leave_one_session_out", split_seed=1)["val"] != parts["val"]


def test_a_session_the_files_lack_cannot_be_held_out(tmp_path: Path, iemocap: list[str]) -> None:
    for name in ("iemocap_train.txt", "iemocap_valid.txt", "iemocap_test.txt"):
        path = tmp_path / "iemocap" / name
        path.write_text("\n".join(x for x in path.read_text().splitlines() if not x.startswith("Ses04")) + "\n")
    with pytest.raises(ConfigError, match=r"^dataset.test_session: session 4 cannot be held out: the split files "
                                          r"hold sessions 1, 2, 3, 5"):
        drawn(tmp_path, "iemocap", split_scheme="leave_one_session_out", test_session=4)


def test_iemocap_speakers_are_the_session_and_the_utterances_letter() -> None:
    layout = LAYOUTS["iemocap3"]
    assert layout.speaker("Ses01F_impro01_M005") == "Ses01M"
    assert layout.speaker("Ses04F_script03_1_F012") == "Ses04F"
    assert LAYOUTS["cremad"].speaker("1040_IOM_NEU_XX") == "1040"
    assert LAYOUTS["ave"].speaker("EsfJpLbBeb4") is None


# ---------------------------------------------------------------- the options in the run config


@pytest.mark.parametrize(("dataset", "message"), [
    ({"name": "avdigits", "split_scheme": "speaker_independent"},
     "dataset.split_scheme applies to cremad and iemocap and iemocap3 only, not avdigits"),
    ({"name": "mvsa", "split_scheme": "reference"}, "dataset.split_scheme applies to cremad"),
    ({"name": "cremad", "split_scheme": "leave_one_session_out"},
     "dataset.split_scheme: cremad offers reference or speaker_independent, not leave_one_session_out"),
    ({"name": "iemocap", "split_scheme": "speaker_independent"},
     "dataset.split_scheme: iemocap offers reference or leave_one_session_out"),
    ({"name": "cremad", "test_session": 2}, "dataset.test_session applies to iemocap and iemocap3 only"),
    ({"name": "cremad", "split_seed": 3}, "dataset.split_seed: the reference split takes none; set "
                                          "dataset.split_scheme: speaker_independent"),
    ({"name": "iemocap", "test_session": 3}, "dataset.test_session: the reference split takes none"),
    ({"name": "iemocap", "split_scheme": "leave_one_session_out", "test_session": 6}, "less than or equal to 5"),
])
def test_a_split_option_a_dataset_does_not_offer_is_refused_naming_the_field(dataset: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RunConfig.model_validate({"method": "naive", "dataset": dataset})


def test_a_drawn_split_gets_its_seed_and_session_filled_in() -> None:
    loso = config("iemocap3", split_scheme="leave_one_session_out").dataset
    assert (loso.split_seed, loso.test_session) == (0, 5)
    speakers = config("cremad", split_scheme="speaker_independent").dataset
    assert (speakers.split_seed, speakers.test_session) == (0, None)
    plain = config("cremad").dataset
    assert (plain.split_scheme, plain.split_seed, plain.test_session) == (None, None, None)
    again = RunConfig.model_validate(config("iemocap", split_scheme="leave_one_session_out").model_dump())
    assert again.dataset.test_session == 5  # the resolved config validates as it is stored


def test_the_cli_resolves_a_drawn_split_and_refuses_one_the_dataset_lacks(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from amst_core.cli import main

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"method": "naive", "dataset": {"name": "iemocap",
                                                                   "split_scheme": "leave_one_session_out"}}))
    assert main(["config", str(path), "--set", "dataset.test_session=2"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)["dataset"]
    assert (printed["split_scheme"], printed["split_seed"], printed["test_session"]) == (
        "leave_one_session_out", 0, 2)
    assert main(["config", str(path), "--set", "dataset.name=avdigits"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "dataset.split_scheme applies to cremad" in err


# ---------------------------------------------------------------- the sample cache


def test_a_drawn_split_has_its_own_cache_and_the_reference_keeps_the_key_it_had(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`amst cache` on a tiny CREMA-D folder: the reference split's cache folders are named as before drawn splits
    existed (the key over the split files' samples, in file order), a drawn split's, seed's are others, and each
    cache holds the drawn samples."""
    import json

    from amst_core.cli import main
    from amst_core.config import cache_dir
    from amst_core.data import cache
    from amst_core.data.reference import MediaReader

    monkeypatch.setenv("AMST_DATA_ROOT", str(tmp_path))
    write_cremad(tmp_path / "cremad", actors=6, clips=1, media=True)
    model = ["--set", "model.image_size=16", "--set", "model.audio_frames=64"]
    keys = {}
    for name, extra in (("reference", []), ("seed 0", ["--set", "dataset.split_scheme=speaker_independent"]),
                        ("seed 1", ["--set", "dataset.split_scheme=speaker_independent",
                                    "--set", "dataset.split_seed=1"])):
        before = set((cache_dir() / "samples").glob("*")) if name != "reference" else set()
        assert main(["cache", "cremad", *model, *extra, "--no-progress"]) == 0
        assert "cremad (audio, visual): train " in capsys.readouterr().err
        made = {p for p in (cache_dir() / "samples").glob("*") if not p.name.startswith(".")} - before
        keys[name] = {json.loads((p / "meta.json").read_text())["split"]: p.name for p in made}
    assert all(len(k) == 3 for k in keys.values())  # three new folders per scheme and seed: no key shared
    cfg = RunConfig.model_validate({"method": "naive", "dataset": {"name": "cremad"},
                                    "model": {"image_size": 16, "audio_frames": 64}})
    files = ReferenceFiles(LAYOUTS["cremad"], cfg, DataRoots(tmp_path))
    readers = [MediaReader(m, media, cfg.model, False, files) for m, media in files.used_media]
    for split in SPLITS:  # the key as computed before split schemes: over the split file's lines, in order
        lines = listed_ids(tmp_path / "cremad", LAYOUTS["cremad"].default_split_file(split), ".flv")
        classes = files.classes()
        expected = cache.cache_key(cache.FeatureSpec.of(cfg), "cremad", split, str(files.root()), files=(
            (f"{i}\0{classes.index(label)}", [p for r in readers for p in r.source_files(i)]) for i, label in lines))
        assert keys["reference"][split] == expected
    drawn_cfg = config("cremad", split_scheme="speaker_independent")
    parts = ReferenceFiles(LAYOUTS["cremad"], drawn_cfg, DataRoots(tmp_path))
    for split in SPLITS:
        meta = json.loads((cache_dir() / "samples" / keys["seed 0"][split] / "meta.json").read_text())
        assert [tuple(sample) for sample in meta["samples"]] == parts.items(split)


# ---------------------------------------------------------------- counts (GET /datasets)


def test_counts_give_each_splits_classes_and_speakers_and_the_shared_ones(tmp_path: Path, cremad: list[str]) -> None:
    files = ReferenceFiles(LAYOUTS["cremad"], config("cremad"), DataRoots(tmp_path))
    counts = count_splits({s: files.items(s) for s in SPLITS}, files.classes(), files.layout)
    assert sum(c.samples for c in counts.values()) == len(cremad)
    assert list(counts["val"].classes) == list(EMOTIONS.values())
    assert counts["train"].speakers == tuple(str(1001 + a) for a in range(20))
    assert shared_speakers(counts) == {"train/val": 20, "train/test": 20, "val/test": 20}  # the reference leak
    files = ReferenceFiles(LAYOUTS["cremad"], config("cremad", split_scheme="speaker_independent"),
                           DataRoots(tmp_path))
    apart = count_splits({s: files.items(s) for s in SPLITS}, files.classes(), files.layout)
    assert shared_speakers(apart) == {"train/val": 0, "train/test": 0, "val/test": 0}


# ---------------------------------------------------------------- the real split files


def test_on_the_real_cremad_files_every_actor_is_in_every_reference_split_and_in_one_drawn_split() -> None:
    roots = DataRoots(real_splits_dir())
    for scheme, shared in (({}, 91), ({"split_scheme": "speaker_independent"}, 0)):
        files = ReferenceFiles(LAYOUTS["cremad"], config("cremad", root="CREMAD", **scheme), roots)
        counts = count_splits({s: files.items(s) for s in SPLITS}, files.classes(), files.layout)
        assert shared_speakers(counts)["train/test"] == shared
    assert sum(c.samples for c in counts.values()) == 7442
    assert [len(counts[s].speakers) for s in SPLITS] == [73, 9, 9]
    whole = Counter({c: sum(counts[s].classes[c] for s in SPLITS) for c in EMOTIONS.values()})
    for split in SPLITS:
        gaps = [abs(counts[split].classes[c] / counts[split].samples - whole[c] / 7442) for c in whole]
        assert max(gaps) < 0.005  # within half a percentage point of the whole's class shares


def test_on_the_real_iemocap_files_session_5_out_is_its_two_speakers() -> None:
    files = ReferenceFiles(LAYOUTS["iemocap"], config("iemocap", root="IEMOCAP", split_scheme="leave_one_session_out"),
                           DataRoots(real_splits_dir()))
    counts = count_splits({s: files.items(s) for s in SPLITS}, files.classes(), files.layout)
    assert counts["test"].speakers == ("Ses05F", "Ses05M") and counts["test"].samples == 1479
    assert sum(c.samples for c in counts.values()) == 6785
    assert shared_speakers(counts) == {"train/val": 8, "train/test": 0, "val/test": 0}
