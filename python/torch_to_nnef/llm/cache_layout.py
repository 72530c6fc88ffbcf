"""The tensors of a language model's cache, as the exported graph takes and returns them.

A :class:`CacheLayout` lists the model's cache tensors in graph order, each a
:class:`CacheTensor` that says which layer it belongs to, what it holds and its shape. It is
learnt from the cache the model itself returns after a short run (:meth:`CacheLayout.of_cache`),
so that each layer's tensors keep the shapes transformers gives them: ``[1, H, P, D]`` for the
keys and values of most attention layers, a different ``H`` or ``D`` in layers that differ
(Gemma 4's full-attention layers), and latents of different sizes in the key and value slots of
DeepSeek's multi-head latent attention (``[1, 1, P, kv_lora_rank]`` and
``[1, 1, P, qk_rope_head_dim]``).

Every place that builds caches (tracing, checks, empty prompt caches, ``io_spec.json``) reads the
layout. A tensor's shape marks the axis of the cached tokens with the symbol ``P``; a tensor without
that axis (a per-layer recurrent state) would keep its shape from step to step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from torch_to_nnef.errors import InvalidArgumentError
from torch_to_nnef.llm.errors import LLMExportError

__all__ = ["CACHE_KINDS", "PAST", "CacheLayout", "CacheTensor"]

PAST = "P"
"""The symbol of the tokens already in the caches: a cache tensor's shape holds it on that axis."""

CACHE_KINDS: dict[str, str] = {"key": "keys", "value": "values"}
"""Kinds of cache tensor, each with the attribute of a transformers cache layer that holds it, in
the order a layer's tensors are given."""


@dataclass(frozen=True)
class CacheTensor:
    """One tensor of the model's cache: a graph input (``in_cache_{kind}_{layer}``) and output (``out_cache_...``).

    Attributes:
        layer: the decoder layer whose cache it is.
        kind: what it holds, one of :data:`CACHE_KINDS` (``key`` or ``value``).
        shape: its shape, :data:`PAST` on the axis of the tokens already cached.
    """

    layer: int
    kind: str
    shape: tuple[int | str, ...]

    def __post_init__(self) -> None:
        if self.kind not in CACHE_KINDS:
            raise InvalidArgumentError(f"cache kind must be one of {', '.join(CACHE_KINDS)}, got {self.kind!r}")
        if any(s != PAST and not isinstance(s, int) for s in self.shape) or self.shape.count(PAST) > 1:
            raise InvalidArgumentError(f"a cache shape holds sizes and at most one {PAST!r}, got {self.shape}")

    @property
    def name(self) -> str:
        """``{kind}_{layer}``: the graph's input and output names add ``in_cache_`` and ``out_cache_``."""
        return f"{self.kind}_{self.layer}"

    @property
    def input_name(self) -> str:
        """The graph input that gives it."""
        return f"in_cache_{self.name}"

    @property
    def output_name(self) -> str:
        """The graph output that returns it, grown by the tokens given."""
        return f"out_cache_{self.name}"

    @property
    def past_axis(self) -> int | None:
        """The axis of the tokens already cached (None: a tensor of fixed shape)."""
        return self.shape.index(PAST) if PAST in self.shape else None

    @property
    def heads(self) -> int:
        """Its heads (axis 1 of a ``[1, H, P, D]`` key or value)."""
        return int(self.shape[1])

    @property
    def head_dim(self) -> int:
        """Its head size (the last axis of a ``[1, H, P, D]`` key or value)."""
        return int(self.shape[-1])

    def sizes(self, past: int) -> tuple[int, ...]:
        """Its shape with ``past`` tokens in the cache."""
        return tuple(past if s == PAST else int(s) for s in self.shape)

    def spec(self, past: str = PAST) -> list[int | str]:
        """Its shape for ``io_spec.json``, ``past`` (e.g. ``"P+S"``) on the axis of the cached tokens."""
        return [past if s == PAST else s for s in self.shape]


