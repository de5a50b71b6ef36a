"""Executing one run: the one function the command line (`amst train`) and the worker (worker/runner.py) both
train through. It checks the data (and, for a re-run, that they are those it expects), builds the trainer,
continues from the run folder's last checkpoint when there is one (a resumed, restarted or retried run), records
the config and the run's provenance (amst_core.provenance), trains, and records the summary once every sink has
stored every point."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from amst_core import distributed, exporters, provenance
from amst_core.config import RunConfig, dump_config
from amst_core.datafiles import check_dataset
from amst_core.distributed import SINGLE, Ranks
from amst_core.engine import Trainer
from amst_core.runfolder import RunFolder
from amst_core.sinks import MetricSink


def execute_run(cfg: RunConfig, out_dir: Path, sinks: Sequence[MetricSink], *, run_id: str, attempt: int = 1,
                should_stop: Callable[[], bool] | None = None, progress: bool | None = None,
                started: Callable[[Trainer], None] | None = None, ranks: Ranks = SINGLE) -> dict[str, Any]:
    """Train `cfg` in `out_dir`; `started(trainer)` is called once the trainer knows its first epoch. On several
    ranks (`ranks`, from torchrun) every rank calls this; rank 0 alone writes the run folder and its sinks."""
    checked = check_dataset(cfg)  # the data, once, before any training (the trainer trusts its caller)
    data = provenance.data_fingerprint(checked)
    provenance.check_expected_data(checked, data)
    if ranks.is_main:
        exporters.check_exports(checked)  # every live mirror's target, before anything is written
    mirrors: list[MetricSink] = []
    try:
        trainer = Trainer(checked, out_dir=out_dir, sinks=sinks, run_id=run_id, attempt=attempt,
                          should_stop=should_stop, progress=progress, ranks=ranks)
        trainer.provenance = {**provenance.collect(checked, trainer.device, data), "attempt": attempt}
        if ranks.is_main:
            mirrors = exporters.mirror_sinks(checked, trainer.provenance, run_id)
            trainer.sinks += mirrors
        folder = RunFolder(out_dir)
        if folder.can_resume():
            trainer.resume()
        if ranks.is_main:
            folder.write_text(folder.config, dump_config(cfg))
            folder.write_json(folder.provenance, trainer.provenance)
        if started is not None:
            started(trainer)
        summary = trainer.fit()
    finally:
        for mirror in mirrors:
            mirror.close()  # a copy ends with its run, however the run ends (the run's own sinks: below)
        distributed.stop()
    if ranks.is_main:
        for sink in sinks:
            sink.close()  # every epoch is stored before the run says it succeeded
        folder.write_json(folder.summary, summary)
    return summary
