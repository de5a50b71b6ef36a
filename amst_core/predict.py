"""`amst predict RUN INPUT`: a trained run's predictions on files, decoded as the run's own data were.

INPUT is one of (Doc/models.md):
  a dataset root     in the run's dataset layout (a folder dataset's <root>/<split>/<label>/..., a reference layout,
                     avdigits' files), read by the dataset's own code, one split (`--split`, default test); the
                     true labels are known. A folder is a dataset root when it holds a train/, val/ or test/ folder,
                     or when the run's dataset is not the folder layout.
  a folder of samples <id>.wav|.flac|.png|.jpg|.txt|.mp4|... (the folder layout's naming: a sample is the files of
                     one id, a folder <id>/ of frames counts), or <label>/<id>.* when the folder holds no sample file
                     itself (the label folder is the true label)
  a CSV              one row per sample, one column per modality (audio, visual, text) holding a file path (absolute,
                     or relative to the CSV's folder); optional columns id and label
A folder of samples and a CSV are decoded by the folder layout's code (amst_core.data.folder), so they serve runs on
the folder layout; a reference dataset's features come from `amst preprocess`, so its runs take a dataset root.

Each batch goes through what evaluation does (amst_core.data.augment.finish_batch: no augmentation) and the method's
own prediction (modelexport.TrainedModel.logits); one row per sample: id, true label (where known), predicted
class, the fused probabilities (p_fused_<class>) and each modality's branch probabilities (p_<modality>_<class>).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from amst_core.config import ConfigError, RunConfig
from amst_core.data.augment import FrameAugment, finish_batch
from amst_core.data.base import Sample, make_loader, to_device
from amst_core.data.cache import FeatureSpec, SampleProblem
from amst_core.datafiles import DataRoots
from amst_core.layouts import folder as layout
from amst_core.layouts.folder import FolderSample
from amst_core.modelexport import TrainedModel
from amst_core.runfolder import Checkpoint
from amst_core.vocab import AUDIO, FUSED, SPLITS

FIELD = "INPUT"
NO_LABEL = -1
FOLDER_DATASET = "folder"  # the layout whose decoding of media files a folder of samples or a CSV reuses


def predict(run: str, source: Path, out: Path, which: Checkpoint = "best", split: str = "test",
            device: str = "cpu") -> int:
    """Predictions of the run's model on INPUT written to `out` (CSV, or JSON lines for .jsonl); the row count."""
    model = TrainedModel.load(run, which, device)
    data, ids = read_input(model, source, split)
    rows = list(prediction_rows(model, data, ids))
    write_rows(rows, out)
    return len(rows)


# ---------------------------------------------------------------- what INPUT is


def read_input(model: TrainedModel, source: Path, split: str) -> tuple[Dataset, list[str]]:
    """The samples of INPUT (each with its label, NO_LABEL where unknown) and their ids."""
    if not source.exists():
        raise ConfigError(FIELD, f"{source} does not exist")
    if source.is_dir() and is_dataset_root(model.cfg, source):
        return dataset_split(model, source, split)
    if model.cfg.dataset.name != FOLDER_DATASET:
        raise ConfigError(FIELD, f"this run trained on {model.cfg.dataset.name}, whose features come from its own "
                                 f"layout: give a dataset root in that layout (`amst preprocess "
                                 f"{model.cfg.dataset.name} RAW_DIR --out DIR` writes one), not "
                                 f"{'a folder of files' if source.is_dir() else 'a file'}")
    if source.is_dir():
        samples = folder_samples(source)
    elif source.suffix.lower() == ".csv":
        samples = csv_samples(source, model.modalities)
    else:
        raise ConfigError(FIELD, f"{source} is neither a folder nor a .csv file of sample paths")
    data = DecodedSamples(model, samples)
    return data, [s.sample_id for s in samples]


def is_dataset_root(cfg: RunConfig, folder: Path) -> bool:
    return cfg.dataset.name != FOLDER_DATASET or any((folder / split).is_dir() for split in SPLITS)


def dataset_split(model: TrainedModel, root: Path, split: str) -> tuple[Dataset, list[str]]:
    """One split of a dataset root, read by the dataset's own code as evaluation reads it."""
    from amst_core.data import source_for
    from amst_core.datafiles import check_dataset

    data = model.cfg.model_dump(mode="json")
    data["dataset"]["root"] = str(root.resolve())
    cfg = check_dataset(RunConfig.model_validate(data))
    source = source_for(cfg)
    classes = tuple(source.classes(cfg))
    if classes != model.classes:
        raise ConfigError(FIELD, f"{root} has the classes {', '.join(classes)}; the run was trained on "
                                 f"{', '.join(model.classes)}")
    dataset = source.split(cfg, split, train=False)
    return dataset, sample_ids(dataset)


def sample_ids(dataset: Dataset) -> list[str]:
    """The ids a dataset knows (the sample cache's, a reference layout's items), else the sample's index."""
    if hasattr(dataset, "ids"):
        return [str(i) for i in dataset.ids]
    if hasattr(dataset, "items"):
        return [str(sample_id) for sample_id, _ in dataset.items]
    return [str(i) for i in range(len(dataset))]


