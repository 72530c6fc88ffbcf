"""Multi-head latent attention (DeepSeek-V2 and V3 and the families that share their attention), made ready for tract.

transformers caches the compressed latents of these attention layers, not their keys and values:
per layer, ``[1, 1, P, kv_lora_rank]`` (the normalised latent, in the key slot) and
``[1, 1, P, qk_rope_head_dim]`` (the rotary key shared by every head, in the value slot). Each
step expands them (``expand_kv``): ``kv_b_proj`` gives every head's non-rotary key and its value,
and the key of a head is its non-rotary part followed by the shared rotary key, broadcast to
every head.

Written as transformers writes it (an ``expand`` of the rotary key into a key concatenated with
the projected part), the attention scores make tract's optimizer fail: it splits the scores'
matrix product along the concatenation, then drops the broadcast in front of the rotary half with
an input of the wrong rank. :func:`rewrite_latent_attention` gives each such layer an
``expand_kv`` that computes the same keys and values, the rotary key spread over the heads by
adding it to zeros of ``[1, heads, 1, 1]``, which tract keeps as one broadcasting addition.
"""

from __future__ import annotations

import logging
from types import MethodType
from typing import Any

import torch
from torch import nn

__all__ = ["is_latent_attention", "rewrite_latent_attention"]

LOGGER = logging.getLogger(__name__)

_ATTRIBUTES = ("kv_b_proj", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")
"""What a transformers multi-head latent attention module holds besides ``expand_kv``."""


def is_latent_attention(module: nn.Module) -> bool:
    """Whether ``module`` is a transformers multi-head latent attention layer (with ``expand_kv`` and ``kv_b_proj``)."""
    return callable(getattr(module, "expand_kv", None)) and all(hasattr(module, a) for a in _ATTRIBUTES)


def rewrite_latent_attention(model: nn.Module) -> int:
    """Gives every multi-head latent attention layer of ``model`` an ``expand_kv`` that tract optimizes.

    The keys and values are transformers' own, bit for bit. Modules are changed in place.

    Returns:
        The layers rewritten.
    """
    rewritten = 0
    for module in model.modules():
        if is_latent_attention(module):
            module.expand_kv = MethodType(_expand_kv, module)  # type: ignore[assignment]
            rewritten += 1
    if rewritten:
        LOGGER.info("%d multi-head latent attention layers expand their cached latents for tract", rewritten)
    return rewritten


def _expand_kv(self: Any, kv_nope: torch.Tensor, k_rot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The keys and values of every head, ``[batch, heads, length, head size]``, from the cached latents.

    Args:
        self: the attention layer (its ``kv_b_proj`` and head sizes).
        kv_nope: the latents, ``[batch, 1, length, kv_lora_rank]``.
        k_rot: the rotary key of every head, ``[batch, 1, length, qk_rope_head_dim]``.
    """
    nope, value = int(self.qk_nope_head_dim), int(self.v_head_dim)
    batch, _, length, _ = kv_nope.shape
    projected = self.kv_b_proj(kv_nope).view(batch, length, -1, nope + value).transpose(1, 2)
    k_nope, values = torch.split(projected, [nope, value], dim=-1)
    spread = k_rot + k_rot.new_zeros(1, k_nope.shape[1], 1, 1)
    return torch.cat([k_nope, spread], dim=-1), values
