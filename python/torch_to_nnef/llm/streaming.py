"""Exporting a language model without loading it: its weights go from the checkpoint to the archive.

A model saved as safetensors shards is built without its weights (on the meta device, see
:func:`torch_to_nnef.llm.loading.build_skeleton`), wrapped and compressed like a loaded one
(a compressor that quantizes weights with
:func:`~torch_to_nnef.io.qtensor.fp_to_tract_q4_0_with_min_max_calibration` leaves them pending,
to be quantized as they are read), traced on the meta device, and written with each weight read
from its shard in pieces (:func:`torch_to_nnef.io.streamed.write_streamed_archive`). Tracing and
memory then cost the same for any size of model; the time is that of reading the shards,
quantizing and writing the archive, which overlap.

What cannot go this way is said in a :class:`NotStreamable` error: a folder without safetensors
files, a weight the checkpoint does not hold under the model's name (a model whose loading
converts its checkpoint), or a compressor that needs the weights' values.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torch_to_nnef.errors import CheckpointMismatchError
from torch_to_nnef.io.checkpoint import SafetensorsCheckpoint
from torch_to_nnef.io.qtensor import Q4_0_GGML_TRACT, QTensorTractScaleOnly
from torch_to_nnef.io.streamed import StreamedTotals, WeightSource, with_values, write_streamed_archive
from torch_to_nnef.io.streamed import open_checkpoint as open_folder_checkpoint
from torch_to_nnef.io.streamed import weight_sources as streamed_weight_sources
from torch_to_nnef.ir.quantized import PendingQ4_0
from torch_to_nnef.llm.errors import LLMExportError
from torch_to_nnef.llm.progress import WriteProgress

__all__ = [
    "NotStreamable",
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


def weight_sources(
    wrapper: nn.Module, checkpoint: SafetensorsCheckpoint, prefix: str = "model."
) -> dict[str, WeightSource]:
    """Where each weight of ``wrapper`` (built on the meta device; its own names are ``prefix`` + the
    checkpoint's) is read from, by its name in ``wrapper`` (see
    :func:`torch_to_nnef.io.streamed.weight_sources`).

    Raises:
        NotStreamable: weights that the checkpoint does not hold under the model's names (a
            model whose loading converts its checkpoint), or whose shapes differ.
    """
    try:
        return streamed_weight_sources(wrapper, checkpoint, prefix)
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
) -> StreamedTotals:
    """Writes the archive of a model traced on the meta device: ``tensors`` as the translation
    gave them, each weight read from ``checkpoint``, each buffer (meta in the trace) written from
    its real value in ``real_buffers``, with the progress logged.

    Raises:
        NotStreamable: a tensor of the graph that is neither a weight of the checkpoint nor a real
            buffer.
    """
    try:
        ready = with_values(tensors, sources, real_buffers)
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
