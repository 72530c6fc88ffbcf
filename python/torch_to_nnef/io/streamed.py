"""Archives whose weights come straight from a checkpoint, one weight and one piece at a time.

:func:`write_streamed_archive` writes ``graph.nnef`` and the graph's tensors: those in memory
(buffers, constants) whole, and each weight of a model built without its weights (on the meta
device) from its :class:`WeightSource`: read from the safetensors checkpoint in pieces of whole
rows, cast to the type the graph declares, quantized to Q4_0 as it comes for a pending Q4_0 weight
(:class:`~torch_to_nnef.io.qtensor.QTensorTractScaleOnly`), and written while the next piece is
read. The memory held is a few pieces, whatever the model's size. The bytes written are those an
export of the same model loaded in memory writes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from torch_to_nnef import _rust
from torch_to_nnef.errors import DTypeError, ShapeError
from torch_to_nnef.io.archive import ArchiveKind, ArchiveWriter
from torch_to_nnef.io.checkpoint import SafetensorsCheckpoint
from torch_to_nnef.io.dat import PathLike, Target
from torch_to_nnef.io.qtensor import QTensorTractScaleOnly
from torch_to_nnef.ir.quantized import PendingQ4_0

__all__ = ["NNEF_TYPES", "StreamedTotals", "WeightSource", "write_streamed_archive"]

LOGGER = logging.getLogger(__name__)

NNEF_TYPES = {
    torch.float16: "f16",
    torch.float32: "f32",
    torch.float64: "f64",
    torch.int8: "i8",
    torch.int16: "i16",
    torch.int32: "i32",
    torch.int64: "i64",
    torch.uint8: "u8",
    torch.bool: "bool",
}
"""The element type a ``.dat`` file stores each torch dtype as."""


@dataclass(frozen=True)
class WeightSource:
    """Where a weight of the graph comes from, and what it becomes on the way."""

    key: str
    """Its name in the checkpoint."""
    weight: torch.Tensor
    """The model's weight (on the meta device): its dtype and shape are the graph's."""

    @property
    def q4_0(self) -> QTensorTractScaleOnly | None:
        """The pending Q4_0 weight whose blocks (or their dequantized values) are written."""
        return self.weight if isinstance(self.weight, QTensorTractScaleOnly) else None


@dataclass
class StreamedTotals:
    """What :func:`write_streamed_archive` read and wrote."""

    tensors: int = 0
    read: int = 0
    """Bytes read from the checkpoint."""
    written: int = 0
    """Bytes of the archive's members."""


def write_streamed_archive(
    path: PathLike,
    graph_nnef: str,
    tensors: Mapping[str, object],
    sources: Mapping[str, WeightSource],
    checkpoint: SafetensorsCheckpoint,
    *,
    graph_quant: str | None = None,
    kind: ArchiveKind | None = None,
    compression_level: int = 0,
    target: Target = "tract",
    q4_0_legacy: bool = False,
    overwrite: bool = False,
    threads: int | None = None,
    on_tensor: Callable[[str, StreamedTotals], None] | None = None,
) -> StreamedTotals:
    """Writes an archive whose weights are read from ``checkpoint`` as they are written.

    Args:
        path: output path; its folder must exist.
        graph_nnef: the ``graph.nnef`` document.
        tensors: label -> tensor, as the translation gives them: in memory (written whole), or a
            weight of a model on the meta device (a meta tensor, or the :class:`PendingQ4_0` of a
            pending Q4_0 weight), which ``sources`` must give.
        sources: label -> where each weight not in memory comes from.
        checkpoint: the safetensors files the weights are read from.
        graph_quant: the ``graph.quant`` document, when tensors are quantized.
        kind: see :class:`ArchiveWriter`.
        compression_level: see :class:`ArchiveWriter`.
        target: see :class:`ArchiveWriter`.
        q4_0_legacy: see :class:`ArchiveWriter`.
        overwrite: see :class:`ArchiveWriter`.
        threads: Q4_0 quantization threads (default: all cores).
        on_tensor: called after each tensor with its label and the totals so far.

    Raises:
        ShapeError: a checkpoint tensor whose size differs from the graph's weight.
        DTypeError: a weight of a type NNEF cannot hold.
    """
    totals = StreamedTotals()
    with ArchiveWriter(
        path,
        kind=kind,
        compression_level=compression_level,
        target=target,
        q4_0_legacy=q4_0_legacy,
        overwrite=overwrite,
    ) as out:
        out.add_text("graph.nnef", graph_nnef)
        if graph_quant is not None:
            out.add_text("graph.quant", graph_quant)
        for label, tensor in tensors.items():
            source = sources.get(label)
            if source is None:
                out.add_tensor(label, tensor)  # type: ignore[arg-type]
            else:
                totals.read += checkpoint.tensors[source.key].nbytes
                _add_weight(out, label, source, isinstance(tensor, PendingQ4_0), checkpoint, threads)
            totals.tensors += 1
            totals.written = out.written
            if on_tensor is not None:
                on_tensor(label, totals)
    LOGGER.debug("wrote %s: %d tensors, %d bytes", os.fspath(path), totals.tensors, totals.written)
    return totals


def _add_weight(
    out: ArchiveWriter,
    label: str,
    source: WeightSource,
    as_blocks: bool,
    checkpoint: SafetensorsCheckpoint,
    threads: int | None,
) -> None:
    """Writes the weight ``label`` from its checkpoint tensor: its values, its Q4_0 blocks
    (``as_blocks``), or the dequantized values of those blocks (a pending Q4_0 weight that the
    graph uses in float).
    """
    weight, stored = source.weight, checkpoint.tensors[source.key]
    if stored.shape != tuple(weight.shape):
        raise ShapeError(
            f"{label}: the checkpoint's {source.key} is of shape {list(stored.shape)}, the model's weight of "
            f"{list(weight.shape)}: the checkpoint is not this model's"
        )
    dtype = NNEF_TYPES.get(weight.dtype)
    if dtype is None:
        raise DTypeError(f"{label}: dtype {weight.dtype} cannot be stored in NNEF; cast it first")
    pieces = (piece.to(weight.dtype) for piece in checkpoint.pieces(source.key))
    quantized = source.q4_0
    if quantized is None:
        out.add_pieces(label, dtype, weight.shape, (p.numpy() for p in pieces))
    elif as_blocks:
        out.add_pieces(
            label,
            dtype,
            weight.shape,
            (_quantizable(quantized.calibrated(p)) for p in pieces),
            q4_0=True,
            threads=threads,
        )
    else:
        out.add_pieces(label, dtype, weight.shape, _dequantized(quantized, pieces, threads))


def _quantizable(values: torch.Tensor) -> np.ndarray:
    """``values`` as the Q4_0 kernel takes them: f16 or f32."""
    return (values if values.dtype in (torch.float16, torch.float32) else values.float()).numpy()


def _dequantized(
    quantized: QTensorTractScaleOnly, pieces: Iterator[torch.Tensor], threads: int | None
) -> Iterator[np.ndarray]:
    """The values the Q4_0 blocks of each piece decode to, in the weight's dtype."""
    for piece in pieces:
        blocks = _rust.Q40Tensor.quantize(_quantizable(quantized.calibrated(piece)).reshape(-1, 32), threads=threads)
        yield torch.from_numpy(blocks.dequantize().reshape(-1)).to(quantized.dtype).numpy()
