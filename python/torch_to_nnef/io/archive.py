"""NNEF model archives: a folder, a ``.tar`` or a ``.tgz`` with ``graph.nnef`` and its tensors.

Archives are streamed to disk by the Rust core (never held whole in memory) under a temporary
name and renamed into place only once complete: an existing file is never half-overwritten.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

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
