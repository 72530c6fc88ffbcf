"""NNEF model archives: a folder, a ``.tar`` or a ``.tgz`` with ``graph.nnef`` and its tensors.

Archives are streamed to disk by the Rust core (never held whole in memory) under a temporary
name and renamed into place only once complete: an existing file is never half-overwritten.
:func:`write_nnef_archive` writes tensors that are all in memory; an :class:`ArchiveWriter` takes
them one at a time, each whole or in pieces, for models whose weights never are.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Literal

import numpy as np

from torch_to_nnef import _rust
from torch_to_nnef.io.dat import Bf16Policy, PathLike, Target, TensorLike, writable

ArchiveKind = Literal["folder", "tar", "tgz"]


def archive_kind(path: PathLike) -> ArchiveKind:
    """The kind a path asks for: ``.tgz``/``.tar.gz`` gzip, ``.tar`` tar, anything else a folder."""
    name = Path(path).name.lower()
    if name.endswith((".tgz", ".tar.gz")):
        return "tgz"
    if name.endswith(".tar"):
        return "tar"
    return "folder"


def write_nnef_archive(
    path: PathLike,
    graph_nnef: str,
    tensors: Mapping[str, TensorLike | _rust.Q40Tensor],
    *,
    graph_quant: str | None = None,
    kind: ArchiveKind | None = None,
    compression_level: int = 6,
    target: Target = "tract",
    q4_0_legacy: bool = False,
    overwrite: bool = False,
    bf16: Bf16Policy = "error",
) -> Path:
    """Writes a model archive.

    Args:
        path: output path; its folder must exist.
        graph_nnef: the ``graph.nnef`` document.
        tensors: label -> tensor; each is stored as ``<label>.dat`` (``/`` makes sub-folders).
        graph_quant: the ``graph.quant`` document, when tensors carry quantization parameters.
        kind: ``"folder"``, ``"tar"`` or ``"tgz"``; by default it follows the path's suffix.
        compression_level: gzip level for ``.tgz`` (0 none, 1 fastest, 9 smallest).
        target: integer item codes of the ``.dat`` files.
        q4_0_legacy: Q4_0 tensors in the layout of tract < 0.21.11.
        overwrite: replace an existing output (otherwise :class:`OutputExistsError`).
        bf16: see :func:`torch_to_nnef.io.dat.as_numpy`.

    Returns:
        The path written.
    """
    _rust.check_labels(list(tensors))
    prepared = {label: writable(t, label, bf16) for label, t in tensors.items()}
    _rust.write_archive(
        os.fspath(path),
        graph_nnef,
        prepared,
        graph_quant=graph_quant,
        kind=kind or archive_kind(path),
        compression_level=compression_level,
        flavor=target,
        q4_0_legacy=q4_0_legacy,
        overwrite=overwrite,
    )
    return Path(path)


def list_archive(source: PathLike | bytes) -> list[str]:
    """Lists the files of a ``.tar``/``.tgz``; raises :class:`UnsafePathError` on a member that is
    not a regular file or whose path escapes the archive.
    """
    if isinstance(source, bytes):
        return _rust.scan_archive(source)
    return _rust.scan_archive(os.fspath(source))


class ArchiveWriter:
    """A model archive written member by member: ``graph.nnef``, then each tensor, whole
    (:meth:`add_tensor`) or in pieces (:meth:`add_pieces`).

    Used as a context manager, the archive is moved into place when the block ends without an
    error, and removed (nothing left at the path) otherwise. A writer thread of the Rust core
    writes each piece while the next one is made; at most a few pieces wait in memory. The
    archive's bytes are those :func:`write_nnef_archive` writes for the same members in the same
    order.

    Args:
        path: output path; its folder must exist.
        kind: ``"folder"``, ``"tar"`` or ``"tgz"``; by default it follows the path's suffix.
        compression_level: gzip level for ``.tgz`` (0 none, 1 fastest, 9 smallest).
        target: integer item codes of the ``.dat`` files.
        q4_0_legacy: Q4_0 tensors in the layout of tract < 0.21.11.
        overwrite: replace an existing output (otherwise :class:`OutputExistsError`).
    """

    def __init__(
        self,
        path: PathLike,
        *,
        kind: ArchiveKind | None = None,
        compression_level: int = 0,
        target: Target = "tract",
        q4_0_legacy: bool = False,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        self._writer = _rust.ArchiveWriter(
            os.fspath(path),
            kind=kind or archive_kind(path),
            compression_level=compression_level,
            flavor=target,
            q4_0_legacy=q4_0_legacy,
            overwrite=overwrite,
        )

    @property
    def written(self) -> int:
        """Bytes of members written so far."""
        return int(self._writer.written)

    def add_text(self, name: str, text: str) -> None:
        """Adds a text member (``graph.nnef``, ``graph.quant``)."""
        self._writer.add_text(name, text)

    def add_tensor(self, label: str, tensor: TensorLike | _rust.Q40Tensor, bf16: Bf16Policy = "error") -> None:
        """Adds ``<label>.dat``: a tensor held whole in memory."""
        self._writer.add_tensor(label, writable(tensor, label, bf16))

    def add_pieces(
        self,
        label: str,
        dtype: str,
        shape: Iterable[int],
        pieces: Iterable[np.ndarray],
        *,
        q4_0: bool = False,
        threads: int | None = None,
    ) -> None:
        """Adds ``<label>.dat`` of ``shape`` from ``pieces``: row-major runs of its elements, in order.

        Args:
            label: the tensor's label.
            dtype: its element type (``"f16"``, ``"f32"``, ``"i64"``, ...); ignored with ``q4_0``.
            shape: its shape.
            pieces: C-contiguous numpy arrays of ``dtype`` whose elements, one after the other, are
                the tensor's; with ``q4_0``, f32 or f16 values quantized to Q4_0 blocks as they come
                (each piece whole blocks of 32 values).
            q4_0: store the tensor as Q4_0 blocks.
            threads: quantization threads (default: all cores).

        Raises:
            ShapeError: the pieces do not hold the tensor's elements exactly.
        """
        self._writer.begin_tensor(label, dtype, list(shape), q4_0=q4_0)
        for piece in pieces:
            self._writer.write(piece, threads=threads)
        self._writer.end_tensor()

    def add_file_region(
        self,
        label: str,
        dtype: str,
        shape: Iterable[int],
        path: PathLike,
        offset: int,
        length: int,
        *,
        q4_0_values: str | None = None,
        threads: int | None = None,
    ) -> None:
        """Adds ``<label>.dat`` of ``shape`` from ``length`` bytes of the file ``path`` at ``offset``,
        read by the Rust core without passing through Python: the tensor's elements as stored
        (little-endian ``dtype``), or, with ``q4_0_values`` (``"f32"``, ``"f16"``, ``"bf16"``), values of
        that type quantized to Q4_0 blocks as they are read.

        Raises:
            ShapeError: the region does not hold the tensor's elements (or values) exactly.
            FormatError: the file ends inside the region.
        """
        self.add_file_regions(label, dtype, shape, [(path, offset, length)], q4_0_values=q4_0_values, threads=threads)

    def add_file_regions(
        self,
        label: str,
        dtype: str,
        shape: Iterable[int],
        regions: Iterable[tuple[PathLike, int, int]],
        *,
        q4_0_values: str | None = None,
        threads: int | None = None,
    ) -> None:
        """Adds ``<label>.dat`` of ``shape`` from file ``regions`` (path, offset, length) one after the
        other, as :meth:`add_file_region` does from one (a Q4_0 tensor's regions each whole blocks).

        Raises:
            ShapeError: the regions do not hold the tensor's elements (or values) exactly.
            FormatError: a file ends inside its region.
        """
        self._writer.begin_tensor(label, dtype, list(shape), q4_0=q4_0_values is not None)
        for path, offset, length in regions:
            self._writer.write_file_region(path, offset, length, values=q4_0_values, threads=threads)
        self._writer.end_tensor()

    def finish(self) -> Path:
        """Writes the end of the archive and moves it into place."""
        self._writer.finish()
        return self.path

    def abort(self) -> None:
        """Stops writing: nothing is left at the path, nor any temporary file."""
        self._writer.abort()

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.finish()
        else:
            self.abort()
