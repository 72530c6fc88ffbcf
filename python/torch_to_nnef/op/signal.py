"""Translations of the signal-processing ops: FFTs, STFT and its inverse, window functions, and the
complex values around them: views (``view_as_real``, ``.real``/``.imag``, reshapes, slices, rolls), arithmetic
(``+ - * /``, ``exp``, ``log``, ``sqrt``, ``pow``, ``abs``, ``angle``, ``polar``, ``matmul``) and reductions.

A complex value is held in NNEF as a real tensor with a trailing axis of size 2 (real and imaginary
parts), as tract's own FFT operators take it; the capture keys every node touching one in the
``complex::`` namespace, so only the translations below see that layout.

TractNNEF runs forward and inverse complex FFTs with ``tract_core_fft`` (any length, dynamic
included) and framed FFTs with ``tract_core_stft``. The NNEF specification has no FFT: there the
transforms are DFTs as a matmul against a constant cos/sin matrix (static lengths) and the STFT a
strided ``conv`` whose filters are the windowed DFT rows. ``irfft`` and ``istft`` are such products
for both targets (a matmul; for ``istft`` then an overlap-add of shifted, padded blocks).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from torch_to_nnef.check.versions import CUMSUM_TRACT
from torch_to_nnef.errors import TranslationError
from torch_to_nnef.ir import COMPLEX_DTYPES, Value
from torch_to_nnef.nnef.builder import Ref, dim_literal
from torch_to_nnef.op import common
from torch_to_nnef.op.common import current_node, dim_ref, wrap_axis
from torch_to_nnef.op.elementwise import atan2
from torch_to_nnef.op.linalg import einsum_ref
from torch_to_nnef.op.registry import Context, register, translate_node
from torch_to_nnef.op.shape import pad_nd, product_of, roll_axis

_NORMS = ("backward", "ortho", "forward")


def _parts_dtype(v: Value) -> str:
    """The real dtype holding ``v``'s values (the parts' dtype for a complex value)."""
    return COMPLEX_DTYPES.get(v.dtype, v.dtype)


def _is_complex(v: Value) -> bool:
    return v.dtype in COMPLEX_DTYPES


def _static_value(ctx: Context, size: Any, what: str) -> int:
    """One size, an argument (a transform length ``n``, a window length) or a dimension, as an int; when it is
    symbolic, an error that says to export it static or to use TractNNEF (:func:`common.static_sizes` checks
    the axes of a tensor).
    """
    if not isinstance(size, int):
        raise TranslationError(
            f"{ctx.where()} needs a static {what} (got {size!r}); "
            "export with that axis static, or use TractNNEF where it may be dynamic"
        )
    return size


def _as_complex(ctx: Context, v: Value) -> Ref:
    """``v`` in the complex layout: a real tensor gets a zero imaginary part on a new trailing axis."""
    if _is_complex(v):
        return Ref(ctx.ref(v))
    g = ctx.g
    x = g.op("unsqueeze", ctx.ref(v), axes=[v.rank], out=v.name + "_re")
    return g.op("pad", x, padding=[(0, 0)] * v.rank + [(0, 1)], border="constant", value=0.0, out=v.name + "_complex")


def _scale(n: int, norm: str | None, inverse: bool) -> float:
    """The factor torch applies to a transform of length ``n`` under ``norm``."""
    norm = norm or "backward"
    if norm == "ortho":
        return 1.0 / math.sqrt(n)
    if norm == ("backward" if inverse else "forward"):
        return 1.0 / n
    return 1.0


def _check_norm(ctx: Context, norm: Any) -> None:
    if norm is not None and norm not in _NORMS:
        raise TranslationError(f"{ctx.where()}: unknown fft norm {norm!r}: use one of {', '.join(_NORMS)}")


def _variable(ctx: Context, array: np.ndarray, dtype: str, label: str) -> Ref:
    """A constant of the given real dtype, labelled by what it holds (one label per content)."""
    return ctx.g.variable(np.ascontiguousarray(array.astype(dtype.replace("f", "float"))), f"{label}_{dtype}")


def _angles(rows: int, cols: int, n: int) -> np.ndarray:
    """``2 pi (j k mod n) / n`` for j < rows, k < cols (the exact phase of each DFT term)."""
    j = np.arange(rows, dtype=np.int64)[:, None]
    k = np.arange(cols, dtype=np.int64)[None, :]
    return 2.0 * np.pi * ((j * k) % n) / n


def _dft_matrix(m: int, n: int, bins: int, inverse: bool, complex_in: bool, scale: float) -> np.ndarray:
    """The matrix of an ``n``-point DFT read from ``m`` samples (the ones past ``n`` ignored, the
    missing ones zeros), giving ``bins`` interleaved (re, im) outputs; complex inputs interleaved too.
    """
    theta = _angles(min(m, n), bins, n) * (1.0 if inverse else -1.0)
    cos, sin = np.cos(theta) * scale, np.sin(theta) * scale
    if not complex_in:
        matrix = np.zeros((m, 2 * bins))
        matrix[: min(m, n), 0::2], matrix[: min(m, n), 1::2] = cos, sin
        return matrix
    matrix = np.zeros((2 * m, 2 * bins))
    used = 2 * min(m, n)
    matrix[0:used:2, 0::2], matrix[1:used:2, 0::2] = cos, -sin  # real part of the output
    matrix[0:used:2, 1::2], matrix[1:used:2, 1::2] = sin, cos  # imaginary part
    return matrix


def _irfft_matrix(m: int, n: int, scale: float) -> np.ndarray:
    """The matrix of a real inverse DFT of ``n`` samples from ``m`` interleaved one-sided bins: the
    bins past ``n // 2`` ignored, the others but DC and Nyquist counted twice (Hermitian symmetry).
    """
    used = min(m, n // 2 + 1)
    weight = np.full(used, 2.0)
    weight[0] = 1.0
    if n % 2 == 0 and used == n // 2 + 1:
        weight[-1] = 1.0
    theta = _angles(used, n, n)
    matrix = np.zeros((2 * m, n))
    matrix[0 : 2 * used : 2] = np.cos(theta) * weight[:, None] * scale
    matrix[1 : 2 * used : 2] = -np.sin(theta) * weight[:, None] * scale
    return matrix


def _to_last(ctx: Context, x: Ref, rank: int, axis: int, complex_layout: bool) -> tuple[Ref, list[int] | None]:
    """Moves ``axis`` to the last logical position (before the parts axis); returns the permutation."""
    if axis == rank - 1:
        return x, None
    perm = [i for i in range(rank) if i != axis] + [axis] + ([rank] if complex_layout else [])
    return ctx.g.op("transpose", x, axes=perm), perm


def _from_last(ctx: Context, y: Ref, perm: list[int] | None, out: str) -> Ref:
    """Undoes :func:`_to_last` (``perm`` over the logical axes; a parts axis after them is left in place)."""
    if perm is None:
        return ctx.g.op("copy", y, out=out)
    inverse = [perm.index(i) for i in range(len(perm))]
    return ctx.g.op("transpose", y, axes=inverse, out=out)


def _matmul_dft(ctx: Context, x: Value, axis: int, matrix: np.ndarray, label: str, complex_out: bool) -> Ref:
    """Applies ``matrix`` along ``axis`` of ``x`` (interleaved parts in and out where complex) into the output."""
    g, out = ctx.g, ctx.out
    complex_in = _is_complex(x)
    y, rank = ctx.ref(x), x.rank
    if rank == 1:  # matmul takes matrices: a row of one
        y, rank, axis = g.op("unsqueeze", y, axes=[0]), 2, 1
    y, perm = _to_last(ctx, y, rank, axis, complex_in)
    if complex_in:
        y = g.op("reshape", y, shape=[matrix.shape[0]], axis_start=rank - 1, axis_count=2)
    weights = _variable(ctx, matrix.reshape((1,) * (rank - 2) + matrix.shape), _parts_dtype(out), f"{label}_r{rank}")
    y = g.op("matmul", y, weights, transposeA=False, transposeB=False)
    if complex_out:
        y = g.op("reshape", y, shape=[matrix.shape[1] // 2, 2], axis_start=rank - 1, axis_count=1)
    if x.rank == 1:
        return g.op("squeeze", y, axes=[0], out=out.name)
    if perm is not None:
        perm = perm[:rank]  # the parts axis, if any, stays last
    return _from_last(ctx, y, perm, out.name)


def _fft(ctx: Context, x: Value, n: Any, dim: int, norm: str | None, inverse: bool, onesided: bool) -> Ref:
    """fft/ifft/rfft: the transform of length ``n`` along ``dim`` of a real or complex input."""
    _check_norm(ctx, norm)
    axis = wrap_axis(dim, x.rank)
    size = x.shape[axis]
    if ctx.tract:
        return _tract_fft(ctx, x, axis, size if n is None else n, norm, inverse, onesided)
    m = _static_value(ctx, size, f"length on axis {axis}")
    n = m if n is None else _static_value(ctx, n, "transform length n")
    bins = n // 2 + 1 if onesided else n
    scale = _scale(n, norm, inverse)
    matrix = _dft_matrix(m, n, bins, inverse, _is_complex(x), scale)
    label = f"{'idft' if inverse else 'dft'}_{'c' if _is_complex(x) else 'r'}{m}_n{n}_b{bins}_s{scale:.6g}"
    return _matmul_dft(ctx, x, axis, matrix, label, complex_out=True)


def _tract_fft(ctx: Context, x: Value, axis: int, n: Any, norm: str | None, inverse: bool, onesided: bool) -> Ref:
    """``tract_core_fft`` on ``x`` brought to ``n`` samples along ``axis`` (cropped or zero-padded)."""
    g, out = ctx.g, ctx.out
    g.need("tract_registry tract_core")
    y = _as_complex(ctx, x)
    size = x.shape[axis]
    if n != size:
        m = _static_value(ctx, size, f"length on axis {axis} when n is given")
        n = _static_value(ctx, n, "transform length n")
        if m > n:
            y = g.op("slice", y, axes=[axis], begin=[0], end=[n], stride=[1])
        else:
            pads = [(0, n - m if i == axis else 0) for i in range(x.rank + 1)]
            y = g.op("pad", y, padding=pads, border="constant", value=0.0)
    y = g.op("tract_core_fft", y, axis=axis, inverse=inverse)
    if isinstance(n, int):
        scale = _scale(n, norm, inverse)
    elif _scale(2, norm, inverse) == 1.0:
        scale = 1.0
    else:
        raise TranslationError(
            f"{ctx.where()} over a dynamic length with norm={norm!r} is not supported yet "
            "(its scale depends on the length): scale the result in the model instead"
        )
    if scale != 1.0:
        y = g.op("mul", y, scale)
    if onesided:
        bins = n // 2 + 1 if isinstance(n, int) else Ref(dim_literal(f"({n})/2+1"))
        y = g.op("slice", y, axes=[axis], begin=[0], end=[bins], stride=[1])
    return g.op("copy", y, out=out.name)


@register("complex::fft_fft")
def aten_fft_fft(ctx: Context, self: Value, n: Any = None, dim: int = -1, norm: str | None = None) -> Ref:
    """fft_fft(Tensor self, SymInt? n=None, int dim=-1, str? norm=None) -> Tensor."""
    return _fft(ctx, self, n, dim, norm, inverse=False, onesided=False)


@register("complex::fft_ifft")
def aten_fft_ifft(ctx: Context, self: Value, n: Any = None, dim: int = -1, norm: str | None = None) -> Ref:
    """fft_ifft(Tensor self, SymInt? n=None, int dim=-1, str? norm=None) -> Tensor."""
    return _fft(ctx, self, n, dim, norm, inverse=True, onesided=False)


@register("complex::fft_rfft")
def aten_fft_rfft(ctx: Context, self: Value, n: Any = None, dim: int = -1, norm: str | None = None) -> Ref:
    """fft_rfft(Tensor self, SymInt? n=None, int dim=-1, str? norm=None) -> Tensor: the n // 2 + 1 first bins."""
    if _is_complex(self):
        raise TranslationError(f"{ctx.where()}: rfft takes a real input; use torch.fft.fft for a complex one")
    return _fft(ctx, self, n, dim, norm, inverse=False, onesided=True)


