"""bench/gpu_check.py on a CPU, for the parts a GPU run would otherwise be the first to execute: the
host-synchronisation count with fake sync warnings (only the batch loop's synchronisations count against "0 in the
batch loop"; the epoch-end meter reads are counted apart; other warnings are not synchronisations; the debug mode
is set back whatever happens), the real batch loop under a fake debug mode, the skip-cycle average, the targets'
verdicts and the Markdown table."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[2] / "bench"))  # gpu_check imports bench/pipeline

import gpu_check

SYNC = "called a synchronizing CUDA operation"  # c10's words (warn mode), with torch's suffix on the next line


def sync_warning(where: str = "") -> None:
    warnings.warn(f"{SYNC} {where}\n(Triggered internally at /pytorch/c10/cuda/CUDAFunctions.h:155.)", UserWarning,
                  stacklevel=2)


def test_only_the_batch_loops_syncs_count_and_the_epoch_end_is_counted_apart() -> None:
    modes: list[str] = []

    def loop() -> str:
        sync_warning("loss.item()")
        warnings.warn("TypedStorage is deprecated", UserWarning, stacklevel=1)  # a warning, not a sync
        sync_warning("torch.bincount")
        return "meters"

    def epoch_end(meters: str) -> None:
        assert meters == "meters"  # the loop's result is what the epoch's end reads
        for _ in range(15):  # naive: the meters' 15 reads at the end of an epoch
            sync_warning("meter read")

    count = gpu_check.count_syncs(loop, epoch_end, modes.append)
    assert (count.loop, count.epoch_end) == (2, 15)
    assert modes == ["warn", "default"]
    assert len(count.where) == 2 and "loss.item()" in count.where[0] and "bincount" in count.where[1]
    assert count.where[0].startswith("test_gpu_check.py:")  # where in the code, for the reader


def test_a_clean_loop_counts_zero_even_when_warnings_were_filtered_before() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a caller that silenced warnings must not hide syncs from the count
        count = gpu_check.count_syncs(lambda: None, lambda _: sync_warning("end"), lambda _mode: None)
        assert (count.loop, count.epoch_end, count.where) == (0, 1, ())
        count = gpu_check.count_syncs(sync_warning, lambda _: None, lambda _mode: None)
        assert (count.loop, count.epoch_end) == (1, 0)


def test_the_debug_mode_is_reset_when_the_loop_fails() -> None:
    modes: list[str] = []

    def broken() -> None:
        raise RuntimeError("CUDA error: device-side assert triggered")

    with pytest.raises(RuntimeError, match="device-side assert"):
        gpu_check.count_syncs(broken, lambda _: None, modes.append)
    assert modes == ["warn", "default"]


def test_the_skip_cycle_average_weighs_one_unskipped_and_four_skipped_epochs() -> None:
    # 1 epoch at 100 samples/s and 4 at 400: 5 epochs of N samples in N/100 + 4N/400 = 2N/100 s
    assert gpu_check.cycle_samples_per_s(100.0, 400.0) == pytest.approx(250.0)
    assert gpu_check.cycle_samples_per_s(100.0, None) == 100.0  # naive: no skipped epochs
    assert gpu_check.cycle_of({0: 1.0, 1: 100.0, 2: 400.0, 3: 400.0, 4: 400.0, 5: 400.0}) == pytest.approx(250.0)
    assert gpu_check.cycle_of({0: 1.0, 1: 100.0}) is None  # not a whole cycle


def test_the_batch_loop_of_a_fast_trainer_is_counted_epoch_by_epoch(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The real loop (bench/pipeline.py's batch_loop on cached reference-layout data) under a fake debug mode: on
    a CPU nothing synchronises, each epoch sets the mode and puts it back, and the epoch's end reads the meters."""
    import numpy as np
    import pipeline
    import torch

    monkeypatch.setenv("AMST_DATA_ROOT", str(tmp_path / "data"))
    shape = pipeline.PIPELINE_SHAPES["avdigits"]
    pipeline.write_dataset(tmp_path / "data", shape, 8, np.random.default_rng(0))
    trainer = pipeline.trainer_for(pipeline.config(shape, "amst_full", "fast", torch.device("cpu"), 4, False,
                                                   skip_audio=gpu_check.CYCLE), "fast")
    modes: list[str] = []
    try:
        count = gpu_check.batch_loop_syncs(trainer, (0, 1), debug_mode=modes.append)
        meters, samples = pipeline.batch_loop(trainer, 1)
    finally:
        trainer.loaders.close()
    assert count == gpu_check.SyncCount(0, 0, ())
    assert modes == ["warn", "default"] * 2
    assert samples == 8 and {p.component for p in meters.points("train", 1)} >= {"alt", "joint"}


