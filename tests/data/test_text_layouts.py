"""The text layouts (MVSA, IEMOCAP, IEMOCAP3, UR-FUNNY) and the text encoder: the real split files parse into the
documented classes and counts, tiny fixtures in each exact layout load, a 3-modality run trains, bad samples are
named before training or dropped and counted."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
import torch

from amst_core.catalog import DATASETS
from amst_core.config import ConfigError, RunConfig
from amst_core.data import source_for
from amst_core.datafiles import check_dataset, read_class_file, read_split_lines
from amst_core.layouts import LAYOUTS
from amst_core.models.text import TextEncoder
from tests.kit.tiny import (
    TEXT_LAYOUT_CLASSES,
    model_sample,
    text_layout_run,
    write_tiny_roberta,
    write_tiny_text_layout,
)

REAL = {"mvsa": "MVSA", "iemocap": "IEMOCAP", "iemocap3": "IEMOCAP", "urfunny": "UR-FUNNY"}
COUNTS = {  # amst_method.md section 5: per class, train / val / test
    "mvsa": {"negative": (1046, 152, 160), "neutral": (377, 41, 52), "positive": (2129, 285, 269)},
    "iemocap": {"ang": (882, 111, 110), "exc": (832, 105, 104), "fru": (1479, 186, 184), "neu": (1366, 172, 170),
                "sad": (867, 109, 108)},
    "urfunny": {"FUNNY": (4062, 501, 520), "NOTFUNNY": (4070, 515, 498)},
}


def real_splits(folder: str) -> Path:
    # ../shared next to the checkout, or the workplace's copy when the checkout lies elsewhere (a CI clone)
    candidates = [Path(__file__).resolve().parents[3] / "shared/data/splits" / folder,
                  Path("/work/shared/data/splits") / folder]
    if os.environ.get("AMST_SPLITS_DIR"):
        candidates.append(Path(os.environ["AMST_SPLITS_DIR"]) / folder)
    for path in candidates:
        if path.is_dir():
            return path
    pytest.skip(f"real split files not found in {[str(p) for p in candidates]} (set AMST_SPLITS_DIR)")


@pytest.mark.parametrize("dataset", ["mvsa", "iemocap", "urfunny"])
def test_every_line_of_the_real_split_files_parses(dataset: str) -> None:
    layout, folder = LAYOUTS[dataset], real_splits(REAL[dataset])
    classes = read_class_file(folder / layout.class_file)
    assert classes == DATASETS[dataset].classes
    counts: Counter = Counter()
    for i, split in enumerate(("train", "val", "test")):
        path = folder / layout.default_split_file(split)
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        items = read_split_lines(path, layout, classes)
        assert len(items) == len(lines)
        for sample_id, label, text in items:
            assert sample_id and " " not in sample_id and "," not in sample_id
            counts[(classes[label], i)] += 1
            if dataset != "mvsa":
                assert text, f"{dataset} lines carry their text after '###'"
    assert {c: tuple(counts[(c, i)] for i in range(3)) for c in classes} == COUNTS[dataset]


def test_lines_keep_commas_inside_the_text() -> None:
    layout = LAYOUTS["iemocap3"]
    assert layout.parse_line("Ses01F_impro01_F000, neu, 1.0, 2.0 ### Yes, well, no.") == \
        ("Ses01F_impro01_F000", "neu", "Yes, well, no.")
    assert LAYOUTS["mvsa"].parse_line("4333.jpg negative") == ("4333", "negative", "")


@pytest.fixture(scope="module")
def roberta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_roberta(tmp_path_factory.mktemp("models") / "tiny-roberta")


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, roberta: Path) -> Path:
    monkeypatch.setenv("AMST_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv("AMST_DATA_EXTRA_ROOTS", str(roberta.parent))  # the model folder is read like data
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


@pytest.mark.parametrize("dataset", ["mvsa", "iemocap", "iemocap3", "urfunny"])
def test_each_layout_loads_its_modalities(data_root: Path, roberta: Path, dataset: str) -> None:
    write_tiny_text_layout(data_root, dataset, roberta)
    cfg = RunConfig.model_validate(text_layout_run(dataset, roberta, method="naive"))
    check_dataset(cfg)
    source = source_for(cfg)
    assert source.classes(cfg) == TEXT_LAYOUT_CLASSES[dataset]
    sample = model_sample(source.split(cfg, "train", train=True), 1, cfg.model.image_size, train=True)
    expected = {"label", *LAYOUTS[dataset].modalities} | ({"text_mask"} if "text" in cfg.modalities else set())
    assert set(sample) == expected
    assert sample["label"] == 1
    if "audio" in sample:
        assert sample["audio"].shape == (1, 24, 16)
    frames = 1 if dataset == "mvsa" else 2
    assert sample["visual"].shape == (3, frames, 16, 16)
    if "text" in sample:
        assert sample["text"].dtype == torch.long and sample["text"].shape == (16,)
        assert sample["text"][0] == 0 and sample["text_mask"].dtype == torch.float32
        assert sample["text_mask"].sum() > 2


def test_the_text_encoder_trains_only_its_last_layers(roberta: Path, data_root: Path) -> None:
    cfg = RunConfig.model_validate(text_layout_run("urfunny", roberta))
    encoder = TextEncoder(cfg.model)
    trainable = {n.split(".")[2] for n, p in encoder.backbone.named_parameters()
                 if p.requires_grad and n.startswith("encoder.layer.")}
    assert trainable == {"1"}  # text_trainable_layers 1 of 2
    assert not any(p.requires_grad for n, p in encoder.backbone.named_parameters() if n.startswith("embeddings"))
    ids = torch.tensor([[0, 5, 6, 2, 1, 1]])
    out = encoder(ids, torch.tensor([[1.0, 1, 1, 1, 0, 0]]))
    assert out.shape == (1, 32)
    with pytest.raises(ConfigError, match=r"model\.text_trainable_layers: .* has 2 layers"):
        TextEncoder(cfg.model.model_copy(update={"text_trainable_layers": 3}))


def test_a_text_model_that_cannot_be_found_says_how_to_provide_it(data_root: Path) -> None:
    cfg = RunConfig.model_validate(text_layout_run("urfunny", "no-such-org/no-such-model"))
    with pytest.raises(ConfigError, match=r"model\.text_model: .*no-such-org/no-such-model.*offline.*save_pretrained"):
        TextEncoder(cfg.model)


@pytest.mark.parametrize("method", ["amst_full", "mla"])
def test_a_three_modality_run_trains_and_logs_every_modality(data_root: Path, roberta: Path, method: str) -> None:
    from amst_core.engine import Trainer
    from amst_core.sinks import MemorySink

    write_tiny_text_layout(data_root, "urfunny", roberta)
    cfg = RunConfig.model_validate(text_layout_run("urfunny", roberta, method=method, skip={"audio": 2, "text": 2}))
    sink = MemorySink()
    summary = Trainer(cfg, sinks=[sink], progress=False).fit()
    points = sink.points
    assert summary["best_val_acc"] is not None
    modalities = {p.modality for p in points if p.split == "val" and p.name == "acc" and p.modality}
    assert modalities == {"audio", "text", "visual"}
    if method == "mla":
        assert set(summary["selections"]) == {"combo:a35_t40_v25", "combo:entropy"}


def test_bad_samples_are_named_before_training_or_dropped_and_counted(data_root: Path, roberta: Path) -> None:
    from amst_core.engine import Trainer

    out = write_tiny_text_layout(data_root, "mvsa", roberta)
    (out / "visual" / "train001.jpg").unlink()  # missing image
    (out / "text_token/roberta-base/train002_token.pt").write_bytes(b"not a tensor")  # corrupt token file
    (out / "visual" / "train004.jpg").write_bytes(b"\xff\xd8 truncated")  # undecodable image
    cfg = RunConfig.model_validate(text_layout_run("mvsa", roberta, method="naive", epochs=1))
    with pytest.raises(ConfigError, match=r"dataset\.root: 1 of 18 samples lack media.*'train001'.*visual/train001"):
        check_dataset(cfg)
    with pytest.raises(ConfigError) as err:
        source_for(cfg).split(cfg, "train", train=True)
    message = str(err.value)
    assert message.startswith("dataset.on_bad_sample: 3 of 6 samples cannot be read")
    for sample_id, path in [("train001", "visual/train001.jpg"), ("train002", "train002_token.pt"),
                            ("train004", "visual/train004.jpg")]:
        assert f"'{sample_id}' (train split)" in message and path in message

    skip = cfg.model_copy(update={"dataset": cfg.dataset.model_copy(update={"on_bad_sample": "skip"})})
    check_dataset(skip)  # skip: the API lets it through, the loader drops them
    summary = Trainer(skip, progress=False).fit()
    assert summary["dropped_samples"] == {"train": 3, "val": 0, "test": 0}
    assert any("train002" in line for line in summary["dropped_examples"])


def test_the_service_reads_a_text_model_only_under_the_data_root(data_root: Path, roberta: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMST_DATA_EXTRA_ROOTS")
    cfg = RunConfig.model_validate(text_layout_run("urfunny", roberta))
    with pytest.raises(ConfigError, match=r"model\.text_model: .*outside AMST_DATA_ROOT"):
        TextEncoder(cfg.model)
