"""Tracing the wrapped language model with torch.export and writing it as an NNEF archive.

A model whose decoder layers repeat (all alike, alike after a few different ones, or alike by
periods, as sliding-window and full attention layers alternate) is traced with the layers before
the repetition and two periods, the second period repeated for the others (see
:mod:`torch_to_nnef.capture.layer_stack`): tracing then costs the same for any depth.
"""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import Any

import torch

from torch_to_nnef.capture import layer_stack
from torch_to_nnef.capture.torch_export import capture
from torch_to_nnef.check.targets import TractNNEF
from torch_to_nnef.export import export_metadata
from torch_to_nnef.io.archive import write_nnef_archive
from torch_to_nnef.io.dat import writable
from torch_to_nnef.io.qtensor import Q4_0_GGML_TRACT
from torch_to_nnef.ir import Graph
from torch_to_nnef.llm.bundles import random_caches, random_token_ids
from torch_to_nnef.llm.cache_layout import CacheLayout
from torch_to_nnef.llm.progress import Progress, format_size, writing_reported
from torch_to_nnef.llm.wrapper import CausalLMGraph, graph_module
from torch_to_nnef.nnef.translate import translate
from torch_to_nnef.op import custom_extractors as extractors

__all__ = [
    "TRACE_NEW_TOKENS",
    "TRACE_PAST_TOKENS",
    "length_bounds",
    "random_trace_inputs",
    "translate_graph",
    "write_graph",
]

LOGGER = logging.getLogger(__name__)

TRACE_NEW_TOKENS = 3
TRACE_PAST_TOKENS = 2
"""Sizes the graph is traced at: torch.export cannot trace ``P = 0`` as a dynamic size, so the
prompt step (``P = 0``) is verified separately, by running the export."""


def random_trace_inputs(vocab: int, layout: CacheLayout, cache_dtype: torch.dtype) -> list[torch.Tensor]:
    """The inputs the graph is traced with: :data:`TRACE_NEW_TOKENS` tokens on caches of :data:`TRACE_PAST_TOKENS`."""
    return [
        random_token_ids(vocab, TRACE_NEW_TOKENS, seed=1),
        *random_caches(layout, TRACE_PAST_TOKENS, cache_dtype, seed=2),
    ]


def length_bounds(config: Any, has_past: bool = True) -> list[str]:
    """Assertions for tract on the symbols.

    ``S >= 1``, ``P >= 0`` and, when the config gives the model's context, ``S + P <= max positions``;
    ``S >= 1`` only for a model that caches states only (``has_past`` False: no ``P``, no positions).
    """
    bounds = ["tract_assert S>=1"]
    if not has_past:
        return bounds
    bounds.append("tract_assert P>=0")
    text = getattr(config, "get_text_config", lambda: config)()
    limit = next(
        (v for v in (getattr(text, n, None) for n in ("max_position_embeddings", "n_positions", "max_seq_len")) if v),
        None,
    )
    if isinstance(limit, int) and limit > 0:
        bounds.append(f"tract_assert S+P<={limit}")
    return bounds


def translate_graph(
    wrapper: CausalLMGraph,
    trace_inputs: Sequence[torch.Tensor],
    target: TractNNEF,
    input_names: list[str],
    output_names: list[str],
    naming_scheme: str,
    extensions: list[str],
    repeat_layers: bool = True,
) -> tuple[str, dict[str, Any], str | None]:
    """Traces ``wrapper`` and translates it to NNEF.

    With ``repeat_layers``, a model whose decoder layers repeat is traced with the layers before
    the repetition and two periods of it, the second period repeated for the others (see
    :mod:`torch_to_nnef.capture.layer_stack`).

    Returns:
        The ``graph.nnef`` document, its tensors by label and its ``graph.quant`` (None without
        quantized tensors), as :func:`torch_to_nnef.nnef.translate.translate` gives them.
    """
    started = time.monotonic()
    sizes = f"S = {trace_inputs[0].shape[1]}, P = {wrapper.layout.past_length(trace_inputs[1:])}"
    with torch.no_grad(), extractors.opaque(wrapper) as opaque:
        graph = _capture_stacked(wrapper, trace_inputs, target, sizes, opaque) if repeat_layers else None
        if graph is None:
            LOGGER.info("tracing %s with torch.export (%s)", type(wrapper.model).__name__, sizes)
            graph, _ = capture(wrapper, list(trace_inputs), input_names, target.dynamic_axes, _bf16_as(wrapper))
        LOGGER.info("traced %d operations in %.1f s", len(graph.nodes), time.monotonic() - started)
        return translate(
            graph,
            target,
            input_names,
            output_names,
            export_metadata(wrapper, target),
            naming_scheme=naming_scheme,
            custom_extensions=extensions,
            opaque=opaque,
        )


