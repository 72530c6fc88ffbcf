"""The tensors of a language model's cache, as the exported graph takes and returns them.

A :class:`CacheLayout` lists the model's cache tensors in graph order, each a
:class:`CacheTensor` that says which layer it belongs to, what it holds and its shape. It is
learnt from the cache the model itself returns after a short run (:meth:`CacheLayout.of_cache`),
so that each layer's tensors keep the shapes transformers gives them: ``[1, H, P, D]`` for the
keys and values of most attention layers, a different ``H`` or ``D`` in layers that differ
(Gemma 4's full-attention layers), and latents of different sizes in the key and value slots of
DeepSeek's multi-head latent attention (``[1, 1, P, kv_lora_rank]`` and
``[1, 1, P, qk_rope_head_dim]``).

Linear-attention, recurrent and state-space layers (Gated DeltaNet, Mamba, short convolutions) cache
states instead: a convolution state (the last inputs of a causal convolution, ``[1, C, K]``) and a
recurrent state (``[1, H, Dk, Dv]`` for Gated DeltaNet, ``[1, C, N]`` for Mamba), of a fixed shape
from step to step, zeros before the prompt. Hybrid layers cache both. A layer may also cache nothing
(a layer that reads another layer's keys and values).

Every place that builds caches (tracing, checks, empty prompt caches, ``io_spec.json``) reads the
layout. A tensor's shape marks the axis of the cached tokens with the symbol ``P``; a state has no
such axis and keeps its shape from step to step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from torch_to_nnef.errors import InvalidArgumentError
from torch_to_nnef.llm.errors import LLMExportError

__all__ = ["CACHE_KINDS", "PAST", "STATE_KINDS", "CacheLayout", "CacheTensor"]

PAST = "P"
"""The symbol of the tokens already in the caches: a cache tensor's shape holds it on that axis."""

CACHE_KINDS: dict[str, str] = {
    "key": "keys",
    "value": "values",
    "indexer": "indexer_keys",
    "conv": "conv_states",
    "recurrent": "recurrent_states",
}
"""Kinds of cache tensor, each with the attribute of a transformers cache layer that holds it, in
the order a layer's tensors are given. Keys, values and the indexer keys of sparse-attention layers
(DeepSeek-V3.2, GLM-MoE-DSA: ``[1, P, D]``) grow by the new tokens; ``conv`` and ``recurrent``
states (held per state index) keep their shape."""

STATE_KINDS = ("conv", "recurrent")
"""The kinds of cache tensor that are states: a fixed shape, zeros before the prompt."""


@dataclass(frozen=True)
class CacheTensor:
    """One tensor of the model's cache: a graph input (``in_cache_{kind}_{layer}``) and output (``out_cache_...``).

    Attributes:
        layer: the decoder layer whose cache it is.
        kind: what it holds, one of :data:`CACHE_KINDS`.
        shape: its shape, :data:`PAST` on the axis of the tokens already cached (keys and values).
        state: which of the layer's states of that kind (layers may hold several convolution states).
        dtype: its float type when it is not the cache's (a state transformers keeps in f32 in an f16
            model); None: the cache's.
    """

    layer: int
    kind: str
    shape: tuple[int | str, ...]
    state: int = 0
    dtype: torch.dtype | None = None

    def __post_init__(self) -> None:
        if self.kind not in CACHE_KINDS:
            raise InvalidArgumentError(f"cache kind must be one of {', '.join(CACHE_KINDS)}, got {self.kind!r}")
        if any(s != PAST and not isinstance(s, int) for s in self.shape) or self.shape.count(PAST) > 1:
            raise InvalidArgumentError(f"a cache shape holds sizes and at most one {PAST!r}, got {self.shape}")
        if (PAST in self.shape) == self.is_state:
            what = "a state has no" if self.is_state else "keys and values have a"
            raise InvalidArgumentError(f"{what} {PAST!r} axis: {self.kind} of shape {self.shape}")
        if self.state and not self.is_state:
            raise InvalidArgumentError(f"only states have an index, got {self.kind} {self.state}")

    @property
    def is_state(self) -> bool:
        """Whether it is a state (:data:`STATE_KINDS`): a fixed shape, zeros before the prompt."""
        return self.kind in STATE_KINDS

    @property
    def name(self) -> str:
        """``{kind}_{layer}`` (``{kind}{state}_{layer}`` for a layer's second state of a kind and after):
        the graph's input and output names add ``in_cache_`` and ``out_cache_``.
        """
        return f"{self.kind}{self.state or ''}_{self.layer}"

    def io_dtype(self, cache_dtype: torch.dtype) -> torch.dtype:
        """Its float type in the graph's inputs and outputs, where the cache's is ``cache_dtype``."""
        return self.dtype or cache_dtype

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

    @property
    def order(self) -> tuple[int, int, int]:
        """Its place in a layout: layer, kind, state."""
        return (self.layer, list(CACHE_KINDS).index(self.kind), self.state)

    def sizes(self, past: int) -> tuple[int, ...]:
        """Its shape with ``past`` tokens in the cache."""
        return tuple(past if s == PAST else int(s) for s in self.shape)

    def spec(self, past: str = PAST) -> list[int | str]:
        """Its shape for ``io_spec.json``, ``past`` (e.g. ``"P+S"``) on the axis of the cached tokens."""
        return [past if s == PAST else s for s in self.shape]


