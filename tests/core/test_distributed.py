"""A run on several ranks (amst_core.distributed, amst_core.ranks) trains what one process trains.

On this CPU the ranks are gloo processes under PyTorch's launcher, as `amst train` starts them for
`resources.gpus: 2`. The tolerance, and why it is enough: two ranks add the same numbers in another order (each
rank's partial sums, then the all-reduce; BatchNorm's statistics combined from the ranks' means and squared
deviations), so every operation differs from one process's by float32 rounding, about 1e-7 relative. Over the
few SGD steps of these runs the weights then differ by less than `WEIGHTS_RTOL` relative to each tensor's
largest entry, and the curves' losses by less than `LOSS_RTOL`. A real mistake is far larger: a gradient summed
instead of averaged, a loss weighted by the wrong share, or BatchNorm on one rank's slice (the last test) moves
the weights by 1e-3 to 1e-1 after one epoch. (OGM-GE's noise, as large as the gradient itself, amplifies any
difference: at batch 12 even the number of CPU threads of one process moves its weights by 5% within an epoch,
and in its second epoch here the two modalities' scores nearly tie (ratio 0.9987), where 3e-5 of difference in the
ratio grows to 1e-2 in the weights; so its run here is one epoch. The learning rate is low for the same reason:
at 0.01 these tiny networks' validation loss climbs from 3 to 11 in three epochs, and any rounding with it.)
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from amst_core.cli import main
from amst_core.distributed import SINGLE, RankBatches, Ranks
from tests.kit.tiny import write_tiny_avdigits
from tests.kit.training import read_jsonl
from worker.child import descendants

pytestmark = pytest.mark.slow

WEIGHTS_RTOL = 1e-4
LOSS_RTOL = 1e-4
TIMING = {"epoch_time", "train_time", "samples_per_s", "gpu_util", "gpu_mem"}


# ---- the rule of the slices -------------------------------------------------------------------------------------


@pytest.mark.parametrize("world", [2, 3, 4])
def test_every_global_batch_is_split_whole_and_in_order(world: int) -> None:
    order = list(torch.randperm(53, generator=torch.Generator().manual_seed(1)).tolist())
    slices = [list(RankBatches(order, 53, 8, Ranks(r, world), train=False)) for r in range(world)]
    batches = [[i for s in slices if b < len(s) for i in s[b]] for b in range(7)]
    assert batches == [order[i:i + 8] for i in range(0, 53, 8)]  # one process's batches, in its order
    assert {len(s) for s in slices} <= {6, 7}  # 53 % 8 = 5: a rank past the 5th sample has no share of the last


def test_training_drops_a_last_batch_some_rank_would_have_nothing_of() -> None:
    two = [list(RankBatches(range(17), 17, 8, Ranks(r, 2), train=True)) for r in range(2)]
    assert [len(b) for b in two[0]] == [4, 4]  # 17 = 8 + 8 + 1: the 1 waits, as in one process
    four = [list(RankBatches(range(19), 19, 8, Ranks(r, 4), train=True)) for r in range(4)]
    assert all(len(batches) == 2 for batches in four)  # the last 3 samples: fewer than 4 ranks
    assert len(RankBatches(range(19), 19, 8, Ranks(3, 4), train=False)) == 2  # evaluation: rank 3's last is empty


def test_a_batch_smaller_than_the_ranks_is_refused() -> None:
    from amst_core.config import load_config

    with pytest.raises(ValueError, match=r"batch_size: 3 is smaller than resources\.gpus"):
        load_config(base={"method": "naive", "dataset": {"name": "synthetic"}, "batch_size": 3,
                          "resources": {"gpus": 4}})


def test_a_ranks_slice_gets_the_augmentation_draws_of_its_samples_in_the_whole_batch() -> None:
    from amst_core.data.augment import FrameAugment, batch_generator

    frames = torch.randint(0, 255, (7, 2, 40, 40, 3), dtype=torch.uint8)
    augment, cpu = FrameAugment(32), torch.device("cpu")
    whole = augment(frames, True, batch_generator(cpu, 3, 1, 5))
    for rank in range(2):
        lo, hi = Ranks(rank, 2).share(7)
        part = augment(frames[lo:hi], True, batch_generator(cpu, 3, 1, 5), part=(lo, 7))
        assert torch.equal(part, whole[lo:hi])


def test_shares_differ_by_at_most_one_sample() -> None:
    assert [Ranks(r, 3).share(10) for r in range(3)] == [(0, 4), (4, 7), (7, 10)]
    assert SINGLE.share(10) == (0, 10)


def test_the_global_batchnorm_keeps_the_checkpoint_format() -> None:
    from torch import nn

    from amst_core.distributed import GlobalBatchNorm2d, global_batchnorm

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
    keys = {k: v.shape for k, v in net.state_dict().items()}
    converted = global_batchnorm(net, torch.device("cpu"))
    assert converted is net and {k: v.shape for k, v in net.state_dict().items()} == keys
    assert sum(isinstance(m, GlobalBatchNorm2d) for m in net.modules()) == 2
    x = torch.randn(5, 4, 6, 6)
    assert torch.equal(net[1](x), nn.functional.batch_norm(x, None, None, net[1].weight, net[1].bias, True))


# ---- one process against two ranks ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def avdigits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_avdigits(tmp_path_factory.mktemp("data"), per_class=(6, 2, 2))


def train_argv(out: Path, data: Path, method: str, *more: str, epochs: int = 2, batch: int = 20) -> list[str]:
    """60 training and 20 validation and test samples: batches of 20 split 10 + 10; batches of 17 unequally (9 + 8
    samples a rank, the last training batch 9 as 5 + 4, the last evaluation batch 3 as 2 + 1)."""
    config = out.parent / f"{out.name}.yaml"
    config.write_text(f"method: {method}\ndataset: {{name: avdigits, root: {data}}}\nepochs: {epochs}\n"
                      f"batch_size: {batch}\ndevice: cpu\nmodel: {{width: 8}}\noptim: {{lr: 0.002}}\n")
    return ["train", str(config), "--out", str(out), "--no-progress", *[a for s in more for a in ("--set", s)]]


def train(out: Path, data: Path, method: str, *more: str, epochs: int = 2, batch: int = 20) -> None:
    assert main(train_argv(out, data, method, *more, epochs=epochs, batch=batch)) == 0


def curves(run: Path) -> dict[tuple, float]:
    return {(p["split"], p["component"], p["modality"] or "", p["name"], p["epoch"]): p["value"]
            for p in read_jsonl(run / "metrics.jsonl") if p["name"] not in TIMING}


def weights(run: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    return {f"{net}.{k}": v for net, s in state["method"]["nets"].items() for k, v in s["net"].items()
            if v.dtype.is_floating_point}


def worst_weight_difference(a: Path, b: Path) -> float:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    return max(((wa[k] - wb[k]).abs().max() / wa[k].abs().max().clamp(min=1e-12)).item() for k in wa)


def assert_same_curves(a: Path, b: Path) -> None:
    ca, cb = curves(a), curves(b)
    assert ca.keys() == cb.keys()
    for key, value in ca.items():
        other = cb[key]
        if key[3] == "loss":
            assert math.isclose(value, other, rel_tol=LOSS_RTOL), (key, value, other)
        elif key[3] in ("acc", "macro_f1", "acc_prob", "acc_gap"):
            # a prediction flips only where two classes' logits tie within rounding: none does in these runs
            assert math.isclose(value, other, rel_tol=1e-3, abs_tol=1e-4), (key, value, other)


@pytest.mark.parametrize(("method", "epochs", "batch"), [("amst_full", 2, 20), ("naive", 2, 20), ("ogm_ge", 1, 20),
                                                         ("pmr", 2, 20), ("amst_full", 1, 17)])
def test_two_ranks_train_what_one_process_trains(tmp_path: Path, avdigits: Path, method: str, epochs: int,
                                                 batch: int) -> None:
    """Batches of 17: unequal slices weigh their losses, meters and augmentation draws by their share. Over one
    epoch only: in the second epoch of that run one activation of the audio encoder (a BatchNorm output within
    rounding of zero, 1x1 maps of 15 samples) falls on the other side of ReLU's kink on 2 ranks, which moves one
    bias's gradient by 12% (traced while building this; any other order of summation can do the same)."""
    train(tmp_path / "one", avdigits, method, epochs=epochs, batch=batch)
    train(tmp_path / "two", avdigits, method, "resources.gpus=2", epochs=epochs, batch=batch)
    assert_same_curves(tmp_path / "one", tmp_path / "two")
    assert worst_weight_difference(tmp_path / "one", tmp_path / "two") < WEIGHTS_RTOL
    assert {p["epoch"] for p in read_jsonl(tmp_path / "two" / "metrics.jsonl")} == set(range(epochs))