def folder_samples(folder: Path) -> list[FolderSample]:
    """<id>.* files, or <label>/<id>.* when the folder holds no sample file of its own (its subfolders are then
    labels, not frame folders)."""
    roots = DataRoots.from_env()
    entries = roots.listing(folder, FIELD, "the entry")
    too_large: dict[Path, str] = {}
    if any(e.is_file() and layout.modalities_of(e) for e in entries):
        samples = layout.scan_label(folder, "", "", roots, too_large)
    else:
        samples = [s for e in entries if e.is_dir()
                   for s in layout.scan_label(Path(e.path), "", e.name, roots, too_large)]
    if too_large:
        path, why = next(iter(too_large.items()))
        raise ConfigError(FIELD, f"{path} {why}")
    if not samples:
        raise ConfigError(FIELD, f"{folder} holds no sample files (<id>.wav, .png, .jpg, .txt, .mp4, ...: "
                                 f"{', '.join(layout.AUDIO + layout.IMAGE + layout.VIDEO + layout.TEXT)}), "
                                 "nor label folders of them")
    return samples


def csv_samples(path: Path, modalities: tuple[str, ...]) -> list[FolderSample]:
    """One sample per row; a modality's column names its file (relative paths from the CSV's folder)."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = [name.strip() for name in reader.fieldnames or []]
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ConfigError(FIELD, f"{path} cannot be read as a CSV ({type(err).__name__})") from None
    missing = [m for m in modalities if m not in header]
    if missing:
        said = ", ".join(header) or "none"
        raise ConfigError(FIELD, f"{path} has no {', '.join(missing)} column (its header: {said}); the run needs one "
                                 f"column per modality, {', '.join(modalities)}, each holding a file path, and "
                                 "optionally id and label")
    if not rows:
        raise ConfigError(FIELD, f"{path} has a header but no rows")
    samples = []
    for n, row in enumerate(rows, start=1):
        files = {m: path.parent / row[m] for m in modalities if row[m]}
        for m, file in files.items():
            if m not in layout.modalities_of(file):  # a Path answers is_dir() and name as a DirEntry does
                raise ConfigError(FIELD, f"{path} row {n}: the {m} column names {file}, which is not "
                                         f"{layout.EXPECTED[m]}")
        samples.append(FolderSample("", row.get("label", ""), row.get("id") or str(n), files))
    return samples


class DecodedSamples(Dataset):
    """Samples of a folder or a CSV decoded as the folder layout's cache decodes them (amst_core.data.folder), one
    at a time, in the form the cache hands them to the loader."""

    def __init__(self, model: TrainedModel, samples: list[FolderSample]):
        from amst_core.data.folder import FeatureExtractor

        self.samples = samples
        self.labels = [label_index(model.classes, s) for s in samples]
        for s in samples:
            absent = [m for m in model.modalities if m not in s.files]
            if absent:
                raise ConfigError(FIELD, f"sample {s.sample_id!r} has no {absent[0]} file "
                                         f"({layout.EXPECTED[absent[0]]}); the run needs {', '.join(model.modalities)}")
        self.extractor = FeatureExtractor(FeatureSpec.of(model.cfg, tokenizer=True), DataRoots.from_env())

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        try:
            features = self.extractor.sample(self.samples[i])
        except SampleProblem as err:
            raise ConfigError(FIELD, f"sample {self.samples[i].sample_id!r}: {err.path} {err.problem}") from None
        sample: Sample = {"label": self.labels[i]}
        for key, value in features.items():
            tensor = torch.from_numpy(value)
            sample[key] = tensor[None] if key == AUDIO else tensor  # audio (1, T, F), as CachedSamples
        return sample


def label_index(classes: tuple[str, ...], sample: FolderSample) -> int:
    if not sample.label:
        return NO_LABEL
    if sample.label not in classes:
        raise ConfigError(FIELD, f"sample {sample.sample_id!r} is labelled {sample.label!r}, which is not one of the "
                                 f"run's classes ({', '.join(classes)})")
    return classes.index(sample.label)


# ---------------------------------------------------------------- predicting and writing


def prediction_rows(model: TrainedModel, data: Dataset, ids: list[str]) -> Iterator[dict[str, Any]]:
    """One row per sample, in INPUT's order."""
    device = model.method.device
    augment = FrameAugment(model.cfg.model.image_size)
    index = 0
    for batch in make_loader(data, model.cfg.batch_size, shuffle=False):
        labels = batch.pop("label").tolist()
        batch = finish_batch(to_device(batch, device), augment, train=False, generator=None)
        probs = {name: torch.softmax(logits.float(), dim=-1).cpu() for name, logits in model.logits(batch).items()}
        for k, label in enumerate(labels):
            yield row(model, ids[index], label, {name: p[k].tolist() for name, p in probs.items()})
            index += 1


def row(model: TrainedModel, sample_id: str, label: int, probs: dict[str, list[float]]) -> dict[str, Any]:
    fused = probs[FUSED]
    out: dict[str, Any] = {"id": sample_id, "label": model.classes[label] if label != NO_LABEL else None,
                           "predicted": model.classes[max(range(len(fused)), key=fused.__getitem__)]}
    for name in model.predictions:
        out.update({f"p_{name}_{c}": p for c, p in zip(model.classes, probs[name], strict=True)})
    return out


def write_rows(rows: list[dict[str, Any]], out: Path) -> None:
    """CSV (an unknown label is an empty cell), or JSON lines when `out` ends with .jsonl."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", newline="", encoding="utf-8") as f:
            if out.suffix.lower() == ".jsonl":
                f.writelines(json.dumps(r) + "\n" for r in rows)
            else:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
    except OSError as err:
        raise ConfigError("--out", f"{out} cannot be written ({type(err).__name__}: {err.strerror})") from None

