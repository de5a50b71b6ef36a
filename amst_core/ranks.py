"""Starting a run on several ranks: PyTorch's elastic launcher (`torch.distributed.run`, standalone: one node), one
process per GPU (or CPU processes with gloo), restarted together up to `max_restarts` times when one dies.

`amst train` with `resources.gpus` > 1 writes the run's config into its folder and launches
`python -m amst_core.ranks RUN_DIR` under the launcher; every rank reads the config there and continues from the
folder's last checkpoint when there is one, so a restart of the ranks resumes instead of starting over. (The
worker launches its own entry, `worker.attempt`, the same way: worker/child.py.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from amst_core.config import ConfigError, RunConfig, dump_config, load_config
from amst_core.runfolder import RunFolder

MONITOR_INTERVAL_S = 0.5  # how often the launcher looks for a rank that died


def launcher_command(ranks: int, max_restarts: int, entry: Sequence[str]) -> list[str]:
    """The launcher's command line for `ranks` processes each running `python -m <entry...>`."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
            f"--max-restarts={max_restarts}", f"--monitor-interval={MONITOR_INTERVAL_S}", "-m", *entry]


def launcher_env(ranks: int, device: str, base: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The ranks' environment: on a CPU the cores shared out between the ranks (the launcher would give each one
    thread), on GPUs one thread each (the GPU does the work); AMST_RANK_THREADS or OMP_NUM_THREADS overrides."""
    env = dict(base)
    if "OMP_NUM_THREADS" not in env:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        per_rank = max(1, cores // ranks) if device == "cpu" else 1
        env["OMP_NUM_THREADS"] = env.get("AMST_RANK_THREADS", str(per_rank))
    return env


def check_devices(cfg: RunConfig) -> None:
    """A run on N GPUs needs N visible GPUs here (a CPU run: N processes, always possible)."""
    if cfg.device == "cpu":
        return
    import torch

    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if cfg.device == "cuda" or found:
        if found < cfg.resources.gpus:
            raise ConfigError("resources.gpus", f"the run asks for {cfg.resources.gpus} GPUs; this machine shows "
                                                f"{found} (CUDA_VISIBLE_DEVICES)")
        return
    raise ConfigError("resources.gpus", f"the run asks for {cfg.resources.gpus} GPUs and this machine has none; "
                                        "set device: cpu to train that many CPU processes (gloo)")


def train_on_ranks(cfg: RunConfig, out: Path, max_restarts: int = 0) -> dict[str, Any]:
    """Train `cfg` in `out` on `resources.gpus` ranks; the summary rank 0 wrote. Raises ConfigError when the
    ranks failed (their output, above, says why)."""
    from amst_core.datafiles import check_dataset

    check_devices(cfg)
    check_dataset(cfg)  # said once here, not once per rank with a traceback each
    folder = RunFolder(out)
    folder.write_text(folder.config, dump_config(cfg))
    command = launcher_command(cfg.resources.gpus, max_restarts, ["amst_core.ranks", str(out)])
    code = subprocess.call(command, env=launcher_env(cfg.resources.gpus, cfg.device))
    if code != 0 or not folder.summary.exists():
        again = (f" Resume it with `amst train --resume {out}`." if folder.can_resume() else
                 " It saved no checkpoint: start it again.")
        raise ConfigError("resources.gpus", f"the run on {cfg.resources.gpus} ranks failed (launcher exit status "
                                            f"{code}); the ranks' output above says why.{again}")
    return json.loads(folder.summary.read_text())


def main(argv: list[str] | None = None) -> int:
    """One rank of a command-line run: the run folder's config, continued from its last checkpoint if any."""
    from amst_core.datafiles import any_data_path
    from amst_core.distributed import ranks_from_env
    from amst_core.execute import execute_run
    from amst_core.sinks import ConsoleSink, JsonlSink

    parser = argparse.ArgumentParser(prog="python -m amst_core.ranks", description=main.__doc__)
    parser.add_argument("run_dir")
    out = Path(parser.parse_args(argv).run_dir)
    folder = RunFolder(out)
    cfg = load_config(folder.config)
    ranks = ranks_from_env()
    sinks = [JsonlSink(folder.metrics), ConsoleSink(cfg.epochs)] if ranks.is_main else []
    with any_data_path():  # as `amst train` itself: the user's own files, anywhere
        execute_run(cfg, out, sinks, run_id=out.name, progress=False, ranks=ranks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
