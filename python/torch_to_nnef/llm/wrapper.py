"""A causal language model as a graph whose cache is inputs and outputs: the exported graph's contract.

For a model of ``L`` layers, the graph (built by :func:`wrap_causal_lm`) has:

- inputs: ``input_ids`` (i64 ``[1, S]``), then per layer ``in_cache_key_{i}`` and
  ``in_cache_value_{i}``, layer after layer;
- outputs: ``logits`` (``[1, K, vocab]``, ``K`` = ``S`` when every position's logits are kept,
  else the number kept), then per layer ``out_cache_key_{i}`` and ``out_cache_value_{i}`` in the
  same order.

Each cache tensor has the shape transformers gives it, learnt from a short run of the model (see
:class:`~torch_to_nnef.llm.cache_layout.CacheLayout`): ``[1, H, P, D]`` with ``H`` key-value heads of
size ``D`` for most attention layers, which may differ from layer to layer and between a layer's
key and value (DeepSeek's multi-head latent attention caches ``[1, 1, P, kv_lora_rank]`` latents
as keys and ``[1, 1, P, qk_rope_head_dim]`` rotary keys as values). An output cache is its input
grown by the ``S`` new tokens on the ``P`` axis.

``S`` (new tokens) and ``P`` (tokens already in the cache) are tract symbols (see
:meth:`~torch_to_nnef.llm.cache_layout.CacheLayout.dynamic_axes`); the position of the first new
token is ``P``. A prompt is run with ``P = 0`` (empty caches), each following step with the caches
the previous one returned.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from torch_to_nnef.errors import InvalidArgumentError
from torch_to_nnef.llm.cache_layout import PAST, STATE_KINDS, CacheLayout
from torch_to_nnef.llm.errors import LLMExportError
from torch_to_nnef.llm.loading import import_transformers

__all__ = ["CausalLMGraph", "dynamic_axes", "graph_module", "io_names", "vocab_size", "wrap_causal_lm"]

LAYOUT_RUN_TOKENS = 2
"""Tokens of the run that learns the model's cache layout."""


def io_names(layout: CacheLayout | int) -> tuple[list[str], list[str]]:
    """The graph's input and output names for ``layout`` (or a number of layers, each caching a key and a value)."""
    if isinstance(layout, CacheLayout):
        return layout.input_names, layout.output_names
    caches = [f"{kind}_{i}" for i in range(layout) for kind in ("key", "value")]
    return ["input_ids", *(f"in_cache_{c}" for c in caches)], ["logits", *(f"out_cache_{c}" for c in caches)]


def dynamic_axes(layout: CacheLayout | int) -> dict[str, dict[int, str]]:
    """The graph's dynamic input axes: ``S`` for the new tokens, ``P`` for the tokens in the caches.

    ``layout`` may be a number of layers, each caching a key and a value of ``[1, H, P, D]``.
    """
    if isinstance(layout, CacheLayout):
        return layout.dynamic_axes()
    axes: dict[str, dict[int, str]] = {"input_ids": {1: "S"}}
    axes.update({n: {2: PAST} for n in io_names(layout)[0][1:]})
    return axes


