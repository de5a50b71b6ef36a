"""What an epoch's checkpoint costs: the atomic, fsynced write the engine does (amst_core.runfolder.save_atomic)
against a plain torch.save to the same folder, side by side, for the AMST-FULL model of avdigits' shapes
(four ResNet-18s with their optimizer state).

    python bench/checkpoint.py [--repeats 5] [--dir DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from amst_core.config import load_config
from amst_core.engine import Trainer
from amst_core.runfolder import save_atomic


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", help="folder to write in (default: a temporary folder on the same disk as /tmp)")
    args = parser.parse_args()
    cfg = load_config(base={"method": "amst_full", "dataset": {"name": "synthetic"}, "device": "cpu",
                            "model": {"frames": 1}})
    trainer = Trainer(cfg, progress=False)
    state = trainer.checkpoint(0, [])
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        plain, atomic = [], []
        for _ in range(args.repeats):  # interleaved: both see the same state of the disk
            started = time.perf_counter()
            torch.save(state, Path(tmp) / "plain.pt")
            plain.append(time.perf_counter() - started)
            started = time.perf_counter()
            save_atomic(state, Path(tmp) / "last.pt")
            atomic.append(time.perf_counter() - started)
        size = (Path(tmp) / "last.pt").stat().st_size
    p, a = statistics.median(plain), statistics.median(atomic)
    print(f"AMST-FULL checkpoint, {size / 1e6:.0f} MB, median of {args.repeats}: torch.save {p:.2f} s, "
          f"atomic + fsync {a:.2f} s (x {a / p:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