@register("complex::fft_irfft", "aten::fft_irfft")
def aten_fft_irfft(ctx: Context, self: Value, n: Any = None, dim: int = -1, norm: str | None = None) -> Ref:
    """fft_irfft(Tensor self, SymInt? n=None, int dim=-1, str? norm=None) -> Tensor: real, n = 2 (m - 1) by default.

    A real inverse DFT as one matmul (static lengths), for both targets; a real input is read as bins
    with no imaginary part.
    """
    x = self
    _check_norm(ctx, norm)
    axis = wrap_axis(dim, x.rank)
    m = _static_value(ctx, x.shape[axis], f"number of bins on axis {axis}")
    length = 2 * (m - 1) if n is None else _static_value(ctx, n, "output length n")
    scale = _scale(length, norm, inverse=True)
    matrix = _irfft_matrix(m, length, scale)
    if not _is_complex(x):
        matrix = matrix[0::2]  # the rows of the real parts
    label = f"irdft_{'c' if _is_complex(x) else 'r'}{m}_n{length}_s{scale:.6g}"
    return _matmul_dft(ctx, x, axis, matrix, label, complex_out=False)


def _known_tensor(ctx: Context, v: Value) -> np.ndarray | None:
    """The contents of ``v`` when it is a constant of the document (a weight, a buffer, a window)."""
    ref = ctx.ref(v)
    for label, tensor in list(ctx.g.variables.items()):
        if ctx.g.variable(tensor, label) == ref:  # the same label gives back the same ref
            if hasattr(tensor, "detach"):
                tensor = tensor.detach().cpu().double().numpy()
            return np.asarray(tensor, dtype=np.float64)
    return None


def _window(ctx: Context, window: Value | None, win_length: int, n_fft: int) -> np.ndarray:
    """The window zero-padded to ``n_fft`` on both sides (as torch centres it); ones by default."""
    if window is None:
        values = np.ones(win_length)
    else:
        known = _known_tensor(ctx, window)
        if known is None:
            raise TranslationError(
                f"{ctx.where()}: the window of {current_node(ctx).kind.split('::')[1]} must be a constant (a buffer, a "
                "parameter or torch.hann_window(...) and its siblings); register a computed window as a buffer"
            )
        values = known.reshape(-1)
    if values.shape[0] > n_fft:
        raise TranslationError(f"{ctx.where()}: a window of {values.shape[0]} samples is longer than n_fft={n_fft}")
    left = (n_fft - values.shape[0]) // 2
    padded = np.zeros(n_fft)
    padded[left : left + values.shape[0]] = values
    return padded


def _framing(
    ctx: Context, n_fft: int, hop_length: int | None, win_length: int | None, window: Value | None
) -> tuple[int, int, np.ndarray]:
    """(n_fft, hop, window padded to n_fft) of an stft or istft: a hop of ``n_fft // 4`` and a window of ones
    over ``n_fft`` samples by default.
    """
    n_fft = int(n_fft)
    hop = hop_length or n_fft // 4
    return n_fft, int(hop), _window(ctx, window, win_length or n_fft, n_fft)


@register("complex::stft", "aten::stft")
def aten_stft(
    ctx: Context,
    self: Value,
    n_fft: int,
    hop_length: int | None = None,
    win_length: int | None = None,
    window: Value | None = None,
    normalized: bool = False,
    onesided: bool | None = None,
    return_complex: bool | None = None,
    align_to_window: bool | None = None,
) -> Ref:
    """stft(Tensor self, int n_fft, int? hop_length=None, int? win_length=None, Tensor? window=None,
    bool normalized=False, bool? onesided=None, bool? return_complex=None, bool? align_to_window=None) -> Tensor.

    Frames of ``n_fft`` samples every ``hop_length``, windowed and transformed: ``[B?, bins, frames]``
    (the padding of ``center=True`` is a separate pad node). The window must be a constant.
    """
    x, out = self, ctx.out
    if _is_complex(x):
        raise TranslationError(f"{ctx.where()}: stft of a complex signal is not supported yet")
    if align_to_window:
        raise TranslationError(f"{ctx.where()}: stft with align_to_window=True is not supported yet")
    n_fft, hop, taper_values = _framing(ctx, n_fft, hop_length, win_length, window)
    onesided = not _is_complex(x) if onesided is None else bool(onesided)
    bins = n_fft // 2 + 1 if onesided else n_fft
    scale = 1.0 / math.sqrt(n_fft) if normalized else 1.0
    dtype = _parts_dtype(out)
    g = ctx.g
    batched = x.rank == 2
    if ctx.tract:
        g.need("tract_registry tract_core")
        if isinstance(window, Value) and window.shape == (n_fft,) and window.dtype == dtype:
            taper = ctx.ref(window)  # the constant itself, already in the document
        else:
            taper = _variable(ctx, taper_values, dtype, f"stft_window_{_digest(taper_values)}")
        y = g.op("tract_core_stft", _as_complex(ctx, x), axis=x.rank - 1, frame=n_fft, stride=hop, window=taper)
        if onesided:
            y = g.op("slice", y, axes=[x.rank], begin=[0], end=[bins], stride=[1])
        y = g.op("transpose", y, axes=[0, 2, 1, 3] if batched else [1, 0, 2])
        return g.op("mul", y, scale, out=out.name) if scale != 1.0 else g.op("copy", y, out=out.name)
    # The specification: a strided conv whose 2 * bins filters are the windowed DFT rows.
    theta = -_angles(bins, n_fft, n_fft)
    filters = np.zeros((2 * bins, 1, n_fft))
    filters[0::2, 0] = np.cos(theta) * taper_values * scale
    filters[1::2, 0] = np.sin(theta) * taper_values * scale
    label = f"stft_filters_{n_fft}_b{bins}_s{scale:.6g}_{_digest(taper_values)}"
    signal = g.op("unsqueeze", ctx.ref(x), axes=[0, 1] if not batched else [1])
    y = g.op("conv", signal, _variable(ctx, filters, dtype, label), 0.0, stride=[hop], padding=[(0, 0)])
    y = g.op("reshape", y, shape=[bins, 2], axis_start=1, axis_count=1)
    y = g.op("transpose", y, axes=[0, 1, 3, 2])
    return g.op("squeeze", y, axes=[0], out=out.name) if not batched else g.op("copy", y, out=out.name)


def _digest(window: np.ndarray) -> str:
    """A short content label for a window (constants are shared by label)."""
    return hashlib.sha1(np.ascontiguousarray(window, dtype=np.float64).tobytes()).hexdigest()[:10]


