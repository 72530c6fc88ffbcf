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
import math
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
    "CheckpointRows",
    "Rows",
    "StreamedTotals",
    "WeightSource",
    "open_checkpoint",
    "row_count",
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
class Rows:
    """A run of rows of a checkpoint tensor: its runs of ``shape[-1]`` elements ``first`` to
    ``first + count - 1`` (a scalar is one row of one element).
    """

    key: str
    """The tensor's name in the checkpoint."""
    first: int
    count: int


@dataclass(frozen=True)
class WeightSource:
    """Where a weight of the graph comes from, and what it becomes on the way."""

    parts: tuple[Rows, ...]
    """Its rows, in order: one whole checkpoint tensor for a weight stored as the model holds it,
    runs of several for one that loading assembles (experts stacked, projections concatenated) or
    a view of such a weight."""
    weight: torch.Tensor
    """The model's weight (on the meta device): its dtype and shape are the graph's."""
    quantized: QTensorTractScaleOnly | None = None
    """The pending Q4_0 weight whose blocks (or their dequantized values) are written, when it is not
    ``weight`` itself."""

    @property
    def q4_0(self) -> QTensorTractScaleOnly | None:
        """The pending Q4_0 weight whose blocks (or their dequantized values) are written."""
        if self.quantized is not None:
            return self.quantized
        return self.weight if isinstance(self.weight, QTensorTractScaleOnly) else None

    def nbytes(self, checkpoint: SafetensorsCheckpoint) -> int:
        """The bytes read for it from ``checkpoint``."""
        total = 0
        for part in self.parts:
            stored = checkpoint.tensors[part.key]
            total += part.count * _width(stored.shape) * stored.dtype.itemsize
        return total


def _width(shape: Sequence[int]) -> int:
    """The elements of a row of a tensor of ``shape`` (its last axis; a scalar's one)."""
    return int(shape[-1]) if len(shape) else 1


def row_count(shape: Sequence[int]) -> int:
    """The rows of a tensor of ``shape``: runs of its last axis (a scalar is one row)."""
    return math.prod(shape[:-1]) if len(shape) else 1


def _runs(keys: np.ndarray, rows: np.ndarray, names: Sequence[str]) -> tuple[Rows, ...] | None:
    """The runs of consecutive rows of one checkpoint tensor in (``keys``, ``rows``), one pair per
    row of a weight (-1: a row no checkpoint tensor holds, then None).
    """
    if len(keys) == 0 or (keys < 0).any():
        return None
    breaks = np.flatnonzero((keys[1:] != keys[:-1]) | (rows[1:] != rows[:-1] + 1)) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [len(keys)]))
    return tuple(Rows(names[keys[a]], int(rows[a]), int(b - a)) for a, b in zip(starts, ends))