@dataclass(frozen=True)
class CacheLayout:
    """The model's cache tensors in graph order: layer after layer, each layer's in the order of :data:`CACHE_KINDS`.

    Attributes:
        num_layers: the model's decoder layers.
        tensors: its cache tensors.
    """

    num_layers: int
    tensors: tuple[CacheTensor, ...]

    def __post_init__(self) -> None:
        order = [(t.layer, list(CACHE_KINDS).index(t.kind)) for t in self.tensors]
        if order != sorted(set(order)) or any(not 0 <= t.layer < self.num_layers for t in self.tensors):
            raise InvalidArgumentError(
                f"cache tensors must be given layer after layer, once each, for layers below {self.num_layers}"
            )
        if all(t.past_axis is None for t in self.tensors):
            raise InvalidArgumentError(f"no cache tensor has a {PAST!r} axis: the graph cannot tell the position")

    @classmethod
    def key_value(cls, num_layers: int, heads: int, head_dim: int) -> CacheLayout:
        """``num_layers`` layers each caching a key and a value of ``[1, heads, P, head_dim]``."""
        return cls(
            num_layers,
            tuple(
                CacheTensor(layer, kind, (1, heads, PAST, head_dim))
                for layer in range(num_layers)
                for kind in CACHE_KINDS
            ),
        )

    @classmethod
    def of_cache(cls, cache: Any, tokens: int) -> CacheLayout:
        """The layout of ``cache``, a transformers cache returned by a run of ``tokens`` tokens on no past.

        Each layer's keys and values must be ``[1, heads, tokens, head size]`` (transformers
        concatenates the new tokens on axis 2); their heads and head sizes may differ from layer to
        layer and between a layer's key and value.

        Raises:
            LLMExportError: the cache has no layers, or a layer holds no key and value tensors of that form.
        """
        layers = getattr(cache, "layers", None)
        if not layers:
            raise LLMExportError(f"the model's cache ({type(cache).__name__}) has no layers")
        found: list[CacheTensor] = []
        for i, layer in enumerate(layers):
            held = {kind: getattr(layer, attr, None) for kind, attr in CACHE_KINDS.items()}
            if not all(isinstance(t, torch.Tensor) for t in held.values()):
                recurrent = hasattr(layer, "conv_states") or hasattr(layer, "recurrent_states")
                what = (
                    " (a linear-attention or state-space layer: convolution and recurrent states)" if recurrent else ""
                )
                raise LLMExportError(
                    f"cache layer {i} ({type(layer).__name__}{what}) holds no key and value tensors: only attention "
                    "layers with a key-value cache can be exported"
                )
            for kind, tensor in held.items():
                assert isinstance(tensor, torch.Tensor)
                if tensor.dim() != 4 or tensor.shape[0] != 1 or tensor.shape[2] != tokens:
                    raise LLMExportError(
                        f"the {kind}s of cache layer {i} are {list(tensor.shape)} after {tokens} tokens, not "
                        f"[1, heads, {tokens}, head size]"
                    )
                found.append(CacheTensor(i, kind, (1, int(tensor.shape[1]), PAST, int(tensor.shape[3]))))
        return cls(len(layers), tuple(found))

    @property
    def input_names(self) -> list[str]:
        """The graph's input names: ``input_ids``, then each cache tensor's."""
        return ["input_ids", *(t.input_name for t in self.tensors)]

    @property
    def output_names(self) -> list[str]:
        """The graph's output names: ``logits``, then each cache tensor's."""
        return ["logits", *(t.output_name for t in self.tensors)]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """The graph's dynamic input axes: ``S`` for the new tokens, :data:`PAST` for the tokens in the caches."""
        axes: dict[str, dict[int, str]] = {"input_ids": {1: "S"}}
        axes.update({t.input_name: {t.past_axis: PAST} for t in self.tensors if t.past_axis is not None})
        return axes

    def layer(self, index: int) -> tuple[CacheTensor, ...]:
        """The cache tensors of layer ``index``."""
        return tuple(t for t in self.tensors if t.layer == index)

    def alike(self) -> bool:
        """Whether every layer caches tensors of the same kinds and shapes (what repeating a layer needs)."""
        first = [(t.kind, t.shape) for t in self.layer(0)]
        return all([(t.kind, t.shape) for t in self.layer(i)] == first for i in range(1, self.num_layers))

    def truncated(self, keep: int) -> CacheLayout:
        """The layout of the first ``keep`` layers."""
        return CacheLayout(keep, tuple(t for t in self.tensors if t.layer < keep))

    def past_length(self, caches: Sequence[torch.Tensor]) -> Any:
        """The tokens already in ``caches`` (the graph's inputs, in this layout's order): :data:`PAST`'s size."""
        for tensor, cache in zip(self.tensors, caches):
            if tensor.past_axis is not None:
                return cache.shape[tensor.past_axis]
        raise InvalidArgumentError("no cache tensor has a past axis")

    def random(self, past: int, dtype: torch.dtype, seed: int) -> list[torch.Tensor]:
        """Random cache tensors of ``past`` tokens, seeded by ``seed`` (``past = 0``: empty caches)."""
        generator = torch.Generator().manual_seed(seed)
        return [torch.randn(*t.sizes(past), generator=generator).to(dtype) for t in self.tensors]

    def per_layer(self, caches: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """``caches`` (in this layout's order) grouped by layer, each layer's by kind."""
        if len(caches) != len(self.tensors):
            raise InvalidArgumentError(f"{len(self.tensors)} cache tensors expected, got {len(caches)}")
        layers: list[dict[str, torch.Tensor]] = [{} for _ in range(self.num_layers)]
        for tensor, cache in zip(self.tensors, caches):
            layers[tensor.layer][tensor.kind] = cache
        return layers

    def flatten(self, cache: Any) -> list[torch.Tensor]:
        """The tensors of ``cache``, a transformers cache, in this layout's order.

        Raises:
            LLMExportError: ``cache`` has other layers than this layout's, or lacks one of its tensors.
        """
        layers = getattr(cache, "layers", None)
        if layers is None or len(layers) != self.num_layers:
            found = "no layers" if layers is None else f"{len(layers)} layers"
            raise LLMExportError(f"the model's cache has {found}, {self.num_layers} expected")
        flat: list[torch.Tensor] = []
        for tensor in self.tensors:
            held = getattr(layers[tensor.layer], CACHE_KINDS[tensor.kind], None)
            if not isinstance(held, torch.Tensor):
                raise LLMExportError(f"cache layer {tensor.layer} holds no {tensor.kind} tensor")
            flat.append(held)
        return flat

    def describe(self) -> str:
        """The layout in a few words: each distinct layer shape and the layers that have it."""
        groups: dict[str, list[int]] = {}
        for i in range(self.num_layers):
            shapes = ", ".join(f"{t.kind} {list(t.shape)}" for t in self.layer(i))
            groups.setdefault(shapes, []).append(i)
        if len(groups) == 1:
            return f"{self.num_layers} layers of {next(iter(groups))}"
        return "; ".join(f"layers {', '.join(map(str, layers))}: {shapes}" for shapes, layers in groups.items())
