"""Training-step benchmark: method throughput and the cost of a skipped epoch, measured side by side.

What is measured
    `Method.train_batch` on one fixed random batch (batch size 64 by default), i.e. everything a training
    step does: encoder forwards, the no-grad metrics pass, the helper heads, the method's own update(s) and
    the helper update. No data loading, no validation. Models are built with `build_method(cfg, C, device)`
    exactly as the engine builds them (default RunConfig: SGD lr 1e-3, momentum 0.9, wd 1e-4, fp32).

Variants (one model instance per method and skip mode; skip factors audio k=2, visual k=1)
    * epoch 0 = unskipped: audio and visual are both updated. Nothing is skipped, so `faithful` and `fast`
      run the same code; the unskipped time is measured once, on the faithful instance.
    * epoch 1 = skipped: audio is skipped (1 % 2 != 0), measured for `skip_mode: faithful` (the skipped
      encoder still runs its forward in train mode, only backward/step is left out) and `skip_mode: fast`
      (the skipped encoder does no work at all), see amst_method.md section 8.7.
    naive (concat head) never skips; it is measured at epoch 0 only and is the throughput reference.

How it is timed
    After a warm-up (one untimed batch per variant), every repeat times `--batches` consecutive batches of
    each variant with `time.perf_counter` (CUDA synchronised), variants interleaved in an order rotated
    every repeat, so slow drifts of a noisy machine hit all variants alike. Each ratio is computed inside
    one repeat (paired) and the median over repeats is reported with its interquartile range in
    brackets (a wide range means a busy machine: the header prints the load average); times are medians
    over repeats too. `torch.set_num_threads` is left at its default. Nothing is asserted.
    Shapes: avdigits-shaped (full size) and CREMA-D-shaped at reduced resolution (see SHAPES); by default
    only avdigits on CPU (about 3-4 minutes on 2 cores), both on CUDA.

How to read the tables
    * samples/s = batch size / median time per batch at epoch 0; "x naive" = samples/s relative to naive
      (< 1: slower than naive; ALT does one backward per modality, FULL trains two complete models).
    * skipped/unskipped = time per batch at epoch 1 / time per batch at epoch 0 of the same method
      (< 1: a skipped epoch is cheaper; the reference CREMA-D logs, one A100, per-epoch train time with
      data loading, show about 0.73 for ALT and JOINT and 0.71 for FULL with k_audio=5).
    * fast/faithful = fast skipped time / faithful skipped time (< 1: fast mode saves the skipped
      encoder's forward pass on top of its backward).

    * one epoch: `Trainer.run_epoch` of every method on generated data of avdigits' shapes, its time relative
      to naive's in the same repeat (> 1: slower): what a baseline's hooks (PMR's prototype pass, MLA's
      combinations and test every epoch, OGM-GE's gradient modulation) cost on top of the batch step.

    * straightforward vs fast (bench/pipeline.py has the details): whole training epochs of naive, amst_joint and
      amst_full as the reference runs them (per-sample JPEG decode, fp32, faithful skipping) and with everything
      fast (sample cache, crops on the device, channels-last, bf16 where the device has it, fast skipping, one
      encoder backward), their ratio, the loader alone against the step alone, and a skipped epoch's cost next
      to the share FLOPs predict.

Usage: python bench/trainer.py [--batches N] [--repeats R] [--shapes avdigits,cremad] [--methods ...]
                               [--epoch-repeats 3] [--pipeline-shapes cremad] [--json OUT]
       python bench/trainer.py --quick     (straightforward vs fast only: CREMA-D shape, naive and amst_full)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pipeline
import torch
from pipeline import PIPELINE_SHAPES

from amst_core.catalog import METHODS
from amst_core.config import load_config
from amst_core.engine import deterministic_for, seed_everything
from amst_core.methods import Method, build_method
from amst_core.models.encoders import embedding_dim

SKIP_FACTORS = {"audio": 2, "visual": 1}
UNSKIPPED_EPOCH, SKIPPED_EPOCH = 0, 1


@dataclass(frozen=True)
class Shape:
    key: str
    dataset: str  # only names the modalities (audio, visual); no data is read
    audio: tuple[int, ...]
    visual: tuple[int, ...]
    num_classes: int
    note: str


SHAPES: dict[str, Shape] = {
    "avdigits": Shape("avdigits", "avdigits", (1, 48, 13), (3, 1, 28, 28), 10,
                      "avdigits-shaped: audio 48x13 MFCC, 1 grey frame 28x28 (as 3 channels), 10 classes; "
                      "full size"),
    "cremad": Shape("cremad", "cremad", (1, 256, 128), (3, 3, 64, 64), 6,
                    "CREMA-D-shaped, REDUCED resolution: audio 256x128 fbank (1024 frames reduced 4x), "
                    "3 frames at 64x64 (instead of 224x224, 12.25x fewer pixels), 6 classes"),
}


@dataclass(frozen=True)
class Setup:
    """One method as benchmarked: registry name plus method_params (besides skip_mode)."""

    key: str
    method: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def skips(self) -> bool:
        return METHODS[self.method].uses_skip


SETUPS: dict[str, Setup] = {
    s.key: s
    for s in [
        Setup("naive", "naive"),
        Setup("amst_alt", "amst_alt"),
        Setup("amst_joint", "amst_joint"),
        Setup("amst_full_alt", "amst_full", {"full_joint_update": "alt"}),
        Setup("amst_full_joint", "amst_full", {"full_joint_update": "joint"}),
        Setup("ogm_ge", "ogm_ge"),
        Setup("pmr", "pmr"),
        Setup("mla", "mla"),
        Setup("mslr", "mslr"),
        Setup("unimodal_audio", "unimodal", {"modality": "audio"}),
        Setup("unimodal_visual", "unimodal", {"modality": "visual"}),
    ]
}
# Every other registered method (the field's methods, a plugin's) with its defaults.
SETUPS.update({name: Setup(name, name) for name in METHODS if name not in {s.method for s in SETUPS.values()}})
METHOD_ALIASES = {"amst_full": ["amst_full_alt", "amst_full_joint"]}


@dataclass(frozen=True)
class Variant:
    setup: str
    skip_mode: str  # "faithful" | "fast" ("faithful" for naive, which has no skip_mode)
    epoch: int

    @property
    def name(self) -> str:
        return f"{self.setup}/{self.skip_mode}/epoch{self.epoch}"


# ---- building ------------------------------------------------------------------------------------------------


def build(setup: Setup, skip_mode: str, shape: Shape, device: torch.device) -> Method:
    params = dict(setup.params, skip_mode=skip_mode) if setup.skips else dict(setup.params)
    cfg = load_config(base={"dataset": {"name": shape.dataset}, "method": setup.method,
                            "method_params": params, "skip": SKIP_FACTORS})
    seed_everything(cfg.seed, deterministic_for(cfg.deterministic, device))
    method = build_method(cfg, shape.num_classes, device)
    if hasattr(method, "prototypes"):  # PMR's step needs its prototypes (made before each epoch, not timed here)
        dim = embedding_dim(method.modalities, cfg.model.width)
        method.prototypes = {m: torch.randn(shape.num_classes, dim, device=device) for m in method.modalities}
    method.train_mode(True)
    return method


def random_batch(shape: Shape, batch_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    batch = {
        "audio": torch.randn(batch_size, *shape.audio, generator=g),
        "visual": torch.randn(batch_size, *shape.visual, generator=g),
        "label": torch.randint(0, shape.num_classes, (batch_size,), generator=g, dtype=torch.int64),
    }
    return {k: v.to(device) for k, v in batch.items()}


def variants_for(setups: list[Setup]) -> list[Variant]:
    out = []
    for s in setups:
        out.append(Variant(s.key, "faithful", UNSKIPPED_EPOCH))
        if s.skips:
            out += [Variant(s.key, "faithful", SKIPPED_EPOCH), Variant(s.key, "fast", SKIPPED_EPOCH)]
    return out


# ---- timing --------------------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_batches(method: Method, batch: dict[str, torch.Tensor], epoch: int, n: int,
                 device: torch.device) -> float:
    """Seconds per batch over n consecutive train_batch calls."""
    sync(device)
    start = time.perf_counter()
    for _ in range(n):
        method.train_batch(batch, epoch)
    sync(device)
    return (time.perf_counter() - start) / n


def measure_shape(shape: Shape, setups: list[Setup], args: argparse.Namespace, device: torch.device,
                  log: Callable[[str], None]) -> dict[str, list[float]]:
    """Per variant name: seconds per batch, one value per repeat (variants interleaved)."""
    variants = variants_for(setups)
    instances = dict.fromkeys((v.setup, v.skip_mode) for v in variants)  # ordered, unique
    built = {key: build(SETUPS[key[0]], key[1], shape, device) for key in instances}
    batch = random_batch(shape, args.batch_size, device)
    for v in variants if args.warmup else []:  # warm-up: allocator, thread pool, optimizer state
        time_batches(built[v.setup, v.skip_mode], batch, v.epoch, args.warmup, device)
    times: dict[str, list[float]] = {v.name: [] for v in variants}
    for r in range(args.repeats):
        shift = r % len(variants)
        for v in variants[shift:] + variants[:shift]:
            times[v.name].append(time_batches(built[v.setup, v.skip_mode], batch, v.epoch, args.batches, device))
        log(f"  {shape.key}: repeat {r + 1}/{args.repeats} done")
    return times


# ---- whole epochs ------------------------------------------------------------------------------------------

EPOCH_DATA = {"modalities": ["audio", "visual"], "num_classes": 10, "audio_shape": [48, 13], "image_size": 28,
              "frames": 1, "samples": {"train": 640, "val": 160, "test": 160}}


def epoch_trainer(setup: Setup, device: torch.device):
    """A trainer on generated data of avdigits' shapes, evaluating test every epoch (so that every method pays
    the same evaluation; MLA does anyway)."""
    from amst_core.engine import Trainer

    params = dict(setup.params, skip_mode="faithful") if setup.skips else dict(setup.params)
    cfg = load_config(base={"method": setup.method, "dataset": {"name": "synthetic", "synthetic": EPOCH_DATA},
                            "model": {"frames": 1}, "method_params": params, "skip": SKIP_FACTORS,
                            "device": str(device), "test_every_epoch": True, "batch_size": 64})
    return Trainer(cfg, progress=False)


def measure_epochs(setups: list[Setup], repeats: int, device: torch.device,
                   log: Callable[[str], None]) -> dict[str, list[float]]:
    """Seconds of `Trainer.run_epoch` (train, val, test, every hook: PMR's prototypes, MLA's combinations) per
    setup and epoch (0: nothing skipped; 1: audio skipped for AMST), setups interleaved, order rotated."""
    trainers = {s.key: epoch_trainer(s, device) for s in setups}
    for t in trainers.values():  # warm-up, and PMR's first prototypes
        t.run_epoch(0)
    times: dict[str, list[float]] = {f"{s.key}/epoch{e}": [] for s in setups for e in (0, 1)}
    keys = list(trainers)
    for r in range(repeats):
        shift = r % len(keys)
        for key in keys[shift:] + keys[:shift]:
            for epoch in (0, 1):
                sync(device)
                start = time.perf_counter()
                trainers[key].run_epoch(epoch)
                sync(device)
                times[f"{key}/epoch{epoch}"].append(time.perf_counter() - start)
        log(f"  epochs: repeat {r + 1}/{repeats} done")
    return times


def epoch_table(times: dict[str, list[float]], setups: list[Setup]) -> list[str]:
    lines = ["| method | epoch 0 s | x naive | epoch 1 s | x naive |", "|---|---:|---:|---:|---:|"]
    for s in setups:
        cells = []
        for e in (0, 1):
            mine, naive = times[f"{s.key}/epoch{e}"], times.get(f"naive/epoch{e}")
            cells += [f"{statistics.median(mine):.2f}", ratio_cell(ratio_stats(mine, naive)) if naive else "n/a"]
        lines.append(f"| {s.key} | {' | '.join(cells)} |")
    return lines


# ---- summarising -------------------------------------------------------------------------------------------


def ratio_stats(num: list[float], den: list[float]) -> dict[str, float]:
    """Median and quartiles of the per-repeat (paired) ratios num/den."""
    ratios = [a / b for a, b in zip(num, den, strict=True)]
    q1, q3 = (statistics.quantiles(ratios, n=4, method="inclusive")[i] for i in (0, 2)) \
        if len(ratios) > 1 else (ratios[0], ratios[0])
    return {"median": statistics.median(ratios), "q1": q1, "q3": q3}


def summarise(times: dict[str, list[float]], setups: list[Setup], batch_size: int) -> dict[str, dict[str, Any]]:
    naive = times.get(Variant("naive", "faithful", UNSKIPPED_EPOCH).name)
    rows: dict[str, dict[str, Any]] = {}
    for s in setups:
        t0 = times[Variant(s.key, "faithful", UNSKIPPED_EPOCH).name]
        row: dict[str, Any] = {"unskipped_s": statistics.median(t0),
                               "samples_per_s": batch_size / statistics.median(t0),
                               "x_naive": ratio_stats(naive, t0) if naive else None}
        if s.skips:
            faithful = times[Variant(s.key, "faithful", SKIPPED_EPOCH).name]
            fast = times[Variant(s.key, "fast", SKIPPED_EPOCH).name]
            row.update(faithful_skipped_s=statistics.median(faithful), fast_skipped_s=statistics.median(fast),
                       faithful_skip_ratio=ratio_stats(faithful, t0), fast_skip_ratio=ratio_stats(fast, t0),
                       fast_over_faithful=ratio_stats(fast, faithful))
        rows[s.key] = row
    return rows


def ratio_cell(stats: dict[str, float] | None) -> str:
    if stats is None:
        return "n/a"
    return f"{stats['median']:.2f} ({stats['q1']:.2f}-{stats['q3']:.2f})"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f}"


def throughput_table(rows: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| method | ms/batch (epoch 0) | samples/s | x naive (throughput) |", "|---|---:|---:|---:|"]
    for key, r in rows.items():
        lines.append(f"| {key} | {ms(r['unskipped_s'])} | {r['samples_per_s']:.1f} | {ratio_cell(r['x_naive'])} |")
    return lines


def skip_table(rows: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| method | unskipped ms/batch | faithful skipped ms | faithful skipped/unskipped | "
             "fast skipped ms | fast skipped/unskipped | fast/faithful (skipped) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for key, r in rows.items():
        if "fast_skipped_s" not in r:
            continue
        lines.append(f"| {key} | {ms(r['unskipped_s'])} | {ms(r['faithful_skipped_s'])} | "
                     f"{ratio_cell(r['faithful_skip_ratio'])} | {ms(r['fast_skipped_s'])} | "
                     f"{ratio_cell(r['fast_skip_ratio'])} | {ratio_cell(r['fast_over_faithful'])} |")
    return lines


def shape_report(shape: Shape, rows: dict[str, dict[str, Any]], args: argparse.Namespace) -> list[str]:
    lines = [f"### {shape.key}: {shape.note}", "",
             f"audio {tuple(shape.audio)}, visual {tuple(shape.visual)} per sample, batch {args.batch_size}; "
             f"times: median of {args.repeats} repeats x {args.batches} batch(es); ratios: median of the "
             "per-repeat paired ratios, (interquartile range) after it.", "",
             "Throughput (epoch 0, nothing skipped):", "", *throughput_table(rows), ""]
    skip = skip_table(rows)
    if len(skip) > 2:
        lines += [f"Skipped epoch (epoch {SKIPPED_EPOCH}, audio skipped with k_audio={SKIP_FACTORS['audio']}) "
                  f"vs unskipped (epoch {UNSKIPPED_EPOCH}):", "", *skip, ""]
    return lines


# ---- CLI ---------------------------------------------------------------------------------------------------


def environment(device: torch.device) -> dict[str, Any]:
    env = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device),
           "cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
           "torch_threads": torch.get_num_threads(), "loadavg_start": os.getloadavg()[0]}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def header(env: dict[str, Any], args: argparse.Namespace) -> list[str]:
    dev = env["device"] + (f" ({env['gpu']})" if "gpu" in env else "")
    busy = " (above the usable CPUs: other processes shared the cores)" \
        if env["loadavg_start"] > env["cpus_usable"] else ""
    return ["## Trainer benchmark (bench/trainer.py)", "",
            f"device {dev}; torch {env['torch']}; python {env['python']}; CPUs {env['cpu_count']} "
            f"(usable {env['cpus_usable']}); torch threads {env['torch_threads']}; 1-min load average at start "
            f"{env['loadavg_start']:.1f}{busy}", "",
            f"batches/repeat {args.batches}, repeats {args.repeats}, warm-up {args.warmup} batch(es) per variant, "
            f"batch size {args.batch_size}; skip factors audio {SKIP_FACTORS['audio']}, visual "
            f"{SKIP_FACTORS['visual']}; naive uses the concat head; amst_full_alt / amst_full_joint = "
            "method_params.full_joint_update alt / joint.", ""]


def parse_list(text: str, known: list[str], aliases: dict[str, list[str]] | None = None) -> list[str]:
    out: list[str] = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        expanded = (aliases or {}).get(item, [item])
        bad = [e for e in expanded if e not in known]
        if bad:
            raise SystemExit(f"unknown {bad[0]!r}; choose from {', '.join(known + list(aliases or {}))}")
        out += [e for e in expanded if e not in out]
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batches", type=int, default=1, help="timed batches per variant per repeat")
    p.add_argument("--repeats", type=int, default=8, help="interleaved repeats (medians are taken over them)")
    p.add_argument("--warmup", type=int, default=1, help="untimed batches per variant before timing")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--shapes", default="auto",
                   help="comma list of: " + ", ".join(SHAPES) + "; auto = all on CUDA, avdigits only on CPU "
                   "(the cremad shape costs about 10x more per batch: several minutes per repeat on 2 cores)")
    p.add_argument("--methods", default=",".join(SETUPS),
                   help="comma list of: " + ", ".join([*SETUPS, *METHOD_ALIASES]) + " (amst_full = both)")
    p.add_argument("--epoch-repeats", type=int, default=3, help="repeats of whole epochs of every method (0: none)")
    p.add_argument("--json", type=Path, default=None,
                   help="also write every row as a JSON object here (rows), with the raw numbers")
    p.add_argument("--pipeline-shapes", default="auto",
                   help="straightforward vs fast on these shapes (cremad, avdigits; none: skip); auto = both on CUDA, "
                        "cremad on CPU")
    p.add_argument("--pipeline-methods", default="naive,amst_joint,amst_full")
    p.add_argument("--pipeline-repeats", type=int, default=2)
    p.add_argument("--pipeline-train", type=int, default=0,
                   help="training clips of the generated dataset (0: 12 on CPU at the CREMA-D shape, 512 on CUDA)")
    p.add_argument("--pipeline-batch-size", type=int, default=0, help="0: 4 on CPU, 64 on CUDA")
    p.add_argument("--compile", action="store_true", help="the fast configuration also compiles the encoders")
    p.add_argument("--quick", action="store_true",
                   help="only straightforward vs fast, CREMA-D shape, naive and amst_full (under 5 min on 2 cores)")
    args = p.parse_args(argv)
    if min(args.batches, args.repeats, args.batch_size) < 1 or args.warmup < 0:
        p.error("--batches, --repeats and --batch-size must be >= 1, --warmup >= 0")
    if args.shapes == "auto":
        args.shapes = ",".join(SHAPES) if torch.cuda.is_available() else "avdigits"
    args.shape_keys = parse_list(args.shapes, list(SHAPES))
    args.setup_keys = parse_list(args.methods, list(SETUPS), METHOD_ALIASES)
    cuda = torch.cuda.is_available()
    if args.pipeline_shapes == "auto":
        args.pipeline_shapes = "cremad,avdigits" if cuda else "cremad"
    if args.quick:
        args.shape_keys, args.epoch_repeats = [], 0
        args.pipeline_shapes, args.pipeline_methods = "cremad", "naive,amst_full"
    args.pipeline_shape_keys = [] if args.pipeline_shapes == "none" else parse_list(args.pipeline_shapes,
                                                                                     list(PIPELINE_SHAPES))
    args.pipeline_method_keys = parse_list(args.pipeline_methods, ["naive", "amst_alt", "amst_joint", "amst_full"])
    args.pipeline_train = args.pipeline_train or (512 if cuda else 12)
    args.pipeline_batch_size = args.pipeline_batch_size or (64 if cuda else 4)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    env = environment(device)
    setups = [SETUPS[k] for k in args.setup_keys]
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731  progress off the tables
    started = time.perf_counter()
    lines, raw = header(env, args), {}
    for key in args.shape_keys:
        shape = SHAPES[key]
        times = measure_shape(shape, setups, args, device, log)
        rows = summarise(times, setups, args.batch_size)
        raw[key] = {"note": shape.note, "audio": shape.audio, "visual": shape.visual, "times_s": times,
                    "summary": rows}
        lines += shape_report(shape, rows, args)
    if args.epoch_repeats:
        epochs = measure_epochs(setups, args.epoch_repeats, device, log)
        raw["epochs"] = epochs
        lines += [f"### One epoch, every method ({EPOCH_DATA['samples']['train']} train, "
                  f"{EPOCH_DATA['samples']['val']} val and {EPOCH_DATA['samples']['test']} test samples of "
                  "avdigits' shapes, batch 64, test every epoch)", "",
                  "`Trainer.run_epoch`: training, PMR's prototype pass, validation, test and every hook; epoch 1 "
                  f"skips audio for AMST (k_audio {SKIP_FACTORS['audio']}). Median seconds of "
                  f"{args.epoch_repeats} interleaved repeats; x naive = time / naive's time in the same repeat "
                  "(> 1: slower), median (interquartile range).", "", *epoch_table(epochs, setups), ""]
    rows = []
    for key in args.pipeline_shape_keys:
        shape = PIPELINE_SHAPES[key]
        small = key == "avdigits"  # cheap steps: more samples and steps for a measurable epoch
        shape_rows = pipeline.measure(
            shape, args.pipeline_method_keys, device, args.pipeline_repeats,
            args.pipeline_train * (8 if small else 1), args.pipeline_batch_size * (4 if small else 1),
            steps=8 if small else 2, compile_encoders=args.compile, log=log)
        rows += shape_rows
        lines += pipeline.report(shape_rows, f"{shape.note} ({args.pipeline_repeats} interleaved repeats, "
                                             f"batch {shape_rows[0]['batch_size']}, "
                                             f"{shape_rows[0]['train_samples']} training clips)")
    wall = time.perf_counter() - started
    env["loadavg_end"] = os.getloadavg()[0]
    lines.append(f"Total wall time {wall:.0f} s (shapes {args.shapes}); 1-min load average at end "
                 f"{env['loadavg_end']:.1f}.")
    print("\n".join(lines))
    if args.json:
        payload = {"environment": env, "args": {k: v for k, v in vars(args).items() if k != "json"},
                   "skip_factors": SKIP_FACTORS, "wall_s": wall, "shapes": raw, "rows": rows}
        args.json.write_text(json.dumps(payload, indent=2, default=str))


if __name__ == "__main__":
    main()
