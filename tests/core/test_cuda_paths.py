"""The CUDA paths a CPU can show (issue 20's findings): devices with an index, half precision in every method,
optimizer kernel flags across a resume between devices, RNGs that the data path leaves alone, determinism set
both ways, seeds of any allowed size, the text encoder's mask without a host sync, GPU pinning of a worker.
GPU-only behaviour is checked by the GPU tier (tests/gpu, `pytest -m gpu`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from amst_core.catalog import METHODS
from amst_core.config import INT32, ConfigError
from amst_core.data.augment import batch_generator
from amst_core.data.base import SeededAugment
from amst_core.devices import check_precision, is_device_failure, resolve_device, seed_everything
from amst_core.engine import Trainer
from amst_core.methods.base import TrainedNet
from launch.processes import pin_gpu
from tests.kit.tiny import tiny_config
from tests.kit.training import optimizer_flags


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.cuda as a machine with two GPUs shows it, the current one being GPU 1 (a previous run's choice in a
    worker that sees both: `auto` still means GPU 0)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)


@pytest.mark.parametrize(("spec", "index"), [("auto", 0), ("cuda", 0), ("cuda:0", 0), ("cuda:1", 1)])
def test_a_gpu_device_always_names_its_index(two_gpus: None, spec: str, index: int) -> None:
    device = resolve_device(spec)
    assert device == torch.device("cuda", index)
    # what torch.cuda.set_device does first (it raised "Expected a torch.device with a specified index")
    assert torch.cuda._utils._get_device_index(device) == index


def test_a_missing_gpu_is_a_config_error(two_gpus: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="this machine has 2 GPU"):
        resolve_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")


def test_bf16_on_a_gpu_without_native_bf16_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """`is_bf16_supported()` says yes on a V100 (by emulation), and answers for the current GPU: the check asks
    the run's own GPU for native support (a machine of mixed cards: a V100 as cuda:0, an H100 as cuda:1)."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100-SXM2-32GB")
    capability = {0: (7, 0), 1: (9, 0)}
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability[device.index])
    with pytest.raises(ConfigError, match=r"V100.*compute capability 7\.0.*no native bf16") as err:
        check_precision("bf16", torch.device("cuda", 0))
    assert err.value.field == "precision"
    check_precision("bf16", torch.device("cuda", 1))
    check_precision("fp16", torch.device("cuda", 0))
    check_precision("bf16", torch.device("cpu"))


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_in_bf16(method: str) -> None:
    """OGM-GE's modulation ran the head outside autocast on bf16 embeddings: 'mat1 and mat2 must have the same
    dtype' at the first batch."""
    teachers = "teacher_epochs" in METHODS[method].params.model_fields  # UMT, G2D: a teacher epoch, then a student's
    cfg = tiny_config(method, precision="bf16", epochs=2 if teachers else 1,
                      skip={"audio": 2} if METHODS[method].uses_skip else {},
                      method_params={"modality": "audio"} if method == "unimodal" else {})
    summary = Trainer(cfg, progress=False).fit()
    assert summary["best_val_acc"] is not None


@pytest.mark.parametrize("method", ["ogm_ge", "amst_full"])
def test_fp16_with_its_loss_scaler_trains(method: str) -> None:
    summary = Trainer(tiny_config(method, precision="fp16", epochs=1), progress=False).fit()
    assert summary["best_val_acc"] is not None


def rebuild_optimizers(trainer: Trainer, fused: bool) -> None:
    """The trainer's optimizers as a device that chooses `fused` builds them (fused SGD runs on a CPU too)."""
    for key, t in trainer.method.nets.items():
        trainer.method.nets[key] = TrainedNet.build(t.net, trainer.cfg, t.prefix, fused=fused)


