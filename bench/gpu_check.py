"""The GPU check of the training pipeline, every variant side by side in one run.

For naive, amst_joint and amst_full at the CREMA-D shape (fbank 1024 x 128, 3 frames at 224 px, ResNet-18 width
64, batch 64; bench/pipeline.py writes the data): the reference's straightforward pipeline against ours (sample
cache, device augmentation, channels-last, bf16, fused SGD, one encoder backward, fast skipping), `compile` off
and on as separate rows. Each row: samples/s of an unskipped and a skipped epoch, and their average over CREMA-D's
skip cycle (k_audio = 5: epochs 0..4 are 1 unskipped and 4 skipped epochs, so the cycle's samples/s is
5 / (1/unskipped + 4/skipped)); GPU utilisation (NVML, the run's GPU found by its PCI bus id as the engine finds
it, so CUDA_VISIBLE_DEVICES cannot point it at another card) and peak memory while the timed epochs run; for the
fast rows the host synchronisations inside the batch loop (`torch.cuda.set_sync_debug_mode("warn")`, the
epoch-end meter reads counted apart: they are allowed). Then `amst cache`'s throughput on this node's cores and,
with --service, samples/s of the same run through the service (`amst up`: API + worker) against the CLI's
`execute_run`. Each target is printed next to its figure with met / not met.

Usage: python bench/gpu_check.py [--train 512] [--batch-size 64] [--repeats 2] [--service]
                                 [--json OUT.json] [--markdown OUT.md]
       python bench/gpu_check.py --allow-cpu --train 8 --batch-size 4 --repeats 1   (the code path on a CPU)
On a CPU the default shape is avdigits' (--shape cremad forces the real one) and the compile rows are left out
(minutes of C++ compilation on a few cores; --variants brings them back). Progress goes to stderr, the table to
stdout. bench/gpu_check.sh runs it with the settings for one GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pipeline  # bench/ is on the path of a script run from it
import torch

from amst_core import gpu

ROOT = Path(__file__).resolve().parents[1]
CYCLE = 5  # CREMA-D's k_audio: a cycle is one epoch that updates audio and four that skip it
VARIANTS = {"straightforward": ("straightforward", False), "fast": ("fast", False),
            "fast+compile": ("fast", True)}
SYNC_MESSAGE = "synchronizing cuda operation"  # c10's warning: "called a synchronizing CUDA operation"
TARGET_SAMPLES_PER_S, TARGET_UTIL, TARGET_SERVICE_SHARE = 2800.0, 90.0, 0.95
Log = Callable[[str], None]
T = TypeVar("T")


# ---- host synchronisations ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SyncCount:
    loop: int  # inside the batch loop: 0 expected
    epoch_end: int  # the meters' reads at the epoch's end: allowed
    where: tuple[str, ...]  # the first few of the loop's, file:line and message


def is_sync_warning(w: warnings.WarningMessage) -> bool:
    return SYNC_MESSAGE in str(w.message).lower()


def count_syncs(loop: Callable[[], T], epoch_end: Callable[[T], object],
                debug_mode: Callable[[str], None]) -> SyncCount:
    """Synchronising calls made by `loop()`, then those of `epoch_end(loop's result)` apart, under
    `debug_mode("warn")` (torch.cuda.set_sync_debug_mode on a GPU); the mode is back at "default" whatever
    happens. Only warnings saying a synchronising CUDA operation was called count."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every call, not the first per line
        debug_mode("warn")
        try:
            result = loop()
            boundary = len(caught)
            epoch_end(result)
        finally:
            debug_mode("default")
    in_loop = [w for w in caught[:boundary] if is_sync_warning(w)]
    at_end = [w for w in caught[boundary:] if is_sync_warning(w)]
    where = tuple(f"{Path(w.filename).name}:{w.lineno}: {str(w.message).splitlines()[0][:120]}" for w in in_loop[:5])
    return SyncCount(len(in_loop), len(at_end), where)