def test_without_global_batchnorm_the_ranks_normalise_by_their_slice(tmp_path: Path, avdigits: Path) -> None:
    """The tolerance above can fail: BatchNorm on each rank's half of the batch is outside it."""
    train(tmp_path / "one", avdigits, "naive", epochs=1)
    train(tmp_path / "two", avdigits, "naive", "resources.gpus=2", "resources.sync_batchnorm=false", epochs=1)
    assert worst_weight_difference(tmp_path / "one", tmp_path / "two") > 100 * WEIGHTS_RTOL


def rank_pids(root: int) -> dict[int, int]:
    """rank -> pid of the rank processes below `root` (the launcher's children), by their RANK variable."""
    found = {}
    for pid in descendants(root):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        rank = next((v for v in environ if v.startswith(b"RANK=")), None)
        if rank is not None:
            found[int(rank[5:])] = pid
    return found


def test_a_killed_rank_fails_the_run_promptly_and_it_resumes_exactly(tmp_path: Path, avdigits: Path) -> None:
    """Exact resume of a 2-rank run, from a rank killed mid-run: AMST-FULL (its alternation and skip state, the
    ranks' RNG) resumed from the epoch it had saved ends with the curves and weights of a run never stopped."""
    train(tmp_path / "through", avdigits, "amst_full", "resources.gpus=2", epochs=3)
    out = tmp_path / "killed"
    cli = subprocess.Popen([sys.executable, "-m", "amst_core.cli",
                            *train_argv(out, avdigits, "amst_full", "resources.gpus=2", epochs=3)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoints" / "last.pt").exists():  # the first epoch is saved
            assert cli.poll() is None and time.monotonic() < deadline, "the run ended before its first epoch"
            time.sleep(0.05)
        os.kill(rank_pids(cli.pid)[1], signal.SIGKILL)
        killed = time.monotonic()
        output, _ = cli.communicate(timeout=90)  # never a hang: the launcher sees the dead rank, ends the other
    finally:
        if cli.poll() is None:
            cli.kill()
    assert time.monotonic() - killed < 60
    assert cli.returncode != 0 and "failed" in output and f"--resume {out}" in output
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert curves(tmp_path / "through") == curves(out)  # every epoch once, the same values
    assert worst_weight_difference(tmp_path / "through", out) == 0.0
