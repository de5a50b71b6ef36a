"""The training loop: epochs, their training and evaluation passes, model selection, checkpoints, exact resume.

It knows nothing of HTTP, Celery or SQL: points go to MetricSinks, and a `should_stop` callback (checked at
every batch) lets a caller cancel. Exact resume rests on two things: the shuffle order of an epoch depends only
on (seed, epoch), and last.pt holds every RNG state as of the end of its epoch. What is not the loop lives beside
it: the run folder and the checkpoint format (runfolder.py), the engine's run-level series (runseries.py), the
progress inside an epoch (progress.py), evaluating a saved run (evaluation.py).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from amst_core import distributed, gpu
from amst_core.config import ConfigError, RunConfig
from amst_core.data import source_for, to_device
from amst_core.data.augment import FrameAugment, batch_generator, finish_batch
from amst_core.data.base import Loaders, loader_processes
from amst_core.devices import (
    check_precision,
    deterministic_for,
    resolve_device,
    seed_everything,
    set_cpu_kernels,
)
from amst_core.distributed import SINGLE, Ranks, any_rank, sum_across
from amst_core.limits import get_limits
from amst_core.methods import Method, build_method
from amst_core.metrics import EpochMeters, MetricPoint, Plateau, imbalance_points
from amst_core.progress import LiveProgress
from amst_core.runfolder import RunFolder, model_checkpoint, resume_checkpoint, rng_state, set_rng_state
from amst_core.runseries import gpu_points, lr_points, skip_points, skip_speed_points, timing_points
from amst_core.selection import PRIMARY, ModelSelection, accuracy
from amst_core.sinks import MetricSink, epoch_line
from amst_core.vocab import EVAL_SPLITS, HELPER, SPLITS, component

log = logging.getLogger("amst.engine")


class RunCancelled(Exception):
    """Raised inside the epoch loop when `should_stop()` answers True."""


class EpochData:
    """What a method may read before an epoch (PMR's prototypes): the splits' batches, on the run's device, in a
    shuffle of their own that depends only on (seed, epoch, stream), so a resumed run sees the same ones."""

    def __init__(self, trainer: Trainer, epoch: int):
        self.trainer, self.epoch = trainer, epoch

    def num_batches(self, split: str) -> int:
        """Global batches: on several ranks each rank has a slice of each."""
        return math.ceil(len(self.trainer.datasets[split]) / self.trainer.cfg.batch_size)

    def batches(self, split: str, stream: int = 1) -> Iterator[dict[str, torch.Tensor]]:
        trainer = self.trainer
        for index, batch in enumerate(trainer.loader(split, self.epoch, shuffle=True, stream=stream)):
            trainer.check_stop()
            yield trainer.model_batch(batch, split, self.epoch, index, stream)


class Trainer:
    def __init__(self, cfg: RunConfig, *, out_dir: Path | None = None, sinks: Sequence[MetricSink] = (),
                 run_id: str = "", attempt: int = 1, should_stop: Callable[[], bool] | None = None,
                 progress: bool | None = None, ranks: Ranks = SINGLE):
        self.cfg = cfg
        self.ranks = ranks  # on several ranks, rank 0 alone writes points and checkpoints (distributed.py)
        self.folder = RunFolder(Path(out_dir)) if out_dir is not None else None  # None: nothing saved
        self.sinks = list(sinks) if ranks.is_main else []
        self.run_id = run_id or cfg.display_name
        self.attempt = attempt
        self.should_stop = should_stop
        self.progress = sys.stderr.isatty() if progress is None else progress
        source = source_for(cfg)
        self.classes = source.classes(cfg)
        self.device = resolve_device(cfg.device, ranks)
        distributed.start(ranks, self.device)
        check_precision(cfg.precision, self.device)
        set_cpu_kernels(cfg.precision, self.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)  # pinned-memory threads and new tensors go to the run's GPU
        seed_everything(cfg.seed, deterministic_for(cfg.deterministic, self.device))
        self.method: Method = build_method(cfg, len(self.classes), self.device, ranks)
        self.datasets = {split: source.split(cfg, split, train=(split == "train"))
                         for split in SPLITS}
        distributed.check_split_sizes({split: len(ds) for split, ds in self.datasets.items()}, ranks)
        # dataset.on_bad_sample: skip: how many samples of each split were left out, and why (the first few)
        self.dropped = {split: list(getattr(ds, "dropped", [])) for split, ds in self.datasets.items()}
        self.selection = ModelSelection(self.method.selections())
        self.plateau = Plateau()
        self.start_epoch = 0
        self.replay: list[MetricPoint] = []  # points saved with the checkpoint a resumed run starts from
        self.live = LiveProgress()
        self.augment = FrameAugment(cfg.model.image_size)
        self.loaders = Loaders(cfg.batch_size, cfg.seed, pin_memory=self.device.type == "cuda", ranks=ranks)
        self.gpu: gpu.GpuSampler | None = None  # sampling only while fit() runs
        self.provenance: dict[str, Any] | None = None  # set by execute_run (amst_core.provenance.collect)

    # ---- checkpoints ------------------------------------------------------------------------------------------

    def best_checkpoint(self, epoch: int) -> dict[str, Any]:
        """The model of the best epoch, for evaluation and download: half of last.pt (no momentum buffers,
        schedulers, RNG states or points, which only resuming needs)."""
        return model_checkpoint(epoch=epoch, config=self.cfg.model_dump(mode="json"), classes=list(self.classes),
                                method=self.method.model_state_dict(), selection=self.selection.state_dict(),
                                provenance=self.provenance)

    def checkpoint(self, epoch: int, points: Sequence[MetricPoint]) -> dict[str, Any]:
        """last.pt: the best checkpoint's fields with the method's whole state, and what resuming needs."""
        return resume_checkpoint(self.best_checkpoint(epoch), method=self.method.state_dict(),
                                 plateau=self.plateau.state_dict(), rng=rng_state(self.device),
                                 points=[p.to_dict() for p in points])

    def save_checkpoints(self, epoch: int, improved: bool, points: Sequence[MetricPoint]) -> None:
        """last.pt: everything exact resume needs (Doc/training.md, "Checkpoints"); best.pt: the best epoch's
        model alone."""
        if self.folder is None or not self.ranks.is_main:
            return
        is_last_epoch = epoch == self.cfg.epochs - 1
        if (epoch + 1) % self.cfg.checkpoint_every == 0 or is_last_epoch or improved:
            # with the metrics no sink has made durable yet, this epoch's included
            self.folder.save_checkpoint("last", self.checkpoint(epoch, [*self.unsaved_points(), *points]))
        if improved:
            self.folder.save_checkpoint("best", self.best_checkpoint(epoch))

    def unsaved_points(self) -> list[MetricPoint]:
        """Points a sink accepted but has not stored yet (the database sink buffers through an outage)."""
        return [p for sink in self.sinks for p in sink.pending()]

    def resume(self) -> None:
        """Continue from the run folder's last checkpoint: weights, optimizers, schedulers, best-so-far and RNG
        states."""
        assert self.folder is not None, "resuming needs the run folder"
        state = self.folder.load_checkpoint("last")  # on the CPU: RNG states must stay there
        self.method.load_state_dict(state["method"])
        self.selection.load_state_dict(state["selection"])
        self.plateau.load_state_dict(state["plateau"])
        self.start_epoch = state["epoch"] + 1
        self.replay = [MetricPoint(**p) for p in state["points"]]
        set_rng_state(state["rng"], self.device)
        log.info("resuming from the checkpoint of epoch %d/%d", self.start_epoch, self.cfg.epochs)

    # ---- epochs -----------------------------------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        replay_from = min([p.epoch for p in self.replay] + [self.start_epoch])
        for sink in self.sinks:
            sink.begin(replay_from)
        for epoch in sorted({p.epoch for p in self.replay}):  # upserts: rewriting what a sink had is harmless
            for sink in self.sinks:
                sink.write([p for p in self.replay if p.epoch == epoch])
        for module in self.method.modules():  # equal from one seed or one checkpoint; rank 0's, to be certain
            distributed.broadcast_state(module, self.ranks)
        last_points: list[MetricPoint] = []
        started = time.perf_counter()
        self.gpu = gpu.open_sampler(self.device)
        try:
            for epoch in range(self.start_epoch, self.cfg.epochs):
                last_points = self.run_epoch(epoch)
        finally:
            self.loaders.close()
            if self.gpu is not None:
                self.gpu.stop()
                self.gpu = None
        return self.summary(last_points, time.perf_counter() - started)

    def run_epoch(self, epoch: int) -> list[MetricPoint]:
        lrs = self.method.learning_rates()  # the rates used during this epoch
        t0 = time.perf_counter()
        if self.gpu is not None:
            self.gpu.begin_epoch()
        self.method.begin_epoch(epoch, EpochData(self, epoch))
        points, samples = self.train_epoch(epoch)
        train_time = time.perf_counter() - t0
        self.method.scheduler_step()
        points += self.evaluate("val", epoch)
        if accuracy(points, "val", PRIMARY) is None:
            raise ConfigError("dataset", "the validation split is empty: model selection needs it")
        points += self.skip_decision(epoch, points)
        improved = self.selection.improves(points)
        if improved or self.cfg.test_every_epoch or self.method.tests_every_epoch:
            points += self.evaluate("test", epoch)
        points += self.selection.update(epoch, points)
        for split in SPLITS:
            points += imbalance_points(points, split, epoch)
        points += self.plateau.update(epoch, points)
        points += self.method.after_validation(epoch, points)
        points += self.run_points(epoch, lrs, samples, train_time, time.perf_counter() - t0)
        points += gpu_points(epoch, self.gpu)
        steps = (epoch + 1) * math.ceil(len(self.datasets["train"]) / self.cfg.batch_size)
        for p in points:
            p.run_id, p.attempt, p.step = self.run_id, self.attempt, steps
        # Checkpoint first, with these points in it, then the metrics: the stored progress (epochs_done) never
        # runs ahead of what resume can continue from, a full disk stops the run before its metrics claim the
        # epoch, and a crash in between is healed by the resumed run, which writes the saved points first.
        self.save_checkpoints(epoch, improved, points)
        for sink in self.sinks:
            sink.write(points)
        if self.ranks.is_main:
            log.info("%s", epoch_line(points, epoch, self.cfg.epochs))
        return points

    def check_stop(self) -> None:
        """Raise RunCancelled when asked to stop; on several ranks, when any rank is (all stop at one batch)."""
        asked = self.should_stop is not None and self.should_stop()
        if any_rank(asked, self.ranks, self.device):
            raise RunCancelled()

    def loader(self, split: str, epoch: int, shuffle: bool, stream: int = 0) -> DataLoader:
        dataset = self.datasets[split]
        workers = loader_processes(self.cfg.num_workers, dataset, self.device)
        if self.cfg.num_workers == "auto":  # never beyond what this server allows a run (AMST_MAX_NUM_WORKERS)
            workers = min(workers, get_limits().num_workers)
        return self.loaders.get(split, dataset, epoch, shuffle=shuffle, stream=stream, num_workers=workers)

    def model_batch(self, batch: dict[str, torch.Tensor], split: str, epoch: int, index: int,
                    stream: int = 0) -> dict[str, torch.Tensor]:
        """A loader's batch on the run's device as the model takes it: cached frames augmented there (training)
        with draws set by (seed, epoch, batch index, stream), so no generator state needs saving. On several
        ranks each sample gets the draws it gets in one process (its place in the global batch)."""
        batch = to_device(batch, self.device)
        generator = batch_generator(self.device, self.cfg.seed, epoch, index, stream) if split == "train" else None
        first, total = self.place_in_batch(split, index)
        return finish_batch(batch, self.augment, train=split == "train", generator=generator, part=(first, total))

    def place_in_batch(self, split: str, index: int) -> tuple[int, int]:
        """(first sample of this rank's slice, size) of global batch `index` of `split`."""
        total = min(self.cfg.batch_size, len(self.datasets[split]) - index * self.cfg.batch_size)
        return self.ranks.share(total)[0], total

    def batches(self, split: str, epoch: int, desc: str) -> Iterator[tuple[dict[str, torch.Tensor], float]]:
        """(batch, its share of the global batch: 1 on one rank)."""
        loader = self.loader(split, epoch, shuffle=(split == "train"))
        self.live.begin(epoch, split, len(loader))
        for index, batch in enumerate(tqdm(loader, desc=desc, leave=False, disable=not self.progress,
                                           file=sys.stderr)):
            self.check_stop()
            size, total = len(batch["label"]), self.place_in_batch(split, index)[1]
            yield self.model_batch(batch, split, epoch, index), size / total
            self.live.advance(total)  # the consumer asked for the next one: this one (all ranks' slices) is done

    def train_epoch(self, epoch: int) -> tuple[list[MetricPoint], int]:
        meters, samples = self.train_loop(epoch)
        if not self.method.forward_modalities(epoch):
            return [], 0  # fast mode, every modality skipped: nothing was trained, nothing to report
        if self.ranks.distributed:
            samples = int(sum_across(torch.tensor([samples], device=self.device), self.ranks).item())
        return meters.points("train", epoch, self.ranks), samples

    def train_loop(self, epoch: int) -> tuple[EpochMeters, int]:
        """The training batches of an epoch, trained on and added to the meters, which are not read here: no
        call in this loop waits for the GPU (reading the meters copies the epoch's sums to the host, once)."""
        self.method.train_mode(True)
        meters = EpochMeters(len(self.classes), self.device)
        samples = 0
        if not self.method.forward_modalities(epoch):
            return meters, 0  # fast mode, every modality skipped: no work at all in this epoch
        for batch, share in self.batches("train", epoch, f"epoch {epoch + 1}/{self.cfg.epochs} train"):
            self.method.loss_scale = self.ranks.world * share
            meters.update(self.method.train_batch(batch, epoch), batch["label"], share)
            samples += len(batch["label"])  # a shape, not a value: no synchronisation
        return meters, samples

    def evaluate(self, split: str, epoch: int) -> list[MetricPoint]:
        self.method.train_mode(False)
        meters = EpochMeters(len(self.classes), self.device)
        for batch, share in self.batches(split, epoch, f"epoch {epoch + 1}/{self.cfg.epochs} {split}"):
            meters.update(self.method.eval_batch(batch), batch["label"], share)
        return meters.points(split, epoch, self.ranks)

    def skip_decision(self, epoch: int, points: list[MetricPoint]) -> list[MetricPoint]:
        """`skip: auto`: the schedule sees each modality's helper validation accuracy (AMST-FULL: its alternating
        module's); a decision taken now is logged with its evidence, each modality's speed."""
        helpers = (component(HELPER), component(HELPER, "alt_"))
        helper = {m: next((p.value for p in points if p.split == "val" and p.name == "acc" and p.modality == m
                           and p.component in helpers), None) for m in self.method.modalities}
        return skip_speed_points(epoch, self.method.schedule.observe(epoch, helper))

    def run_points(self, epoch: int, lrs: dict[str, float], samples: int, train_time: float,
                   epoch_time: float) -> list[MetricPoint]:
        """The engine's run-level series of an epoch (runseries.py): the skip schedule, learning rates, timing."""
        return (skip_points(self.method.schedule, self.method.modalities, epoch) + lr_points(epoch, lrs)
                + timing_points(epoch, samples, train_time, epoch_time))

    def summary(self, last_points: list[MetricPoint], seconds: float) -> dict[str, Any]:
        final: dict[str, dict[str, dict[str, float]]] = {}
        for p in last_points:
            if p.name == "acc" and p.modality is not None and p.split in EVAL_SPLITS:
                final.setdefault(p.split, {}).setdefault(p.component, {})[p.modality] = p.value
        schedule, best = self.method.schedule, self.selection.best
        summary = {
            "run_id": self.run_id,
            "method": self.cfg.method,
            "dataset": self.cfg.dataset.name,
            "epochs": self.cfg.epochs,
            "best_epoch": best.epoch,
            "best_val_acc": best.val_acc,
            "test_acc_at_best": best.test_acc,
            "test_at_best": best.test_modalities,
            "selections": self.selection.summary(),
            "final_epoch": last_points[0].epoch if last_points else self.start_epoch - 1,
            "final": final,
            "skip_factors": dict(schedule.factors),
            "skip_decisions": [{"from_epoch": start, "factors": f} for start, f in schedule.decisions],
            "skipped_epochs": {m: [e for e in range(self.cfg.epochs) if not schedule.is_updated(m, e)]
                               for m in schedule.factors},
            "seconds_this_session": round(seconds, 2),
        }
        if any(self.dropped.values()):
            summary["dropped_samples"] = {split: len(bad) for split, bad in self.dropped.items()}
            summary["dropped_examples"] = [str(b) for bad in self.dropped.values() for b in bad][:10]
        return summary