def batch_loop_syncs(trainer: pipeline.Trainer, epochs: tuple[int, ...],
                     debug_mode: Callable[[str], None] = torch.cuda.set_sync_debug_mode) -> SyncCount:
    """The host syncs of the training batch loop of each epoch in `epochs` (summed)."""
    counts = [count_syncs(lambda e=e: pipeline.batch_loop(trainer, e),
                          lambda result, e=e: result[0].points("train", e), debug_mode)
              for e in epochs]
    return SyncCount(sum(c.loop for c in counts), sum(c.epoch_end for c in counts),
                     tuple(w for c in counts for w in c.where)[:5])


# ---- one row: a method in one variant ------------------------------------------------------------------------------

def cycle_samples_per_s(unskipped: float, skipped: float | None) -> float:
    """Samples/s over a skip cycle of CYCLE epochs of equal size: one unskipped, CYCLE - 1 skipped."""
    if skipped is None:
        return unskipped  # naive never skips: every epoch is an unskipped one
    return CYCLE / (1 / unskipped + (CYCLE - 1) / skipped)


@contextlib.contextmanager
def utilisation(device: torch.device) -> Iterator[dict[str, float | None]]:
    """NVML's mean utilisation and peak memory of the run's GPU while the block runs (None without NVML)."""
    sampler = gpu.open_sampler(device, interval_s=0.1)
    found: dict[str, float | None] = {"util": None, "mem_gib": None}
    if sampler is not None:
        sampler.begin_epoch()
    try:
        yield found
    finally:
        if sampler is not None:
            stats = sampler.epoch_stats()
            sampler.stop()
            if stats is not None:
                found.update(util=stats.util_percent, mem_gib=stats.mem_used_gib)


def measure_row(shape: pipeline.PipelineShape, method: str, variant: str, device: torch.device,
                args: argparse.Namespace, log: Log) -> dict[str, Any]:
    configuration, compiled = VARIANTS[variant]
    cfg = pipeline.config(shape, method, configuration, device, args.batch_size, compiled, skip_audio=CYCLE)
    trainer = pipeline.trainer_for(cfg, configuration)
    kinds = {"unskipped": 0} if method == "naive" else {"unskipped": 0, "skipped": 1}
    try:
        for kind, epoch in kinds.items():  # cache built, kernels chosen, graphs compiled
            log(f"{method} {variant}: warm-up ({kind} epoch)")
            pipeline.epoch_work(trainer, epoch)()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        speeds: dict[str, list[float]] = {kind: [] for kind in kinds}
        with utilisation(device) as util:
            for r in range(args.repeats):
                log(f"{method} {variant}: repeat {r + 1}/{args.repeats}")
                for kind, epoch in kinds.items():
                    speeds[kind].append(pipeline.timed(device, pipeline.epoch_work(trainer, epoch)))
        syncs = None
        if configuration == "fast" and device.type == "cuda":
            log(f"{method} {variant}: host synchronisations in the batch loop")
            syncs = batch_loop_syncs(trainer, tuple(kinds.values()))
    finally:
        trainer.loaders.close()
    unskipped = float(np.median(speeds["unskipped"]))
    skipped = float(np.median(speeds["skipped"])) if "skipped" in speeds else None
    return {"method": method, "variant": variant, "precision": cfg.precision, "compile": cfg.compile,
            "unskipped_samples_per_s": unskipped, "skipped_samples_per_s": skipped,
            "cycle_samples_per_s": cycle_samples_per_s(unskipped, skipped),
            "gpu_util_percent": util["util"], "gpu_mem_used_gib": util["mem_gib"],
            "peak_allocated_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
            "loop_syncs": syncs.loop if syncs else None, "epoch_end_syncs": syncs.epoch_end if syncs else None,
            "sync_where": list(syncs.where) if syncs else None}


