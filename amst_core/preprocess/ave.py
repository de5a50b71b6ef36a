"""AVE as released: AVE/<youtube id>.mp4 and the annotation lists trainSet.txt, valSet.txt, testSet.txt (lines
`Category&VideoID&Quality&StartTime&EndTime`). One split-file line per event, as the reference (a video listed
twice keeps both lines); audio is the video's soundtrack, frames one per second."""

from __future__ import annotations

from pathlib import Path

from amst_core.config import ConfigError
from amst_core.layouts import LAYOUTS
from amst_core.preprocess.base import Job, Plan, Sample
from amst_core.vocab import SPLITS

LISTS = dict(zip(SPLITS, ("trainSet.txt", "valSet.txt", "testSet.txt"), strict=True))


def plan(raw: Path, splits: Path | None = None) -> Plan:
    del splits  # AVE's split is its annotation lists
    videos = raw / "AVE"
    by_split: dict[str, list[Sample]] = {}
    for split, name in LISTS.items():
        path = raw / name
        if not path.is_file():
            raise ConfigError("RAW_DIR", f"{path} does not exist; AVE's release has AVE/*.mp4 and trainSet.txt, "
                                         "valSet.txt, testSet.txt")
        rows = [line.split("&") for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
        by_split[split] = [Sample(r[1].strip(), r[0].strip()) for r in rows if len(r) >= 2 and r[1].strip()
                           and r[0].strip() != "Category"]
    ids = sorted({s.sample_id for items in by_split.values() for s in items})
    jobs = [Job(i, audio=videos / f"{i}.mp4", video=videos / f"{i}.mp4") for i in ids]
    classes = tuple(sorted({s.label for items in by_split.values() for s in items}))
    return Plan(LAYOUTS["ave"], classes, by_split, jobs, lambda s: f"{s.sample_id}.mp4 {s.label}")
