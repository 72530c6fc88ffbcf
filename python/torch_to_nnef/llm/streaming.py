"""Exporting a language model without loading it: its weights go from the checkpoint to the archive.

A model saved as safetensors shards is built without its weights (on the meta device, see
:func:`torch_to_nnef.llm.loading.build_skeleton`), wrapped and compressed like a loaded one
(a compressor that quantizes weights with
:func:`~torch_to_nnef.io.qtensor.fp_to_tract_q4_0_with_min_max_calibration` leaves them pending,
to be quantized as they are read), traced on the meta device, and written with each weight read
from its shard in pieces (:func:`torch_to_nnef.io.streamed.write_streamed_archive`). Tracing and
memory then cost the same for any size of model; the time is that of reading the shards,
quantizing and writing the archive, which overlap.

A weight that loading assembles from several checkpoint tensors (experts saved one by one,
stacked and concatenated) is read from their rows (:func:`checkpoint_rows`). What cannot go this way
is said in a :class:`NotStreamable` error: a folder without safetensors files, a weight the
checkpoint holds neither under the model's name nor in rows that its conversion takes it from, or
a compressor that needs the weights' values.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from torch_to_nnef.errors import CheckpointMismatchError
from torch_to_nnef.io.checkpoint import SafetensorsCheckpoint
from torch_to_nnef.io.qtensor import Q4_0_GGML_TRACT, QTensorTractScaleOnly
from torch_to_nnef.io.streamed import (
    CheckpointRows,
    StreamedTotals,
    WeightSource,
    row_count,
    with_values,
    write_streamed_archive,
)
from torch_to_nnef.io.streamed import open_checkpoint as open_folder_checkpoint
from torch_to_nnef.io.streamed import weight_sources as streamed_weight_sources
from torch_to_nnef.ir.quantized import PendingQ4_0
from torch_to_nnef.llm.errors import LLMExportError
from torch_to_nnef.llm.progress import WriteProgress

__all__ = [
    "NotStreamable",
    "checkpoint_rows",
    "estimated_size",
    "needs_values",
    "open_checkpoint",
    "pending_quantized",
    "weight_sources",
    "write_archive_streamed",
]

LOGGER = logging.getLogger(__name__)


class NotStreamable(LLMExportError):
    """The model cannot be exported without loading it (the message says why)."""


@contextlib.contextmanager
def needs_values(step: str) -> Iterator[None]:
    """Turns the failure of ``step`` on tensors without values (the model's code reading a weight,
    as a check of its routing does) into :class:`NotStreamable`.

    Raises:
        NotStreamable: ``step`` raised an error about meta tensors.
    """
    try:
        yield
    except NotStreamable:
        raise
    except (RuntimeError, NotImplementedError, ValueError, TypeError) as exc:
        text, cause = str(exc), exc.__cause__
        while "meta" not in text.lower() and cause is not None:  # a capture error explains its cause
            text, cause = str(cause), cause.__cause__
        if "meta" not in text.lower():
            raise
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        raise NotStreamable(f"{step} needs the weights' values ({type(exc).__name__}: {first[:200]})") from exc


def open_checkpoint(local_dir: str | os.PathLike[str]) -> SafetensorsCheckpoint:
    """The safetensors checkpoint of a model folder (see :func:`torch_to_nnef.io.streamed.open_checkpoint`).

    Raises:
        NotStreamable: the folder has no safetensors files.
    """
    try:
        return open_folder_checkpoint(local_dir)
    except CheckpointMismatchError as exc:
        raise NotStreamable(f"{exc} (only they can be read weight by weight)") from exc


def checkpoint_rows(model: nn.Module, checkpoint: SafetensorsCheckpoint) -> CheckpointRows:
    """Where the weights of ``model`` (a transformers model built on the meta device, before any
    rewriting) lie in ``checkpoint``: under their own names, or, for a weight that loading assembles
    from the checkpoint's tensors (experts saved one by one and stacked, gate and up projections
    concatenated), in the rows transformers' own conversion takes them from.

    Each weight is traced through the inverse of that conversion (what ``save_pretrained`` applies)
    as a tensor of its row numbers: the checkpoint tensors it comes out as say which of the
    weight's rows each of their rows is. A conversion that moves values within rows (a transpose
    of the last axis) leaves the weight unmapped, and :func:`weight_sources` then says so.

    Raises:
        NotStreamable: transformers' conversion of the model fails on the traced rows.
    """
    rows = CheckpointRows.by_name(model, checkpoint)
    named = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    missing = {name: t for name, t in named if t.device.type == "meta" and rows.rows_of(t) is None}
    if not missing:
        return rows
    try:
        from transformers.core_model_loading import revert_weight_conversion
    except ImportError:  # a transformers without conversions: the names are the checkpoint's
        return rows
    probes: dict[str, torch.Tensor] = {}
    spans: dict[str, tuple[int, int]] = {}
    total = 0
    state = model.state_dict(keep_vars=True)
    for name, tensor in state.items():
        count = row_count(tensor.shape)
        numbers = torch.arange(total, total + count, dtype=torch.int64)
        probes[name] = numbers.reshape(*tensor.shape[:-1], 1) if tensor.dim() else numbers.reshape(())
        spans[name] = (total, count)
        total += count
    try:
        converted = revert_weight_conversion(model, probes)  # type: ignore[arg-type]
    except Exception as exc:  # transformers' conversions raise what their operations raise
        raise NotStreamable(
            f"transformers' conversion of the checkpoint could not be followed ({type(exc).__name__}: {exc})"
        ) from exc
    names = list(checkpoint.tensors)
    keys = np.full(total, -1, dtype=np.int64)
    at = np.full(total, -1, dtype=np.int64)
    for index, name in enumerate(names):
        probe = converted.get(name)
        stored = checkpoint.tensors[name].shape
        if not isinstance(probe, torch.Tensor) or probe.dtype != torch.int64 or probe.dim() != len(stored):
            continue
        if probe.dim() and (tuple(probe.shape[:-1]) != stored[:-1] or probe.shape[-1] != 1):
            continue  # not whole rows of the model's weights
        held = probe.reshape(-1).numpy()
        if held.size and (held.min() < 0 or held.max() >= total):
            continue  # values computed from the row numbers, not moved
        keys[held] = index
        at[held] = np.arange(len(held))
    by_id = {id(t): name for name, t in state.items()}
    for name, tensor in missing.items():
        span = spans.get(by_id.get(id(tensor), name))
        if span is not None:
            first, count = span
            rows.add_mapped(tensor, names, keys[first : first + count], at[first : first + count])
    return rows


def weight_sources(
    wrapper: nn.Module, checkpoint: SafetensorsCheckpoint, rows: CheckpointRows, prefix: str = "model."
) -> dict[str, WeightSource]:
    """Where each weight of ``wrapper`` (built on the meta device; its own names are ``prefix`` + the
    checkpoint's) is read from, by its name in ``wrapper``: under that name, or in the rows
    ``rows`` (:func:`checkpoint_rows`) finds for it (see :func:`torch_to_nnef.io.streamed.weight_sources`).

    Raises:
        NotStreamable: weights that the checkpoint holds neither under the model's names nor in
            rows that loading takes them from (a conversion not followed), or whose shapes differ.
    """
    try:
        return streamed_weight_sources(wrapper, checkpoint, prefix, rows)
    except CheckpointMismatchError as exc:
        raise NotStreamable(str(exc)) from exc


def estimated_size(tensors: Mapping[str, Any]) -> int:
    """The bytes of the ``.dat`` files of ``tensors`` (the archive's size but for its container)."""
    return sum(int(tensor.nbytes) + 128 for tensor in tensors.values())


def write_archive_streamed(
    archive: Path,
    doc: str,
    tensors: dict[str, Any],
    quant: str | None,
    sources: Mapping[str, WeightSource],
    real_buffers: Mapping[str, torch.Tensor],
    checkpoint: SafetensorsCheckpoint,
    tract_version: tuple[int, ...],
    rows: CheckpointRows | None = None,
) -> StreamedTotals:
    """Writes the archive of a model traced on the meta device: ``tensors`` as the translation
    gave them, each weight read from ``checkpoint``, each buffer (meta in the trace) written from
    its real value in ``real_buffers``, with the progress logged.

    Raises:
        NotStreamable: a tensor of the graph that is neither a weight of the checkpoint nor a real
            buffer.
    """
    try:
        ready, sources = with_values(tensors, sources, real_buffers, rows)
    except CheckpointMismatchError as exc:
        raise NotStreamable(str(exc)) from exc
    quantized = sum(isinstance(t, PendingQ4_0) for t in ready.values())
    progress = WriteProgress(archive.name, len(ready), len(doc) + len(quant or "") + estimated_size(ready))
    LOGGER.info(
        "writing %s: %d tensors (%d of them read from the checkpoint, %d quantized to Q4_0 as they are read)",
        archive.name,
        len(ready),
        sum(label in sources for label in ready),
        quantized,
    )
    return write_streamed_archive(
        archive,
        doc,
        ready,
        sources,
        checkpoint,
        graph_quant=quant,
        q4_0_legacy=tract_version < Q4_0_GGML_TRACT,
        on_tensor=lambda _, totals: progress.step(totals.tensors, totals.written),
    )


def pending_quantized(wrapper: nn.Module) -> int:
    """The weights of ``wrapper`` left to quantize to Q4_0 as they are read."""
    return sum(isinstance(p, QTensorTractScaleOnly) and p.pending for p in wrapper.parameters())
