"""Tensors alone, without a graph: written as NNEF ``.dat`` files from memory or from a checkpoint file.

``export_tensors_to_nnef`` writes tensors held in memory; ``export_tensors_from_disk_to_nnef``
streams them out of a ``.safetensors`` file (memory-mapped, batch by batch, so a file larger
than the RAM works) or a ``.pt``/``.pth``/``.bin`` checkpoint (loaded with
``torch.load(weights_only=True)``: a pickle that would run code is refused, never executed).

Outputs are staged in a hidden folder and moved into place only once every file is written: on
any error, nothing is left behind.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from torch_to_nnef import _rust
from torch_to_nnef.errors import (
    DTypeError,
    FormatError,
    InvalidArgumentError,
    MissingFolderError,
    NameClashError,
    NNEFIOError,
    OutputExistsError,
    UnsafeFileError,
)
from torch_to_nnef.io.checkpoint import safe_open
from torch_to_nnef.io.dat import Bf16Policy, PathLike, Target, as_numpy, write_dats

if TYPE_CHECKING:
    import torch

__all__ = ["TORCH_SUFFIXES", "export_tensors_from_disk_to_nnef", "export_tensors_to_nnef"]

LOGGER = logging.getLogger(__name__)

MiB = 1 << 20
DEFAULT_BATCH_BYTES = 256 * MiB
"""Tensors are written in batches of about this many bytes (a larger tensor makes its own batch)."""

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
"""File suffixes read with ``torch.load``; ``.safetensors`` is read with ``safetensors``."""

NamedTensors = Union[Mapping[str, Any], Iterable[tuple[str, Any]]]
"""name -> tensor, as a mapping or as ``(name, tensor)`` pairs."""


# ----------------------------------------------------------------------------------------------
# values


def _is_q4_0_convertible(value: object) -> bool:
    return callable(getattr(value, "to_q4_0", None))


def _torch_module() -> Any:
    import torch

    return torch


def _empty_view(t: torch.Tensor) -> torch.Tensor:
    """A zero-element view of ``t`` with its dtype, device and layout, to check them for free."""
    torch = _torch_module()
    t = t.detach()
    if t.layout != torch.strided or t.is_quantized or t.dim() == 0 or t.device.type == "meta":
        return t  # as_numpy refuses these before touching any data, or they are a single value
    return t[tuple(slice(0, 0) for _ in range(t.dim()))]


def _check_value(name: str, value: object, bf16: Bf16Policy) -> None:
    """Raises the error that writing ``value`` would raise, without converting or copying it."""
    if isinstance(value, _rust.Q40Tensor) or _is_q4_0_convertible(value):
        return
    if isinstance(value, np.ndarray):
        as_numpy(value, name=name)
        return
    torch = _torch_module()
    if not isinstance(value, torch.Tensor):
        raise DTypeError(
            f"{name}: cannot export a {type(value).__name__}; values must be torch tensors, numpy arrays, "
            "Q40Tensor or quantized tensors with a to_q4_0() method"
        )
    as_numpy(_empty_view(value), name=name, bf16=bf16)


def _nbytes(value: Any) -> int:
    if isinstance(value, (np.ndarray, _rust.Q40Tensor)):
        return int(value.nbytes)
    numel = getattr(value, "numel", None)
    if callable(numel):
        return int(numel()) * int(value.element_size())
    return 0


def _writable(name: str, value: Any) -> Any:
    """What ``write_dats`` takes for ``value``: quantized tensors become their Q4_0 blocks."""
    if isinstance(value, _rust.Q40Tensor):
        return value
    if _is_q4_0_convertible(value):
        q = value.to_q4_0()
        if not isinstance(q, _rust.Q40Tensor):
            raise DTypeError(f"{name}: to_q4_0() returned a {type(q).__name__}, not a Q40Tensor")
        return q
    return value


def _named_items(name_to_tensor: NamedTensors) -> dict[str, Any]:
    items = name_to_tensor.items() if isinstance(name_to_tensor, Mapping) else name_to_tensor
    out: dict[str, Any] = {}
    for pair in items:
        name, value = pair
        if not isinstance(name, str):
            raise InvalidArgumentError(f"tensor names must be strings, got {name!r}")
        if name in out:
            raise NameClashError(f"two tensors are named {name!r}: each name makes one file, {name}.dat")
        out[name] = value
    return out


def _batches(names: Sequence[str], sizes: Mapping[str, int], batch_bytes: int) -> Iterator[list[str]]:
    batch: list[str] = []
    held = 0
    for name in names:
        if batch and held + sizes[name] > batch_bytes:
            yield batch
            batch, held = [], 0
        batch.append(name)
        held += sizes[name]
    if batch:
        yield batch


# ----------------------------------------------------------------------------------------------
# output folder, staged


class _Staging:
    """A hidden folder the files are written to; ``commit`` moves them into ``output_dir``.

    A new output folder is the staging folder renamed (atomic); into an existing one, files are
    moved one by one once all are written. ``abort`` removes everything written.
    """

    def __init__(self, output_dir: PathLike, labels: Sequence[str], overwrite: bool) -> None:
        out = Path(os.path.abspath(os.fspath(output_dir)))
        self.out = out
        self.labels = list(labels)
        if out.exists() and not out.is_dir():
            raise OutputExistsError(f"{output_dir} exists and is not a folder")
        self.fresh = not out.exists()
        if self.fresh and not out.parent.is_dir():
            raise MissingFolderError(
                f"cannot create {output_dir}: its parent folder {out.parent} does not exist (create it first)"
            )
        if not self.fresh and not overwrite:
            existing = [label for label in self.labels if (out / f"{label}.dat").exists()]
            if existing:
                more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
                raise OutputExistsError(
                    f"{out / (existing[0] + '.dat')}{more} already exist(s); pass overwrite=True to replace them"
                )
        where = out.parent if self.fresh else out
        prefix = f".{out.name}.partial-" if self.fresh else ".t2n-partial-"
        self.dir = where / f"{prefix}{secrets.token_hex(6)}"
        try:
            self.dir.mkdir()
        except OSError as exc:
            raise NNEFIOError(f"cannot write in {where}: {exc}") from exc

    def commit(self) -> None:
        try:
            if self.fresh:
                os.rename(self.dir, self.out)
                return
            for label in self.labels:
                target = self.out / f"{label}.dat"
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.dir / f"{label}.dat", target)
        except OSError as exc:
            raise NNEFIOError(f"cannot move the tensors written into {self.out}: {exc}") from exc
        finally:
            self.abort()

    def abort(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class _Progress:
    def __init__(self, what: str, count: int, total_bytes: int) -> None:
        self.what, self.count, self.total = what, count, total_bytes
        self.done = self.done_bytes = 0
        self.t0 = self.last = time.perf_counter()

    def advance(self, count: int, nbytes: int) -> None:
        self.done += count
        self.done_bytes += nbytes
        now = time.perf_counter()
        # INFO at most every 2 seconds (and for the last batch), DEBUG otherwise
        level = logging.INFO if now - self.last >= 2.0 or self.done == self.count else logging.DEBUG
        if level == logging.INFO:
            self.last = now
        LOGGER.log(
            level,
            "%s: %d/%d tensors, %.1f/%.1f MiB written",
            self.what,
            self.done,
            self.count,
            self.done_bytes / MiB,
            self.total / MiB,
        )

    def finish(self, out: Path) -> None:
        elapsed = time.perf_counter() - self.t0
        rate = self.done_bytes / MiB / elapsed if elapsed > 0 else float("inf")
        LOGGER.info(
            "%s: %d tensors (%.1f MiB) written to %s in %.2f s (%.0f MiB/s)",
            self.what,
            self.done,
            self.done_bytes / MiB,
            out,
            elapsed,
            rate,
        )


def _write_all(
    output_dir: PathLike,
    names: Sequence[str],
    sizes: Mapping[str, int],
    load_batch: Callable[[list[str]], Mapping[str, Any]],
    *,
    what: str,
    target: Target,
    bf16: Bf16Policy,
    overwrite: bool,
    batch_bytes: int,
) -> None:
    if batch_bytes <= 0:
        raise InvalidArgumentError(f"batch_bytes must be positive, got {batch_bytes}")
    staging = _Staging(output_dir, names, overwrite)
    progress = _Progress(what, len(names), sum(sizes[n] for n in names))
    try:
        for batch in _batches(names, sizes, batch_bytes):
            _write_batch(staging.dir, batch, load_batch, target=target, bf16=bf16)
            progress.advance(len(batch), sum(sizes[n] for n in batch))
    except BaseException:
        staging.abort()
        raise
    staging.commit()
    progress.finish(staging.out)


def _write_batch(
    directory: Path,
    batch: list[str],
    load_batch: Callable[[list[str]], Mapping[str, Any]],
    *,
    target: Target,
    bf16: Bf16Policy,
) -> None:
    # A function of its own so that the batch's tensors (and the file mapping they view) are
    # released when it returns.
    loaded = load_batch(batch)
    write_dats(directory, {n: _writable(n, loaded[n]) for n in batch}, target=target, bf16=bf16)


# ----------------------------------------------------------------------------------------------
# public API


def export_tensors_to_nnef(
    name_to_tensor: NamedTensors,
    output_dir: PathLike,
    *,
    target: Target = "tract",
    bf16: Bf16Policy = "error",
    overwrite: bool = False,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
) -> dict[str, Any]:
    """Writes each tensor as ``<output_dir>/<name>.dat``, in parallel.

    Args:
        name_to_tensor: name -> tensor (a mapping, or ``(name, tensor)`` pairs). Values are torch
            tensors, numpy arrays, :class:`Q40Tensor` or quantized tensors with a ``to_q4_0()``
            method (written as Q4_0). A ``/`` in a name makes a sub-folder.
        output_dir: the folder to write to; created if missing (its parent must exist).
        target: integer item codes of the ``.dat`` files (``"tract"`` or ``"khronos"``).
        bf16: ``"error"`` refuses bfloat16 tensors; ``"f16"`` / ``"f32"`` casts them.
        overwrite: replace existing ``.dat`` files of the same names.
        batch_bytes: tensors are converted and written about this many bytes at a time.

    Returns:
        name -> tensor, as given.

    Raises:
        NameClashError: two tensors with the same name.
        UnsafePathError: a name that is empty, absolute or with ``..`` (it would escape the folder).
        DTypeError: a dtype NNEF cannot hold (bfloat16 unless ``bf16`` says how to cast, complex, ...).
        MissingFolderError: the parent of ``output_dir`` does not exist.
        OutputExistsError: a ``.dat`` file of that name exists and ``overwrite`` is False.

    Every name and dtype is checked before anything is written, and files are moved into
    ``output_dir`` only once all are written: on error nothing is left behind.

    Example:
        >>> export_tensors_to_nnef({"linear_0.weight": model[0].weight}, "weights")  # doctest: +SKIP
    """
    tensors = _named_items(name_to_tensor)
    names = list(tensors)
    _rust.check_labels(names)
    for name in names:
        _check_value(name, tensors[name], bf16)
    sizes = {name: _nbytes(tensors[name]) for name in names}
    _write_all(
        output_dir,
        names,
        sizes,
        lambda batch: {n: tensors[n] for n in batch},
        what="tensors",
        target=target,
        bf16=bf16,
        overwrite=overwrite,
        batch_bytes=batch_bytes,
    )
    return tensors


def export_tensors_from_disk_to_nnef(
    store_filepath: PathLike,
    output_dir: PathLike,
    filter_key: Callable[[str], bool] | None = None,
    fn_check_found_tensors: Callable[[dict[str, Any]], object] | None = None,
    *,
    target: Target = "tract",
    bf16: Bf16Policy = "error",
    overwrite: bool = False,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
) -> dict[str, Any]:
    """Writes the tensors of a checkpoint file as ``<output_dir>/<name>.dat``.

    Args:
        store_filepath: a ``.safetensors`` file, or a ``.pt``/``.pth``/``.bin``/``.ckpt`` file
            saved with ``torch.save`` holding a state dict or nested dicts (and lists) of tensors;
            nested names are joined with ``.``.
        output_dir: the folder to write to; created if missing (its parent must exist).
        filter_key: ``filter_key(name) -> bool`` selects the tensors to export (default: all).
        fn_check_found_tensors: called with the selected name -> tensor before anything is
            written; an exception it raises propagates (and nothing is written).
        target: integer item codes of the ``.dat`` files (``"tract"`` or ``"khronos"``).
        bf16: ``"error"`` refuses bfloat16 tensors; ``"f16"`` / ``"f32"`` casts them.
        overwrite: replace existing ``.dat`` files of the same names.
        batch_bytes: tensors are read and written about this many bytes at a time.

    Returns:
        name -> torch tensor, for the tensors exported. For ``.safetensors`` they view the file
        through a memory mapping, read only when used.

    ``.safetensors`` files are memory-mapped and written ``batch_bytes`` at a time, each batch
    mapped on its own and released once written: memory stays bounded whatever the file size.
    ``.pt`` files are loaded with ``torch.load(weights_only=True, mmap=True)`` (``mmap`` only for
    the zip format that torch writes by default), so a pickle that would run code is refused.

    Raises:
        NNEFIOError: the file does not exist.
        InvalidArgumentError: a suffix that is neither ``.safetensors`` nor a torch checkpoint.
        FormatError: a corrupt file (bad safetensors header, not a torch checkpoint).
        UnsafeFileError: a torch file holding other objects than tensors and containers (a whole
            ``nn.Module`` saved with ``torch.save(model)``, or a hostile pickle).
        And those of :func:`export_tensors_to_nnef`.
    """
    path = Path(store_filepath)
    if not path.is_file():
        raise NNEFIOError(f"{store_filepath}: no such file")
    selected = filter_key if filter_key is not None else _select_all
    suffix = path.name.lower()
    if suffix.endswith(".safetensors"):
        found, load_batch = _from_safetensors(path, selected)
    elif suffix.endswith(TORCH_SUFFIXES):
        found = {k: v for k, v in _load_torch(path).items() if selected(k)}

        def load_batch(batch: list[str]) -> Mapping[str, Any]:
            return {n: found[n] for n in batch}

    else:
        raise InvalidArgumentError(
            f"{store_filepath}: unknown file kind; expected .safetensors or a torch checkpoint "
            f"({', '.join(TORCH_SUFFIXES)})"
        )
    LOGGER.info("%s: %d tensors selected", path, len(found))
    if fn_check_found_tensors is not None:
        fn_check_found_tensors(found)
    names = list(found)
    _rust.check_labels(names)
    for name in names:
        _check_value(name, found[name], bf16)
    if not names:
        LOGGER.warning("%s: no tensor selected; nothing to write", path)
    sizes = {name: _nbytes(found[name]) for name in names}
    _write_all(
        output_dir,
        names,
        sizes,
        load_batch,
        what=path.name,
        target=target,
        bf16=bf16,
        overwrite=overwrite,
        batch_bytes=batch_bytes,
    )
    return found


def _select_all(name: str) -> bool:
    return True


# ----------------------------------------------------------------------------------------------
# readers


def _from_safetensors(
    path: Path, selected: Callable[[str], bool]
) -> tuple[dict[str, Any], Callable[[list[str]], Mapping[str, Any]]]:
    handle = safe_open(path)
    with handle as f:
        keys = f.offset_keys() if hasattr(f, "offset_keys") else f.keys()  # file order: sequential reads
        found = {k: f.get_tensor(k) for k in keys if selected(k)}  # views of the mapping, nothing read yet

    def load_batch(batch: list[str]) -> Mapping[str, Any]:
        # A mapping per batch, unmapped once the batch is written, so that the pages read do
        # not stay resident (the tensors returned to the caller view another, untouched mapping).
        with safe_open(path) as g:
            return {n: g.get_tensor(n) for n in batch}

    return found, load_batch


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _load_torch(path: Path) -> dict[str, Any]:
    torch = _torch_module()
    import pickle

    def load(mmap: bool) -> Any:
        return torch.load(os.fspath(path), map_location="cpu", weights_only=True, mmap=mmap)

    try:
        try:
            obj = load(True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            LOGGER.debug("%s: not in torch's zip format, loading it without mmap", path)
            obj = load(False)
    except pickle.UnpicklingError as exc:
        message = str(exc)
        if "Weights only load failed" in message:
            glob = _GLOBAL.search(message)
            holds = f" (it holds {glob.group(1)})" if glob else ""
            raise UnsafeFileError(
                f"{path}: refused: the file holds pickled Python objects other than tensors{holds}, and "
                "loading them would run code from the file. If it is a model saved whole with "
                "torch.save(model), save its weights instead: torch.save(model.state_dict(), path)"
            ) from None
        raise FormatError(f"{path}: not a torch checkpoint ({exc})") from exc
    except Exception as exc:  # torch's unpickler fails in many ways on a file that is not its own
        raise FormatError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc})") from exc
    found: dict[str, Any] = {}
    skipped: list[str] = []
    _flatten(obj, "", found, skipped, torch.Tensor, path)
    if skipped:
        LOGGER.info("%s: skipped %d entries that are not tensors (%s)", path, len(skipped), ", ".join(skipped[:5]))
    return found


def _flatten(obj: Any, prefix: str, out: dict[str, Any], skipped: list[str], tensor_type: type, path: Path) -> None:
    if isinstance(obj, tensor_type):
        name = prefix or path.stem
        if name in out:
            raise NameClashError(f"{path}: two tensors are named {name!r} once nested names are joined with '.'")
        out[name] = obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            _flatten(value, f"{prefix}.{key}" if prefix else str(key), out, skipped, tensor_type, path)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _flatten(value, f"{prefix}.{i}" if prefix else str(i), out, skipped, tensor_type, path)
    else:
        skipped.append(prefix or "<root>")
