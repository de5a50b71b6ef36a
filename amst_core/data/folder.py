"""The folder layout's samples (amst_core.layouts.folder), with features computed once into the sample cache
(amst_core.data.cache): audio as the reference's fbank, visual as model.frames frames (1 per second of a video, or
a frame folder's images), text as token ids and mask of the text model's tokenizer. The cache holds every split
(meta.json: ids, labels, and the samples that could not be decoded with id, path and problem, for
`dataset.on_bad_sample`) and split.json, the split used (generated ones included).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from amst_core.config import ConfigError, cache_dir
from amst_core.data import cache, media
from amst_core.data.cache import CachedSamples, FeatureSpec, SampleProblem
from amst_core.data.reference import pick_frames
from amst_core.datafiles import DataRoots, PathRefused, bad_samples_error
from amst_core.layouts import folder as layout
from amst_core.layouts.folder import SPLITS, FolderSample, FolderScan
from amst_core.vocab import AUDIO, TEXT, VISUAL

if TYPE_CHECKING:
    from amst_core.config import RunConfig

log = logging.getLogger(__name__)


def cache_key(found: FolderScan, spec: FeatureSpec) -> str:
    """Over the feature settings and every sample's source files (path, size, modification time)."""
    return cache.cache_key(spec, files=((s.key, [p for _, p in sorted(s.files.items())])
                                        for split in SPLITS for s in found.samples[split]))


class FeatureExtractor:
    def __init__(self, spec: FeatureSpec, roots: DataRoots):
        self.spec, self.roots = spec, roots
        self.tokenizer = None
        if TEXT in spec.modalities:
            from amst_core.models.text import load_tokenizer

            self.tokenizer = load_tokenizer(spec.text_model)

    def sample(self, s: FolderSample) -> dict[str, np.ndarray]:
        """The features of one sample; SampleProblem (path and problem) when a file is missing, unusable, linked
        out of the data root or too large."""
        out: dict[str, np.ndarray] = {}
        for modality in self.spec.modalities:
            path = s.files.get(modality)
            if path is None:
                raise SampleProblem(f"{Path(s.split) / s.label / s.sample_id}.*",
                                    f"has no {modality}: {layout.EXPECTED[modality]}")
            try:
                out.update(self.modality(modality, path))
            except media.MediaError as err:
                raise SampleProblem(str(path), str(err)) from None
            except PathRefused as err:
                raise SampleProblem(str(path), err.problem) from None
            except OSError as err:  # gone since the scan
                raise SampleProblem(str(path), f"cannot be read ({type(err).__name__})") from None
        return out

    def opened(self, path: Path) -> Path:
        """`path` as it is about to be read: confined and within the size limit again (the scan checked it at
        submission; a link or a larger file may have appeared since)."""
        return self.roots.sample_file(path, "dataset.root", "the file")

    def modality(self, modality: str, path: Path) -> dict[str, np.ndarray]:
        spec = self.spec
        if modality == AUDIO:
            wave, rate = media.read_audio(self.opened(path))
            if spec.audio_rate and rate != spec.audio_rate:
                wave, rate = media.resample(wave, rate, spec.audio_rate), spec.audio_rate
            return {AUDIO: media.fbank(wave, rate, spec.mel_bins, spec.audio_frames).astype(np.float16)}
        if modality == VISUAL:
            if path.is_dir():
                folder = self.roots.confine(path, "dataset.root", "the frame folder")
                images = [media.open_image(self.opened(path / p.name)) for p in media.image_files(folder)]
                if not images:
                    raise media.MediaError("holds no .jpg/.jpeg/.png frames")
            elif path.suffix.lower() in media.VIDEO_EXTENSIONS:
                images = media.video_frames(self.opened(path), per_second=1)
            else:
                images = [media.open_image(self.opened(path))]
            chosen = [images[i] for i in pick_frames(len(images), spec.frames)]
            return {VISUAL: np.stack([media.square(img, spec.stored_size) for img in chosen])}
        text = media.read_text_file(self.opened(path))
        ids, mask = media.tokenize(self.tokenizer, [text], spec.text_max_length)
        return {TEXT: ids[0], "text_mask": mask[0]}