class CheckpointRows:
    """Which rows of a checkpoint the weights of a model built on the meta device hold, found by
    their storage: a weight registered with :meth:`add` (from its name in the checkpoint, or from
    how loading assembles it), and any view of it that the model's rewriting or a compressor makes
    (an expert's slice of stacked weights, a projection's half, a Q4_0 weight of either), as long
    as the view keeps whole rows.
    """

    def __init__(self, checkpoint: SafetensorsCheckpoint) -> None:
        self.checkpoint = checkpoint
        self._names = list(checkpoint.tensors)
        self._index = {name: i for i, name in enumerate(self._names)}
        self._bases: dict[int, tuple[torch.Tensor, tuple[Rows, ...]]] = {}
        self._flat: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def by_name(cls, module: nn.Module, checkpoint: SafetensorsCheckpoint, prefix: str = "") -> CheckpointRows:
        """The rows of each weight of ``module`` on the meta device that ``checkpoint`` holds under its
        name (once ``prefix`` is taken off), whole.
        """
        found = cls(checkpoint)
        for name, tensor in [
            *module.named_parameters(remove_duplicate=False),
            *module.named_buffers(remove_duplicate=False),
        ]:
            key = name[len(prefix) :] if name.startswith(prefix) else ""
            if tensor.device.type == "meta" and key in checkpoint:
                stored = checkpoint.tensors[key]
                if stored.shape == tuple(tensor.shape):
                    found.add(tensor, (Rows(key, 0, row_count(stored.shape)),))
        return found

    def add(self, weight: torch.Tensor, parts: tuple[Rows, ...]) -> None:
        """Registers ``weight`` (on the meta device) as made of the checkpoint's ``parts``, in order."""
        self._bases[_storage(weight)] = (weight, parts)

    def add_mapped(self, weight: torch.Tensor, names: Sequence[str], keys: np.ndarray, rows: np.ndarray) -> bool:
        """Registers ``weight`` from where each of its rows lies: in the checkpoint tensor
        ``names[keys[i]]`` (-1: none holds it), at row ``rows[i]``.

        Returns:
            Whether every row is held, by tensors whose rows are as long as ``weight``'s.
        """
        if len(keys) == 0 or (keys < 0).any():
            return False
        used = [names[i] for i in np.unique(keys)]
        if any(
            key not in self._index or _width(self.checkpoint.tensors[key].shape) != _width(weight.shape) for key in used
        ):
            return False
        parts = _runs(keys, rows, names)
        if parts is None:
            return False
        self.add(weight, parts)
        return True

    def rows_of(self, tensor: torch.Tensor) -> tuple[Rows, ...] | None:
        """The checkpoint rows ``tensor`` holds, in its order: a registered weight, or a view of one
        made of whole rows; None for another tensor.
        """
        if tensor.device.type != "meta":
            return None
        found = self._bases.get(_storage(tensor))
        if found is None:
            return None
        base, parts = found
        if (
            tensor.shape == base.shape
            and tensor.stride() == base.stride()
            and tensor.storage_offset() == base.storage_offset()
        ):
            return parts
        width = _width(base.shape)
        if (
            tensor.dim() == 0
            or tensor.numel() == 0
            or tensor.shape[-1] != width
            or (width > 1 and tensor.stride(-1) != 1)
        ):
            return None
        starts = torch.tensor(tensor.storage_offset() - base.storage_offset(), dtype=torch.int64)
        for size, stride in zip(tensor.shape[:-1], tensor.stride()[:-1]):
            starts = starts.unsqueeze(-1) + torch.arange(size, dtype=torch.int64) * stride
        offsets = starts.reshape(-1).numpy()
        if (offsets % width).any():
            return None
        keys, rows = self._flatten(base, parts)
        picked = offsets // width
        if (picked < 0).any() or (picked >= len(keys)).any():
            return None
        return _runs(keys[picked], rows[picked], self._names)

    def _flatten(self, base: torch.Tensor, parts: tuple[Rows, ...]) -> tuple[np.ndarray, np.ndarray]:
        """For each row of ``base``: the index of its checkpoint tensor and its row there."""
        key = _storage(base)
        if key not in self._flat:
            self._flat[key] = (
                np.concatenate([np.full(p.count, self._index[p.key], dtype=np.int64) for p in parts]),
                np.concatenate([np.arange(p.first, p.first + p.count, dtype=np.int64) for p in parts]),
            )
        return self._flat[key]


def _storage(tensor: torch.Tensor) -> int:
    """Identifies the storage of ``tensor`` (shared by its views, on the meta device too)."""
    return int(tensor.untyped_storage()._cdata)


_SHOWN = 5
"""Names shown in a message listing many."""


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown if len(names) <= _SHOWN else f"{shown} and {len(names) - _SHOWN} more"


