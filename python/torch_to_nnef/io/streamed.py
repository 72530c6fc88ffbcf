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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from torch_to_nnef import _rust
from torch_to_nnef.errors import CheckpointMismatchError, DTypeError, ShapeError
from torch_to_nnef.io.archive import ArchiveKind, ArchiveWriter
from torch_to_nnef.io.checkpoint import SafetensorsCheckpoint
from torch_to_nnef.io.dat import Bf16Policy, PathLike, Target
from torch_to_nnef.io.qtensor import QTensorTractScaleOnly
from torch_to_nnef.ir.quantized import PendingQ4_0

__all__ = [
    "NNEF_TYPES",
    "StreamedTotals",
    "WeightSource",
    "open_checkpoint",
    "weight_sources",
    "with_values",
    "write_streamed_archive",
]

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


_SHOWN = 5
"""Names shown in a message listing many."""


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown if len(names) <= _SHOWN else f"{shown} and {len(names) - _SHOWN} more"


def weight_sources(module: nn.Module, checkpoint: SafetensorsCheckpoint, prefix: str = "") -> dict[str, WeightSource]:
    """Where each weight of ``module`` is read from, by its name in ``module``: the checkpoint's
    tensor of the same name, once ``prefix`` is taken off the module's name.

    Every weight on the meta device must be in the checkpoint; a real tensor (a buffer the model's
    code computes, or a batch norm's statistics before they are loaded) is read from the checkpoint
    when it holds it, else written as it is. A weight tied to others (a language-model head sharing
    the embeddings) is read under whichever of its names the checkpoint holds.

    Raises:
        CheckpointMismatchError: weights on the meta device that the checkpoint does not hold, or
            weights it holds in another shape (the message names them).
    """
    names: dict[int, list[str]] = {}
    tensors: dict[int, torch.Tensor] = {}
    for name, tensor in [
        *module.named_parameters(remove_duplicate=False),
        *module.named_buffers(remove_duplicate=False),
    ]:
        names.setdefault(id(tensor), []).append(name)
        tensors[id(tensor)] = tensor
    sources: dict[str, WeightSource] = {}
    missing: list[str] = []
    reshaped: list[str] = []
    for key, aliases in names.items():
        stored = [n[len(prefix) :] for n in aliases if n.startswith(prefix) and n[len(prefix) :] in checkpoint]
        weight = tensors[key]
        if not stored:
            if weight.device.type == "meta":
                missing.append(aliases[0])
            continue
        entry = checkpoint.tensors[stored[0]]
        if entry.shape != tuple(weight.shape):
            reshaped.append(f"{stored[0]} ({list(entry.shape)} stored, {list(weight.shape)} in the model)")
            continue
        for alias in aliases:
            sources[alias] = WeightSource(stored[0], weight)
    if missing:
        raise CheckpointMismatchError(
            f"the checkpoint holds no tensor for {len(missing)} weight(s) of the model under its own names "
            f"({_listed(missing)})"
        )
    if reshaped:
        raise CheckpointMismatchError(f"the checkpoint's tensors differ in shape from the model's: {_listed(reshaped)}")
    return sources


def with_values(
    tensors: Mapping[str, object], sources: Mapping[str, WeightSource], real: Mapping[str, torch.Tensor]
) -> dict[str, object]:
    """``tensors`` (a translation's, of a module captured on the meta device) ready for
    :func:`write_streamed_archive`: each meta tensor that no source reads is replaced by its real
    value in ``real`` (a buffer computed by the model's code, by its name).

    Raises:
        CheckpointMismatchError: a meta tensor of the graph that has no values anywhere.
    """
    ready: dict[str, object] = {}
    for label, tensor in tensors.items():
        if label not in sources and isinstance(tensor, torch.Tensor) and tensor.device.type == "meta":
            if label not in real:
                raise CheckpointMismatchError(
                    f"{label} has no values: it is neither in the checkpoint nor computed by the model's code"
                )
            tensor = real[label]
        ready[label] = tensor
    return ready


def open_checkpoint(where: PathLike | Sequence[PathLike]) -> SafetensorsCheckpoint:
    """The safetensors checkpoint of a model folder (its index's shards, or its ``*.safetensors``),
    of one file, or of a list of files.

    Raises:
        CheckpointMismatchError: a folder without safetensors files.
        FormatError: a file that is not valid safetensors.
    """
    if isinstance(where, (str, os.PathLike)):
        if Path(where).is_dir():
            found = SafetensorsCheckpoint.of_folder(where)
            if found is None:
                raise CheckpointMismatchError(f"{os.fspath(where)} holds no .safetensors files")
            return found
        return SafetensorsCheckpoint([where])
    return SafetensorsCheckpoint(list(where))


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
    bf16: Bf16Policy = "error",
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
        bf16: what bfloat16 weights become (see :func:`torch_to_nnef.io.dat.as_numpy`).
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
                out.add_tensor(label, tensor, bf16)  # type: ignore[arg-type]
            else:
                totals.read += checkpoint.tensors[source.key].nbytes
                _add_weight(out, label, source, isinstance(tensor, PendingQ4_0), checkpoint, threads, bf16)
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
    bf16: Bf16Policy,
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
    written = weight.dtype
    if written == torch.bfloat16 and bf16 != "error":
        written = torch.float32 if bf16 == "f32" else torch.float16
    dtype = NNEF_TYPES.get(written)
    if dtype is None:
        raise DTypeError(f"{label}: dtype {weight.dtype} cannot be stored in NNEF; cast it first")
    if written == torch.bool:  # Khronos packs booleans in bits, a whole tensor at a time
        out.add_tensor(label, checkpoint.read(source.key).to(torch.bool))
        return
    quantized = source.q4_0
    direct = stored.dtype == written and (quantized is None or (as_blocks and quantized.percentile >= 1.0))
    if direct and (quantized is None or written in _QUANTIZABLE):
        # as stored: the Rust core reads the file itself (and quantizes), Python never sees the bytes
        values = _QUANTIZABLE[written] if quantized is not None else None
        out.add_file_region(
            label, dtype, weight.shape, stored.path, stored.offset, stored.nbytes, q4_0_values=values, threads=threads
        )
        return
    pieces = (piece.to(written) for piece in checkpoint.pieces(source.key))
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
        out.add_pieces(label, dtype, weight.shape, _dequantized(quantized, pieces, written, threads))


_QUANTIZABLE = {torch.float32: "f32", torch.float16: "f16"}
"""The float types the Q4_0 kernel reads straight from a file, by name."""


def _quantizable(values: torch.Tensor) -> np.ndarray:
    """``values`` as the Q4_0 kernel takes them: f16 or f32."""
    return (values if values.dtype in (torch.float16, torch.float32) else values.float()).numpy()


def _dequantized(
    quantized: QTensorTractScaleOnly, pieces: Iterator[torch.Tensor], dtype: torch.dtype, threads: int | None
) -> Iterator[np.ndarray]:
    """The values the Q4_0 blocks of each piece decode to, in ``dtype``."""
    for piece in pieces:
        blocks = _rust.Q40Tensor.quantize(_quantizable(quantized.calibrated(piece)).reshape(-1, 32), threads=threads)
        yield torch.from_numpy(blocks.dequantize().reshape(-1)).to(dtype).numpy()
