"""What methods and datasets exist, described without importing torch.

The API validates run requests with this catalog, and it must never import torch (DESIGN.md section 1).
The torch implementations live in `amst_core.methods` and `amst_core.data`; their registries are checked
against this catalog by a test, so a new method is one module, one registry line and one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from amst_core.vocab import RunSeries

MODALITIES: tuple[str, ...] = ("audio", "text", "visual")  # sorted: this order drives ALT updates
Fusion = Literal["concat", "lsum", "msum"]
SkipMode = Literal["faithful", "fast"]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoParams(_Params):
    pass


class SkipParams(_Params):
    skip_mode: SkipMode = Field(
        "faithful",
        description="faithful: skipped encoders still run forward in train mode (reference); "
        "fast: a skipped modality's encoder does no work at all in that epoch",
    )


class FullParams(SkipParams):
    full_joint_update: Literal["alt", "joint"] = Field(
        "alt",
        description="alt: the joint module is trained with per-modality losses (reference code); "
        "joint: one CE loss over its concat head (paper figure)",
    )


class _Window(_Params):
    """Epochs [modulation_start, modulation_end], both included, in which a baseline's rule acts."""

    modulation_start: int = Field(0, ge=0, description="first epoch the rule acts in")
    modulation_end: int = Field(50, ge=0, description="last epoch the rule acts in (included)")

    @model_validator(mode="after")
    def _ordered(self) -> _Window:
        if self.modulation_end < self.modulation_start:
            raise ValueError(f"modulation_end: {self.modulation_end} is before modulation_start "
                             f"{self.modulation_start}")
        return self

    def active(self, epoch: int) -> bool:
        return self.modulation_start <= epoch <= self.modulation_end


class OgmParams(_Window):
    alpha: float = Field(0.1, ge=0, description="strength: the dominant modality's gradients are scaled by "
                                                 "1 - tanh(alpha * relu(ratio))")


class PmrParams(_Window):
    alpha: float = Field(1.0, ge=0, description="weight of the weaker modality's prototype loss")
    momentum_coef: float = Field(0.2, ge=0, le=1, description="P = (1 - m) * P_new + m * P_old after the first "
                                                              "epoch")
    factor: float = Field(0.1, gt=0, le=1, description="share of the shuffled train batches the prototypes are "
                                                       "computed from before each epoch")
    modulation_end: int = Field(70, ge=0, description="last epoch the prototype loss is added (included)")


class MslrParams(_Params):
    lr_audio: float = Field(1e-3, gt=0, description="learning rate of the audio encoder")
    lr_visual: float = Field(1e-2, gt=0, description="learning rate of the visual encoder")
    lr_text: float = Field(1e-3, gt=0, description="learning rate of the text encoder")
    window: int = Field(5, ge=1, description="every `window` epochs, an encoder's lr is multiplied by its val "
                                            "branch accuracy over the mean of its last `window`")
    dynamic: bool = Field(True, description="apply that rule (the reference never runs it: false reproduces its "
                                            "fixed rates)")


class UnimodalParams(_Params):
    modality: Literal["audio", "text", "visual"] | None = Field(
        None, description="the one modality trained (its encoder and a linear classifier); the others are not "
                          "loaded")


@dataclass(frozen=True)
class MethodInfo:
    name: str
    summary: str
    params: type[_Params]
    default_fusion: Fusion
    fusion_fixed: bool  # True when the method forces its own heads
    uses_skip: bool
    modalities: int | None = None  # a method for datasets of exactly this many modalities
    # Run-level series (component `run`) the method logs beyond the engine's (vocab.ENGINE_SERIES): the dashboard
    # draws whatever is declared here.
    series: tuple[RunSeries, ...] = ()


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    summary: str
    modalities: tuple[str, ...]
    classes: tuple[str, ...] = field(default=())  # empty: discovered from the data
    splits: tuple[str, ...] = ("train", "val", "test")
    prepare_command: str | None = None
    # Run-config fields the data dictate (input shapes): a request that leaves one out gets this value.
    defaults: dict = field(default_factory=dict)
    # Run-config fields that fit this dataset (a learning rate that works, a skip factor); a form starts from
    # them and from the defaults.
    recommended: dict = field(default_factory=dict)

    @property
    def suggested(self) -> dict:
        return deep_merge(self.defaults, self.recommended)


def deep_merge(base: dict, override: dict) -> dict:
    """`base` with `override` on top; nested sections merge, any other value of `override` wins."""
    out = dict(base)
    for key, value in override.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else value
    return out


