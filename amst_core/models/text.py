"""The text encoder: a RoBERTa-style transformer from `transformers` (amst_method.md section 3). Every weight is
frozen but the last `model.text_trainable_layers` transformer layers; a text's embedding is the last hidden state of
its first token (RoBERTa's <s>, the CLS position), hidden_size wide (768 for roberta-base).

`model.text_model` names a local folder (written by `save_pretrained`), or a hub name resolved from the local
Hugging Face cache first and downloaded only where the machine is online. A model that cannot be found fails
before training with a message that says how to provide it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from amst_core.config import ConfigError, data_root

if TYPE_CHECKING:
    from amst_core.config import ModelConfig


def local_model_dir(name: str) -> Path | None:
    """The folder `name` means, when it names one: absolute, or relative to AMST_DATA_ROOT, or to the working
    directory (the CLI). Confined like a dataset (the service reads only under AMST_DATA_ROOT)."""
    from amst_core.datafiles import DataRoots

    path = Path(name).expanduser()
    candidates = [path] if path.is_absolute() else [data_root() / path, path]
    for candidate in candidates:
        if candidate.is_dir():
            return DataRoots.from_env().confine(candidate, "model.text_model", "the text model folder")
    return None


def from_pretrained(loader: Any, name: str, what: str) -> Any:
    """`loader.from_pretrained` for a local folder or a hub name: the cache first, then (online) the hub."""
    local = local_model_dir(name)
    if local is not None:
        try:
            return loader.from_pretrained(local)
        except (OSError, ValueError) as err:
            raise ConfigError("model.text_model", f"{local} holds no readable {what} ({type(err).__name__}: "
                                                  f"{str(err).splitlines()[0][:200]})") from None
    try:
        return loader.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError):
        pass
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or os.environ.get("TRANSFORMERS_OFFLINE")
    if not offline:
        try:
            return loader.from_pretrained(name)
        except (OSError, ValueError):
            pass
    raise ConfigError(
        "model.text_model",
        f"{name!r} is neither a folder (absolute, or under AMST_DATA_ROOT) nor a {what} in the local Hugging Face "
        f"cache{', and this machine is offline' if offline else ', and it could not be downloaded'}; download it "
        f"once where the machine is online (`hf download {name}`), or save it with save_pretrained into a folder "
        "and set model.text_model to that folder")


def load_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    return from_pretrained(AutoTokenizer, name, "tokenizer")


class TextEncoder(nn.Module):
    def __init__(self, model: ModelConfig):
        super().__init__()
        from transformers import AutoModel

        self.backbone = from_pretrained(AutoModel, model.text_model, "model")
        self.dim = int(self.backbone.config.hidden_size)
        self.backbone.requires_grad_(False)
        layers = transformer_layers(self.backbone)
        if model.text_trainable_layers > len(layers):
            raise ConfigError("model.text_trainable_layers", f"{model.text_model} has {len(layers)} layers; "
                                                             f"{model.text_trainable_layers} cannot be trained")
        for layer in layers[len(layers) - model.text_trainable_layers:]:
            layer.requires_grad_(True)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # (B, L) -> (B, d)
        out = self.backbone(input_ids=ids, attention_mask=None if mask is None else self.attention_mask(mask))
        return out.last_hidden_state[:, 0]

    def attention_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """The (B, L) padding mask as the 4-D mask the attention kernel takes, (B, 1, 1, L). Given a 2-D mask,
        transformers first asks whether any token is padding (`mask.all()`), a host synchronisation on every
        forward pass of a GPU run; a 4-D mask is taken as it is. SDPA takes booleans (True: attend), the eager
        kernel an additive bias; any other kernel (flash attention) gets the 2-D mask it needs."""
        implementation = self.backbone.config._attn_implementation
        if implementation == "sdpa":
            return mask.bool()[:, None, None, :]
        if implementation == "eager":
            return (1.0 - mask.float()[:, None, None, :]) * torch.finfo(torch.float32).min
        return mask


def transformer_layers(backbone: nn.Module) -> nn.ModuleList:
    encoder = getattr(backbone, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise ConfigError("model.text_model", f"{type(backbone).__name__} is not a RoBERTa/BERT-style encoder "
                                              "(no encoder.layer list)")
    return layers