def test_a_resume_keeps_the_optimizer_kernels_of_the_device_it_runs_on() -> None:
    """Optimizer.load_state_dict restored the checkpoint's `fused` flag: a CPU checkpoint resumed on a GPU lost
    fused SGD (and with fp16 failed its first step); a GPU checkpoint on a CPU kept fused=True."""
    cfg = tiny_config("amst_alt", epochs=1)
    gpu_like = Trainer(cfg, progress=False)
    rebuild_optimizers(gpu_like, fused=True)
    cpu_like = Trainer(cfg, progress=False)
    assert optimizer_flags(gpu_like) == {True} and optimizer_flags(cpu_like) == {None}

    gpu_like.method.load_state_dict(cpu_like.method.state_dict())
    cpu_like.method.load_state_dict(gpu_like.method.state_dict())
    assert optimizer_flags(gpu_like) == {True}
    assert optimizer_flags(cpu_like) == {None}
    # what the optimizer learned did come across: the learning rates and momentum buffers' layout
    for t in cpu_like.method.nets.values():
        assert all(g["lr"] == cfg.optim.lr for o in t.optimizers.values() for g in o.param_groups)


def test_fp16_steps_after_a_resume_from_a_checkpoint_of_another_device() -> None:
    cfg = tiny_config("naive", precision="fp16", epochs=1)
    saved = Trainer(cfg, progress=False)
    saved.fit()
    resumed = Trainer(cfg, progress=False)
    rebuild_optimizers(resumed, fused=True)
    resumed.method.load_state_dict(saved.method.state_dict())
    batch, _ = next(iter(resumed.batches("train", 0, "")))
    resumed.method.train_batch(batch, 0)  # 'Expected grad_scale and found_inf to be None' before the fix


class Augmented(SeededAugment):
    epoch_seed = 11


def test_reading_a_sample_leaves_the_cuda_generators_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.manual_seed inside fork_rng(devices=[]) reseeded every CUDA generator without restoring it."""
    reseeded: list[int] = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: reseeded.append(seed))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: reseeded.append(seed))
    before = torch.get_rng_state()
    draws = []
    for _ in range(2):
        with Augmented().sample_rng(3):
            draws.append(torch.rand(4))
    assert reseeded == []
    assert torch.equal(draws[0], draws[1])  # the sample's own seed
    assert torch.equal(torch.get_rng_state(), before)  # and the run's CPU generator as it was


@pytest.fixture
def determinism_restored():
    state = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark)
    yield
    torch.use_deterministic_algorithms(state[0])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = state[1], state[2]


def test_deterministic_runs_use_deterministic_algorithms_and_the_next_run_resets_them(determinism_restored) -> None:
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] in (":4096:8", ":16:8")  # set when amst_core.devices loads
    seed_everything(0, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.utils.deterministic.fill_uninitialized_memory  # no NaN-filling of every torch.empty
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    seed_everything(0, deterministic=False)  # the same worker process, a run that wants speed
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic


def test_a_deterministic_pmr_run_trains(determinism_restored) -> None:
    """PMR's class counts (index_add_, no bincount) have a deterministic implementation on every device."""
    summary = Trainer(tiny_config("pmr", deterministic=True, epochs=2), progress=False).fit()
    assert summary["best_val_acc"] is not None


def test_the_batch_generator_takes_every_seed_the_config_allows() -> None:
    """((seed * 1_000_003 + epoch) * 7 + stream) * 1_000_003 + index overflowed 64 bits above seed ~2.6e6."""
    g = batch_generator(torch.device("cpu"), INT32, 999, 10**6, 3)
    assert torch.rand(1, generator=g).item() >= 0
    for seed in (5, 1_900_000):  # seeds that fitted keep their draws (the second one above 2^63)
        raw = ((seed * 1_000_003 + 2) * 7 + 1) * 1_000_003 + 7
        assert seed == 5 or 2**63 <= raw < 2**64
        got = batch_generator(torch.device("cpu"), seed, 2, 7, 1)
        assert torch.equal(torch.rand(8, generator=got), torch.rand(8, generator=torch.Generator().manual_seed(raw)))


def test_a_run_with_the_largest_seed_trains_a_cached_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from amst_core.config import RunConfig
    from tests.kit.tiny import write_tiny_cremad

    monkeypatch.setenv("AMST_CACHE", str(tmp_path / "cache"))
    write_tiny_cremad(Path(os.environ["AMST_DATA_ROOT"]), per_split=4)
    cfg = RunConfig.model_validate({"method": "naive", "dataset": {"name": "cremad", "cache": True}, "seed": INT32,
                                    "epochs": 1, "batch_size": 4, "device": "cpu",
                                    "model": {"frames": 1, "width": 8, "image_size": 16, "audio_frames": 40}})
    assert Trainer(cfg, progress=False).fit()["best_val_acc"] is not None


