"""What recording a run's provenance costs at the start of every attempt: the data fingerprint of a CREMA-D-sized
reference folder (7442 clips: an fbank .npy each, a folder of 3 frames each, the split and class files), side by
side with a bare listing of the same tree (os.walk, no stat: the least any look at every file costs), and the
code and environment sections.

    python bench/provenance.py [--clips 7442] [--repeats 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import timeit
from pathlib import Path

from amst_core import provenance
from amst_core.config import load_config
from amst_core.datafiles import DataRoots


def write_cremad_like(root: Path, clips: int) -> None:
    """Empty-ish files with the real layout's names: the fingerprint reads statistics, never contents."""
    folder = root / "cremad"
    (folder / "fbank").mkdir(parents=True)
    (folder / "stat_cre.txt").write_text("\n".join(("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad")) + "\n")
    ids = [f"{1001 + i % 91}_CLIP{i:05d}_ANG_XX" for i in range(clips)]
    for name, share in (("80_train_cre.txt", ids[:clips * 8 // 10]), ("10_val_cre.txt", ids[clips * 8 // 10:
                        clips * 9 // 10]), ("10_test_cre.txt", ids[clips * 9 // 10:])):
        (folder / name).write_text("".join(f"{i} Anger\n" for i in share))
    for i in ids:
        (folder / "fbank" / f"{i}.npy").write_bytes(b"\0" * 64)
        frames = folder / "visual" / "Image-01-FPS" / i
        frames.mkdir(parents=True)
        for k in range(3):
            (frames / f"{k:05d}.jpg").write_bytes(b"\0" * 32)


def median_s(fn, repeats: int) -> float:
    return statistics.median(timeit.repeat(fn, number=1, repeat=repeats))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=7442)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", help="folder to build the tree in (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        write_cremad_like(root, args.clips)
        roots = DataRoots(root)
        cfg = load_config(base={"method": "naive", "dataset": {"name": "cremad"}, "device": "cpu"})
        files = sum(len(names) for _, _, names in os.walk(root / "cremad"))
        listing = median_s(lambda: sum(len(n) for _, _, n in os.walk(root / "cremad")), args.repeats)
        fingerprint = median_s(lambda: provenance.data_fingerprint(cfg, roots), args.repeats)
        code = median_s(lambda: (provenance.code.cache_clear(), provenance.code()), args.repeats)
        environment = median_s(lambda: provenance.environment("cpu"), args.repeats)
    print(f"{files} files: data fingerprint {fingerprint:.3f} s, bare listing {listing:.3f} s "
          f"(x{fingerprint / listing:.1f}); code (git) {code * 1000:.0f} ms, environment {environment * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