@register("complex::istft")
def aten_istft(
    ctx: Context,
    self: Value,
    n_fft: int,
    hop_length: int | None = None,
    win_length: int | None = None,
    window: Value | None = None,
    center: bool = True,
    normalized: bool = False,
    onesided: bool | None = None,
    length: int | None = None,
    return_complex: bool = False,
) -> Ref:
    """istft(Tensor self, int n_fft, int? hop_length=None, int? win_length=None, Tensor? window=None,
    bool center=True, bool normalized=False, bool? onesided=None, int? length=None, bool return_complex=False) ->
    Tensor.

    Each frame's windowed inverse DFT (one matmul), overlap-added, divided by the overlap-added squared
    window and cropped as torch crops it.
    """
    x, out = self, ctx.out
    if return_complex:
        raise TranslationError(f"{ctx.where()}: istft with return_complex=True gives a complex output: not supported")
    n_fft, hop, taper = _framing(ctx, n_fft, hop_length, win_length, window)
    onesided = x.shape[-2] != n_fft if onesided is None else bool(onesided)
    start = n_fft // 2 if center else 0
    bins, frames = _static_value(ctx, x.shape[-2], "number of frequency bins"), x.shape[-1]
    if not isinstance(frames, int) and not ctx.tract:
        raise TranslationError(f"{ctx.where()}: istft over a dynamic number of frames needs TractNNEF")
    scale = (math.sqrt(n_fft) if normalized else 1.0) / n_fft
    if onesided:
        basis = _irfft_matrix(bins, n_fft, scale)
    else:
        basis = _dft_matrix(bins, n_fft, n_fft, True, True, scale)[:, 0::2]  # the real part
    blocks = -(-n_fft // hop)  # each frame spans this many hops (zeros past n_fft)
    matrix = np.zeros((2 * bins, blocks * hop))
    matrix[:, :n_fft] = basis * taper[None, :]
    dtype = _parts_dtype(out)
    g = ctx.g
    spec = ctx.ref(x) if x.rank == 3 else g.op("unsqueeze", ctx.ref(x), axes=[0])
    spec = g.op("transpose", spec, axes=[0, 2, 1, 3])  # [B, frames, bins, 2]
    spec = g.op("reshape", spec, shape=[2 * bins], axis_start=2, axis_count=2)
    label = f"istft_basis_{n_fft}_b{bins}_h{hop}_{'o' if onesided else 't'}_s{scale:.6g}_{_digest(taper)}"
    y = g.op("matmul", spec, _variable(ctx, matrix[None], dtype, label), transposeA=False, transposeB=False)
    y = _overlap_add(ctx, y, blocks, hop)
    squares = np.zeros((1, 1, blocks * hop))
    squares[0, 0, :n_fft] = taper**2
    envelope = _variable(ctx, squares, dtype, f"istft_squared_window_{blocks * hop}_{_digest(taper)}")
    envelope = g.op("tile", envelope, repeats=[1, dim_ref(frames), 1])
    envelope = _overlap_add(ctx, envelope, blocks, hop)
    keep = out.shape[-1]
    available: Any
    if isinstance(frames, int):
        total = (frames - 1) * hop + n_fft
        available = total - 2 * start if length is None else min(int(length), total - start)
        end: Any = start + available
    else:
        end = Ref(dim_literal(f"({frames}-1)*{hop}+{n_fft - start}")) if length is None else int(length) + start
        available = keep
    y = g.op("slice", y, axes=[1], begin=[start], end=[end], stride=[1])
    envelope = g.op("slice", envelope, axes=[1], begin=[start], end=[end], stride=[1])
    y = g.op("div", y, envelope)
    if isinstance(keep, int) and isinstance(available, int) and keep > available:  # length past the signal: zeros
        y = g.op("pad", y, padding=[(0, 0), (0, keep - available)], border="constant", value=0.0)
    return g.op("squeeze", y, axes=[0], out=out.name) if x.rank == 2 else g.op("copy", y, out=out.name)


def _overlap_add(ctx: Context, frames: Ref, blocks: int, hop: int) -> Ref:
    """``[B, F, blocks * hop]`` frames, each starting ``hop`` after the previous, summed into ``[B, (F + blocks - 1)
    * hop]``: block k of every frame shifted by k frames, then added.
    """
    g = ctx.g
    split = g.op("reshape", frames, shape=[blocks, hop], axis_start=2, axis_count=1)  # [B, F, blocks, hop]
    total: Ref | None = None
    for k in range(blocks):
        block = g.op("squeeze", g.op("slice", split, axes=[2], begin=[k], end=[k + 1], stride=[1]), axes=[2])
        if blocks > 1:
            block = g.op("pad", block, padding=[(0, 0), (k, blocks - 1 - k), (0, 0)], border="constant", value=0.0)
        total = block if total is None else g.op("add", total, block)
    assert total is not None
    return g.op("reshape", total, shape=[-1], axis_start=1, axis_count=2)


@register("aten::unfold_backward")
def aten_unfold_backward(ctx: Context, grad_in: Value, input_sizes: list[Any], dim: int, size: int, step: int) -> Ref:
    """unfold_backward(Tensor grad_in, SymInt[] input_sizes, int dim, int size, int step) -> Tensor: frames of
    ``size`` samples taken every ``step`` along the last axis (``grad_in`` is ``[..., frames, size]``),
    overlap-added back into a tensor of ``input_sizes``, over which frames with size-1 leading axes broadcast
    (torch 2.5 lowers istft to it).
    """
    grad, out, g = grad_in, ctx.out, ctx.g
    rank = len(input_sizes)
    if dim % rank != rank - 1:
        raise TranslationError(f"{ctx.where()}: unfold_backward is supported along the last axis only (got dim={dim})")
    shape = [_static_value(ctx, d, "shape") for d in out.shape]
    frames = _static_value(ctx, grad.shape[-2], "number of frames")
    blocks = -(-size // step)  # each frame spans this many steps (zeros past size)
    y = g.op("reshape", ctx.ref(grad), shape=[-1, frames, size])
    if blocks * step > size:
        y = g.op("pad", y, padding=[(0, 0), (0, 0), (0, blocks * step - size)], border="constant", value=0.0)
    y = _overlap_add(ctx, y, blocks, step)
    total, length = (frames + blocks - 1) * step, shape[-1]
    if total > length:
        y = g.op("slice", y, axes=[1], begin=[0], end=[length], stride=[1])
    elif total < length:
        y = g.op("pad", y, padding=[(0, 0), (0, length - total)], border="constant", value=0.0)
    lead = [_static_value(ctx, d, "shape") for d in grad.shape[:-2]]
    lead = [1] * (rank - 1 - len(lead)) + lead  # frames broadcast over the leading axes, as torch adds them
    if lead == shape[:-1]:
        return g.op("reshape", y, shape=shape, out=out.name)
    y = g.op("reshape", y, shape=[*lead, length])
    return g.op("tile", y, repeats=[s // d for s, d in zip(shape, [*lead, length])], out=out.name)


def _window_constant(ctx: Context, window_length: int, *options: Any) -> Ref:
    """The window of the node's kind (``hann_window``...) with torch's own values: ``options`` are its positional
    arguments after the length (``periodic``, ``alpha``, ``beta``).
    """
    import torch

    name = current_node(ctx).kind.split("::", 1)[1]
    length = _static_value(ctx, window_length, "window length")
    out = ctx.out
    values = getattr(torch, name)(length, *options, dtype=torch.float64).numpy()
    label = "_".join(str(a) for a in options)
    array = values.astype(_parts_dtype(out).replace("f", "float"))
    return ctx.g.variable(array, f"{name}_{length}_{label}_{out.dtype}".rstrip("_"))


@register("aten::hann_window", "aten::hamming_window", "aten::blackman_window", "aten::bartlett_window")
def aten_window(
    ctx: Context,
    window_length: int,
    *,
    dtype: Any = None,
    layout: Any = None,
    device: Any = None,
    pin_memory: bool | None = None,
) -> Ref:
    """hann_window(int window_length, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool?
    pin_memory=None) -> Tensor; hamming_window, blackman_window, bartlett_window alike: a constant computed by
    torch itself (in the output's dtype).
    """
    return _window_constant(ctx, window_length)


@register(
    "aten::hann_window.periodic",
    "aten::hamming_window.periodic",
    "aten::blackman_window.periodic",
    "aten::bartlett_window.periodic",
)
def aten_window_periodic(
    ctx: Context,
    window_length: int,
    periodic: bool,
    *,
    dtype: Any = None,
    layout: Any = None,
    device: Any = None,
    pin_memory: bool | None = None,
) -> Ref:
    """hann_window.periodic(int window_length, bool periodic, *, ScalarType? dtype=None, Layout? layout=None,
    Device? device=None, bool? pin_memory=None) -> Tensor; hamming_window, blackman_window, bartlett_window alike: a
    constant computed by torch itself.
    """
    return _window_constant(ctx, window_length, periodic)


@register("aten::hamming_window.periodic_alpha")
def aten_hamming_window_periodic_alpha(
    ctx: Context,
    window_length: int,
    periodic: bool,
    alpha: float,
    *,
    dtype: Any = None,
    layout: Any = None,
    device: Any = None,
    pin_memory: bool | None = None,
) -> Ref:
    """hamming_window.periodic_alpha(int window_length, bool periodic, float alpha, *, ScalarType? dtype=None,
    Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor: a constant computed by torch itself.
    """
    return _window_constant(ctx, window_length, periodic, alpha)


@register("aten::hamming_window.periodic_alpha_beta")
def aten_hamming_window_periodic_alpha_beta(
    ctx: Context,
    window_length: int,
    periodic: bool,
    alpha: float,
    beta: float,
    *,
    dtype: Any = None,
    layout: Any = None,
    device: Any = None,
    pin_memory: bool | None = None,
) -> Ref:
    """hamming_window.periodic_alpha_beta(int window_length, bool periodic, float alpha, float beta, *, ScalarType?
    dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor: a constant computed by
    torch itself.
    """
    return _window_constant(ctx, window_length, periodic, alpha, beta)


@register("complex::view_as_real", "complex::view_as_complex", "complex::alias", "complex::detach")
def aten_complex_alias(ctx: Context, self: Value) -> Ref:
    """view_as_real(Tensor self) -> Tensor; view_as_complex, alias, detach alike: the complex layout already holds
    the parts on a trailing axis, a copy.
    """
    return ctx.g.op("copy", ctx.ref(self), out=ctx.out.name)


@register("complex::clone")
def aten_complex_clone(ctx: Context, self: Value, *, memory_format: Any = None) -> Ref:
    """clone(Tensor self, *, MemoryFormat? memory_format=None) -> Tensor of a complex tensor: a copy."""
    return ctx.g.op("copy", ctx.ref(self), out=ctx.out.name)


@register("complex::abs")
def aten_complex_abs(ctx: Context, self: Value) -> Ref:
    """abs(Tensor self) -> Tensor of a complex tensor: the modulus sqrt(re^2 + im^2)."""
    g = ctx.g
    modulus = g.op("sqrt", _squared_modulus(ctx, ctx.ref(self), self.rank))
    return g.op("squeeze", modulus, axes=[self.rank], out=ctx.out.name)


@register("complex::_conj", "complex::_conj_physical", "complex::conj_physical")
def aten_conj(ctx: Context, self: Value) -> Ref:
    """_conj(Tensor self) -> Tensor; _conj_physical, conj_physical alike: the conjugate (the imaginary part
    negated).
    """
    out = ctx.out
    return _conjugate(ctx, ctx.ref(self), self.rank, _parts_dtype(out), out=out.name)


@register("aten::_neg_view")
def aten_neg_view(ctx: Context, self: Value) -> Ref:
    """_neg_view(Tensor self) -> Tensor: the negation (as ``.imag`` of a conjugate leaves it)."""
    return ctx.g.op("neg", ctx.ref(self), out=ctx.out.name)


# Views, gathers and reductions that move or sum whole elements along the logical axes: the real translations
# index the logical axes only (an NNEF transpose leaves the axes past its list in place; a stack, a slice or a
# reduction names its axes), so the parts axis stays last.


def _by_real_translation(ctx: Context, *args: Any, **keywords: Any) -> Any:
    """The complex node translated by the ATen translation of its operator and overload (``aten::slice.Tensor``
    for ``complex::slice.Tensor``), given these arguments; under the ATen kind, which some translations read
    (mean and sum share one).
    """
    node = current_node(ctx)
    kind = "aten::" + node.kind.split("::", 1)[1]
    return translate_node(ctx, dataclasses.replace(node, kind=kind, args=(*args, keywords) if keywords else args))


@register("complex::slice.Tensor")
def aten_complex_slice(
    ctx: Context, self: Value, dim: int = 0, start: Any = None, end: Any = None, step: Any = 1
) -> Any:
    """slice.Tensor(Tensor self, int dim=0, SymInt? start=None, SymInt? end=None, SymInt step=1) -> Tensor of a
    complex tensor: the real slice of the logical axis.
    """
    return _by_real_translation(ctx, self, dim, start, end, step)


@register("complex::select.int")
def aten_complex_select(ctx: Context, self: Value, dim: int, index: Any) -> Any:
    """select.int(Tensor self, int dim, SymInt index) -> Tensor of a complex tensor: the real select of the logical
    axis.
    """
    return _by_real_translation(ctx, self, dim, index)


@register("complex::transpose.int")
def aten_complex_transpose(ctx: Context, self: Value, dim0: int, dim1: int) -> Any:
    """transpose.int(Tensor self, int dim0, int dim1) -> Tensor of a complex tensor: logical axes swapped."""
    return _by_real_translation(ctx, self, dim0, dim1)


@register("complex::permute")
def aten_complex_permute(ctx: Context, self: Value, dims: list[int]) -> Any:
    """permute(Tensor self, int[] dims) -> Tensor of a complex tensor: the logical axes permuted."""
    return _by_real_translation(ctx, self, dims)


@register("complex::unsqueeze")
def aten_complex_unsqueeze(ctx: Context, self: Value, dim: int) -> Any:
    """unsqueeze(Tensor self, int dim) -> Tensor of a complex tensor: a logical axis added."""
    return _by_real_translation(ctx, self, dim)


@register("complex::squeeze", "complex::squeeze.dim", "complex::squeeze.dims")
def aten_complex_squeeze(ctx: Context, self: Value, dim: int | Sequence[int] | None = None) -> Any:
    """squeeze(Tensor self) -> Tensor; squeeze.dim(Tensor self, int dim); squeeze.dims(Tensor self, int[] dim) of a
    complex tensor: logical axes of size 1 removed.
    """
    return _by_real_translation(ctx, self) if dim is None else _by_real_translation(ctx, self, dim)


@register("complex::cat")
def aten_complex_cat(ctx: Context, tensors: list[Value], dim: int = 0) -> Any:
    """cat(Tensor[] tensors, int dim=0) -> Tensor of complex tensors: joined along a logical axis."""
    return _by_real_translation(ctx, tensors, dim)


@register("complex::stack")
def aten_complex_stack(ctx: Context, tensors: list[Value], dim: int = 0) -> Any:
    """stack(Tensor[] tensors, int dim=0) -> Tensor of complex tensors: stacked on a new logical axis."""
    return _by_real_translation(ctx, tensors, dim)


@register("complex::split.Tensor", "complex::split.sizes")
def aten_complex_split(ctx: Context, self: Value, split_size: Any, dim: int = 0) -> Any:
    """split.Tensor(Tensor self, SymInt split_size, int dim=0) -> Tensor[]; split.sizes(Tensor self, SymInt[]
    split_size, int dim=0) of a complex tensor: pieces along a logical axis.
    """
    return _by_real_translation(ctx, self, split_size, dim)


@register("complex::split_with_sizes")
def aten_complex_split_with_sizes(ctx: Context, self: Value, split_sizes: list[Any], dim: int = 0) -> Any:
    """split_with_sizes(Tensor self, SymInt[] split_sizes, int dim=0) -> Tensor[] of a complex tensor: pieces along a
    logical axis.
    """
    return _by_real_translation(ctx, self, split_sizes, dim)


@register("complex::unbind.int")
def aten_complex_unbind(ctx: Context, self: Value, dim: int = 0) -> Any:
    """unbind.int(Tensor self, int dim=0) -> Tensor[] of a complex tensor: every element of a logical axis."""
    return _by_real_translation(ctx, self, dim)


@register("complex::index_select")
def aten_complex_index_select(ctx: Context, self: Value, dim: int, index: Value) -> Any:
    """index_select(Tensor self, int dim, Tensor index) -> Tensor of a complex tensor: whole elements gathered along
    a logical axis.
    """
    return _by_real_translation(ctx, self, dim, index)


@register("complex::index.Tensor", "complex::_unsafe_index.Tensor")
def aten_complex_index(ctx: Context, self: Value, indices: list[Value | None]) -> Any:
    """index.Tensor(Tensor self, Tensor?[] indices) -> Tensor (and _unsafe_index.Tensor) of a complex tensor: whole
    elements gathered by the indices of the logical axes.
    """
    return _by_real_translation(ctx, self, indices)


@register("complex::slice_scatter")
def aten_complex_slice_scatter(
    ctx: Context,
    self: Value,
    src: Value,
    dim: int = 0,
    start: Any = None,
    end: Any = None,
    step: Any = 1,
) -> Any:
    """slice_scatter(Tensor self, Tensor src, int dim=0, SymInt? start=None, SymInt? end=None, SymInt step=1) ->
    Tensor of complex tensors: ``src`` written into a slice of a logical axis.
    """
    return _by_real_translation(ctx, self, src, dim, start, end, step)


@register("complex::select_scatter")
def aten_complex_select_scatter(ctx: Context, self: Value, src: Value, dim: int, index: Any) -> Any:
    """select_scatter(Tensor self, Tensor src, int dim, SymInt index) -> Tensor of complex tensors: ``src`` written
    at an index of a logical axis.
    """
    return _by_real_translation(ctx, self, src, dim, index)


@register("complex::flip")
def aten_complex_flip(ctx: Context, self: Value, dims: list[int]) -> Any:
    """flip(Tensor self, int[] dims) -> Tensor of a complex tensor: whole elements reversed along logical axes."""
    return _by_real_translation(ctx, self, dims)


@register("complex::sum", "complex::mean")
def aten_complex_sum_mean(ctx: Context, self: Value, *, dtype: Any = None) -> Any:
    """sum(Tensor self, *, ScalarType? dtype=None) -> Tensor; mean alike, of a complex tensor: both parts reduced
    over every logical axis.
    """
    return _by_real_translation(ctx, self, dtype=dtype)


@register("complex::sum.dim_IntList", "complex::mean.dim")
def aten_complex_sum_mean_dim(
    ctx: Context, self: Value, dim: list[int] | None, keepdim: bool = False, *, dtype: Any = None
) -> Any:
    """sum.dim_IntList(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor; mean.dim
    alike, of a complex tensor: both parts reduced over logical axes.
    """
    return _by_real_translation(ctx, self, dim, keepdim, dtype=dtype)


def _complex_pad(ctx: Context, x: Value, pad: list[Any], mode: str, value: Any) -> Ref:
    """``x`` padded by ``pad`` (pairs from the last logical axis) in ``mode``: zeros, or whole elements reflected,
    replicated or wrapped around.
    """
    pad = list(pad)
    if mode not in ("constant", "reflect", "replicate", "circular"):
        raise TranslationError(f"{ctx.where()}: padding mode {mode!r} is not supported")
    if value != 0 or any(not isinstance(p, int) or p < 0 for p in pad):
        raise TranslationError(
            f"{ctx.where()}: padding a complex tensor is supported with zeros and static, non-negative "
            f"amounts only (got pad={pad}, value={value})"
        )
    if mode == "circular":  # slices and concatenations along the logical axes
        return pad_nd(ctx, x, pad, mode, None)
    pairs = [(0, 0)] * (x.rank + 1)  # the parts axis, last, is not padded
    for i in range(len(pad) // 2):
        pairs[x.rank - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    border = "replicated" if (mode == "replicate" and ctx.tract) else mode  # tract's spelling
    attrs: dict[str, Any] = {"value": 0.0} if mode == "constant" else {}
    return ctx.g.op("pad", ctx.ref(x), padding=pairs, border=border, out=ctx.out.name, **attrs)


@register("complex::constant_pad_nd")
def aten_complex_constant_pad_nd(ctx: Context, self: Value, pad: list[Any], value: Any = 0) -> Ref:
    """constant_pad_nd(Tensor self, SymInt[] pad, Scalar value=0) -> Tensor of a complex tensor: zero bins or
    samples appended on the logical axes (torch 2.5 brings the input of ``fft``/``irfft`` to ``n`` this way).
    """
    return _complex_pad(ctx, self, pad, "constant", value)


@register("complex::pad")
def aten_complex_pad(
    ctx: Context, self: Value, pad: list[Any], mode: str = "constant", value: float | None = None
) -> Ref:
    """pad(Tensor self, SymInt[] pad, str mode="constant", float? value=None) -> Tensor of a complex tensor: zeros,
    or whole elements reflected, replicated or wrapped around.
    """
    return _complex_pad(ctx, self, pad, mode, value or 0.0)


@register("complex::_to_copy")
def aten_complex_to_copy(
    ctx: Context,
    self: Any,
    *,
    dtype: Any = None,
    layout: Any = None,
    device: Any = None,
    pin_memory: bool | None = None,
    non_blocking: bool = False,
    memory_format: Any = None,
) -> Ref:
    """_to_copy(Tensor self, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool?
    pin_memory=None, bool non_blocking=False, MemoryFormat? memory_format=None) -> Tensor to a complex dtype of the
    same precision: a real tensor gets a zero imaginary part (torch 2.5 casts irfft's real input this way), a
    complex one is copied.
    """
    out = ctx.out
    if not isinstance(self, Value) or _parts_dtype(self) != _parts_dtype(out):
        raise TranslationError(
            f"{ctx.where()}: a cast from {getattr(self, 'dtype', self)} to {out.dtype} is not supported"
        )
    return ctx.g.op("copy", _as_complex(ctx, self), out=out.name)


def _parts(ctx: Context, x: Ref, rank: int) -> tuple[Ref, Ref]:
    """The real and imaginary parts of ``x`` (complex layout, logical rank ``rank``), each keeping a parts axis of 1."""
    g = ctx.g
    return tuple(g.op("slice", x, axes=[rank], begin=[i], end=[i + 1], stride=[1]) for i in (0, 1))  # type: ignore[return-value]


def _join(ctx: Context, re: Ref, im: Ref, rank: int, out: str | None = None) -> Ref:
    """Real and imaginary parts (each with a parts axis of 1) back into the complex layout."""
    return ctx.g.op("concat", [re, im], axis=rank, out=out)


def _complex_operand(ctx: Context, v: Any, rank: int) -> Ref:
    """An operand of an elementwise complex op in the complex layout, aligned to ``rank`` logical axes: a complex
    tensor as it is, a real tensor with a zero imaginary part, a scalar (real or complex) as a constant.
    """
    g, dtype = ctx.g, _parts_dtype(ctx.out)
    if isinstance(v, Value):
        ref = Ref(ctx.ref(v)) if _is_complex(v) else _real_scale(ctx, v, rank, promote=True)
        if _is_complex(v) and v.rank < rank:
            ref = g.op("unsqueeze", ref, axes=list(range(rank - v.rank)))
        if _is_complex(v):
            return ref
        return g.op("pad", ref, padding=[(0, 0)] * rank + [(0, 1)], border="constant", value=0.0)
    if isinstance(v, (bool, int, float, complex)):
        z = complex(v)
        array = np.array([z.real, z.imag]).reshape((1,) * rank + (2,))
        return _variable(ctx, array, dtype, f"complex_scalar_{z.real:.17g}_{z.imag:.17g}_r{rank}")
    raise TranslationError(
        f"{ctx.where()} with the operand {v!r} is not supported: complex arithmetic takes tensors and constant numbers"
    )


def _real_scale(ctx: Context, v: Any, rank: int, promote: bool = False) -> Any:
    """A real tensor or scalar applied alike to both parts: a tensor gets a parts axis of 1 (and, if ``promote``,
    the dtype of the result's parts: torch promotes an integer or boolean factor).
    """
    if not isinstance(v, Value):
        return float(v)
    ref = ctx.ref(v)
    if promote:
        ref = common.cast_to(ctx, current_node(ctx), ref, v.dtype, _parts_dtype(ctx.out))
    if v.rank < rank:
        ref = ctx.g.op("unsqueeze", ref, axes=list(range(rank - v.rank)))
    return ctx.g.op("unsqueeze", ref, axes=[rank])


def _is_real(v: Any) -> bool:
    """A real tensor or a real number (a factor applied alike to both parts)."""
    return (isinstance(v, Value) and not _is_complex(v)) or (isinstance(v, (bool, int, float)))


def _complex_product(ctx: Context, x: Ref, y: Ref, rank: int, out: str | None = None) -> Ref:
    """The complex product of two operands in the complex layout (``(a + bi)(c + di)``, part by part)."""
    g = ctx.g
    (re_x, im_x), (re_y, im_y) = _parts(ctx, x, rank), _parts(ctx, y, rank)
    re = g.op("sub", g.op("mul", re_x, re_y), g.op("mul", im_x, im_y))
    im = g.op("add", g.op("mul", re_x, im_y), g.op("mul", im_x, re_y))
    return _join(ctx, re, im, rank, out)


def _squared_modulus(ctx: Context, x: Ref, rank: int) -> Ref:
    """re^2 + im^2, keeping a parts axis of 1 (so that it scales both parts)."""
    return ctx.g.op("sum_reduce", ctx.g.op("sqr", x), axes=[rank])


def _conjugate(ctx: Context, x: Ref, rank: int, dtype: str, out: str | None = None) -> Ref:
    """The imaginary part negated (a product by the constant (1, -1))."""
    signs = _variable(ctx, np.array([1.0, -1.0]).reshape((1,) * rank + (2,)), dtype, f"conjugate_r{rank}")
    return ctx.g.op("mul", x, signs, out=out)


def _reciprocal(ctx: Context, x: Ref, rank: int, dtype: str, out: str | None = None) -> Ref:
    """1 / z = conj(z) / |z|^2."""
    return ctx.g.op("div", _conjugate(ctx, x, rank, dtype), _squared_modulus(ctx, x, rank), out=out)


@register("complex::mul.Tensor", "complex::mul.Scalar")
def aten_complex_mul(ctx: Context, self: Any, other: Any) -> Ref:
    """mul.Tensor(Tensor self, Tensor other) -> Tensor (and mul.Scalar) with a complex operand: the complex product
    (with a complex tensor or number, ``1j * phase`` included), or the parts scaled by a real tensor or number.
    """
    out, g = ctx.out, ctx.g
    a, b = self, other
    if _is_real(a) or _is_real(b):
        return g.op(
            "mul",
            _real_scale(ctx, a, out.rank, promote=True) if _is_real(a) else _complex_operand(ctx, a, out.rank),
            _real_scale(ctx, b, out.rank, promote=True) if _is_real(b) else _complex_operand(ctx, b, out.rank),
            out=out.name,
        )
    x, y = (_complex_operand(ctx, v, out.rank) for v in (a, b))
    return _complex_product(ctx, x, y, out.rank, out.name)


def _real_alpha(ctx: Context, alpha: Any) -> float:
    """The factor of ``other`` in add/sub, a real number."""
    if isinstance(alpha, complex) or not isinstance(alpha, (bool, int, float)):
        raise TranslationError(f"{ctx.where()} with alpha={alpha!r} is not supported: use a real number")
    return float(alpha)


_SUMS = {"complex::add": ("add", False), "complex::sub": ("sub", False), "complex::rsub": ("sub", True)}
"""The NNEF op of each complex sum kind, and whether its operands are swapped (``rsub``: other - alpha * self)."""


def _complex_sum(ctx: Context, self: Any, other: Any, alpha: Any) -> Ref:
    """``self + alpha * other`` (``-`` for sub, ``other - alpha * self`` for rsub) in the complex layout; a real
    operand (tensor or number) adds to the real part only, as torch promotes it.
    """
    out, g = ctx.out, ctx.g
    op, swapped = _SUMS[current_node(ctx).kind]
    a, b = (other, self) if swapped else (self, other)
    factor = _real_alpha(ctx, alpha)
    x, y = (_complex_operand(ctx, v, out.rank) for v in (a, b))
    if factor != 1.0:
        y = g.op("mul", y, factor)
    return g.op(op, x, y, out=out.name)


@register("complex::add.Tensor", "complex::sub.Tensor", "complex::rsub.Tensor")
def aten_complex_add(ctx: Context, self: Any, other: Any, *, alpha: Any = 1) -> Ref:
    """add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor; sub.Tensor alike, rsub.Tensor (other -
    alpha * self), with a complex operand.
    """
    return _complex_sum(ctx, self, other, alpha)


@register("complex::add.Scalar", "complex::sub.Scalar", "complex::rsub.Scalar")
def aten_complex_add_scalar(ctx: Context, self: Any, other: Any, alpha: Any = 1) -> Ref:
    """add.Scalar(Tensor self, Scalar other, Scalar alpha=1) -> Tensor; sub.Scalar alike, rsub.Scalar (other -
    alpha * self), with a complex operand.
    """
    return _complex_sum(ctx, self, other, alpha)


@register("complex::neg")
def aten_complex_neg(ctx: Context, self: Value) -> Ref:
    """neg(Tensor self) -> Tensor of a complex tensor: both parts negated."""
    return ctx.g.op("neg", ctx.ref(self), out=ctx.out.name)


@register("complex::div.Tensor", "complex::div.Scalar")
def aten_complex_div(ctx: Context, self: Any, other: Any) -> Ref:
    """div.Tensor(Tensor self, Tensor other) -> Tensor (and div.Scalar) with a complex operand: by a real divisor
    both parts are divided; by a complex one the dividend is multiplied by ``conj(other) / |other|^2``.
    """
    out, g = ctx.out, ctx.g
    a, b = self, other
    rank, dtype = out.rank, _parts_dtype(out)
    if _is_real(b):
        return g.op("div", _complex_operand(ctx, a, rank), _real_scale(ctx, b, rank, promote=True), out=out.name)
    y = _complex_operand(ctx, b, rank)
    numerator = _conjugate(ctx, y, rank, dtype)
    if _is_real(a):
        numerator = g.op("mul", numerator, _real_scale(ctx, a, rank, promote=True))
    else:
        numerator = _complex_product(ctx, _complex_operand(ctx, a, rank), numerator, rank, out.name + "_numerator")
    return g.op("div", numerator, _squared_modulus(ctx, y, rank), out=out.name)


@register("complex::reciprocal")
def aten_complex_reciprocal(ctx: Context, self: Value) -> Ref:
    """reciprocal(Tensor self) -> Tensor of a complex tensor: ``conj(z) / |z|^2``."""
    out = ctx.out
    return _reciprocal(ctx, ctx.ref(self), self.rank, _parts_dtype(out), out=out.name)


def _polar(ctx: Context, modulus: Any, angle: Any, rank: int, out: str) -> Ref:
    """``modulus * (cos(angle), sin(angle))`` from real operands of logical rank ``rank`` (each with a parts axis
    of 1, or numbers).
    """
    g = ctx.g
    return _join(ctx, g.op("mul", modulus, g.op("cos", angle)), g.op("mul", modulus, g.op("sin", angle)), rank, out)


@register("complex::exp")
def aten_complex_exp(ctx: Context, self: Value) -> Ref:
    """exp(Tensor self) -> Tensor of a complex tensor: ``e^re * (cos(im), sin(im))``."""
    re, im = _parts(ctx, ctx.ref(self), self.rank)
    return _polar(ctx, ctx.g.op("exp", re), im, self.rank, ctx.out.name)


def _angle(ctx: Context, x: Ref, rank: int, out: str | None = None) -> Ref:
    """``atan2(im, re)`` with a parts axis of 1."""
    re, im = _parts(ctx, x, rank)
    return atan2(ctx, im, re, out)


@register("complex::angle")
def aten_complex_angle(ctx: Context, self: Value) -> Ref:
    """angle(Tensor self) -> Tensor of a complex tensor: the real ``atan2(im, re)``, in (-pi, pi]."""
    return ctx.g.op("squeeze", _angle(ctx, ctx.ref(self), self.rank), axes=[self.rank], out=ctx.out.name)


@register("complex::log")
def aten_complex_log(ctx: Context, self: Value) -> Ref:
    """log(Tensor self) -> Tensor of a complex tensor: ``(log|z|, angle(z))``."""
    z, g = ctx.ref(self), ctx.g
    magnitude = g.op("mul", g.op("log", _squared_modulus(ctx, z, self.rank)), 0.5)
    return _join(ctx, magnitude, _angle(ctx, z, self.rank), self.rank, ctx.out.name)


@register("complex::sgn")
def aten_complex_sgn(ctx: Context, self: Value) -> Ref:
    """sgn(Tensor self) -> Tensor of a complex tensor: ``z / |z|``, 0 where z is 0."""
    z, g = ctx.ref(self), ctx.g
    modulus = g.op("sqrt", _squared_modulus(ctx, z, self.rank))
    safe = g.op("select", g.op("eq", modulus, 0.0), 1.0, modulus)
    return g.op("div", z, safe, out=ctx.out.name)


@register("complex::sqrt")
def aten_complex_sqrt(ctx: Context, self: Value) -> Ref:
    """sqrt(Tensor self) -> Tensor of a complex tensor, the principal root: ``(sqrt((|z| + re) / 2), ±sqrt((|z| - re)
    / 2))`` with the sign of ``im`` (the negative real axis maps to the positive imaginary one).
    """
    z, g = ctx.ref(self), ctx.g
    re, im = _parts(ctx, z, self.rank)
    modulus = g.op("sqrt", _squared_modulus(ctx, z, self.rank))
    root_re = g.op("sqrt", g.op("mul", g.op("max", g.op("add", modulus, re), 0.0), 0.5))
    root_im = g.op("sqrt", g.op("mul", g.op("max", g.op("sub", modulus, re), 0.0), 0.5))
    root_im = g.op("select", g.op("lt", im, 0.0), g.op("neg", root_im), root_im)
    return _join(ctx, root_re, root_im, self.rank, ctx.out.name)


@register("complex::square")
def aten_complex_square(ctx: Context, self: Value) -> Ref:
    """square(Tensor self) -> Tensor of a complex tensor: ``z * z``."""
    return _complex_product(ctx, ctx.ref(self), ctx.ref(self), self.rank, ctx.out.name)


@register("complex::pow.Tensor_Scalar", "complex::pow.Tensor_Tensor", "complex::pow.Scalar")
def aten_complex_pow(ctx: Context, self: Any, exponent: Any) -> Ref:
    """pow.Tensor_Scalar(Tensor self, Scalar exponent) -> Tensor of a complex tensor and a real exponent: repeated
    products for an integer exponent (a reciprocal for a negative one), ``|z|^p * (cos(p angle), sin(p angle))``
    otherwise. pow.Tensor_Tensor and pow.Scalar (a tensor exponent) are refused.
    """
    x, out = self, ctx.out
    if not isinstance(x, Value) or not _is_complex(x) or not isinstance(exponent, (bool, int, float)):
        raise TranslationError(
            f"{ctx.where()}: complex pow is supported for a complex tensor raised to a real number only (got "
            f"{getattr(x, 'dtype', x)!r} ** {getattr(exponent, 'dtype', exponent)!r})"
        )
    g, rank, dtype = ctx.g, x.rank, _parts_dtype(out)
    z = ctx.ref(x)
    if float(exponent) == int(exponent) and abs(int(exponent)) <= 64:
        n = int(exponent)
        if n == 0:  # ones, whatever z holds (inf and nan included, as torch gives)
            return _filled_complex(ctx, 1.0)
        base = z if n > 0 else _reciprocal(ctx, z, rank, dtype)
        result: Ref | None = None
        n = abs(n)
        while n:  # square-and-multiply
            if n & 1:
                result = base if result is None else _complex_product(ctx, result, base, rank)
            n >>= 1
            if n:
                base = _complex_product(ctx, base, base, rank)
        assert result is not None
        return g.op("copy", result, out=out.name)
    p = float(exponent)
    modulus = g.op("pow", _squared_modulus(ctx, z, rank), p / 2.0)
    return _polar(ctx, modulus, g.op("mul", _angle(ctx, z, rank), p), rank, out.name)


@register("complex::polar")
def aten_complex_polar(ctx: Context, abs: Value, angle: Value) -> Ref:
    """polar(Tensor abs, Tensor angle) -> Tensor: ``abs * (cos(angle), sin(angle))`` (broadcast)."""
    out = ctx.out
    modulus, phase = (_real_scale(ctx, v, out.rank, promote=True) for v in (abs, angle))
    return _polar(ctx, modulus, phase, out.rank, out.name)


@register("complex::complex")
def aten_complex_complex(ctx: Context, real: Value, imag: Value) -> Ref:
    """complex(Tensor real, Tensor imag) -> Tensor: the parts side by side (broadcast to the result's shape)."""
    out, g = ctx.out, ctx.g
    parts = []
    for v in (real, imag):
        ref = _real_scale(ctx, v, out.rank, promote=True)
        shape = (1,) * (out.rank - v.rank) + tuple(v.shape)
        if shape != tuple(out.shape):
            repeats = [_broadcast_repeat(ctx, have, want) for have, want in zip(shape, out.shape)]
            ref = g.op("tile", ref, repeats=[*repeats, 1])
        parts.append(ref)
    return _join(ctx, parts[0], parts[1], out.rank, out.name)


def _broadcast_repeat(ctx: Context, have: Any, want: Any) -> Any:
    """How many times an axis of size ``have`` is tiled to broadcast to ``want`` (or to repeat it, a whole
    multiple); an error when it cannot.
    """
    if have == want:
        return 1
    if have == 1:
        return dim_ref(want)
    if isinstance(have, int) and isinstance(want, int) and want % have == 0:
        return want // have
    raise TranslationError(f"{ctx.where()} cannot broadcast a size of {have} to {want}")


@register("complex::where.self", "complex::where.ScalarOther", "complex::where.ScalarSelf", "complex::where.Scalar")
def aten_complex_where(ctx: Context, condition: Any, self: Any, other: Any) -> Ref:
    """where.self(Tensor condition, Tensor self, Tensor other) -> Tensor (and the overloads with a Scalar branch)
    with a complex branch: the condition picks whole elements (the same for both parts); a real branch has a zero
    imaginary part.
    """
    out, g = ctx.out, ctx.g
    if not isinstance(condition, Value):
        raise TranslationError(f"{ctx.where()}: complex where needs a tensor condition (got {condition!r})")
    cond = _real_scale(ctx, condition, out.rank)
    x, y = (_complex_operand(ctx, v, out.rank) for v in (self, other))
    return g.op("select", cond, x, y, out=out.name)


def _complex_reshape(ctx: Context, x: Value) -> Ref:
    """``x`` reshaped to the output's shape on the logical axes, the parts axis kept last."""
    out = ctx.out
    shape = common.shape_attr(ctx, current_node(ctx), out.shape)
    return ctx.g.op("reshape", ctx.ref(x), shape=shape, axis_start=0, axis_count=x.rank, out=out.name)


@register("complex::view", "complex::_unsafe_view")
def aten_complex_view(ctx: Context, self: Value, size: list[Any]) -> Ref:
    """view(Tensor self, SymInt[] size) -> Tensor (and _unsafe_view) of a complex tensor: the logical axes
    reshaped, the parts axis kept last.
    """
    return _complex_reshape(ctx, self)


@register("complex::reshape")
def aten_complex_reshape(ctx: Context, self: Value, shape: list[Any]) -> Ref:
    """reshape(Tensor self, SymInt[] shape) -> Tensor of a complex tensor: the logical axes reshaped."""
    return _complex_reshape(ctx, self)


@register("complex::flatten.using_ints")
def aten_complex_flatten(ctx: Context, self: Value, start_dim: int = 0, end_dim: int = -1) -> Ref:
    """flatten.using_ints(Tensor self, int start_dim=0, int end_dim=-1) -> Tensor of a complex tensor: the logical
    axes reshaped to the output's.
    """
    return _complex_reshape(ctx, self)


@register("complex::unflatten.int")
def aten_complex_unflatten(ctx: Context, self: Value, dim: int, sizes: list[Any]) -> Ref:
    """unflatten.int(Tensor self, int dim, SymInt[] sizes) -> Tensor of a complex tensor: the logical axes
    reshaped to the output's.
    """
    return _complex_reshape(ctx, self)


def _complex_tile(ctx: Context, x: Value) -> Ref:
    """``x`` tiled to the output's shape on the logical axes (new ones on the left), the parts axis once."""
    out = ctx.out
    ref = ctx.ref(x)
    if x.rank < out.rank:
        ref = ctx.g.op("unsqueeze", ref, axes=list(range(out.rank - x.rank)))
    shape = (1,) * (out.rank - x.rank) + tuple(x.shape)
    repeats = [_broadcast_repeat(ctx, have, want) for have, want in zip(shape, out.shape)]
    return ctx.g.op("tile", ref, repeats=[*repeats, 1], out=out.name)


@register("complex::expand")
def aten_complex_expand(ctx: Context, self: Value, size: list[Any], *, implicit: bool = False) -> Ref:
    """expand(Tensor self, SymInt[] size, *, bool implicit=False) -> Tensor of a complex tensor: a tile of the
    logical axes (new ones on the left), the parts axis once.
    """
    return _complex_tile(ctx, self)


@register("complex::repeat")
def aten_complex_repeat(ctx: Context, self: Value, repeats: list[Any]) -> Ref:
    """repeat(Tensor self, SymInt[] repeats) -> Tensor of a complex tensor: a tile of the logical axes (new ones on
    the left), the parts axis once.
    """
    return _complex_tile(ctx, self)


@register("complex::roll")
def aten_complex_roll(ctx: Context, self: Value, shifts: Sequence[Any] | Any, dims: Sequence[int] | int = ()) -> Ref:
    """roll(Tensor self, SymInt[1] shifts, int[1] dims=[]) -> Tensor of a complex tensor: whole elements rolled
    along the logical axes (over the flattened elements when dims is empty).
    """
    x, out = self, ctx.out
    if dims:
        return cast(Ref, _by_real_translation(ctx, self, shifts, dims))
    shift_list = list(shifts) if isinstance(shifts, (list, tuple)) else [shifts]
    if not isinstance(shift_list[0], int):
        raise TranslationError(f"{ctx.where()}: roll by a dynamic shift is not supported")
    g = ctx.g
    flat = g.op("reshape", ctx.ref(x), shape=[-1], axis_start=0, axis_count=x.rank)
    rolled = roll_axis(ctx, flat, product_of(list(x.shape)), 0, shift_list[0])
    shape = common.shape_attr(ctx, current_node(ctx), x.shape)
    return g.op("reshape", rolled, shape=shape, axis_start=0, axis_count=1, out=out.name)


def _complex_matmul(ctx: Context, a: Value, b: Value) -> Ref:
    """The product of complex matrices (torch multiplies no complex by real matrices): real matmuls of the parts,
    ``(ar br - ai bi, ar bi + ai br)``; a 1-D operand is a row (left) or a column (right).
    """
    out, g = ctx.out, ctx.g
    if not (_is_complex(a) and _is_complex(b)):
        raise TranslationError(f"{ctx.where()} takes two complex tensors (got {a.dtype} and {b.dtype})")
    rank = max(a.rank, b.rank, 2)

    def parts(v: Value, column: bool) -> list[Ref]:
        refs = [g.op("squeeze", p, axes=[v.rank]) for p in _parts(ctx, ctx.ref(v), v.rank)]
        if v.rank == 1:
            refs = [g.op("unsqueeze", p, axes=[1 if column else 0]) for p in refs]
        if max(v.rank, 2) < rank:
            refs = [g.op("unsqueeze", p, axes=list(range(rank - max(v.rank, 2)))) for p in refs]
        return refs

    (ar, ai), (br, bi) = parts(a, column=False), parts(b, column=True)
    re = g.op("sub", g.op("matmul", ar, br), g.op("matmul", ai, bi))
    im = g.op("add", g.op("matmul", ar, bi), g.op("matmul", ai, br))
    squeezed = ([rank - 2] if a.rank == 1 else []) + ([rank - 1] if b.rank == 1 else [])
    if squeezed:
        re, im = g.op("squeeze", re, axes=squeezed), g.op("squeeze", im, axes=squeezed)
    return g.op("stack", [re, im], axis=out.rank, out=out.name)


@register("complex::matmul")
def aten_complex_matmul(ctx: Context, self: Value, other: Value) -> Ref:
    """matmul(Tensor self, Tensor other) -> Tensor of complex tensors: real matmuls of the parts."""
    return _complex_matmul(ctx, self, other)


@register("complex::mm", "complex::bmm")
def aten_complex_mm(ctx: Context, self: Value, mat2: Value) -> Ref:
    """mm(Tensor self, Tensor mat2) -> Tensor (and bmm) of complex tensors: real matmuls of the parts."""
    return _complex_matmul(ctx, self, mat2)


def _filled_complex(ctx: Context, value: Any) -> Ref:
    """The (complex) output: the constant ``value`` (real or complex) in the complex layout, tiled to its shape."""
    out = ctx.out
    repeats = [dim_ref(d) for d in out.shape]
    return ctx.g.op("tile", _complex_operand(ctx, value, out.rank), repeats=[*repeats, 1], out=out.name)


def _complex_full(ctx: Context, value: Any) -> Ref:
    """The output filled with ``value``, when it is complex."""
    out = ctx.out
    if not _is_complex(out):
        raise TranslationError(f"{ctx.where()} of a complex tensor to {out.dtype} is not supported yet")
    return _filled_complex(ctx, value)


@register("complex::zeros_like", "complex::ones_like")
def aten_complex_zeros_like(
    ctx: Context,
    self: Value,
    *,
    dtype: Any = None,
    layout: Any = None,
    device: Any = None,
    pin_memory: bool | None = None,
    memory_format: Any = None,
) -> Ref:
    """zeros_like(Tensor self, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool?
    pin_memory=None, MemoryFormat? memory_format=None) -> Tensor of a complex dtype (``ones_like`` too):
    zeros or ones tiled to the shape.
    """
    node = ctx.node
    assert node is not None
    return _complex_full(ctx, 1 if node.kind == "complex::ones_like" else 0)


@register("complex::full_like")
def aten_complex_full_like(
    ctx: Context,
    self: Value,
    fill_value: Any,
    *,
    dtype: Any = None,
    layout: Any = None,
    device: Any = None,
    pin_memory: bool | None = None,
    memory_format: Any = None,
) -> Ref:
    """full_like(Tensor self, Scalar fill_value, *, ScalarType? dtype=None, Layout? layout=None, Device?
    device=None, bool? pin_memory=None, MemoryFormat? memory_format=None) -> Tensor of a complex dtype: the
    constant (real or complex) tiled to the shape.
    """
    return _complex_full(ctx, fill_value)


@register("complex::masked_fill.Scalar", "complex::masked_fill.Tensor")
def aten_complex_masked_fill(ctx: Context, self: Value, mask: Value, value: Any) -> Ref:
    """masked_fill.Scalar(Tensor self, Tensor mask, Scalar value) -> Tensor (and masked_fill.Tensor) of a complex
    tensor: whole elements replaced.
    """
    out = ctx.out
    fill = _complex_operand(ctx, value, out.rank)
    return ctx.g.op("select", _real_scale(ctx, mask, out.rank), fill, ctx.ref(self), out=out.name)


def _shift_halves(ctx: Context, x: Value, dim: int | Sequence[int] | None, sign: int) -> Ref:
    """``x`` rolled by ``sign * (n // 2)`` along each axis of ``dim`` (every axis when None)."""
    dims = list(range(x.rank)) if dim is None else [dim] if isinstance(dim, int) else list(dim)
    y = ctx.ref(x)
    for d in dims:
        axis = wrap_axis(d, x.rank)
        n = _static_value(ctx, x.shape[axis], f"length on axis {axis}")
        y = roll_axis(ctx, y, n, axis, sign * (n // 2))
    return ctx.g.op("copy", y, out=ctx.out.name)


@register("aten::fft_fftshift", "complex::fft_fftshift")
def aten_fft_fftshift(ctx: Context, self: Value, dim: int | Sequence[int] | None = None) -> Ref:
    """fft_fftshift(Tensor self, int[1]? dim=None) -> Tensor: a roll by half of each axis (``n // 2``), on every
    axis by default; complex values move whole.
    """
    return _shift_halves(ctx, self, dim, 1)


@register("aten::fft_ifftshift", "complex::fft_ifftshift")
def aten_fft_ifftshift(ctx: Context, self: Value, dim: int | Sequence[int] | None = None) -> Ref:
    """fft_ifftshift(Tensor self, int[1]? dim=None) -> Tensor: a roll back by half of each axis (``-(n // 2)``),
    on every axis by default; complex values move whole.
    """
    return _shift_halves(ctx, self, dim, -1)


@register("aten::angle")
def aten_angle(ctx: Context, self: Value) -> Ref:
    """angle(Tensor self) -> Tensor of a real tensor: pi for negative values, 0 otherwise (NaN kept)."""
    x, g = ctx.ref(self), ctx.g
    sign = g.op("select", g.op("lt", x, 0.0), math.pi, 0.0)
    return g.op("select", g.op("ne", x, x), x, sign, out=ctx.out.name)


@register("complex::einsum")
def aten_complex_einsum(ctx: Context, equation: str, tensors: list[Value], *, path: list[int] | None = None) -> Ref:
    """einsum(str equation, Tensor[] tensors, *, int[]? path=None) -> Tensor of complex tensors: the real einsum of
    the layouts with one more letter per operand for its parts (every product of parts), then each product of
    ``k`` imaginary parts added to the result's real or imaginary part with the sign of ``i^k``.
    """
    operands = list(tensors)
    out, g = ctx.out, ctx.g
    if not all(isinstance(v, Value) and _is_complex(v) for v in operands):
        raise TranslationError(f"{ctx.where()}: a complex einsum takes complex operands only")
    n = len(operands)
    letters = [chr(0x5D0 + i) for i in range(n)]  # sorted after the equation's and the ellipsis' letters
    lhs, arrow, rhs = equation.replace(" ", "").partition("->")
    specs = [spec + letter for spec, letter in zip(lhs.split(","), letters)]
    real_equation = ",".join(specs) + (f"->{rhs}{''.join(letters)}" if arrow else "")
    layouts = [Value(v.name, _parts_dtype(v), (*v.shape, 2)) for v in operands]  # the same refs, parts axis named
    products = Value(out.name + "_products", _parts_dtype(out), (*out.shape, *([2] * n)))
    y = einsum_ref(ctx, dataclasses.replace(current_node(ctx), outputs=(products,)), real_equation, layouts)
    combine = np.zeros((2**n, 2))
    for index in range(2**n):
        k = bin(index).count("1")  # the number of imaginary factors
        combine[index, k % 2] = 1.0 if k % 4 < 2 else -1.0
    rank = max(out.rank, 1)
    if out.rank == 0:
        y = g.op("unsqueeze", y, axes=[0])
    y = g.op("reshape", y, shape=[1, 2**n], axis_start=rank, axis_count=n)
    weights = _variable(
        ctx, combine.reshape((1,) * rank + combine.shape), _parts_dtype(out), f"einsum_parts_{n}_r{rank}"
    )
    y = g.op("squeeze", g.op("matmul", y, weights, transposeA=False, transposeB=False), axes=[rank])
    return g.op("squeeze", y, axes=[0], out=out.name) if out.rank == 0 else g.op("copy", y, out=out.name)


def _complex_broadcast_into(ctx: Context, src: Any) -> Ref:
    """``src`` (a real one with a zero imaginary part) broadcast to the complex output's shape."""
    out = ctx.out
    if not _is_complex(out) or (isinstance(src, Value) and _parts_dtype(src) != _parts_dtype(out)):
        raise TranslationError(
            f"{ctx.where()}: a copy of {getattr(src, 'dtype', src)} into {out.dtype} is not supported: cast first"
        )
    y = _complex_operand(ctx, src, out.rank)
    shape = (1,) * (out.rank - src.rank) + tuple(src.shape) if isinstance(src, Value) else (1,) * out.rank
    if shape != tuple(out.shape):
        repeats = [_broadcast_repeat(ctx, have, want) for have, want in zip(shape, out.shape)]
        y = ctx.g.op("tile", y, repeats=[*repeats, 1])
    return ctx.g.op("copy", y, out=out.name)


@register("complex::copy")
def aten_complex_copy(ctx: Context, self: Value, src: Any, non_blocking: bool = False) -> Ref:
    """copy(Tensor self, Tensor src, bool non_blocking=False) -> Tensor into a complex tensor: ``src`` broadcast to
    the shape of ``self`` (out-of-place ``self[...] = src``).
    """
    return _complex_broadcast_into(ctx, src)


@register("complex::fill.Tensor", "complex::fill.Scalar")
def aten_complex_fill(ctx: Context, self: Value, value: Any) -> Ref:
    """fill.Tensor(Tensor self, Tensor value) -> Tensor (and fill.Scalar) of a complex tensor: ``value`` broadcast
    to the shape of ``self``.
    """
    return _complex_broadcast_into(ctx, value)


@register("complex::cumsum")
def aten_complex_cumsum(ctx: Context, self: Value, dim: int, *, dtype: Any = None) -> Ref:
    """cumsum(Tensor self, int dim, *, ScalarType? dtype=None) -> Tensor of a complex tensor: both parts summed along
    ``dim`` (tract's cumsum, or a product by the upper triangle of ones over a static axis).
    """
    x, out, g = self, ctx.out, ctx.g
    if _parts_dtype(x) != _parts_dtype(out):
        raise TranslationError(f"{ctx.where()}: cumsum of {x.dtype} to {out.dtype} is not supported: cast first")
    rank = max(x.rank, 1)
    y = ctx.ref(x) if x.rank else g.op("unsqueeze", ctx.ref(x), axes=[0])
    axis = wrap_axis(dim, rank)
    if ctx.tract_at_least(CUMSUM_TRACT):
        g.need("tract_registry tract_core")
        y = g.op("tract_core_cumsum", y, axis=axis, exclusive=False, reverse=False)
    else:
        n = _static_value(ctx, x.shape[axis] if x.rank else 1, f"length on axis {axis}")
        perm = [a for a in range(rank) if a != axis] + [rank, axis]  # the parts axis, then the summed one
        triangle = np.triu(np.ones((n, n))).reshape((1,) * (rank - 1) + (n, n))
        y = g.op("transpose", y, axes=perm)
        y = g.op("matmul", y, _variable(ctx, triangle, _parts_dtype(out), f"cumsum_triangle_{n}_r{rank + 1}"))
        y = g.op("transpose", y, axes=[perm.index(a) for a in range(rank + 1)])
    return g.op("squeeze", y, axes=[0], out=out.name) if not x.rank else g.op("copy", y, out=out.name)