def test_the_text_encoder_hands_transformers_a_ready_mask(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Given a 2-D mask, transformers asked `mask.all()` on every forward (a host sync on a GPU); a 4-D mask is
    taken as it is, with the same result."""
    import transformers.masking_utils as masking

    from amst_core.config import ModelConfig
    from amst_core.models.text import TextEncoder
    from tests.kit.tiny import write_tiny_roberta

    folder = write_tiny_roberta(Path(os.environ["AMST_DATA_ROOT"]) / "roberta")  # where a run may read
    encoder = TextEncoder(ModelConfig(text_model=str(folder), text_trainable_layers=1)).eval()
    ids = torch.randint(3, 200, (3, 9))
    mask = torch.ones(3, 9)
    mask[1, 5:] = 0
    mask[2, 2:] = 0
    ids[mask == 0] = 1
    with torch.no_grad():
        expected = encoder.backbone(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]

        def no_sync(*_args, **_kwargs):
            raise AssertionError("transformers inspected the padding mask")

        monkeypatch.setattr(masking, "_ignore_bidirectional_mask_sdpa", no_sync)
        got = encoder(ids, mask)
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize(("given", "gpu", "chosen"), [(None, 1, "1"), ("2,5", 1, "5"), ("GPU-abc", 0, "GPU-abc")])
def test_a_pinned_worker_counts_among_the_gpus_it_was_given(given: str | None, gpu: int, chosen: str) -> None:
    env = {} if given is None else {"CUDA_VISIBLE_DEVICES": given}
    assert pin_gpu(gpu, env) == chosen
    assert env == {"CUDA_VISIBLE_DEVICES": chosen, "AMST_WORKER_GPU": chosen, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    kept = {"CUDA_DEVICE_ORDER": "FASTEST_FIRST"}
    pin_gpu(0, kept)
    assert kept["CUDA_DEVICE_ORDER"] == "FASTEST_FIRST"  # a user's explicit order stands


def test_a_worker_pinned_beyond_its_gpus_says_so() -> None:
    with pytest.raises(SystemExit, match=r"--gpu 2: this process was given 2 GPU\(s\)"):
        pin_gpu(2, {"CUDA_VISIBLE_DEVICES": "0,1"})
    with pytest.raises(SystemExit, match="given 0 GPU"):
        pin_gpu(0, {"CUDA_VISIBLE_DEVICES": ""})


def test_which_errors_break_a_gpu_context() -> None:
    assert is_device_failure(torch.AcceleratorError("CUDA error: device-side assert triggered"))
    assert is_device_failure(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert not is_device_failure(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_device_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_device_failure(ValueError("CUDA error"))
    assert is_device_failure(RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"))
    assert is_device_failure(RuntimeError("CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling cublasSgemm"))
    try:  # the CUDA error as the cause of what reached the worker
        try:
            raise torch.AcceleratorError("CUDA error: an illegal memory access was encountered")
        except torch.AcceleratorError as inner:
            raise ValueError("a batch could not be made") from inner
    except ValueError as outer:
        assert is_device_failure(outer)


@pytest.mark.slow  # the first compile in a process sets up dynamo and AOTAutograd: about 30 s on 2 busy cores
@pytest.mark.parametrize("method", ["amst_alt", "amst_full"])
def test_compiled_encoders_train_the_alternating_update(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one encoder backward stopped a head loss's backward at the encoder's output, which with a compiled
    encoder entered its graph and freed it: 'Trying to backward through the graph a second time' at the first
    batch. AOTAutograd (what `compile` builds on) without inductor's code generation, to stay quick on a CPU;
    the compiled run learns what the eager one does."""
    real_compile = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **_: real_compile(self, backend="aot_eager"))
    cfg = tiny_config(method, epochs=1, skip={"audio": 2})
    compiled = Trainer(cfg.model_copy(update={"compile": True}), progress=False)
    compiled.fit()
    eager = Trainer(cfg, progress=False)
    eager.fit()
    for key, trained in eager.method.nets.items():
        got = compiled.method.nets[key].net.state_dict()
        for name, value in trained.net.state_dict().items():
            torch.testing.assert_close(got[name], value, rtol=1e-4, atol=1e-5)