def row(method: str, variant: str, cycle: float, util: float | None = None, syncs: int | None = None) -> dict:
    return {"method": method, "variant": variant, "precision": "bf16", "compile": "compile" in variant,
            "unskipped_samples_per_s": cycle, "skipped_samples_per_s": cycle, "cycle_samples_per_s": cycle,
            "gpu_util_percent": util, "gpu_mem_used_gib": 3.0, "peak_allocated_gib": 2.5, "loop_syncs": syncs,
            "epoch_end_syncs": None if syncs is None else 33, "sync_where": [], "seconds": 12.0}


def test_targets_take_amst_fulls_best_fast_row_and_every_fast_rows_syncs() -> None:
    rows = [row("amst_full", "straightforward", 900.0), row("amst_full", "fast", 2500.0, 85.0, 0),
            row("amst_full", "fast+compile", 3100.0, 93.0, 0), row("naive", "fast", 9000.0, 95.0, 2)]
    found = {t["target"].split(",")[0]: t for t in gpu_check.targets(rows, {"service_share": 0.97})}
    full = found["AMST-FULL fast"]
    assert (full["figure"], full["met"]) == (3100.0, True) and "fast+compile" in full["target"]
    assert (found["GPU utilisation of that row"]["figure"], found["GPU utilisation of that row"]["met"]) == (93.0, True)
    assert (found["host syncs in the batch loop"]["figure"], found["host syncs in the batch loop"]["met"]) == (2, False)
    assert found["service / CLI samples/s"]["met"] is True
    rows[2] = {"method": "amst_full", "variant": "fast+compile", "error": "RuntimeError: boom", "seconds": 1.0}
    found = {t["target"].split(",")[0]: t for t in gpu_check.targets(rows, None)}
    assert (found["AMST-FULL fast"]["figure"], found["AMST-FULL fast"]["met"]) == (2500.0, False)
    assert found["service / CLI samples/s"]["met"] is None  # not measured: neither met nor failed


def test_the_markdown_table_has_the_node_every_row_and_every_target() -> None:
    rows = [row("amst_full", "straightforward", 1000.0), row("amst_full", "fast", 3000.0, 91.0, 0),
            {"method": "amst_full", "variant": "fast+compile", "error": "RuntimeError: boom", "seconds": 1.0}]
    report = {"node": {"card": "NVIDIA H200", "driver": "570.86", "torch": "2.11.0", "cuda": "13.0", "cudnn": 91000,
                       "python": "3.12", "cpu_cores": 16},
              "settings": {"shape": "cremad", "train": 512, "batch_size": 64, "repeats": 2},
              "rows": rows, "cache_build": {"clips": 520, "seconds": 10.0, "clips_per_s": 52.0, "cores": 16,
                                            "threads": 16, "one_thread_clips_per_s": 6.5, "speedup": 8.0,
                                            "exit_code": 0},
              "service": {"cli_samples_per_s": 3000.0, "service_samples_per_s": 2900.0, "service_share": 0.967}}
    report["targets"] = gpu_check.targets(rows, report["service"])
    text = "\n".join(gpu_check.markdown(report))
    assert "| NVIDIA H200 | 570.86 | 2.11.0 | 13.0 | 91000 | 16 | cremad | 512 | 64 | 2 |" in text
    assert "| amst_full | fast | bf16 | 3000.0 | 3000.0 | 3000.0 | 3.00 | 91 | 3.00 | 2.50 | 0 (33) | 12.0 |" in text
    assert "failed: RuntimeError: boom" in text
    assert "52.0 clips/s with 16 threads on 16 cores (8.00x one thread's 6.5" in text
    verdicts = [line.rsplit("|", 2)[1].strip() for line in text.splitlines()
                if line.startswith(("| AMST-FULL", "| GPU utilisation", "| host syncs", "| service"))]
    assert verdicts == ["met"] * 4, text
