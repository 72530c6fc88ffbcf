"""Q4_0 block quantization (GGML ``block_q4_0``), byte-identical to tract's own quantizer.

Blocks of 32 consecutive values (of the row-major flattened tensor; each row, the dimensions after
the first, holds whole blocks) are stored in 18 bytes: an f16 scale
``d = m / -8`` (``m`` the value of largest magnitude, with its sign) and 32 4-bit codes
``q = min(15, trunc(x / d + 8.5))``; values decode as ``(q - 8) * d``.

Non-finite input: NaN values encode as code 0 (decoding to ``-8 * d``) and are ignored when
choosing the scale; a block holding an infinity decodes to infinities and NaNs. Check weights
with ``torch.isfinite`` first when that matters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from torch_to_nnef import _rust
from torch_to_nnef._rust import Q40Tensor
from torch_to_nnef.errors import DTypeError
from torch_to_nnef.io.dat import TensorLike, as_numpy

if TYPE_CHECKING:
    import torch

__all__ = ["Q40Tensor", "quantize_q4_0", "tract_reference_q4_0"]


def quantize_q4_0(tensor: TensorLike, *, threads: int | None = None, name: str = "tensor") -> Q40Tensor:
    """Quantizes an f32, f16 or bf16 tensor of rank >= 2 to Q4_0, on all cores.

    Args:
        tensor: numpy array or torch tensor; the product of its dimensions after the first must be
            a multiple of 32 (e.g. ``[N, K]`` with ``K % 32 == 0``, or a conv kernel ``[O, I, 3, 3]``
            with ``I * 9 % 32 == 0``).
        threads: number of threads (default: all cores; 1 runs on the calling thread).
        name: used in error messages.

    Raises:
        ShapeError: rank below 2, or rows whose size is not a multiple of 32.
        DTypeError: a dtype other than f32, f16 or bf16.
    """
    if not isinstance(tensor, np.ndarray):
        import torch

        t: torch.Tensor = tensor.detach()
        if t.dtype == torch.bfloat16:
            bits = as_numpy(t.contiguous().view(torch.int16), name=name)
            return Q40Tensor.quantize(bits, bf16=True, threads=threads, name=name)
        array = as_numpy(t, name=name)
    else:
        array = as_numpy(tensor, name=name)
    if array.dtype not in (np.float32, np.float16):
        raise DTypeError(f"{name}: Q4_0 quantizes float32, float16 or bfloat16 values, not {array.dtype}")
    return Q40Tensor.quantize(array, threads=threads, name=name)


def tract_reference_q4_0(array: np.ndarray) -> bytes:
    """tract-linalg's own Q4_0 quantizer (one thread): the reference for checks and benchmarks."""
    return _rust.tract_q4_0_reference(np.ascontiguousarray(array))
