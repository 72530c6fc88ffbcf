"""Tensor files: turning numpy arrays and torch tensors into NNEF ``.dat`` files and back.

The heavy lifting (headers, parallel writes, zero-copy streaming) happens in the Rust core; this
module only turns torch tensors into numpy views of the same memory, with clear errors for what
NNEF cannot hold.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

import numpy as np

from torch_to_nnef import _rust
from torch_to_nnef.errors import DeviceError, DTypeError

if TYPE_CHECKING:
    import torch

LOGGER = logging.getLogger(__name__)

TensorLike = Union[np.ndarray, "torch.Tensor"]
"""A numpy array or a torch tensor."""

Bf16Policy = Literal["error", "f32", "f16"]
"""What to do with bfloat16 tensors, which NNEF files cannot hold: refuse, or cast."""

Target = Literal["tract", "khronos"]
"""Whose integer codes a .dat file uses (tract: signed 3 / unsigned 2; Khronos: 4 / 1)."""

_NUMPY_KINDS = {"f": (2, 4, 8), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "b": (1,)}

PathLike = Union[str, "os.PathLike[str]"]


def _is_torch_tensor(obj: object) -> bool:
    torch = _torch_if_loaded()
    return torch is not None and isinstance(obj, torch.Tensor)


def _torch_if_loaded() -> Any:
    """The torch module if it is imported already (never imports it)."""
    return sys.modules.get("torch")


def _check_numpy(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype.kind not in _NUMPY_KINDS or array.dtype.itemsize not in _NUMPY_KINDS[array.dtype.kind]:
        raise DTypeError(
            f"{name}: dtype {array.dtype} cannot be stored in NNEF; supported are float16/32/64, "
            "int8..int64, uint8..uint64 and bool: cast it first"
        )
    return array


def as_numpy(tensor: TensorLike, *, name: str = "tensor", bf16: Bf16Policy = "error") -> np.ndarray:
    """Returns a numpy array viewing the same memory as ``tensor`` (no copy for CPU tensors).

    Args:
        tensor: a numpy array or a torch tensor (any device but ``meta``; a tensor on another
            device is copied to the CPU).
        name: used in error messages.
        bf16: ``"error"`` refuses bfloat16 (NNEF has no code for it); ``"f32"`` or ``"f16"``
            casts it.

    Raises:
        DTypeError: a dtype NNEF cannot hold (bf16 unless asked, complex, quantized, ...).
        DeviceError: a tensor on the meta device, which has no data.
    """
    if isinstance(tensor, np.ndarray):
        return _check_numpy(tensor, name)
    if not _is_torch_tensor(tensor):
        raise TypeError(f"{name}: expected a numpy array or a torch tensor, got {type(tensor).__name__}")
    import torch

    t: torch.Tensor = tensor.detach()
    if t.device.type == "meta":
        raise DeviceError(
            f"{name} is on the meta device and holds no data: materialize it first "
            "(e.g. module.to_empty(device='cpu') then load its state dict)"
        )
    if t.layout != torch.strided:
        raise DTypeError(f"{name}: {t.layout} tensors are not supported; call .to_dense() first")
    if t.is_quantized:
        raise DTypeError(
            f"{name}: quantized tensor ({t.dtype}); write its integers with .int_repr() and its "
            "scale and zero point in graph.quant"
        )
    if t.dtype == torch.bfloat16:
        if bf16 == "error":
            raise DTypeError(
                f"{name}: bfloat16 has no NNEF .dat code; cast it (tensor.to(torch.float16) or "
                ".float()), or pass bf16='f16' / bf16='f32' to convert it here"
            )
        t = t.to(torch.float32 if bf16 == "f32" else torch.float16)
    if t.device.type != "cpu":
        LOGGER.debug("copying %s from %s to the CPU", name, t.device)
        t = t.to("cpu")
    if t.is_conj():
        t = t.resolve_conj()
    if t.is_neg():
        t = t.resolve_neg()
    try:
        array = t.numpy()
    except TypeError as exc:
        raise DTypeError(f"{name}: dtype {t.dtype} cannot be stored in NNEF ({exc}); cast it first") from exc
    return _check_numpy(array, name)


def _on_cpu(tensor: object) -> bool:
    if isinstance(tensor, np.ndarray) or isinstance(tensor, _rust.Q40Tensor):
        return True
    device = getattr(tensor, "device", None)
    return device is None or device.type in ("cpu", "meta")


def writable(tensor: object, name: str, bf16: Bf16Policy) -> np.ndarray | _rust.Q40Tensor:
    """What the Rust writers take: a Q4_0 tensor as is, anything else as a host numpy array."""
    if isinstance(tensor, _rust.Q40Tensor):
        return tensor
    return as_numpy(tensor, name=name, bf16=bf16)  # type: ignore[arg-type]


def write_dat(
    path: PathLike,
    tensor: TensorLike | _rust.Q40Tensor,
    *,
    target: Target = "tract",
    q4_0_legacy: bool = False,
    overwrite: bool = False,
    bf16: Bf16Policy = "error",
) -> Path:
    """Writes one tensor to an NNEF ``.dat`` file, atomically.

    Args:
        path: the file to write; its folder must exist.
        tensor: numpy array, torch tensor (contiguous or not) or Q4_0 tensor.
        target: integer item codes to use (``"tract"`` or ``"khronos"``).
        q4_0_legacy: write Q4_0 in the layout of tract < 0.21.11 (item type 0x2040).
        overwrite: replace an existing file (otherwise :class:`OutputExistsError`).
        bf16: see :func:`as_numpy`.

    Returns:
        The path written.
    """
    prepared = writable(tensor, str(path), bf16)
    _rust.write_dat(os.fspath(path), prepared, flavor=target, q4_0_legacy=q4_0_legacy, overwrite=overwrite)
    return Path(path)


def write_dats(
    directory: PathLike,
    tensors: Mapping[str, TensorLike | _rust.Q40Tensor],
    *,
    target: Target = "tract",
    q4_0_legacy: bool = False,
    overwrite: bool = False,
    bf16: Bf16Policy = "error",
) -> dict[str, Path]:
    """Writes many tensors as ``<directory>/<label>.dat`` in parallel.

    A ``/`` in a label makes sub-folders. The directory is created if missing (its parent must
    exist). Every label, dtype and size is checked before anything is written. Tensors on the
    CPU are written in parallel straight from their memory; tensors on another device are then
    copied to the CPU and written one at a time, so at most one of them is held in host memory.

    Returns:
        label -> path written.
    """
    labels = list(tensors)
    _rust.check_labels(labels)
    for label in labels:  # device tensors checked up front on empty slices: nothing written if one fails
        t: Any = tensors[label]
        if not _on_cpu(t):
            as_numpy(t.detach().reshape(-1)[:0], name=label, bf16=bf16)
    local = {k: writable(v, k, bf16) for k, v in tensors.items() if _on_cpu(v)}
    _rust.write_dats(os.fspath(directory), local, flavor=target, q4_0_legacy=q4_0_legacy, overwrite=overwrite)
    for label, t in tensors.items():
        if label in local:
            continue
        path = Path(directory, f"{label}.dat")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_dat(path, t, target=target, q4_0_legacy=q4_0_legacy, overwrite=overwrite, bf16=bf16)
    return {label: Path(directory, f"{label}.dat") for label in labels}


def read_dat(path: PathLike) -> np.ndarray | _rust.Q40Tensor:
    """Reads a ``.dat`` file: a numpy array, or a :class:`Q40Tensor` for Q4_0 files.

    The header is validated against the file size before any allocation, so a corrupt or hostile
    file raises :class:`FormatError` instead of exhausting memory.
    """
    return _rust.read_dat(os.fspath(path))
