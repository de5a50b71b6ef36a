"""A trained run's model out of AMST Studio (`amst export-model`), and the one way to load it for predicting.

    <out>/model.safetensors   every network's weights and buffers (encoders, fusion head, helper probes), keys
                              `<network>.<parameter>`: `model.` for most methods, `alt.`/`joint.` for AMST-FULL
    <out>/model.onnx          one graph: the run's modality tensors in, named outputs `fused_logits` (the
                              prediction) and `<modality>_logits` (that modality's branch), batch axis dynamic
    <out>/preprocessing.json  what the inputs must be (shapes, dtypes, features, normalisation), the class order,
                              the run, its checkpoint epoch and its provenance

A modality's output is its branch of the fusion head: `branch` for most methods, the alternating module's
`alt_branch` for AMST-FULL (Doc/models.md). The ONNX graph is checked against PyTorch with ONNX Runtime on random
inputs of the stated shapes before it is kept; the largest difference goes into preprocessing.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from amst_core.config import ConfigError, RunConfig
from amst_core.data.augment import IMAGENET_MEAN, IMAGENET_STD
from amst_core.data.cache import stored_size
from amst_core.extras import require
from amst_core.runfolder import Checkpoint, RunFolder, find_run
from amst_core.vocab import AUDIO, BRANCH, FUSED, TEXT, VISUAL, family_members

if TYPE_CHECKING:
    from amst_core.methods import Method

FORMATS = ("safetensors", "onnx")
PREPROCESSING = "preprocessing.json"
# ONNX Runtime against PyTorch in fp32 (measured: Doc/models.md); a larger difference refuses the export.
ONNX_ATOL, ONNX_RTOL = 1e-4, 1e-3
MEDIA_SOURCES = ("amst_core.data.folder:", "amst_core.data.reference:")  # features decoded from media files


@dataclass
class TrainedModel:
    """A run's networks from one checkpoint, in evaluation mode, on one device, in fp32."""

    run_id: str
    which: Checkpoint
    cfg: RunConfig
    classes: tuple[str, ...]
    epoch: int
    method: Method
    provenance: dict[str, Any] | None

    @classmethod
    def load(cls, run: str, which: Checkpoint = "best", device: str = "cpu") -> TrainedModel:
        from amst_core.devices import resolve_device
        from amst_core.methods import build_method

        folder = find_run(run)
        if not folder.checkpoint(which).exists():
            raise ConfigError("--checkpoint", f"{folder.path} has no {which} checkpoint "
                                              f"({folder.checkpoint(which)}); a run writes it once an epoch ends")
        state = folder.load_checkpoint(which)
        # Predicting never compiles, and computes in fp32 (a reduced precision is a training-speed choice).
        cfg = RunConfig.model_validate({**state["config"], "device": device, "compile": False, "precision": "fp32"})
        method = build_method(cfg, len(state["classes"]), resolve_device(cfg.device))
        method.load_model_state_dict(state["method"])
        method.train_mode(False)
        return cls(folder.name, which, cfg, tuple(state["classes"]), int(state["epoch"]), method,
                   state.get("provenance"))

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.method.modalities

    @property
    def input_names(self) -> tuple[str, ...]:
        """The tensors the networks take, in this order (ONNX inputs): a text comes with its padding mask."""
        return tuple(name for m in self.modalities for name in ((m, "text_mask") if m == TEXT else (m,)))

    @property
    def predictions(self) -> tuple[str, ...]:
        """The fused prediction, then one per modality (the keys of `logits`)."""
        return (FUSED, *self.modalities)

    @property
    def output_names(self) -> tuple[str, ...]:
        """ONNX outputs, `<prediction>_logits` (a graph's names are unique: the inputs are called by modality)."""
        return tuple(f"{name}_logits" for name in self.predictions)

    @torch.no_grad()
    def logits(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`fused` and each modality's branch logits of a batch as the model takes it (what evaluation computes:
        the method's own head outputs, e.g. AMST-FULL's averaged prediction)."""
        method = self.method
        outputs = method.head_outputs({k: t.net.embed(batch, self.modalities) for k, t in method.nets.items()})
        out = {FUSED: outputs[(FUSED, None)]}
        for m in self.modalities:
            out[m] = next(outputs[(c, m)] for c in family_members(BRANCH) if (c, m) in outputs)
        return out

    def weights(self) -> dict[str, torch.Tensor]:
        """Every network's tensors as `<network>.<name>`, each its own contiguous CPU copy (a tensor two names
        share is written twice, so each reloads on its own)."""
        return {f"{key}.{name}": tensor.detach().to("cpu", copy=True).contiguous()
                for key, trained in self.method.nets.items() for name, tensor in trained.net.state_dict().items()}

    def example_inputs(self, batch: int = 2) -> dict[str, torch.Tensor]:
        """Random inputs of the shapes and dtypes the networks take (`input_specs`)."""
        generator = torch.Generator().manual_seed(0)
        out = {}
        for name, spec in self.input_specs().items():
            shape = (batch, *spec["shape"][1:])
            if name == TEXT:
                out[name] = torch.randint(0, 100, shape, generator=generator)  # ids every vocabulary has
            elif name == "text_mask":
                out[name] = torch.ones(shape)
                out[name][:, shape[1] // 2:] = 0.0  # padding after half the tokens
            else:
                out[name] = torch.randn(shape, generator=generator)
        return out

    def input_specs(self) -> dict[str, dict[str, Any]]:
        m = self.cfg.model
        shapes: dict[str, tuple[list[Any], str]] = {
            AUDIO: (["batch", 1, m.audio_frames, m.mel_bins], "float32"),
            VISUAL: (["batch", 3, m.frames, m.image_size, m.image_size], "float32"),
            TEXT: (["batch", m.text_max_length], "int64"),
            "text_mask": (["batch", m.text_max_length], "float32"),
        }
        return {name: {"shape": shapes[name][0], "dtype": shapes[name][1]} for name in self.input_names}

    def preprocessing(self) -> dict[str, Any]:
        """What preprocessing.json says: enough to feed the exported model from raw files."""
        return {
            "run_id": self.run_id, "checkpoint": self.which, "epoch": self.epoch, "method": self.cfg.method,
            "dataset": self.cfg.dataset.name, "classes": list(self.classes), "modalities": list(self.modalities),
            "inputs": self.input_specs(),
            "outputs": {f"{name}_logits": {"shape": ["batch", len(self.classes)], "dtype": "float32",
                                           "is": "the fused prediction" if name == FUSED else
                                                 f"the {name} branch of the fusion head"} for name in self.predictions},
            "probabilities": "softmax over the last axis of an output; classes in the order of `classes`",
            "features": features(self.cfg),
            "provenance": self.provenance,
        }


def features(cfg: RunConfig) -> dict[str, Any]:
    """How each modality's tensor is computed from a sample's files (amst_core.data.media and .augment)."""
    from amst_core.datasets import DATASETS

    source = DATASETS[cfg.dataset.name].source
    if not source.startswith(MEDIA_SOURCES):
        return {m: f"the dataset's own tensors ({source}); see Doc/datasets.md" for m in cfg.modalities}
    m = cfg.model
    said: dict[str, Any] = {}
    if AUDIO in cfg.modalities:
        said[AUDIO] = {
            "sample_rate": cfg.dataset.audio_rate or "each file's own rate", "channel": "the first",
            "fbank": {"kind": "Kaldi log-mel (torchaudio.compliance.kaldi.fbank)", "num_mel_bins": m.mel_bins,
                      "frame_length_ms": 25, "frame_shift_ms": 10, "window_type": "hanning", "htk_compat": True,
                      "use_energy": False, "dither": 0.0},
            "before": "the waveform's mean removed",
            "frames": m.audio_frames, "fit": "zero-padded or cut to `frames` frames", "normalisation": None,
        }
    if VISUAL in cfg.modalities:
        said[VISUAL] = {
            "frames": m.frames, "frame_choice": "a video: 1 frame per second; then frames i * (n // frames)",
            "image_size": m.image_size, "color": "RGB",
            "resize": f"to {stored_size(m.image_size)} x {stored_size(m.image_size)} (bilinear, PIL), then to "
                      f"{m.image_size} x {m.image_size} (bilinear, antialiased); no crop",
            "scale": "pixel values / 255", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
        }
    if TEXT in cfg.modalities:
        said[TEXT] = {"tokenizer": m.text_model, "max_length": m.text_max_length,
                      "padding": "max_length", "truncation": True, "mask": "text_mask: 1 for a real token"}
    return said


class ServingNet(nn.Module):
    """The model as one module for export: tensors in `input_names` order, `output_names` tensors out."""

    def __init__(self, model: TrainedModel):
        super().__init__()
        self.model = model
        self.nets = nn.ModuleDict({k: t.net for k, t in model.method.nets.items()})  # their weights, registered

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits = self.model.logits(dict(zip(self.model.input_names, inputs, strict=True)))
        return tuple(logits[name] for name in self.model.predictions)


def export_model(run: str, fmt: str, out: Path | None = None, which: Checkpoint = "best") -> Path:
    """The run's model as `fmt` in `out` (default: <run folder>/export), with preprocessing.json; the model file's
    path."""
    if fmt not in FORMATS:
        raise ConfigError("--format", f"{fmt!r} is not one of {', '.join(FORMATS)}")
    model = TrainedModel.load(run, which)
    out = out if out is not None else find_run(run).path / "export"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError("--out", f"{out} cannot be created ({type(err).__name__}: {err.strerror})") from None
    said = model.preprocessing()
    path = out / f"model.{fmt}"
    if fmt == "safetensors":
        save_safetensors(model, path)
    else:
        said["onnx_check"] = save_onnx(model, path)
    RunFolder(out).write_json(out / PREPROCESSING, said)
    return path


def save_safetensors(model: TrainedModel, path: Path) -> None:
    from safetensors.torch import save_file

    metadata = {"run_id": model.run_id, "method": model.cfg.method, "epoch": str(model.epoch),
                "networks": ",".join(model.method.nets)}
    save_file(model.weights(), str(path), metadata=metadata)


def load_safetensors(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    """An exported file as network -> its state dict (what `MultimodalNet.load_state_dict` takes)."""
    from safetensors.torch import load_file

    nets: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in load_file(str(path)).items():
        net, _, name = key.partition(".")
        nets.setdefault(net, {})[name] = tensor
    return nets


def save_onnx(model: TrainedModel, path: Path) -> dict[str, float]:
    """torch.onnx's exporter (torch.export, onnxscript), batch axis dynamic, then ONNX Runtime against PyTorch on
    random inputs of another batch size; a difference beyond the tolerance refuses the export."""
    for module in ("onnx", "onnxscript"):
        require(module, "onnx", "amst export-model --format onnx")
    net = ServingNet(model).eval()
    batch = torch.export.Dim("batch")
    inputs = model.example_inputs(2)  # forward(*inputs): torch.export sees one argument, a tuple of tensors
    # Under no_grad: with autograd on, torch.export keeps a parameter's arithmetic (the concat head's shared bias
    # divided by the number of modalities) in a form the ONNX decomposition fails on.
    with torch.no_grad():
        torch.onnx.export(net, tuple(inputs.values()), str(path), input_names=list(model.input_names),
                          output_names=list(model.output_names), dynamic_shapes=(tuple({0: batch} for _ in inputs),),
                          dynamo=True, external_data=False, verbose=False)
    difference = onnx_difference(model, path)
    if difference["max_abs_diff"] > ONNX_ATOL + ONNX_RTOL * difference["max_abs_value"]:
        path.unlink(missing_ok=True)
        raise ConfigError("--format", f"the ONNX graph differs from PyTorch by {difference['max_abs_diff']:.3g} "
                                      f"(tolerance {ONNX_ATOL} + {ONNX_RTOL} x |value|); export refused")
    return difference


def onnx_difference(model: TrainedModel, path: Path, batch: int = 3) -> dict[str, float]:
    """Largest |ONNX Runtime - PyTorch| over every output, on random inputs, and the largest |output|."""
    ort = require("onnxruntime", "onnx", "checking an ONNX export")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = model.example_inputs(batch)
    got = session.run(list(model.output_names), {k: v.numpy() for k, v in inputs.items()})
    expected = ServingNet(model).eval()(*inputs.values())
    diffs = [float((torch.from_numpy(g) - e).abs().max()) for g, e in zip(got, expected, strict=True)]
    return {"max_abs_diff": max(diffs), "max_abs_value": max(float(e.abs().max()) for e in expected),
            "atol": ONNX_ATOL, "rtol": ONNX_RTOL, "batch": batch}
