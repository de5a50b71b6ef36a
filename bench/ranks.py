"""One run on 1 rank against 2 ranks (amst_core.distributed), side by side on this machine, and what the collectives
of a training batch cost on 2 ranks.

Each repeat trains the same config on one process, then on two (gloo on a CPU, NCCL on GPUs when `--device cuda`
and the machine has two), the two interleaved so both see the same machine. Training throughput is the run's own
`samples_per_s` (every rank's samples over the training pass's time), over the epochs after the first. The
collectives are timed inside the two ranks: every all-reduce, all-gather and broadcast of a training pass
(gradients, the global BatchNorm's sums forward and backward, the stop flag, the method's scores), per batch,
against the batch.

    python bench/ranks.py [--method amst_full] [--device cpu] [--repeats 2] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

from amst_core.config import RunConfig, load_config


def config(method: str, device: str, epochs: int) -> RunConfig:
    return load_config(base={
        "method": method, "device": device, "epochs": epochs, "batch_size": 64, "optim": {"lr": 0.002},
        "dataset": {"name": "synthetic", "synthetic": {"samples": {"train": 768, "val": 128, "test": 128},
                                                       "audio_shape": [64, 32], "image_size": 32}},
        "model": {"frames": 1, "width": 16},
    })


def throughput(run: Path) -> float:
    """Mean samples/s of the run's epochs after the first (the first pays for warm-up)."""
    points = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rates = [p["value"] for p in points if p["name"] == "samples_per_s" and p["epoch"] > 0]
    return statistics.mean(rates)


def train_one(cfg: RunConfig, out: Path) -> float:
    from amst_core.execute import execute_run
    from amst_core.runfolder import RunFolder
    from amst_core.sinks import JsonlSink

    execute_run(cfg, out, [JsonlSink(RunFolder(out).metrics)], run_id=out.name, progress=False)
    return throughput(out)


def train_two(cfg: RunConfig, out: Path, sync_batchnorm: bool = True) -> float:
    from amst_core.ranks import train_on_ranks

    resources = cfg.resources.model_copy(update={"gpus": 2, "sync_batchnorm": sync_batchnorm})
    train_on_ranks(cfg.model_copy(update={"resources": resources}), out)
    return throughput(out)


# ---- the collectives of a batch, timed inside two ranks -----------------------------------------------------------


def timed_rank(rank: int, port: int, cfg_json: dict[str, Any], out: str, result: Any) -> None:
    import torch.distributed as dist

    from amst_core.distributed import Ranks
    from amst_core.engine import Trainer

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS=os.environ.get(
        "OMP_NUM_THREADS", "1"))
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    spent = {"s": 0.0, "calls": 0}
    for name in ("all_reduce", "all_gather", "broadcast"):
        original = getattr(dist, name)

        def timed(*args, _original=original, **kwargs):
            started = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                spent["s"] += time.perf_counter() - started
                spent["calls"] += 1

        setattr(dist, name, timed)
    cfg = RunConfig.model_validate(cfg_json)
    trainer = Trainer(cfg, out_dir=Path(out) if rank == 0 else None, progress=False, ranks=Ranks(rank, 2, rank))
    trainer.fit()  # warm-up epoch and the measured ones
    batches = 0
    started, spent["s"], spent["calls"] = time.perf_counter(), 0.0, 0
    for _ in range(2):
        trainer.train_loop(cfg.epochs)  # two more training passes, timed whole
        batches += len(trainer.loader("train", cfg.epochs, shuffle=True))
    total = time.perf_counter() - started
    if rank == 0:
        result.put({"batches": batches, "batch_ms": 1000 * total / batches,
                    "collective_ms": 1000 * spent["s"] / batches, "collectives_per_batch": spent["calls"] / batches})
    dist.destroy_process_group()


def collectives(cfg: RunConfig, tmp: Path) -> dict[str, float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    result = ctx.SimpleQueue()
    body = cfg.model_copy(update={"epochs": 1}).model_dump(mode="json")
    body["resources"]["gpus"] = 2
    procs = [ctx.Process(target=timed_rank, args=(r, port, body, str(tmp / "timed"), result)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return result.get()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="amst_full")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    cfg = config(args.method, args.device, args.epochs)
    one, two, local_bn = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            one.append(train_one(cfg, Path(tmp) / f"one{i}"))
            two.append(train_two(cfg, Path(tmp) / f"two{i}"))
            local_bn.append(train_two(cfg, Path(tmp) / f"local{i}", sync_batchnorm=False))
        timing = collectives(cfg, Path(tmp))
    cores = len(os.sched_getaffinity(0))
    print(f"{args.method} on {args.device} ({cores} cores), batch 64, synthetic 64x32 audio + 32 px images, width 16")
    print(f"samples/s  1 rank {statistics.mean(one):8.1f}   2 ranks {statistics.mean(two):8.1f}   "
          f"2 ranks / 1 rank {statistics.mean(two) / statistics.mean(one):.2f}")
    print(f"2 ranks without the global BatchNorm (sync_batchnorm: false) {statistics.mean(local_bn):8.1f} samples/s, "
          f"{statistics.mean(local_bn) / statistics.mean(one):.2f} of 1 rank")
    print("every repeat (1 rank / 2 ranks / 2 ranks, local BatchNorm): "
          + "; ".join(f"{a:.0f} / {b:.0f} / {c:.0f}" for a, b, c in zip(one, two, local_bn, strict=True)))
    print(f"2 ranks, per training batch: {timing['batch_ms']:.1f} ms, of which inside collectives (waiting for the "
          f"other rank included) "
          f"{timing['collective_ms']:.1f} ms ({100 * timing['collective_ms'] / timing['batch_ms']:.0f} %, "
          f"{timing['collectives_per_batch']:.0f} calls)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
