"""ResNet-18 encoders built from torchvision (no pretrained weights), as in the reference backbone.

Audio: one input channel, the (time x frequency) feature map treated as an image.
Visual: 3 channels; the T frames are folded into the batch and the feature maps averaged over T, H and W.
With a text modality in the dataset every embedding is 768-d, so a 1x1 conv (no bias) projects 512 -> 768.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet18

RESNET_DIM = 512


def _resnet18_trunk(in_channels: int) -> nn.Sequential:
    net = resnet18(weights=None)  # torchvision's init: kaiming-normal (fan_out, relu) convs, BN weight 1 bias 0
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)


def _projection(dim: int) -> nn.Module:
    if dim == RESNET_DIM:
        return nn.Identity()
    proj = nn.Conv2d(RESNET_DIM, dim, kernel_size=1, bias=False)
    nn.init.kaiming_normal_(proj.weight, mode="fan_out", nonlinearity="relu")
    return proj


class AudioEncoder(nn.Module):
    def __init__(self, dim: int = RESNET_DIM):
        super().__init__()
        self.trunk = _resnet18_trunk(in_channels=1)
        self.proj = _projection(dim)
        self.dim = dim

    def forward(self, audio: torch.Tensor) -> torch.Tensor:  # (B, 1, T, F) -> (B, d)
        return self.proj(self.trunk(audio)).mean(dim=(2, 3))


class VisualEncoder(nn.Module):
    def __init__(self, dim: int = RESNET_DIM):
        super().__init__()
        self.trunk = _resnet18_trunk(in_channels=3)
        self.proj = _projection(dim)
        self.dim = dim

    def forward(self, video: torch.Tensor) -> torch.Tensor:  # (B, 3, T, H, W) -> (B, d)
        b, c, t, h, w = video.shape
        frames = video.transpose(1, 2).reshape(b * t, c, h, w)
        maps = self.proj(self.trunk(frames))  # (B*T, d, h', w')
        # Averaging over T, h', w' at once equals the reference's reshape to (B, d, T, h', w') and global pool.
        return maps.reshape(b, t, self.dim, -1).mean(dim=(1, 3))


ENCODERS: dict[str, type[nn.Module]] = {"audio": AudioEncoder, "visual": VisualEncoder}


def embedding_dim(modalities: tuple[str, ...]) -> int:
    """512 for audio-visual data; 768 as soon as text is present (the text encoder's width)."""
    return 768 if "text" in modalities else RESNET_DIM