OGM_SERIES = (
    RunSeries("ogm_coeff", "bounded", True, "OGM-GE: the mean factor the modality's encoder gradients were scaled by "
              "in the epoch (1 outside the modulation window)"),
    RunSeries("ogm_ratio", "quantity", True, "OGM-GE: the mean ratio of the modality's score (summed probability "
                                             "of the true class) to the others'"),
)
METHODS: dict[str, MethodInfo] = {
    m.name: m
    for m in [
        MethodInfo("naive", "joint training of all modalities with one fused loss", NoParams, "concat",
                   fusion_fixed=False, uses_skip=False),
        MethodInfo("amst_alt", "alternating unimodal updates through a shared head, with skip factors",
                   SkipParams, "msum", fusion_fixed=True, uses_skip=True),
        MethodInfo("amst_joint", "joint concat training that leaves skipped modalities out",
                   SkipParams, "concat", fusion_fixed=True, uses_skip=True),
        MethodInfo("amst_full", "alternating module plus joint module, predictions averaged",
                   FullParams, "concat", fusion_fixed=True, uses_skip=True),
        MethodInfo("ogm_ge", "OGM-GE: the dominant modality's encoder gradients scaled down, Gaussian noise added",
                   OgmParams, "lsum", fusion_fixed=False, uses_skip=False, series=OGM_SERIES),
        MethodInfo("pmr", "PMR: a prototype loss for the weaker of two modalities", PmrParams, "lsum",
                   fusion_fixed=False, uses_skip=False, modalities=2),
        MethodInfo("mla", "MLA: alternating unimodal training through a shared head; weighted and entropy-gated "
                   "combinations evaluated", NoParams, "msum", fusion_fixed=True, uses_skip=False),
        MethodInfo("mslr", "MSLR: a learning rate per encoder, adjusted by its validation accuracy",
                   MslrParams, "lsum", fusion_fixed=False, uses_skip=False),
        MethodInfo("unimodal", "one modality alone: its encoder and a linear classifier", UnimodalParams, "concat",
                   fusion_fixed=True, uses_skip=False),
    ]
}

_DIGITS = tuple(str(d) for d in range(10))
IEMOCAP_CLASSES = ("ang", "exc", "fru", "neu", "sad")
DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in [
        DatasetInfo("avdigits", "spoken digits (FSDD MFCC) paired with MNIST images by label",
                    ("audio", "visual"), _DIGITS, prepare_command="amst prepare avdigits",
                    # One 28x28 MNIST frame, FSDD recordings of up to 48 MFCC frames of 13 coefficients; inputs
                    # that small need no more than a quarter-width ResNet-18 (11x faster on a CPU).
                    defaults={"model": {"frames": 1, "image_size": 28, "audio_frames": 48, "mel_bins": 13,
                                        "width": 16}},
                    recommended={"dataset": {"preset": "hard"}, "skip": {"audio": 3},
                                 "optim": {"lr": 0.01, "lr_step": 15}, "epochs": 20}),
        DatasetInfo("avtdigits", "avdigits plus a text naming the digit in one of many ways (40 % name another "
                    "digit): three modalities", ("audio", "text", "visual"), _DIGITS,
                    prepare_command="amst prepare avtdigits",
                    defaults={"dataset": {"root": "avdigits"},
                              "model": {"frames": 1, "image_size": 28, "audio_frames": 48, "mel_bins": 13,
                                        "width": 16, "text_model": "avtdigits/text_model", "text_max_length": 12,
                                        "text_trainable_layers": 2}},
                    recommended={"dataset": {"preset": "hard"}, "skip": {"audio": 3, "text": 2},
                                 "optim": {"lr": 0.01, "lr_step": 15}, "epochs": 20}),
        DatasetInfo("synthetic", "generated tensors with a controllable signal per modality (tests)",
                    ("audio", "visual"), defaults={"model": {"frames": 1}},
                    recommended={"optim": {"lr": 0.05}, "epochs": 5}),
        DatasetInfo("folder", "your own files: <root>/<split>/<label>/<id>.wav|.jpg|.mp4|.txt|... (Doc/datasets.md)",
                    ("audio", "text", "visual"), prepare_command="amst cache folder --set dataset.root=FOLDER",
                    defaults={"model": {"frames": 1, "image_size": 112, "audio_frames": 512, "width": 32}},
                    recommended={"optim": {"lr": 0.01}, "epochs": 30}),
        DatasetInfo("cremad", "CREMA-D in the reference preprocessed layout",
                    ("audio", "visual"), ("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad"),
                    prepare_command="amst preprocess cremad RAW_DIR", recommended={"skip": {"audio": 5}}),
        DatasetInfo("ave", "AVE in the reference preprocessed layout", ("audio", "visual"),
                    prepare_command="amst preprocess ave RAW_DIR", recommended={"skip": {"audio": 2}}),
        DatasetInfo("mvsa", "MVSA-Single (tweets: text and image) in the reference preprocessed layout",
                    ("text", "visual"), ("negative", "neutral", "positive"),
                    prepare_command="amst preprocess mvsa RAW_DIR",
                    defaults={"model": {"frames": 1, "text_max_length": 256}}, recommended={"skip": {"text": 10}}),
        DatasetInfo("iemocap", "IEMOCAP utterances (audio and video) in the reference preprocessed layout",
                    ("audio", "visual"), IEMOCAP_CLASSES, prepare_command="amst preprocess iemocap RAW_DIR",
                    recommended={"skip": {"audio": 4}}),
        DatasetInfo("iemocap3", "IEMOCAP utterances with their transcripts (text, audio, video)",
                    ("audio", "text", "visual"), IEMOCAP_CLASSES, prepare_command="amst preprocess iemocap RAW_DIR",
                    defaults={"dataset": {"root": "iemocap"}},  # the same files as iemocap, with the transcripts
                    recommended={"skip": {"audio": 4, "text": 10}}),
        DatasetInfo("urfunny", "UR-FUNNY v2 punchlines (text, audio, video) in the reference layout",
                    ("audio", "text", "visual"), ("FUNNY", "NOTFUNNY"),
                    prepare_command="amst preprocess urfunny RAW_DIR",
                    recommended={"skip": {"audio": 6, "text": 10}}),
    ]
}