def weight_sources(
    module: nn.Module, checkpoint: SafetensorsCheckpoint, prefix: str = "", rows: CheckpointRows | None = None
) -> dict[str, WeightSource]:
    """Where each weight of ``module`` is read from, by its name in ``module``: the checkpoint's
    tensor of the same name, once ``prefix`` is taken off the module's name, else the rows ``rows``
    finds for it (a weight that loading assembles from several tensors, or a view of one).

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
            parts = None if rows is None else rows.rows_of(weight)
            if parts is not None:
                for alias in aliases:
                    sources[alias] = WeightSource(parts, weight)
            elif weight.device.type == "meta":
                missing.append(aliases[0])
            continue
        entry = checkpoint.tensors[stored[0]]
        if entry.shape != tuple(weight.shape):
            reshaped.append(f"{stored[0]} ({list(entry.shape)} stored, {list(weight.shape)} in the model)")
            continue
        whole = (Rows(stored[0], 0, row_count(entry.shape)),)
        for alias in aliases:
            sources[alias] = WeightSource(whole, weight)
    if missing:
        raise CheckpointMismatchError(
            f"the checkpoint holds no tensor for {len(missing)} weight(s) of the model under its own names "
            f"({_listed(missing)})"
        )
    if reshaped:
        raise CheckpointMismatchError(f"the checkpoint's tensors differ in shape from the model's: {_listed(reshaped)}")
    return sources


def with_values(
    tensors: Mapping[str, object],
    sources: Mapping[str, WeightSource],
    real: Mapping[str, torch.Tensor],
    rows: CheckpointRows | None = None,
) -> tuple[dict[str, object], dict[str, WeightSource]]:
    """``tensors`` (a translation's, of a module captured on the meta device) ready for
    :func:`write_streamed_archive`, and the sources of all its weights: those of ``sources``, and
    for a tensor no source reads, the checkpoint rows ``rows`` finds for it (a view of a weight,
    or the pending Q4_0 blocks of one, that a layer's conversion declares), else its real value in
    ``real`` (a buffer computed by the model's code, by its name).

    Raises:
        CheckpointMismatchError: a meta tensor of the graph that has no values anywhere.
    """
    ready: dict[str, object] = {}
    found = dict(sources)
    for label, tensor in tensors.items():
        if label not in found and rows is not None:
            values = tensor.values if isinstance(tensor, PendingQ4_0) else tensor
            parts = rows.rows_of(values) if isinstance(values, torch.Tensor) else None
            if parts is not None and isinstance(values, torch.Tensor):
                quantized = values if isinstance(values, QTensorTractScaleOnly) else None
                found[label] = WeightSource(parts, values, quantized)
        if label not in found and isinstance(tensor, torch.Tensor) and tensor.device.type == "meta":
            if label not in real:
                raise CheckpointMismatchError(
                    f"{label} has no values: it is neither in the checkpoint nor computed by the model's code"
                )
            tensor = real[label]
        elif label not in found and isinstance(tensor, PendingQ4_0):
            raise CheckpointMismatchError(f"{label}: its Q4_0 blocks are made from values the checkpoint does not hold")
        ready[label] = tensor
    return ready, found


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
                totals.read += source.nbytes(checkpoint)
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
    """Writes the weight ``label`` from its checkpoint rows: their values, their Q4_0 blocks
    (``as_blocks``), or the dequantized values of those blocks (a pending Q4_0 weight that the
    graph uses in float).
    """
    weight = source.weight
    stored = [checkpoint.tensors[part.key] for part in source.parts]
    width = _width(weight.shape)
    held = sum(part.count for part in source.parts) * width
    if any(_width(t.shape) != width for t in stored) or held != weight.numel():
        where = ", ".join(f"{t.name} {list(t.shape)}" for t in dict.fromkeys(stored))
        raise ShapeError(
            f"{label}: the checkpoint's {where} do not make the model's weight of shape {list(weight.shape)}: "
            "the checkpoint is not this model's"
        )
    written = weight.dtype
    if written == torch.bfloat16 and bf16 != "error":
        written = torch.float32 if bf16 == "f32" else torch.float16
    dtype = NNEF_TYPES.get(written)
    if dtype is None:
        raise DTypeError(f"{label}: dtype {weight.dtype} cannot be stored in NNEF; cast it first")
    if written == torch.bool:  # Khronos packs booleans in bits, a whole tensor at a time
        whole = torch.cat([piece.clone() for piece in _pieces(checkpoint, source.parts)])
        out.add_tensor(label, whole.to(torch.bool).reshape(weight.shape))
        return
    quantized = source.q4_0
    direct = all(t.dtype == written for t in stored) and (
        quantized is None or (as_blocks and quantized.percentile >= 1.0)
    )
    if direct and (quantized is None or written in _QUANTIZABLE):
        # as stored: the Rust core reads the file itself (and quantizes), Python never sees the bytes
        values = _QUANTIZABLE[written] if quantized is not None else None
        regions = []
        for part, t in zip(source.parts, stored):
            row = width * t.dtype.itemsize
            regions.append((t.path, t.offset + part.first * row, part.count * row))
        out.add_file_regions(label, dtype, weight.shape, regions, q4_0_values=values, threads=threads)
        return
    pieces = (piece.to(written) for piece in _pieces(checkpoint, source.parts))
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


def _pieces(checkpoint: SafetensorsCheckpoint, parts: Sequence[Rows]) -> Iterator[torch.Tensor]:
    """The values of ``parts``, flattened, in pieces of whole rows."""
    for part in parts:
        yield from checkpoint.pieces(part.key, rows=(part.first, part.count))


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
