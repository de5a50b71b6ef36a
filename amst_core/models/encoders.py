"""ResNet-18 encoders (no pretrained weights), as in the reference backbone, built from the run's model config.

Audio: one input channel, the (time x frequency) feature map treated as an image.
Visual: 3 channels; the T frames are folded into the batch and the feature maps averaged over T, H and W.
The trunk is torchvision's ResNet-18 (BasicBlock x [2, 2, 2, 2], same module names and initialisation) with the
stage widths `model.width` x (1, 2, 4, 8): 64 is the reference (512-d features); a smaller width is for small
inputs on a CPU (avdigits' 28 x 28 digits) and for tests. With a text modality in the dataset every embedding is
768-d, so a 1x1 conv (no bias) projects the trunk's features to 768.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1

from amst_core.vocab import AUDIO, TEXT, VISUAL

if TYPE_CHECKING:
    from amst_core.config import ModelConfig

REFERENCE_WIDTH = 64
TEXT_DIM = 768  # RoBERTa-base's width: every modality of a dataset with text is projected to it


def trunk_dim(width: int) -> int:
    return 8 * width


def resnet18_trunk(in_channels: int, width: int = REFERENCE_WIDTH) -> nn.Sequential:
    """conv1, bn1, relu, maxpool, layer1-4, as torchvision's resnet18 (its state-dict names, its init: kaiming
    normal fan_out convs, BatchNorm weight 1 and bias 0), with stage widths width x (1, 2, 4, 8)."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False),
                               nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                               nn.MaxPool2d(kernel_size=3, stride=2, padding=1)]
    inplanes = width
    for stage, stride in enumerate((1, 2, 2, 2)):
        planes = width * 2**stage
        downsample = None
        if stride != 1 or inplanes != planes:
            downsample = nn.Sequential(conv1x1(inplanes, planes, stride), nn.BatchNorm2d(planes))
        layers.append(nn.Sequential(BasicBlock(inplanes, planes, stride, downsample), BasicBlock(planes, planes)))
        inplanes = planes
    trunk = nn.Sequential(*layers)
    for module in trunk.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return trunk


def _projection(features: int, dim: int) -> nn.Module:
    if dim == features:
        return nn.Identity()
    proj = nn.Conv2d(features, dim, kernel_size=1, bias=False)
    nn.init.kaiming_normal_(proj.weight, mode="fan_out", nonlinearity="relu")
    return proj


class AudioEncoder(nn.Module):
    def __init__(self, dim: int = trunk_dim(REFERENCE_WIDTH), width: int = REFERENCE_WIDTH):
        super().__init__()
        self.trunk = resnet18_trunk(in_channels=1, width=width)
        self.proj = _projection(trunk_dim(width), dim)
        self.dim = dim

    def forward(self, audio: torch.Tensor) -> torch.Tensor:  # (B, 1, T, F) -> (B, d)
        return self.proj(self.trunk(audio)).mean(dim=(2, 3))


class VisualEncoder(nn.Module):
    def __init__(self, dim: int = trunk_dim(REFERENCE_WIDTH), width: int = REFERENCE_WIDTH):
        super().__init__()
        self.trunk = resnet18_trunk(in_channels=3, width=width)
        self.proj = _projection(trunk_dim(width), dim)
        self.dim = dim

    def forward(self, video: torch.Tensor) -> torch.Tensor:  # (B, 3, T, H, W) -> (B, d)
        b, c, t, h, w = video.shape
        frames = video.transpose(1, 2).reshape(b * t, c, h, w)
        maps = self.proj(self.trunk(frames))  # (B*T, d, h', w')
        # Averaging over T, h', w' at once equals the reference's reshape to (B, d, T, h', w') and global pool.
        return maps.reshape(b, t, self.dim, -1).mean(dim=(1, 3))


EncoderFactory = Callable[["ModelConfig", int], nn.Module]  # (model config, embedding dim) -> encoder
ENCODERS: dict[str, EncoderFactory] = {
    AUDIO: lambda model, dim: AudioEncoder(dim, model.width),
    VISUAL: lambda model, dim: VisualEncoder(dim, model.width),
}


def embedding_dim(modalities: tuple[str, ...], width: int = REFERENCE_WIDTH, text_dim: int = TEXT_DIM) -> int:
    """The trunk's features (512 at the reference width) for audio-visual data; the text encoder's width (768
    for roberta-base) as soon as text is present."""
    return text_dim if TEXT in modalities else trunk_dim(width)


def build_encoder(modality: str, model: ModelConfig, dim: int) -> nn.Module:
    return ENCODERS[modality](model, dim)