def measure_rows(shape: pipeline.PipelineShape, device: torch.device, args: argparse.Namespace,
                 log: Log, rows: list[dict[str, Any]], saved: Callable[[], None]) -> None:
    """Every (method, variant) into `rows`, `saved()` after each (a check cut short by its time limit keeps what
    it measured); the compiled variants last, their compilation being the longest part. A variant that fails is
    a row with its error, and the others still run."""
    pairs = [(m, v) for v in args.variants.split(",") for m in args.methods.split(",")]
    pairs.sort(key=lambda pair: ("compile" in pair[1], args.methods.split(",").index(pair[0])))
    for method, variant in pairs:
        started = time.perf_counter()
        try:
            row = measure_row(shape, method, variant, device, args, log)
        except Exception as err:  # one broken variant must not cost the whole check's GPU minutes
            traceback.print_exc(file=sys.stderr)
            row = {"method": method, "variant": variant, "error": f"{type(err).__name__}: {str(err)[:300]}"}
        row["seconds"] = round(time.perf_counter() - started, 1)
        log(f"{method} {variant}: done in {row['seconds']} s")
        rows.append(row)
        saved()
        if device.type == "cuda":  # the next row's NVML memory figure must not include this row's cache
            gc.collect()
            torch.cuda.empty_cache()


# ---- the cache build and the service -------------------------------------------------------------------------------

def cache_build(shape: pipeline.PipelineShape, clips: int, log: Log) -> dict[str, Any]:
    """`amst cache cremad` into an empty cache, with one decoding thread and with the default (this node's cores,
    at most 16), interleaved: clips decoded per second of each, and their ratio."""
    from amst_core.cli import main as amst
    from amst_core.data.cache import decode_threads

    sets = [f"model.frames={shape.frames}", f"model.image_size={shape.image_size}",
            f"model.audio_frames={shape.fbank[0]}", f"model.mel_bins={shape.fbank[1]}"]
    threads = {"one": "1", "all": str(decode_threads())}
    seconds: dict[str, list[float]] = {k: [] for k in threads}
    codes = []
    for _ in range(2):
        for kind, n in threads.items():
            with tempfile.TemporaryDirectory() as cache, pipeline.env({"AMST_CACHE": cache, "AMST_CACHE_THREADS": n}):
                log(f"amst cache: {clips} clips, {n} thread(s)")
                started = time.perf_counter()
                codes.append(amst(["cache", "cremad", "--no-progress", *[a for s in sets for a in ("--set", s)]]))
                seconds[kind].append(time.perf_counter() - started)
    best = {k: min(v) for k, v in seconds.items()}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"exit_code": max(codes), "clips": clips, "seconds": best["all"], "clips_per_s": clips / best["all"],
            "threads": int(threads["all"]), "one_thread_clips_per_s": clips / best["one"],
            "speedup": best["one"] / best["all"], "cores": cores}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def epoch_speeds(points: list[tuple[int, float]]) -> dict[int, float]:
    return {epoch: value for epoch, value in points}


def cycle_of(speeds: dict[int, float]) -> float | None:
    """Samples/s over epochs 1..CYCLE (equal epochs: CYCLE / the sum of seconds per sample); epoch 0 warms up."""
    window = [speeds.get(e) for e in range(1, CYCLE + 1)]
    return None if None in window or not all(window) else CYCLE / sum(1 / s for s in window)


def cli_run(body: dict[str, Any], out: Path) -> dict[int, float]:
    """The run through the CLI's path (`amst train` calls execute_run): samples/s per epoch."""
    from amst_core.config import RunConfig
    from amst_core.execute import execute_run
    from amst_core.sinks import MemorySink

    sink = MemorySink()
    execute_run(RunConfig.model_validate(body), out, [sink], run_id="gpu-check-cli", progress=False)
    return epoch_speeds([(p.epoch, p.value) for p in sink.points
                         if p.name == "samples_per_s" and p.component == "run" and p.modality is None])


