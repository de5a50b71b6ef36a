"""What `model.channels_last` buys and costs on this machine's CPU, side by side in one run:

- speed: the median `train_batch` time of naive fusion at the CREMA-D shape (fbank 1024 x 128, 3 frames of
  224 px, ResNet-18 width 64, batch 4) with the encoders channels-last and in the default layout, interleaved;
- numerics: BatchNorm2d's training-mode output and running_var against the same BatchNorm in float64, at batch
  4 / 16 / 64, on a layer-1-sized map (64 channels, 128 x 32), in both layouts;
- with `--crash-map`: which widths and audio lengths crash a channels-last encoder's backward pass (each probe in
  a child process: the crash kills it), and that the default layout never does.

    python bench/channels_last.py [--steps 4] [--crash-map]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

from amst_core.config import load_config
from amst_core.methods import build_method

CPU = torch.device("cpu")


def step_seconds(channels_last: bool, steps: int) -> list[float]:
    cfg = load_config(base={"method": "naive", "dataset": {"name": "synthetic"}, "device": "cpu", "batch_size": 4,
                            "model": {"channels_last": channels_last, "frames": 3}})
    torch.manual_seed(0)
    method = build_method(cfg, 6, CPU)
    method.train_mode(True)
    batch = {"audio": torch.randn(4, 1, 1024, 128), "visual": torch.randn(4, 3, 3, 224, 224),
             "label": torch.randint(0, 6, (4,))}
    method.train_batch(batch, 0)  # warm-up: oneDNN picks and caches its kernels
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        method.train_batch(batch, 0)
        times.append(time.perf_counter() - started)
    return times


def batchnorm_error(batch: int, channels_last: bool) -> tuple[float, float]:
    """(max |output - float64 output|, max relative error of running_var) of one training-mode pass."""
    torch.manual_seed(batch)
    x = torch.randn(batch, 64, 128, 32) * 3 + 1
    exact = nn.BatchNorm2d(64).double().train()
    expected = exact(x.double())
    bn = nn.BatchNorm2d(64).train()
    layout = torch.channels_last if channels_last else torch.contiguous_format
    out = bn.to(memory_format=layout)(x.to(memory_format=layout))
    out_err = (out.double() - expected).abs().max().item()
    var_err = ((bn.running_var.double() - exact.running_var) / exact.running_var).abs().max().item()
    return out_err, var_err


PROBE = """
import sys, torch
from amst_core.models.encoders import AudioEncoder
width, batch, frames, channels_last = (int(a) for a in sys.argv[1:5])
encoder = AudioEncoder(8 * width, width).train()
x = torch.randn(batch, 1, frames, 128)
if channels_last:
    encoder = encoder.to(memory_format=torch.channels_last)
encoder(x).sum().backward()
"""


def crash_map() -> None:
    print("\nchannels-last audio encoder, one forward + backward on (batch, 1, frames, 128), each in a child:")
    print("| width | batch | frames | channels-last | default layout |\n|---:|---:|---:|---|---|")
    for width in (4, 8, 12, 16, 64):
        for batch, frames in ((4, 256), (4, 512), (2, 1024)):
            if width == 64 and frames != 1024:
                continue
            result = []
            for layout in (1, 0):
                done = subprocess.run([sys.executable, "-c", PROBE, str(width), str(batch), str(frames), str(layout)],
                                      capture_output=True, timeout=600)
                result.append("ok" if done.returncode == 0 else f"crash ({done.returncode})")
            print(f"| {width} | {batch} | {frames} | {result[0]} | {result[1]} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per layout and round (2 rounds)")
    parser.add_argument("--crash-map", action="store_true")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(2):  # interleaved rounds: both layouts see the same state of the machine
        for layout in (False, True):
            times[layout] += step_seconds(layout, args.steps)
    on, off = statistics.median(times[True]), statistics.median(times[False])
    print(f"naive step at the CREMA-D shape, batch 4 (median of {len(times[True])}): default layout {off:.2f} s, "
          f"channels-last {on:.2f} s, channels-last / default {on / off:.2f}")
    print("\nBatchNorm2d(64) on (batch, 64, 128, 32), training mode, against float64:")
    print("| batch | output err, default | output err, channels-last | running_var rel. err, default | "
          "running_var rel. err, channels-last |\n|---:|---:|---:|---:|---:|")
    for batch in (4, 16, 64):
        (o0, v0), (o1, v1) = batchnorm_error(batch, False), batchnorm_error(batch, True)
        print(f"| {batch} | {o0:.1e} | {o1:.1e} | {v0:.1e} | {v1:.1e} |")
    if args.crash_map:
        crash_map()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