@dataclass(frozen=True)
class CacheLayout:
    """The model's cache tensors in graph order: layer after layer, each layer's in the order of
    :data:`CACHE_KINDS`, then of their state index.

    A layer may hold keys and values, states, both (a hybrid layer) or nothing (a layer reading
    another layer's keys and values). A model that caches only states has no ``P`` axis: its
    positions are not inputs of the graph (its layers use none).

    Attributes:
        num_layers: the model's decoder layers.
        tensors: its cache tensors.
    """

    num_layers: int
    tensors: tuple[CacheTensor, ...]

    def __post_init__(self) -> None:
        order = [t.order for t in self.tensors]
        if order != sorted(set(order)) or any(not 0 <= t.layer < self.num_layers for t in self.tensors):
            raise InvalidArgumentError(
                f"cache tensors must be given layer after layer, once each, for layers below {self.num_layers}"
            )
        if not self.tensors:
            raise InvalidArgumentError("a cache layout holds at least one tensor")
        for layer in range(self.num_layers):
            kinds = [t.kind for t in self.layer(layer)]
            if ("key" in kinds) != ("value" in kinds):
                raise InvalidArgumentError(f"cache layer {layer} holds {' and '.join(kinds)}: keys go with values")

    @classmethod
    def key_value(cls, num_layers: int, heads: int, head_dim: int) -> CacheLayout:
        """``num_layers`` layers each caching a key and a value of ``[1, heads, P, head_dim]``."""
        return cls(
            num_layers,
            tuple(
                CacheTensor(layer, kind, (1, heads, PAST, head_dim))
                for layer in range(num_layers)
                for kind in ("key", "value")
            ),
        )

    @classmethod
    def of_cache(cls, cache: Any, tokens: int, model_dtype: torch.dtype | None = None) -> CacheLayout:
        """The layout of ``cache``, a transformers cache returned by a run of ``tokens`` tokens on no past.

        Each layer's keys and values must be ``[1, heads, tokens, head size]`` (transformers
        concatenates the new tokens on axis 2); their heads and head sizes may differ from layer to
        layer and between a layer's key and value. A linear-attention or state-space layer's
        convolution and recurrent states keep the shapes they have (their batch axis of 1 first); a
        state of another float type than ``model_dtype`` keeps its own.

        Raises:
            LLMExportError: the cache has no layers, a layer's keys and values are not of that form,
                or it holds none of the tensors the exported graph can carry.
        """
        layers = getattr(cache, "layers", None)
        if not layers:
            raise LLMExportError(f"the model's cache ({type(cache).__name__}) has no layers")
        found: list[CacheTensor] = []
        for i, layer in enumerate(layers):
            keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
            states = _states(layer)
            if keys is None and values is None and not states and not _is_empty(layer):
                raise LLMExportError(
                    f"cache layer {i} ({type(layer).__name__}) holds no key and value tensors and no states: the "
                    "exported graph carries keys, values, convolution and recurrent states only"
                )
            if keys is not None or values is not None:
                for kind, tensor in (("key", keys), ("value", values)):
                    if (
                        not isinstance(tensor, torch.Tensor)
                        or tensor.dim() != 4
                        or tensor.shape[0] != 1
                        or tensor.shape[2] != tokens
                    ):
                        held = list(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
                        raise LLMExportError(
                            f"the {kind}s of cache layer {i} are {held} after {tokens} tokens, not "
                            f"[1, heads, {tokens}, head size]"
                        )
                    found.append(CacheTensor(i, kind, (1, int(tensor.shape[1]), PAST, int(tensor.shape[3]))))
            indexer = getattr(layer, "indexer_keys", None)
            if isinstance(indexer, torch.Tensor):
                if indexer.dim() != 3 or indexer.shape[0] != 1 or indexer.shape[1] != tokens:
                    raise LLMExportError(
                        f"the indexer keys of cache layer {i} are {list(indexer.shape)} after {tokens} tokens, not "
                        f"[1, {tokens}, indexer head size]"
                    )
                found.append(CacheTensor(i, "indexer", (1, PAST, int(indexer.shape[2]))))
            for (kind, index), tensor in sorted(states.items(), key=lambda item: (item[0][0] != "conv", item[0][1])):
                if tensor.dim() < 2 or tensor.shape[0] != 1:
                    raise LLMExportError(
                        f"the {kind} state {index} of cache layer {i} is {list(tensor.shape)}: a batch of 1 first "
                        "is expected"
                    )
                dtype = tensor.dtype if model_dtype is not None and tensor.dtype != model_dtype else None
                found.append(CacheTensor(i, kind, tuple(int(s) for s in tensor.shape), index, dtype))
        if not found:
            raise LLMExportError("the model's cache holds no tensors after a run")
        return cls(len(layers), tuple(found))

    @property
    def input_names(self) -> list[str]:
        """The graph's input names: ``input_ids``, then each cache tensor's."""
        return ["input_ids", *(t.input_name for t in self.tensors)]

    @property
    def output_names(self) -> list[str]:
        """The graph's output names: ``logits``, then each cache tensor's."""
        return ["logits", *(t.output_name for t in self.tensors)]

    @property
    def has_past(self) -> bool:
        """Whether some tensor holds cached tokens (on a :data:`PAST` axis): False for a model of states only."""
        return any(t.past_axis is not None for t in self.tensors)

    def kinds(self, index: int) -> frozenset[str]:
        """The kinds of cache tensor layer ``index`` holds."""
        return frozenset(t.kind for t in self.layer(index))

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """The graph's dynamic input axes: ``S`` for the new tokens, :data:`PAST` for the tokens in the caches."""
        axes: dict[str, dict[int, str]] = {"input_ids": {1: "S"}}
        axes.update({t.input_name: {t.past_axis: PAST} for t in self.tensors if t.past_axis is not None})
        return axes

    def layer(self, index: int) -> tuple[CacheTensor, ...]:
        """The cache tensors of layer ``index``."""
        return tuple(t for t in self.tensors if t.layer == index)

    def signature(self, index: int) -> tuple[tuple[str, int, tuple[int | str, ...], Any], ...]:
        """What layer ``index`` caches (kinds, state indices, shapes, float types): layers that repeat cache alike."""
        return tuple((t.kind, t.state, t.shape, t.dtype) for t in self.layer(index))

    def alike(self) -> bool:
        """Whether every layer caches tensors of the same kinds and shapes (what repeating a layer needs)."""
        return all(self.signature(i) == self.signature(0) for i in range(1, self.num_layers))

    def truncated(self, keep: int) -> CacheLayout:
        """The layout of the first ``keep`` layers."""
        return CacheLayout(keep, tuple(t for t in self.tensors if t.layer < keep))

    def past_length(self, caches: Sequence[torch.Tensor]) -> Any:
        """The tokens already in ``caches`` (the graph's inputs, in this layout's order): :data:`PAST`'s size
        (0 for a model whose cache holds states only: its graph knows no position).
        """
        for tensor, cache in zip(self.tensors, caches):
            if tensor.past_axis is not None:
                return cache.shape[tensor.past_axis]
        return 0

    def random(self, past: int, dtype: torch.dtype, seed: int) -> list[torch.Tensor]:
        """Random cache tensors of ``past`` tokens, seeded by ``seed``.

        ``past = 0`` gives the caches of a prompt: empty keys and values, states of zeros.
        """
        generator = torch.Generator().manual_seed(seed)
        tensors = []
        for t in self.tensors:
            value = torch.randn(*t.sizes(past), generator=generator)
            if t.is_state and past == 0:
                value = torch.zeros_like(value)
            tensors.append(value.to(t.io_dtype(dtype)))
        return tensors

    def per_layer(self, caches: Sequence[torch.Tensor]) -> list[dict[tuple[str, int], torch.Tensor]]:
        """``caches`` (in this layout's order) grouped by layer, each layer's by kind and state index."""
        if len(caches) != len(self.tensors):
            raise InvalidArgumentError(f"{len(self.tensors)} cache tensors expected, got {len(caches)}")
        layers: list[dict[tuple[str, int], torch.Tensor]] = [{} for _ in range(self.num_layers)]
        for tensor, cache in zip(self.tensors, caches):
            layers[tensor.layer][(tensor.kind, tensor.state)] = cache
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
            if tensor.is_state:
                held = held.get(tensor.state) if isinstance(held, dict) else None
            if not isinstance(held, torch.Tensor):
                raise LLMExportError(f"cache layer {tensor.layer} holds no {tensor.kind} tensor")
            flat.append(held)
        return flat

    def describe(self) -> str:
        """The layout in a few words: each distinct layer shape and the layers that have it."""
        groups: dict[str, list[int]] = {}
        for i in range(self.num_layers):
            shapes = ", ".join(f"{t.kind} {list(t.shape)}" for t in self.layer(i)) or "nothing"
            groups.setdefault(shapes, []).append(i)
        if len(groups) == 1:
            return f"{self.num_layers} layers of {next(iter(groups))}"
        return "; ".join(f"layers {', '.join(map(str, layers))}: {shapes}" for shapes, layers in groups.items())


def _states(layer: Any) -> dict[tuple[str, int], torch.Tensor]:
    """The convolution and recurrent states a transformers cache layer holds, by kind and state index."""
    found: dict[tuple[str, int], torch.Tensor] = {}
    for kind in STATE_KINDS:
        held = getattr(layer, CACHE_KINDS[kind], None)
        if isinstance(held, dict):
            found.update({(kind, int(i)): t for i, t in held.items() if isinstance(t, torch.Tensor)})
    return found


def _is_empty(layer: Any) -> bool:
    """Whether a transformers cache layer is one that never holds tensors (a layer that reads another layer's cache)."""
    return type(layer).__name__ == "DummyLayer"
