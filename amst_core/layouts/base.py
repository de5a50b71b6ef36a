"""A reference layout, described without torch: its text files, how a split-file line reads, and where each
modality's media lie under the dataset folder (amst_method.md section 5).

The API checks requests against these descriptions and the loaders in `amst_core.data.reference` read them, so a
dataset in a reference layout is one module with one `Layout`, named by its spec (`reference_spec` in
`amst_core/datasets/reference.py`, `DatasetSpec.layout`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from amst_core.vocab import AUDIO, SPLITS, TEST, TRAIN, VAL, VISUAL  # noqa: F401  (SPLITS re-exported: the layouts' splits)

MediaKind = Literal["fbank", "frames", "image", "tokens"]


@dataclass(frozen=True)
class Media:
    """Where one modality of a sample lives, relative to the dataset folder:
    fbank   <folder>/<id>.npy                    float32 (time, mel bins) Kaldi fbank
    frames  <folder>/<id>/*.jpg                  frames of the clip, file names in time order
    image   <folder>/<id>.jpg                    one image (a one-frame clip)
    tokens  <folder>/<id>_token.pt and _pm.pt    1-D int64 token ids and 1-D float attention mask
    """

    kind: MediaKind
    folder: str

    def entry(self, sample_id: str) -> str:
        """The name a sample's media has in `folder` (a file, or the frame folder)."""
        return {"fbank": f"{sample_id}.npy", "frames": sample_id, "image": f"{sample_id}.jpg",
                "tokens": f"{sample_id}_token.pt"}[self.kind]

    def pattern(self) -> str:
        """What a sample needs here, for messages: fbank/<id>.npy, IMAGE_KEPT_1_PER_SEC/<id>/*.jpg, ..."""
        return {"fbank": f"{self.folder}/<id>.npy", "frames": f"{self.folder}/<id>/*.jpg",
                "image": f"{self.folder}/<id>.jpg",
                "tokens": f"{self.folder}/<id>_token.pt and <id>_pm.pt"}[self.kind]

    def files(self, sample_id: str) -> tuple[str, ...]:
        """Every entry of `folder` one sample needs."""
        if self.kind == "tokens":
            return (f"{sample_id}_token.pt", f"{sample_id}_pm.pt")
        return (self.entry(sample_id),)


@dataclass(frozen=True)
class Layout:
    """What differs between the reference datasets: file names, the line separator, the media of each modality."""

    name: str
    train_file: str
    val_file: str
    test_file: str
    separator: str  # splits a split-file line into id, label (and, for comma lines, the rest)
    class_file: str
    media: tuple[tuple[str, Media], ...]  # (modality, media), sorted by modality
    line_example: str = ""
    # Who speaks in a sample, read from its id: a regular expression whose groups, joined, name the speaker ("":
    # the ids do not say). Drawn splits keep a speaker's samples together (amst_core.layouts.schemes).
    speaker_pattern: str = ""

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m, _ in self.media)

    def media_of(self, modality: str) -> Media:
        return dict(self.media)[modality]

    def speaker(self, sample_id: str) -> str | None:
        """The speaker of a sample (CREMA-D's actor 1001, IEMOCAP's Ses01F), or None when its id does not say."""
        found = re.match(self.speaker_pattern, sample_id) if self.speaker_pattern else None
        return "".join(found.groups()) if found else None

    def default_split_file(self, split: str) -> str:
        return {TRAIN: self.train_file, VAL: self.val_file, TEST: self.test_file}[split]

    def parse_line(self, line: str) -> tuple[str, str, str] | None:
        """(id, label, text) of one split-file line (text after '###', else empty), or None when the line has no
        separator. The reference splits on the separator and strips the first two items."""
        head, _, text = line.partition("###")
        parts = head.split(self.separator, 2) if self.separator == "," else head.split(self.separator, 1)
        if len(parts) < 2:
            return None
        return parts[0].strip(), parts[1].strip(), text.strip()


def audio_visual(name: str, files: tuple[str, str, str], separator: str, class_file: str, frames_dir: str,
                 example: str, speaker_pattern: str = "") -> Layout:
    """A reference audio-visual layout: fbank/<id>.npy and <frames_dir>/<id>/*.jpg."""
    return Layout(name, *files, separator=separator, class_file=class_file, line_example=example,
                  media=((AUDIO, Media("fbank", "fbank")), (VISUAL, Media("frames", frames_dir))),
                  speaker_pattern=speaker_pattern)