def service_run(body: dict[str, Any], folder: Path, log: Log, timeout_s: float = 600) -> dict[int, float]:
    """The run through `amst up` (API + one worker, embedded SQLite) in `folder`: samples/s per epoch as
    GET /runs/{id}/metrics returns them."""
    import httpx

    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("AMST_HOME", "AMST_ARTIFACTS", "DATABASE_URL", "BROKER_URL", "AMST_API_TOKEN")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "amst-up.log").open("w") as out:
        up = subprocess.Popen([sys.executable, "-m", "launch", "up", "--port", str(port), "--no-ui"], cwd=folder,
                              env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        run_id = None
        while time.monotonic() < deadline:
            if up.poll() is not None:
                raise RuntimeError(f"amst up exited with {up.returncode}; see {folder / 'amst-up.log'}")
            with contextlib.suppress(httpx.HTTPError):
                if run_id is None and httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    resp = httpx.post(f"{url}/runs", json=body, timeout=10)
                    resp.raise_for_status()
                    run_id = resp.json()["id"]
                    log(f"service: run {run_id} submitted")
                elif run_id is not None:
                    run = httpx.get(f"{url}/runs/{run_id}", timeout=5).json()
                    if run["status"] in ("succeeded", "failed", "cancelled", "lost"):
                        if run["status"] != "succeeded":
                            raise RuntimeError(f"the service run {run['status']}: {run.get('error')}")
                        series = httpx.get(f"{url}/runs/{run_id}/metrics", params={"name": "samples_per_s"},
                                           timeout=10).json()["series"]
                        (s,) = [s for s in series if s["modality"] is None and s["component"] == "run"]
                        return epoch_speeds(list(zip(s["epochs"], s["values"], strict=True)))
            time.sleep(0.5)
        raise TimeoutError(f"the service run did not end within {timeout_s:.0f} s")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(up.pid, signal.SIGINT)  # amst up stops its children (each in a session of its own)
        try:
            up.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()


def service_vs_cli(shape: pipeline.PipelineShape, device: torch.device, args: argparse.Namespace, tmp: Path,
                   log: Log) -> dict[str, Any]:
    """AMST-FULL fast, 1 + CYCLE epochs, through the CLI then through the service (the cache is built by then);
    each run's samples/s over epochs 1..CYCLE, one whole skip cycle."""
    cfg = pipeline.config(shape, "amst_full", "fast", device, args.batch_size, False, skip_audio=CYCLE)
    body = {**cfg.model_dump(mode="json"), "epochs": 1 + CYCLE, "name": "gpu-check"}
    log("service vs CLI: the CLI run")
    cli = cycle_of(cli_run(body, tmp / "cli-run"))
    log("service vs CLI: the same run through amst up")
    service = cycle_of(service_run(body, tmp / "service", log))
    return {"cli_samples_per_s": cli, "service_samples_per_s": service,
            "service_share": service / cli if cli and service else None}


# ---- what the node is, targets, tables -----------------------------------------------------------------------------

def node_info(device: torch.device) -> dict[str, Any]:
    driver = None
    with contextlib.suppress(Exception):  # no NVML, no driver: the figure stays empty
        import pynvml

        pynvml.nvmlInit()
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else driver
        pynvml.nvmlShutdown()
    cuda = device.type == "cuda"
    return {"card": torch.cuda.get_device_name(device) if cuda else "CPU (code check, not a GPU figure)",
            "driver": driver, "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if cuda else None, "python": platform.python_version(),
            "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}


def targets(rows: list[dict[str, Any]], service: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Each target of issue 20 with its figure (None: not measured) and whether it is met."""
    full = [r for r in rows if r["method"] == "amst_full" and r["variant"].startswith("fast") and "error" not in r]
    best = max(full, key=lambda r: r["cycle_samples_per_s"], default=None)
    fast = [r for r in rows if r["variant"].startswith("fast") and "error" not in r]
    syncs = [r["loop_syncs"] for r in fast if r.get("loop_syncs") is not None]
    found = [
        ("AMST-FULL fast, samples/s over the skip cycle" + (f" ({best['variant']})" if best else ""),
         best and best["cycle_samples_per_s"], f">= {TARGET_SAMPLES_PER_S:,.0f}",
         lambda v: v >= TARGET_SAMPLES_PER_S),
        ("GPU utilisation of that row, %", best and best["gpu_util_percent"], f">= {TARGET_UTIL:.0f}",
         lambda v: v >= TARGET_UTIL),
        ("host syncs in the batch loop, every fast row", max(syncs) if len(syncs) == len(fast) and syncs else None,
         "0", lambda v: v == 0),
        ("service / CLI samples/s", service and service.get("service_share"), f">= {TARGET_SERVICE_SHARE:.2f}",
         lambda v: v >= TARGET_SERVICE_SHARE),
    ]
    return [{"target": name, "figure": figure, "wanted": wanted,
             "met": None if figure is None else bool(check(figure))} for name, figure, wanted, check in found]


def fmt(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec) if isinstance(value, float) else str(value)


def markdown(report: dict[str, Any]) -> list[str]:
    node, args = report["node"], report["settings"]
    lines = [f"### GPU check: {node['card']}", "",
             "| card | driver | torch | CUDA | cuDNN | CPU cores | shape | training clips | batch | repeats |",
             "|---|---|---|---|---|---:|---|---:|---:|---:|",
             f"| {node['card']} | {fmt(node['driver'])} | {node['torch']} | {fmt(node['cuda'])} | "
             f"{fmt(node['cudnn'])} | {node['cpu_cores']} | {args['shape']} | {args['train']} | "
             f"{args['batch_size']} | {args['repeats']} |", "",
             f"samples/s of training epochs with data loading; cycle = CREMA-D's k_audio = {CYCLE} skip cycle "
             f"(1 unskipped + {CYCLE - 1} skipped epochs); x = cycle samples/s / the straightforward row's", "",
             "| method | variant | precision | unskipped | skipped | cycle | x | GPU util % | GPU mem GiB | "
             "peak allocated GiB | host syncs in the batch loop (epoch end) | s |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    base = {r["method"]: r.get("cycle_samples_per_s") for r in report["rows"] if r["variant"] == "straightforward"}
    for r in report["rows"]:
        if "error" in r:
            lines.append(f"| {r['method']} | {r['variant']} | failed: {r['error'][:120]} |||||||||{r['seconds']} |")
            continue
        ratio = r["cycle_samples_per_s"] / base[r["method"]] if base.get(r["method"]) else None
        syncs = "-" if r["loop_syncs"] is None else f"{r['loop_syncs']} ({r['epoch_end_syncs']})"
        lines.append(f"| {r['method']} | {r['variant']} | {r['precision']} | {fmt(r['unskipped_samples_per_s'])} | "
                     f"{fmt(r['skipped_samples_per_s'])} | {fmt(r['cycle_samples_per_s'])} | {fmt(ratio, '.2f')} | "
                     f"{fmt(r['gpu_util_percent'], '.0f')} | {fmt(r['gpu_mem_used_gib'], '.2f')} | "
                     f"{fmt(r['peak_allocated_gib'], '.2f')} | {syncs} | {r['seconds']} |")
    cache = report.get("cache_build") or {"clips": 0, "seconds": 0.0, "clips_per_s": 0.0, "cores": "?",
                                          "exit_code": "not run"}
    lines += ["", f"`amst cache`: {cache['clips']} clips in {cache['seconds']:.1f} s, "
                  f"{cache['clips_per_s']:.1f} clips/s with {cache.get('threads', '?')} threads on {cache['cores']} "
                  f"cores ({fmt(cache.get('speedup'), '.2f')}x one thread's "
                  f"{fmt(cache.get('one_thread_clips_per_s'))}; exit code {cache['exit_code']})"]
    service = report.get("service")
    if service:
        lines += ["", f"service vs CLI (AMST-FULL fast, samples/s over epochs 1..{CYCLE}): CLI "
                      f"{fmt(service.get('cli_samples_per_s'))}, service {fmt(service.get('service_samples_per_s'))}"
                      + (f", error: {service['error']}" if service.get("error") else "")]
    lines += ["", "| target | figure | wanted | met |", "|---|---:|---|---|"]
    for t in report["targets"]:
        met = "not measured" if t["met"] is None else "met" if t["met"] else "not met"
        lines.append(f"| {t['target']} | {fmt(t['figure'], '.2f')} | {t['wanted']} | {met} |")
    return lines


# ---- main ----------------------------------------------------------------------------------------------------------

def parse(argv: list[str] | None, cuda: bool) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", type=int, default=512, help="training clips of the generated data")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--methods", default="naive,amst_joint,amst_full")
    p.add_argument("--variants", default=None, help=f"of {','.join(VARIANTS)} (default: all on a GPU, no "
                                                    "compile on a CPU)")
    p.add_argument("--shape", choices=[*pipeline.PIPELINE_SHAPES, "auto"], default="auto",
                   help="auto: cremad on a GPU, avdigits on a CPU (a code check)")
    p.add_argument("--service", action="store_true", help="also the same run through amst up against the CLI")
    p.add_argument("--allow-cpu", action="store_true", help="run on the CPU when there is no GPU (a code check)")
    p.add_argument("--json", type=Path)
    p.add_argument("--markdown", type=Path)
    args = p.parse_args(argv)
    if args.shape == "auto":
        args.shape = "cremad" if cuda else "avdigits"
    if args.variants is None:
        args.variants = ",".join(VARIANTS) if cuda else "straightforward,fast"
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}; choose from {list(VARIANTS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    cuda = torch.cuda.is_available()
    args = parse(argv, cuda)
    if not cuda and not args.allow_cpu:
        raise SystemExit("no CUDA device here (use --allow-cpu to check the code path on a CPU)")
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    shape = pipeline.PIPELINE_SHAPES[args.shape]
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[gpu_check {time.perf_counter() - started:6.1f} s] {msg}", file=sys.stderr, flush=True)

    report: dict[str, Any] = {"node": node_info(device), "settings": {**vars(args), "json": None, "markdown": None},
                              "rows": []}
    log(f"{report['node']['card']}, torch {torch.__version__}; {shape.note}")

    def saved(final: bool = False) -> None:
        report["targets"] = targets(report["rows"], report.get("service"))
        report["seconds"] = round(time.perf_counter() - started, 1)
        report["complete"] = final
        table = "\n".join([*markdown(report), "", f"{report['seconds']:.0f} s in all"
                           + ("" if final else " (cut short: the rows measured so far)")])
        if args.json:
            args.json.write_text(json.dumps(report, indent=2, default=str))
        if args.markdown:
            args.markdown.write_text(table + "\n")
        if final:
            print(table)

    # gpu_check.sh's time limit sends SIGTERM: leave through `finally` (the temporary data removed, what was
    # measured written) instead of dying where the signal lands.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        with tempfile.TemporaryDirectory() as tmp, pipeline.env({"AMST_DATA_ROOT": f"{tmp}/data",
                                                                 "AMST_CACHE": f"{tmp}/cache"}):
            log(f"writing {args.train} + 8 generated clips")
            pipeline.write_dataset(Path(tmp) / "data", shape, args.train, np.random.default_rng(0))
            report["cache_build"] = cache_build(shape, args.train + 8, log)
            measure_rows(shape, device, args, log, report["rows"], saved)
            if args.service:
                try:
                    report["service"] = service_vs_cli(shape, device, args, Path(tmp), log)
                except Exception as err:
                    traceback.print_exc(file=sys.stderr)
                    report["service"] = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
    except BaseException:
        saved()  # cut short (the time limit's SIGTERM, Ctrl-C) or broken: what was measured stays
        raise
    saved(final=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
