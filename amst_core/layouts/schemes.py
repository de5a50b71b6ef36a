"""Splits drawn over a reference layout's samples instead of read from its split files (`dataset.split_scheme`),
and what each split holds (GET /datasets). Torch-free.

Both drawn splits take the samples the split files list (their union, each id once, with the label its last line
gives) and change only which split each one goes to; sizes keep the split files' proportions.

  speaker_independent   every speaker (CREMA-D's actor) in exactly one split. The speakers, sorted, are shuffled
                        with `dataset.split_seed`; test, then val, take them in that order for as long as each
                        brings the split nearer its target size, and train takes the rest. Every CREMA-D actor
                        speaks every emotion in near equal numbers, so whole actors keep each split's class shares
                        close to the whole's without a rule of their own (Doc/datasets.md has the measured gaps).
  leave_one_session_out IEMOCAP: the samples of session `dataset.test_session` are the test split; val is drawn
                        from each class of the other sessions with `dataset.split_seed` (stratified, as the
                        reference draws its split), the rest is train.

Seeded means `random.Random(seed)` over sorted names: the same seed gives the same split on any machine (no
`hash()`, no file-system order).
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING

from amst_core.config import ConfigError
from amst_core.datasets.base import LEAVE_ONE_SESSION_OUT, SPEAKER_INDEPENDENT
from amst_core.layouts.base import SPLITS, TEST, TRAIN, VAL, Layout

if TYPE_CHECKING:
    from amst_core.config import DatasetConfig

Item = tuple[str, int]  # (sample id, class index)
SESSION = re.compile(r"Ses(\d\d)")  # IEMOCAP's speaker Ses03F: session 3


def draw(dataset: DatasetConfig, layout: Layout, listed: Mapping[str, list[Item]]) -> dict[str, list[Item]]:
    """The run's split (split -> items, in the split files' order) drawn over the samples `listed` by the split
    files, as `dataset.split_scheme` says."""
    items = union(listed)
    if dataset.split_scheme == SPEAKER_INDEPENDENT:
        shares = {split: len(listed[split]) for split in SPLITS}
        return speaker_independent(items, speakers(items, layout), shares, dataset.split_seed or 0)
    if dataset.split_scheme == LEAVE_ONE_SESSION_OUT:
        val_share = len(listed[VAL]) / max(1, len(listed[TRAIN]) + len(listed[VAL]))
        return leave_one_session_out(items, speakers(items, layout), dataset.test_session or 0, val_share,
                                     dataset.split_seed or 0)
    raise ValueError(f"not a drawn split: {dataset.split_scheme!r}")


def union(listed: Mapping[str, list[Item]]) -> list[Item]:
    """Every sample the split files list, once (CREMA-D lists 4 clips in both val and test), in file order."""
    return list(dict(item for split in SPLITS for item in listed[split]).items())


def speakers(items: list[Item], layout: Layout) -> dict[str, str]:
    """Sample id -> its speaker; a ConfigError naming the field when an id does not say who speaks."""
    found = {sample_id: layout.speaker(sample_id) for sample_id, _ in items}
    unknown = [sample_id for sample_id, speaker in found.items() if speaker is None]
    if unknown:
        raise ConfigError("dataset.split_scheme", f"{len(unknown)} sample ids name no speaker (the first: "
                                                  f"{unknown[0]!r}; a {layout.name} id reads like "
                                                  f"{layout.line_example!r}); a drawn split needs every speaker")
    return found  # type: ignore[return-value]  (every value is a str now)


def speaker_independent(items: list[Item], speaker_of: Mapping[str, str], sizes: Mapping[str, int],
                        seed: int) -> dict[str, list[Item]]:
    """Whole speakers to splits, seeded: test, then val, take the shuffled speakers in turn while that brings them
    nearer their share of `sizes` (the split files'); train takes the rest."""
    samples = Counter(speaker_of[sample_id] for sample_id, _ in items)
    if len(samples) < len(SPLITS):
        raise ConfigError("dataset.split_scheme", f"the split files name {len(samples)} speakers; a speaker-"
                                                  f"independent split needs at least {len(SPLITS)}")
    order = sorted(samples)
    random.Random(seed).shuffle(order)
    split_of: dict[str, str] = {}
    for split in (TEST, VAL):
        target, held = len(items) * sizes[split] / sum(sizes.values()), 0
        while len(order) > 1 and (not held or abs(held + samples[order[0]] - target) < abs(held - target)):
            speaker = order.pop(0)  # at least one speaker each, and one left for train
            split_of[speaker], held = split, held + samples[speaker]
    split_of.update(dict.fromkeys(order, TRAIN))
    return {split: [item for item in items if split_of[speaker_of[item[0]]] == split] for split in SPLITS}


def session(speaker: str) -> int:
    found = SESSION.match(speaker)
    return int(found.group(1)) if found else 0


def leave_one_session_out(items: list[Item], speaker_of: Mapping[str, str], test_session: int, val_share: float,
                          seed: int) -> dict[str, list[Item]]:
    """Session `test_session` is the test split; a seeded `val_share` of each class of the others is val."""
    test_ids = {sample_id for sample_id, _ in items if session(speaker_of[sample_id]) == test_session}
    if not test_ids or len(test_ids) == len(items):
        held = sorted({session(s) for s in speaker_of.values()})
        raise ConfigError("dataset.test_session", f"session {test_session} cannot be held out: the split files "
                                                  f"hold sessions {', '.join(map(str, held))}")
    by_class: dict[int, list[str]] = defaultdict(list)
    for sample_id, label in items:
        if sample_id not in test_ids:
            by_class[label].append(sample_id)
    rng = random.Random(seed)
    val_ids: set[str] = set()
    for label in sorted(by_class):
        ids = sorted(by_class[label])
        rng.shuffle(ids)
        val_ids.update(ids[:round(val_share * len(ids))])
    split_of = {sample_id: TEST if sample_id in test_ids else VAL if sample_id in val_ids else TRAIN
                for sample_id, _ in items}
    return {split: [item for item in items if split_of[item[0]] == split] for split in SPLITS}


# ---------------------------------------------------------------- what each split holds (GET /datasets)


@dataclass(frozen=True)
class SplitCounts:
    samples: int
    classes: dict[str, int]  # class name -> samples, in class order
    speakers: tuple[str, ...]  # sorted; empty where the ids do not say who speaks


def count_splits(parts: Mapping[str, list[Item]], classes: tuple[str, ...], layout: Layout) -> dict[str, SplitCounts]:
    """Samples, class counts and speakers of each split, from the ids and labels alone (no media read)."""
    out = {}
    for split, items in parts.items():
        per_class = Counter(label for _, label in items)
        who = {layout.speaker(sample_id) for sample_id, _ in items} - {None}
        out[split] = SplitCounts(len(items), {name: per_class[i] for i, name in enumerate(classes)},
                                 tuple(sorted(who)))  # type: ignore[arg-type]  (None was taken out)
    return out


def shared_speakers(counts: Mapping[str, SplitCounts]) -> dict[str, int]:
    """Speakers found in two splits, per pair ("train/test": 91 is CREMA-D's reference split: every actor in
    both); empty where the ids do not say who speaks."""
    if not any(c.speakers for c in counts.values()):
        return {}
    return {f"{a}/{b}": len(set(counts[a].speakers) & set(counts[b].speakers))
            for a, b in combinations([s for s in SPLITS if s in counts], 2)}
