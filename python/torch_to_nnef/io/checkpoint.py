"""A model's weights in safetensors files, read tensor by tensor and piece by piece, never whole.

A :class:`SafetensorsCheckpoint` lists the tensors of a checkpoint's shards (a folder with
``model.safetensors``, or shards listed by ``model.safetensors.index.json``, or files given one by
one) and reads any tensor in pieces of whole rows (:meth:`SafetensorsCheckpoint.pieces`) with plain
file reads into one reused buffer: the memory it holds is one piece, whatever the model's size, and
nothing of the files stays mapped in the process. Each file is validated by the ``safetensors``
library when opened (a corrupt or hostile header is refused before anything is read).

Importing this module does not import torch (:mod:`torch_to_nnef.io.tensor_export` reads
safetensors files through it without torch); reading a checkpoint's tensors does.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from torch_to_nnef.errors import FormatError, InvalidArgumentError, NameClashError

if TYPE_CHECKING:
    import torch

__all__ = ["INDEX_NAME", "PIECE_BYTES", "CheckpointTensor", "SafetensorsCheckpoint", "safe_open"]

INDEX_NAME = "model.safetensors.index.json"
"""The file that lists a sharded checkpoint's tensors and their shards."""

PIECE_BYTES = 32 << 20
"""Bytes of a checkpoint tensor read at a time (whole rows, at least one)."""

_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}
"""safetensors' type names and the names of their torch dtypes (the types a model's weights come in)."""


def _torch() -> Any:
    """The torch module, imported when a checkpoint is read."""
    import torch

    return torch


def safe_open(path: Path) -> Any:
    """``safetensors.safe_open`` of ``path`` (validating its header) for PyTorch tensors.

    Raises:
        InvalidArgumentError: safetensors is not installed.
        FormatError: ``path`` is not a valid safetensors file.
    """
    try:
        from safetensors import safe_open as open_safetensors
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise InvalidArgumentError(f"{path}: reading .safetensors needs `pip install safetensors`") from exc
    try:
        return open_safetensors(os.fspath(path), framework="pt", device="cpu")
    except Exception as exc:  # safetensors raises its own SafetensorError, or OSError
        raise FormatError(f"{path}: not a valid .safetensors file ({exc})") from exc


@dataclass(frozen=True)
class CheckpointTensor:
    """Where a tensor lies in its shard."""

    name: str
    path: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    offset: int
    """Of its first byte in the file."""

    @property
    def nbytes(self) -> int:
        """Its size in the file."""
        return math.prod(self.shape) * self.dtype.itemsize


class SafetensorsCheckpoint:
    """The tensors of safetensors files, by name (see the module documentation).

    Raises:
        FormatError: a file that is not valid safetensors, or a tensor type PyTorch models do not
            hold (the message names the file and the tensor).
        NameClashError: two files hold a tensor of the same name.
    """

    def __init__(self, files: Sequence[str | os.PathLike[str]]) -> None:
        self.files = [Path(f) for f in files]
        self.tensors: dict[str, CheckpointTensor] = {}
        for path in self.files:
            with safe_open(path):  # validates the header and the offsets against the file's size
                pass
            for tensor in _tensors_of(path):
                if tensor.name in self.tensors:
                    raise NameClashError(
                        f"tensor {tensor.name!r} is in both {self.tensors[tensor.name].path} and {path}: "
                        "give each tensor of a checkpoint once"
                    )
                self.tensors[tensor.name] = tensor

    @classmethod
    def of_folder(cls, folder: str | os.PathLike[str]) -> SafetensorsCheckpoint | None:
        """The checkpoint of a model folder: the shards its ``model.safetensors.index.json`` lists, or
        its ``*.safetensors`` files; None when it has none.

        Raises:
            FormatError: an index that is not valid JSON or names missing or outside files.
        """
        folder = Path(folder)
        index = folder / INDEX_NAME
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
                names = sorted(set(weight_map.values()))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise FormatError(f"{index}: not a safetensors index (no weight_map of names to files)") from exc
            shards = []
            for name in names:
                shard = (folder / name).resolve()
                if shard.parent != folder.resolve() or not shard.is_file():
                    raise FormatError(f"{index} lists {name!r}, which is not a file of {folder}")
                shards.append(shard)
            return cls(shards)
        shards = sorted(folder.glob("*.safetensors"))
        return cls(shards) if shards else None

    def __contains__(self, name: object) -> bool:
        return name in self.tensors

    @property
    def nbytes(self) -> int:
        """The size of all its tensors."""
        return sum(t.nbytes for t in self.tensors.values())

    def pieces(
        self, name: str, piece_bytes: int = PIECE_BYTES, rows: tuple[int, int] | None = None
    ) -> Iterator[torch.Tensor]:
        """The tensor ``name``, flattened, in pieces of whole rows (runs of its last axis) of about
        ``piece_bytes`` bytes, read from its file in order; with ``rows`` (first, count), those
        rows only.

        The next piece is read by a thread while the caller uses the current one, into the other
        of two buffers: a piece stays valid until the caller asks for the piece after the next one
        (use, or copy, each before asking for more than one more).
        """
        tensor = self.tensors[name]
        torch = _torch()
        row_bytes = (tensor.shape[-1] if tensor.shape else 1) * tensor.dtype.itemsize
        begin, size = (0, tensor.nbytes) if rows is None else (rows[0] * row_bytes, rows[1] * row_bytes)
        if begin < 0 or size < 0 or begin + size > tensor.nbytes:
            raise ValueError(f"rows {rows} are outside tensor {name!r} of shape {list(tensor.shape)}")
        if size == 0:
            yield torch.empty(0, dtype=tensor.dtype)
            return
        step = max(1, piece_bytes // row_bytes) * row_bytes  # rows are not empty: size > 0
        starts = list(range(begin, begin + size, step))
        buffers = [np.empty(min(step, size), dtype=np.uint8) for _ in range(min(2, len(starts)))]
        with open(tensor.path, "rb", buffering=0) as file, ThreadPoolExecutor(1) as reader:

            def read(i: int) -> memoryview:
                length = min(step, begin + size - starts[i])
                view = buffers[i % 2].data[:length]
                file.seek(tensor.offset + starts[i])
                got = 0
                while got < length:
                    n = file.readinto(view[got:])
                    if not n:
                        raise FormatError(f"{tensor.path} ends inside tensor {name!r}: the file is truncated")
                    got += n
                return view

            ahead = reader.submit(read, 0)
            for i in range(len(starts)):
                view = ahead.result()
                if i + 1 < len(starts):
                    ahead = reader.submit(read, i + 1)
                yield torch.frombuffer(view, dtype=tensor.dtype)

    def read(self, name: str) -> torch.Tensor:
        """The whole tensor ``name`` (for small ones: a copy in memory)."""
        tensor = self.tensors[name]
        whole: torch.Tensor = _torch().cat([piece.clone() for piece in self.pieces(name)])
        return whole.reshape(tensor.shape)


def _tensors_of(path: Path) -> list[CheckpointTensor]:
    """The tensors a safetensors file holds, from its header (already validated by the library)."""
    with open(path, "rb") as file:
        (size,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(size))
    found = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype_name = _DTYPES.get(entry["dtype"])
        if dtype_name is None:
            raise FormatError(
                f"{path}: tensor {name!r} is of type {entry['dtype']}, which this exporter does not read "
                f"(it reads {', '.join(_DTYPES)})"
            )
        begin, _ = entry["data_offsets"]
        dtype = getattr(_torch(), dtype_name)
        found.append(CheckpointTensor(name, path, dtype, tuple(entry["shape"]), 8 + size + begin))
    return found