def build_cache(found: FolderScan, spec: FeatureSpec, folder: Path, roots: DataRoots,
                progress: bool | None = None) -> None:
    """Every split's features (amst_core.data.cache) plus meta.json (ids, labels, bad samples) and split.json (the
    split used, generated ones included)."""
    extractor = FeatureExtractor(spec, roots)
    meta: dict[str, Any] = {"version": cache.CACHE_VERSION, "spec": asdict(spec), "classes": list(found.classes),
                            "generated_splits": list(found.generated), "splits": {}}

    def build(tmp: Path) -> None:
        with cache.progress_bar(sum(len(found.samples[s]) for s in SPLITS), progress) as bar:
            for split in SPLITS:
                samples = found.samples[split]
                (tmp / split).mkdir()
                good, bad = cache.write_arrays(tmp / split, samples, extractor.sample, lambda: bar.update(1),
                                               cache.decode_threads())
                entries = [(s.sample_id, found.classes.index(s.label)) for s in samples]
                meta["splits"][split] = cache.split_meta(entries, good, bad, lambda i, s=samples: s[i].label)
        (tmp / "meta.json").write_text(json.dumps(meta))
        (tmp / "split.json").write_text(json.dumps({split: [f"{s.label}/{s.sample_id}" for s in found.samples[split]]
                                                    for split in SPLITS}, indent=1))

    cache.build_atomically(folder, build)


def cached_features(cfg: RunConfig, roots: DataRoots | None = None, progress: bool | None = None) -> Path:
    """The cache folder of this dataset and these settings, built if missing."""
    roots = roots or DataRoots.from_env()
    # Missing files are recorded with the undecodable ones, so that one message names every bad sample.
    found = layout.check(roots.dataset_dir(cfg.dataset), cfg.dataset.modalities_used and tuple(cfg.modalities),
                         on_bad_sample="skip", roots=roots)
    spec = FeatureSpec.of(cfg, tokenizer=True)
    if AUDIO in spec.modalities and not spec.audio_rate:
        spec = replace(spec, audio_rate=layout.common_rate(found, roots))
    if spec.audio_rate:
        log.info("folder dataset %s: audio resampled to %d Hz (dataset.audio_rate%s)", cfg.dataset.root,
                 spec.audio_rate, "" if cfg.dataset.audio_rate else ": the most common rate of its files")
    folder = cache_dir() / "features" / cache_key(found, spec)
    if not (folder / "meta.json").exists():
        build_cache(found, spec, folder, roots, progress)
    return folder


class Folder:
    """A `DatasetSource` for the user's own folder of files."""

    def check(self, cfg: RunConfig) -> None:
        from amst_core.datafiles import check_dataset

        check_dataset(cfg)

    def classes(self, cfg: RunConfig) -> tuple[str, ...]:
        roots = DataRoots.from_env()
        return layout.scan(roots.dataset_dir(cfg.dataset), roots).classes

    def split(self, cfg: RunConfig, split: str, train: bool) -> CachedSamples:
        folder = cached_features(cfg)
        meta = json.loads((folder / "meta.json").read_text())
        bad = [b for s in SPLITS for b in cache.bad_of(s, meta["splits"][s])]
        if bad and cfg.dataset.on_bad_sample == "fail":
            total = sum(len(meta["splits"][s]["samples"]) for s in SPLITS) + len(bad)
            raise bad_samples_error(bad, total)
        data = CachedSamples(folder / split, meta["splits"][split], cfg.modalities)
        if not len(data):
            raise ConfigError("dataset.on_bad_sample", f"every sample of the {split} split is bad")
        data.dropped = [b for b in bad if b.split == split]
        return data
