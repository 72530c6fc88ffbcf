"""A causal language model as a graph whose key-value cache is inputs and outputs: the exported graph's contract.

For a model of ``L`` layers with ``H`` key-value heads of size ``D``, the graph (built by
:func:`wrap_causal_lm`) has:

- inputs: ``input_ids`` (i64 ``[1, S]``), then per layer ``in_cache_key_{i}`` and
  ``in_cache_value_{i}`` (``[1, H, P, D]``), layer after layer;
- outputs: ``logits`` (``[1, K, vocab]``, ``K`` = ``S`` when every position's logits are kept,
  else the number kept), then per layer ``out_cache_key_{i}`` and ``out_cache_value_{i}``
  (``[1, H, P + S, D]``) in the same order.

``S`` (new tokens) and ``P`` (tokens already in the cache) are tract symbols (see
:func:`dynamic_axes`); the position of the first new token is ``P``. A prompt is run with
``P = 0`` (empty caches), each following step with the caches the previous one returned.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from torch_to_nnef.errors import InvalidArgumentError
from torch_to_nnef.llm.errors import LLMExportError
from torch_to_nnef.llm.loading import import_transformers

__all__ = ["CausalLMGraph", "dynamic_axes", "graph_module", "io_names", "vocab_size", "wrap_causal_lm"]


def io_names(num_layers: int) -> tuple[list[str], list[str]]:
    """The graph's input and output names for a model of ``num_layers`` layers."""
    caches = [f"{kind}_{i}" for i in range(num_layers) for kind in ("key", "value")]
    return ["input_ids", *(f"in_cache_{c}" for c in caches)], ["logits", *(f"out_cache_{c}" for c in caches)]


def dynamic_axes(num_layers: int) -> dict[str, dict[int, str]]:
    """The graph's dynamic input axes: ``S`` for the new tokens, ``P`` for the tokens in the caches."""
    input_names, _ = io_names(num_layers)
    axes: dict[str, dict[int, str]] = {"input_ids": {1: "S"}}
    axes.update({n: {2: "P"} for n in input_names[1:]})
    return axes