class CausalLMGraph(nn.Module):
    """A HuggingFace causal LM as ``(input_ids, *caches) -> (logits, *new_caches)``.

    The transformers cache object is rebuilt from the flat tensors at each call
    (``DynamicCache(ddp_cache_data=...)``), and positions start at the cache length. Build it
    with :func:`wrap_causal_lm`, which gives ``forward`` one named parameter per cache tensor
    (torch.export needs them to give each its own dynamic axis).

    Args:
        model: a ``transformers`` causal LM (``AutoModelForCausalLM``).
        layout: the cache tensors that are graph inputs and outputs.
        num_logits_to_keep: logits of the last positions kept (0 keeps every position's).
        cache_dtype: float type of the caches given and returned, cast from and to the model's
            (None: the model's).
    """

    def __init__(
        self,
        model: nn.Module,
        layout: CacheLayout,
        num_logits_to_keep: int = 1,
        cache_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if num_logits_to_keep < 0:
            raise InvalidArgumentError(f"num_logits_to_keep must be >= 0, got {num_logits_to_keep}")
        self.model = model
        self.layout = layout
        """The cache tensors given and returned."""
        self.num_layers = self.layout.num_layers
        self.num_logits_to_keep = num_logits_to_keep
        self.cache_dtype = cache_dtype
        """Float type of the caches in the graph's inputs and outputs (None: the model's)."""
        self.model_dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        """The float type of the model's weights."""
        parameters = inspect.signature(model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in parameters else "past_key_values"
        self._positions = layout.has_past and "position_ids" in parameters
        """Whether the model is given the positions of the new tokens (a model of states only knows none)."""

    def forward(self, input_ids: torch.Tensor, *caches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Runs ``input_ids`` after the ``P`` tokens held by ``caches``."""
        tensors = self.layout.tensors
        if self.cache_dtype is not None:  # states of their own float type keep it
            caches = tuple(c.to(self.model_dtype) if t.dtype is None else c for t, c in zip(tensors, caches))
        cache = self._cache(caches)
        past = self.layout.past_length(caches)
        kwargs: dict[str, Any] = {self._cache_kwarg: cache}
        if self._positions:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0) + past
            kwargs["position_ids"] = positions
        out = self.model(input_ids=input_ids, use_cache=True, logits_to_keep=self.num_logits_to_keep, **kwargs)
        new_caches = self.layout.flatten(_output_cache(out))
        if self.cache_dtype is not None:
            new_caches = [c.to(self.cache_dtype) if t.dtype is None else c for t, c in zip(tensors, new_caches)]
        return (out.logits, *new_caches)

    def _cache(self, caches: tuple[torch.Tensor, ...]) -> Any:
        """The transformers cache holding ``caches`` (in the layout's order).

        A model of keys and values only gets a ``DynamicCache`` built from them. A layer with states
        gets a linear-attention cache layer (with keys and values as well: a hybrid layer) whose
        states are copies of the inputs (transformers updates them in place) marked as a previous
        state: the prompt's states are zeros, so that every step runs the same code.
        """
        per_layer = self.layout.per_layer(caches)
        if all(set(layer) == {("key", 0), ("value", 0)} for layer in per_layer):
            cache_cls = import_transformers().DynamicCache
            return cache_cls(ddp_cache_data=[(layer[("key", 0)], layer[("value", 0)]) for layer in per_layer])
        cache_utils = import_transformers().cache_utils
        layers: list[Any] = []
        for held in per_layer:
            states = {k: v for k, v in held.items() if k[0] in STATE_KINDS}
            if not held:
                layers.append(cache_utils.DummyLayer())
                continue
            if ("indexer", 0) in held:
                layer = cache_utils.DynamicIndexedLayer()
                layer.update_indexer(held[("indexer", 0)])
            elif not states:
                layer = cache_utils.DynamicLayer()
            else:
                count = 1 + max(index for _, index in states)
                has_keys = ("key", 0) in held
                cls = cache_utils.LinearAttentionAndFullAttentionLayer if has_keys else cache_utils.LinearAttentionLayer
                layer = cls(number_of_states=count)
                for (kind, index), state in states.items():
                    layer.dtype, layer.device = state.dtype, state.device
                    if kind == "conv":
                        layer.conv_states[index] = state.clone()
                        layer.conv_kernel_size[index] = int(state.shape[-1])
                        layer.is_conv_states_initialized[index] = True
                    else:
                        layer.recurrent_states[index] = state.clone()
                        layer.is_recurrent_states_initialized[index] = True
                    layer.has_previous_state[index] = True
            if ("key", 0) in held:
                layer.update(held[("key", 0)], held[("value", 0)])
            layers.append(layer)
        cache = import_transformers().DynamicCache()
        cache.layers = layers
        cache.layer_class_to_replicate = None
        return cache


def _output_cache(out: Any) -> Any:
    """The cache object a forward returned (``cache`` in recent transformers, ``past_key_values`` before)."""
    cache = getattr(out, "cache", None)
    if cache is None:
        cache = getattr(out, "past_key_values", None)
    if cache is None:
        raise LLMExportError("the model returned no cache: it does not support use_cache=True")
    return cache


def wrap_causal_lm(
    model: nn.Module, num_logits_to_keep: int = 1, cache_dtype: torch.dtype | None = None
) -> tuple[CausalLMGraph, CacheLayout]:
    """Wraps ``model`` into a :class:`CausalLMGraph`.

    The model is run once on :data:`LAYOUT_RUN_TOKENS` tokens to learn its cache layout: the
    tensors of the cache it returns, with their shapes.

    Returns:
        The wrapper, and its cache layout (``layout.num_layers`` layers).

    Raises:
        LLMExportError: the model returns no cache, or one whose layers are not key-value caches.
    """
    model.eval()
    first = next(iter(model.parameters()))
    ids = torch.zeros(1, LAYOUT_RUN_TOKENS, dtype=torch.int64, device=first.device)
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)
    model_dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    layout = CacheLayout.of_cache(_output_cache(out), LAYOUT_RUN_TOKENS, model_dtype)
    return graph_module(model, layout, num_logits_to_keep, cache_dtype), layout


def graph_module(
    model: nn.Module, layout: CacheLayout, num_logits_to_keep: int, cache_dtype: torch.dtype | None = None
) -> CausalLMGraph:
    """A :class:`CausalLMGraph` of ``layout`` whose ``forward`` has one named parameter per input."""
    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in io_names(layout)[0]]
    signature = inspect.Signature([inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *params])

    def forward(self: CausalLMGraph, input_ids: torch.Tensor, *caches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return CausalLMGraph.forward(self, input_ids, *caches)

    forward.__signature__ = signature  # type: ignore[attr-defined]
    forward.__doc__ = CausalLMGraph.forward.__doc__
    cls = type(CausalLMGraph.__name__, (CausalLMGraph,), {"forward": forward, "__module__": __name__})
    wrapper: CausalLMGraph = cls(model, layout, num_logits_to_keep, cache_dtype).eval()
    return wrapper


def vocab_size(model: nn.Module) -> int:
    """The size of ``model``'s vocabulary: the rows of its output embeddings (the logits' last axis).

    Raises:
        LLMExportError: ``model`` has no output embeddings.
    """
    getter = getattr(model, "get_output_embeddings", None)
    weight = getattr(getter() if callable(getter) else None, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise LLMExportError(f"{type(model).__name__} has no output embeddings (language-model head)")
    return int(weight.shape[0])