def write_graph(archive: Path, doc: str, tensors: dict[str, Any], quant: str | None, target: TractNNEF) -> None:
    """Writes the archive of a graph translated by :func:`translate_graph`, its tensors in memory.

    The progress of each step (packing the tensors, writing the archive) is logged.
    """
    progress = Progress("packed", len(tensors), "tensors")
    packed: dict[str, Any] = {}
    for label in list(tensors):
        packed[label] = writable(tensors.pop(label), label, "error")
        progress.step(int(packed[label].nbytes))
    LOGGER.info("writing %s (%s of tensors)", archive.name, format_size(progress.nbytes))
    started = time.monotonic()
    with writing_reported(archive, progress.nbytes):
        write_nnef_archive(
            archive,
            doc,
            packed,
            graph_quant=quant,
            compression_level=0,
            q4_0_legacy=target.version_tuple < Q4_0_GGML_TRACT,
        )
    LOGGER.info(
        "wrote %s (%s) in %.1f s", archive.name, format_size(archive.stat().st_size), time.monotonic() - started
    )


def _capture_stacked(
    wrapper: CausalLMGraph,
    trace_inputs: Sequence[torch.Tensor],
    target: TractNNEF,
    sizes: str,
    opaque: MutableMapping[str, Any],
) -> Graph | None:
    """The graph of ``wrapper`` captured with its first layers only (those before the layers
    repeat, and two periods of these), the others repeated.

    None when no layer can be repeated: the layers differ (their code, their weights or their
    caches' shapes) in no offset-and-period pattern that leaves a layer to repeat, or the traced
    periods differ.
    """
    num_layers, layout = wrapper.num_layers, wrapper.layout
    caches = [layout.signature(i) for i in range(num_layers)]
    stack = layer_stack.find_stack(wrapper, num_layers, caches)
    if stack is None:
        if layer_stack.find_stack(wrapper, num_layers) is not None:
            LOGGER.info(
                "the caches of the layers of %s do not repeat as their layers do (%s): tracing all of them",
                type(wrapper.model).__name__,
                layout.describe(),
            )
        return None
    LOGGER.info(
        "tracing %s with torch.export (%s) with %d of its %d layers (%s)",
        type(wrapper.model).__name__,
        sizes,
        stack.traced,
        num_layers,
        stack.describe(),
    )
    short_layout = layout.truncated(stack.traced)
    short_inputs = short_layout.input_names
    dynamic_axes = {n: a for n, a in (target.dynamic_axes or {}).items() if n in short_inputs}
    with layer_stack.truncated(wrapper, stack.path, stack.traced):
        short = graph_module(wrapper.model, short_layout, wrapper.num_logits_to_keep, wrapper.cache_dtype)
        short_trace = list(trace_inputs[: len(short_inputs)])
        graph, _ = capture(short, short_trace, short_inputs, dynamic_axes, _bf16_as(wrapper))
    tensors = dict(wrapper.named_buffers(remove_duplicate=False))
    tensors.update(wrapper.state_dict(keep_vars=True))
    try:
        graph = layer_stack.repeat_layers(
            graph,
            stack,
            tensors.__getitem__,
            lambda j: [t.input_name for t in layout.layer(j)],
            opaque_kinds=opaque,
            module=wrapper.get_submodule,
        )
    except layer_stack.StackMismatch as exc:
        LOGGER.info("the layers of %s differ (%s): tracing all of them", type(wrapper.model).__name__, exc)
        return None
    if [v.name for v in graph.inputs] != layout.input_names or len(graph.outputs) != len(layout.output_names):
        LOGGER.info(
            "the layers of %s differ (the repeated graph has %d inputs and %d outputs): tracing all of them",
            type(wrapper.model).__name__,
            len(graph.inputs),
            len(graph.outputs),
        )
        return None
    return graph


def _bf16_as(wrapper: CausalLMGraph) -> str:
    """The float type bfloat16 values a model computes on purpose (Falcon rounds its ALiBi slopes to
    bf16) take in the export: the model's own.
    """
    return "f16" if wrapper.model_dtype == torch.float16 else "f32"