class CausalLMGraph(nn.Module):
    """A HuggingFace causal LM as ``(input_ids, *caches) -> (logits, *new_caches)``.

    The transformers cache object is rebuilt from the flat tensors at each call
    (``DynamicCache(ddp_cache_data=...)``), and positions start at the cache length. Build it
    with :func:`wrap_causal_lm`, which gives ``forward`` one named parameter per cache tensor
    (torch.export needs them to give each its own dynamic axis).

    Args:
        model: a ``transformers`` causal LM (``AutoModelForCausalLM``).
        num_layers: layers whose key and value caches are graph inputs and outputs.
        num_logits_to_keep: logits of the last positions kept (0 keeps every position's).
        cache_dtype: float type of the caches given and returned, cast from and to the model's
            (None: the model's).
    """

    def __init__(
        self, model: nn.Module, num_layers: int, num_logits_to_keep: int = 1, cache_dtype: torch.dtype | None = None
    ) -> None:
        super().__init__()
        if num_logits_to_keep < 0:
            raise InvalidArgumentError(f"num_logits_to_keep must be >= 0, got {num_logits_to_keep}")
        self.model = model
        self.num_layers = num_layers
        self.num_logits_to_keep = num_logits_to_keep
        self.cache_dtype = cache_dtype
        """Float type of the caches in the graph's inputs and outputs (None: the model's)."""
        self._model_dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        parameters = inspect.signature(model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in parameters else "past_key_values"

    def forward(self, input_ids: torch.Tensor, *caches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Runs ``input_ids`` after the ``P`` tokens held by ``caches``."""
        if len(caches) != 2 * self.num_layers:
            raise InvalidArgumentError(f"{2 * self.num_layers} cache tensors expected, got {len(caches)}")
        if self.cache_dtype is not None:
            caches = tuple(c.to(self._model_dtype) for c in caches)
        cache_cls = import_transformers().DynamicCache
        cache = cache_cls(ddp_cache_data=[(caches[2 * i], caches[2 * i + 1]) for i in range(self.num_layers)])
        past = caches[0].shape[2]
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0) + past
        out = self.model(
            input_ids=input_ids,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=self.num_logits_to_keep,
            **{self._cache_kwarg: cache},
        )
        new_caches = _flat_cache(_output_cache(out), self.num_layers)
        if self.cache_dtype is not None:
            new_caches = [c.to(self.cache_dtype) for c in new_caches]
        return (out.logits, *new_caches)


def _output_cache(out: Any) -> Any:
    """The cache object a forward returned (``cache`` in recent transformers, ``past_key_values`` before)."""
    cache = getattr(out, "cache", None)
    if cache is None:
        cache = getattr(out, "past_key_values", None)
    if cache is None:
        raise LLMExportError("the model returned no cache: it does not support use_cache=True")
    return cache


def _flat_cache(cache: Any, num_layers: int) -> list[torch.Tensor]:
    """The key and value tensors of ``cache``, layer after layer."""
    layers = getattr(cache, "layers", None)
    if layers is None or len(layers) != num_layers:
        found = "no layers" if layers is None else f"{len(layers)} layers"
        raise LLMExportError(f"the model's cache has {found}, {num_layers} expected")
    flat: list[torch.Tensor] = []
    for i, layer in enumerate(layers):
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if not (isinstance(keys, torch.Tensor) and isinstance(values, torch.Tensor)):
            raise LLMExportError(
                f"cache layer {i} ({type(layer).__name__}) holds no key and value tensors: only attention "
                "layers with a key-value cache can be exported"
            )
        flat.extend((keys, values))
    return flat


def wrap_causal_lm(
    model: nn.Module, num_logits_to_keep: int = 1, cache_dtype: torch.dtype | None = None
) -> tuple[CausalLMGraph, tuple[int, int, int]]:
    """Wraps ``model`` into a :class:`CausalLMGraph`.

    The model is run once on two tokens to learn its cache layout.

    Returns:
        The wrapper, and ``(num_layers, key-value heads, head size)``.
    """
    model.eval()
    first = next(iter(model.parameters()))
    with torch.no_grad():
        out = model(input_ids=torch.zeros(1, 2, dtype=torch.int64, device=first.device), use_cache=True)
    cache = _output_cache(out)
    layers = getattr(cache, "layers", None)
    if not layers:
        raise LLMExportError(f"the cache of {type(model).__name__} ({type(cache).__name__}) has no layers")
    flat = _flat_cache(cache, len(layers))
    shapes = {tuple(t.shape[:2]) + tuple(t.shape[3:]) for t in flat}
    if len(shapes) != 1 or len(flat[0].shape) != 4:
        raise LLMExportError(
            f"the caches of {type(model).__name__} are not all [1, heads, length, head size] of one size: "
            f"{sorted({tuple(t.shape) for t in flat})}"
        )
    num_layers = len(layers)
    _, heads, _, head_dim = flat[0].shape
    return graph_module(model, num_layers, num_logits_to_keep, cache_dtype), (num_layers, int(heads), int(head_dim))


def graph_module(
    model: nn.Module, num_layers: int, num_logits_to_keep: int, cache_dtype: torch.dtype | None = None
) -> CausalLMGraph:
    """A :class:`CausalLMGraph` of ``num_layers`` layers whose ``forward`` has one named parameter per input."""
    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in io_names(num_layers)[0]]
    signature = inspect.Signature([inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *params])

    def forward(self: CausalLMGraph, input_ids: torch.Tensor, *caches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return CausalLMGraph.forward(self, input_ids, *caches)

    forward.__signature__ = signature  # type: ignore[attr-defined]
    forward.__doc__ = CausalLMGraph.forward.__doc__
    cls = type(CausalLMGraph.__name__, (CausalLMGraph,), {"forward": forward, "__module__": __name__})
    wrapper: CausalLMGraph = cls(model, num_layers, num_logits_to_keep, cache_dtype).eval()
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
