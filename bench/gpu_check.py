"""The GPU check of the training pipeline, in one run: one table with the card's name, samples/s of the
straightforward and the fast configuration (bench/pipeline.py) for naive, amst_joint and amst_full at the CREMA-D
shape, their ratio, GPU utilisation (nvidia-smi sampled every 200 ms while each configuration trains) and peak
memory, then a host-synchronisation check: the fast configuration's batch loop run under
`torch.cuda.set_sync_debug_mode("warn")`, every synchronising call counted (0 expected).

Usage: python bench/gpu_check.py [--train 512] [--batch-size 64] [--repeats 2] [--compile] [--json OUT]
       python bench/gpu_check.py --allow-cpu --train 8 --batch-size 4 --repeats 1   (the code path on a CPU)
bench/gpu_check.sh runs it with the settings for one GPU in under 8 minutes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pipeline  # bench/ is on the path of a script run from it
import torch


class UtilisationSampler:
    """nvidia-smi's GPU utilisation, sampled in a thread while a block runs; None where there is no nvidia-smi."""

    def __init__(self, index: int):
        self.index, self.samples, self.stop = index, [], threading.Event()

    def sample(self) -> None:
        while not self.stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "-i", str(self.index), "--query-gpu=utilization.gpu",
                                      "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5)
                self.samples.append(float(out.stdout.strip().splitlines()[0]))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                return
            self.stop.wait(0.2)

    def __enter__(self) -> UtilisationSampler:
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def epoch_rows(args: argparse.Namespace, device: torch.device, log) -> list[dict[str, Any]]:
    shape = pipeline.PIPELINE_SHAPES["cremad"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp, pipeline.env({"AMST_DATA_ROOT": f"{tmp}/data",
                                                             "AMST_CACHE": f"{tmp}/cache"}):
        pipeline.write_dataset(Path(tmp) / "data", shape, args.train, np.random.default_rng(0))
        for method in args.methods.split(","):
            for configuration in pipeline.CONFIGURATIONS:
                cfg = pipeline.config(shape, method, configuration, device, args.batch_size, args.compile)
                trainer = pipeline.trainer_for(cfg, configuration)
                log(f"{method} {configuration}: warm-up epoch")
                pipeline.epoch_work(trainer, 0)()  # cache built, kernels chosen, compiled
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                speeds, skipped = [], []
                with UtilisationSampler(device.index or 0) as util:
                    for _ in range(args.repeats):
                        speeds.append(pipeline.timed(device, pipeline.epoch_work(trainer, 0)))
                        if method != "naive":
                            skipped.append(pipeline.timed(device, pipeline.epoch_work(trainer, 1)))
                rows.append({"method": method, "configuration": configuration, "precision": cfg.precision,
                             "samples_per_s": float(np.median(speeds)),
                             "skipped_samples_per_s": float(np.median(skipped)) if skipped else None,
                             "gpu_utilisation": util.mean,
                             "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30
                             if device.type == "cuda" else None,
                             "sync_calls": sync_calls(trainer, device) if configuration == "fast" else None})
                trainer.loaders.close()
                del trainer
    return rows


def sync_calls(trainer, device: torch.device) -> int | None:
    """Synchronising CUDA calls made by one training epoch's batch loop (loader, device work, step, metrics)."""
    if device.type != "cuda":
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            pipeline.epoch_work(trainer, 0)()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    calls = [w for w in caught if "synchroniz" in str(w.message).lower()]
    for w in calls[:3]:
        print(f"  sync: {w.filename}:{w.lineno}: {str(w.message)[:160]}", file=sys.stderr)
    return len(calls)


def table(rows: list[dict[str, Any]], card: str) -> list[str]:
    lines = [f"### GPU check: {card}", "",
             "| method | configuration | samples/s (epoch) | x | skipped epoch samples/s | GPU util % | peak GiB | "
             "host syncs in the batch loop |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    base = {r["method"]: r["samples_per_s"] for r in rows if r["configuration"] == "straightforward"}
    for r in rows:
        fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
        lines.append(f"| {r['method']} | {r['configuration']} ({r['precision']}) | {r['samples_per_s']:.1f} | "
                     f"{r['samples_per_s'] / base[r['method']]:.2f} | {fmt(r['skipped_samples_per_s'], '.1f')} | "
                     f"{fmt(r['gpu_utilisation'], '.0f')} | {fmt(r['peak_memory_gib'], '.2f')} | "
                     f"{fmt(r['sync_calls'], 'd')} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", type=int, default=512, help="training clips of the generated CREMA-D-shaped data")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--methods", default="naive,amst_joint,amst_full")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--allow-cpu", action="store_true", help="run on the CPU when there is no GPU (a code check)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if not torch.cuda.is_available() and not args.allow_cpu:
        raise SystemExit("no CUDA device here (use --allow-cpu to check the code path on a CPU)")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (code check only)"
    started = time.perf_counter()
    rows = epoch_rows(args, device, lambda msg: print(msg, file=sys.stderr, flush=True))
    print("\n".join(table(rows, card)))
    print(f"\n{args.train} training clips, batch {args.batch_size}, {args.repeats} repeats; torch "
          f"{torch.__version__}; {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"card": card, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
