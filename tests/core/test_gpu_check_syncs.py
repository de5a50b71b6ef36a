"""bench/gpu_check.py's host-synchronisation count, on a CPU with fake sync warnings: only the batch loop's
synchronisations count against "0 in the batch loop"; the epoch-end meter reads are counted apart; other warnings
are not synchronisations; the debug mode is set back whatever happens. And the skip-cycle average."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # gpu_check imports bench/pipeline

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
    assert count.where[0].startswith("test_gpu_check_syncs.py:")  # where in the code, for the reader


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
