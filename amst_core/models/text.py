"""The text encoder: a RoBERTa-style transformer from `transformers` (amst_method.md section 3). Every weight is
frozen but the last `model.text_trainable_layers` transformer layers; a text's embedding is the last hidden state of
its first token (RoBERTa's <s>, the CLS position), hidden_size wide (768 for roberta-base).

`model.text_model` names a local folder (written by `save_pretrained`) under AMST_DATA_ROOT, confined like the
data, or a hub name resolved from the local Hugging Face cache first and downloaded only where that is allowed
(`amst_core.datafiles.model_downloads_allowed`). A model that cannot be found fails at submission, and again
before training, with a message that says how to provide it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from amst_core.config import ConfigError

if TYPE_CHECKING:
    from amst_core.config import ModelConfig


def from_pretrained(loader: Any, name: str, what: str) -> Any:
    """`loader.from_pretrained` for a local folder (confined, every file in it too: the rule of
    `amst_core.datafiles`, checked again here because a link may appear after submission) or a hub name: the local
    cache first, then the hub where downloads are allowed."""
    from amst_core.datafiles import DataRoots, hub_model_unavailable, model_downloads_allowed, text_model_source

    local = text_model_source(name, DataRoots.from_env())
    if isinstance(local, Path):
        try:
            return loader.from_pretrained(local)
        except (OSError, ValueError) as err:
            raise ConfigError("model.text_model", f"{name} holds no readable {what} ({type(err).__name__}: "
                                                  f"{str(err).splitlines()[0][:200]})") from None
    try:
        return loader.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError):
        pass
    if not model_downloads_allowed():
        raise hub_model_unavailable(name)
    try:
        return loader.from_pretrained(name)
    except (OSError, ValueError):
        raise ConfigError("model.text_model", f"{name!r} is not a folder under AMST_DATA_ROOT and could not be "
                                              f"downloaded as a {what}; download it once where the machine is online "
                                              f"(`hf download {name}`), or save it with save_pretrained into a folder "
                                              "and set model.text_model to that folder") from None


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
