"""Resizing and sampling: nearest, linear, bilinear (anti-aliased) and bicubic upsampling, grid sampling."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from torch_to_nnef.check.versions import GRID_SAMPLE_TRACT, NEAREST_UPSAMPLE_TRACT, version_text
from torch_to_nnef.errors import TranslationError
from torch_to_nnef.ir import Dim, Value
from torch_to_nnef.ir.dtypes import float_numpy
from torch_to_nnef.nnef.builder import Ref, dim_literal
from torch_to_nnef.op.common import current_node, source_scale, static_sizes
from torch_to_nnef.op.registry import Context, register


def _interpolation_matrix(mode: str, size: int, out: int, factor: float | None, align_corners: bool) -> np.ndarray:
    """The ``[out, size]`` matrix that resizes one axis as PyTorch does (two taps for linear, one for nearest)."""
    scale = np.float32(source_scale(size, out, factor, align_corners))
    m = np.zeros((out, size), dtype=np.float64)
    dst = np.arange(out, dtype=np.float32)
    if mode == "nearest":
        src = np.minimum(np.floor(dst * scale).astype(np.int64), size - 1)
        m[np.arange(out), src] = 1.0
    elif mode == "nearest-exact":
        src = np.minimum(np.floor((dst + np.float32(0.5)) * scale).astype(np.int64), size - 1)
        m[np.arange(out), src] = 1.0
    elif mode == "linear-antialias":  # a triangle filter widened by the downscaling factor, rows normalised
        support = float(scale) if scale >= 1.0 else 1.0
        stretch = 1.0 / float(scale) if scale >= 1.0 else 1.0
        for i in range(out):
            center = float(scale) * (i + 0.5)
            first = max(int(center - support + 0.5), 0)
            last = min(int(center + support + 0.5), size)
            taps = np.maximum(0.0, 1.0 - np.abs((np.arange(first, last) - center + 0.5) * stretch))
            m[i, first:last] = taps / taps.sum() if taps.sum() else taps
    else:
        pos = dst * scale if align_corners else np.maximum((dst + np.float32(0.5)) * scale - np.float32(0.5), 0)
        low = np.minimum(np.floor(pos).astype(np.int64), size - 1)
        high = np.minimum(low + 1, size - 1)
        frac = (pos - low).astype(np.float64)
        np.add.at(m, (np.arange(out), low), 1.0 - frac)
        np.add.at(m, (np.arange(out), high), frac)
    return m


def _whole_factor_taps(factor: int) -> list[float]:
    """Per output phase ``k`` of a whole ``factor`` (``align_corners=False``), the offset ``(k + 0.5) / factor - 0.5``
    of its source position from the input sample ``i`` it falls on (within ``(-0.5, 0.5)``).
    """
    return [(k + 0.5) / factor - 0.5 for k in range(factor)]


def _resize_dynamic(ctx: Context, x: Value, mode: str, factors: list[int]) -> Ref:
    """Resizing by whole factors over axes whose size is symbolic, without any size-dependent constant.

    Output ``f * i + k`` takes input ``i`` (nearest), or for linear, input ``i`` blended with its neighbour
    ``i - 1`` or ``i + 1`` (edges repeated, as PyTorch clamps) by the offset of :func:`_whole_factor_taps`:
    a depthwise 3-tap convolution of the edge-padded input per phase ``k``, so that no slice bound depends on
    the symbolic size. The ``f`` phases are stacked after the axis and merged into it.
    """
    out, g = ctx.out, ctx.g
    if mode == "nearest" and ctx.tract_at_least(NEAREST_UPSAMPLE_TRACT):
        return g.op("nearest_upsample", ctx.ref(x), factor=factors, out=out.name)
    (channels,) = static_sizes(current_node(ctx), x, [1], f"{mode} resizing with dynamic channels")
    spatial = x.rank - 2
    y = ctx.ref(x)
    for i, f in enumerate(factors):
        if f == 1:
            continue
        axis = 2 + i
        phases = [y] * f
        if mode == "linear":
            border = "replicated" if ctx.tract else "replicate"
            padded = g.op("pad", y, padding=[(1, 1) if a == axis else (0, 0) for a in range(x.rank)], border=border)
            kernel = [3 if a == i else 1 for a in range(spatial)]
            for k, offset in enumerate(_whole_factor_taps(f)):
                if offset == 0.0:
                    continue
                taps = np.array([max(-offset, 0.0), 1.0 - abs(offset), max(offset, 0.0)]).reshape(kernel)
                weights = np.broadcast_to(taps, (channels, 1, *kernel)).astype(float_numpy(x.dtype))
                filt = g.variable(weights.copy(), f"{out.name}_linear_axis{axis}_phase{k}")
                phases[k] = g.op(
                    "conv",
                    padded,
                    filt,
                    0.0,
                    border="constant",
                    padding=[(0, 0)] * spatial,
                    stride=[1] * spatial,
                    dilation=[1] * spatial,
                    groups=channels,
                )
        y = g.op("stack", phases, axis=axis + 1)
        y = g.op("reshape", y, shape=[-1], axis_start=axis, axis_count=2)
    return g.op("copy", y, out=out.name)


def _whole_ratio(size: Dim, out: Dim) -> float | None:
    """``out / size`` when it is a whole number for every size (``2*H`` over ``H``), else None."""
    import sympy  # type: ignore[import-untyped]

    def parsed(d: Dim) -> Any:  # the symbols as plain symbols (sympy reads S, E, I, N, O, Q as its own)
        text = str(d)
        return sympy.sympify(text, locals={n: sympy.Symbol(n) for n in re.findall(r"[A-Za-z_]\w*", text)})

    try:
        ratio = sympy.simplify(parsed(out) / parsed(size))
    except (sympy.SympifyError, TypeError, ZeroDivisionError):
        return None
    return float(ratio) if ratio.is_Integer and ratio > 0 else None


def _resize_gathered(ctx: Context, x: Value, mode: str, align: bool, factors: list[float | None]) -> Ref:
    """Resizing over dynamic sizes in any ratio (``interpolate(y, size=skip.shape[2:])`` in a U-Net), axis
    by axis as PyTorch computes it: each output position's source coordinate from the sizes at run time,
    the input rows there gathered (the two around it, blended, for linear).
    """
    out, g = ctx.out, ctx.g
    g.need("tract_registry tract_core")

    def number(d: Dim) -> Any:  # a size as an f32 scalar tensor
        return g.op("tract_core_cast", d if isinstance(d, int) else Ref(dim_literal(d)), to="f32")

    y = ctx.ref(x)
    for i, f in enumerate(factors):
        axis = 2 + i
        size, n = x.shape[axis], out.shape[axis]
        if size == n and (f is None or f == 1.0):
            continue
        scale: Any
        if align:
            scale = g.op("div", g.op("sub", number(size), 1.0), g.op("max", g.op("sub", number(n), 1.0), 1.0))
        elif f is not None and f > 0:
            scale = 1.0 / f
        else:
            scale = g.op("div", number(size), number(n))
        count = n if isinstance(n, int) else Ref(dim_literal(n))
        position = g.op("tract_core_cast", g.op("tract_core_range", 0, count, 1), to="f32")
        last = g.op("sub", number(size), 1.0)
        if mode == "linear":
            source = g.op("mul", position, scale)
            if not align:
                source = g.op("max", g.op("sub", g.op("mul", g.op("add", position, 0.5), scale), 0.5), 0.0)
            low = g.op("min", g.op("floor", source), last)
            high = g.op("min", g.op("add", low, 1.0), last)
            weight = g.op("sub", source, low)
        else:
            shifted = g.op("add", position, 0.5) if mode == "nearest-exact" else position
            low = g.op("min", g.op("floor", g.op("mul", shifted, scale)), last)
        rows = g.op("tract_core_gather", y, g.op("tract_core_cast", low, to="i64"), axis=axis)
        if mode == "linear":
            following = g.op("tract_core_gather", y, g.op("tract_core_cast", high, to="i64"), axis=axis)
            along = [a for a in range(x.rank) if a != axis]
            blend = g.op("unsqueeze", weight, axes=along)
            if x.dtype != "f32":
                blend = g.op("tract_core_cast", blend, to=x.dtype)
            rows = g.op("add", rows, g.op("mul", g.op("sub", following, rows), blend))
        y = rows
    return g.op("copy", y, out=out.name)


def _resize(ctx: Context, x: Value, mode: str, align: bool, factors: list[float | None]) -> Ref:
    """Resizing of the spatial axes of ``x`` (from axis 2) by ``mode``, to the output's sizes."""
    node, out = current_node(ctx), ctx.out
    axes = list(range(2, x.rank))
    if any(not isinstance(x.shape[a], int) for a in axes) and any(f is None for f in factors):
        # a size given over dynamic axes (interpolate(size=(2 * H, 2 * W))): its whole factors
        factors = [f if f is not None else _whole_ratio(x.shape[a], out.shape[a]) for a, f in zip(axes, factors)]
    if (
        mode in ("nearest", "linear")
        and not align
        and any(not isinstance(x.shape[a], int) for a in axes)
        and all(f is not None and f >= 1 and float(f).is_integer() for f in factors)
    ):
        return _resize_dynamic(ctx, x, mode, [int(f or 1) for f in factors])
    if (
        ctx.tract
        and mode in ("nearest", "nearest-exact", "linear")
        and any(not isinstance(d, int) for a in axes for d in (x.shape[a], out.shape[a]))
    ):
        return _resize_gathered(ctx, x, mode, align, factors)
    sizes = static_sizes(node, x, axes, f"{mode} resizing")
    wanted = [int(d) for d in out.shape[2:]]
    g = ctx.g
    if mode == "nearest" and all(
        n % s == 0 and (f is None or f == n // s) for s, n, f in zip(sizes, wanted, factors)
    ):  # whole factors: each sample repeated
        factors = [n // s for s, n in zip(sizes, wanted)]
        if ctx.tract_at_least(NEAREST_UPSAMPLE_TRACT):
            return g.op("nearest_upsample", ctx.ref(x), factor=factors, out=out.name)
        # tract runs the specification's nearest_upsample only through its own registry (and from
        # NEAREST_UPSAMPLE_TRACT on): repeat by tiling.
        y = g.op("unsqueeze", ctx.ref(x), axes=[3 + 2 * i for i in range(len(axes))])
        y = g.op("tile", y, repeats=[1, 1, *(r for f in factors for r in (1, f))])
        return g.op("reshape", y, shape=[x.shape[0], x.shape[1], *wanted], out=out.name)
    if x.rank > 4:
        raise TranslationError(f"{node.where()}: {mode} resizing of a {x.rank}-D tensor is not supported yet")
    y = ctx.ref(x)
    for axis, size, n, f in zip(axes, sizes, wanted, factors):
        if size == n and (f is None or f == 1.0):
            continue
        matrix = _interpolation_matrix(mode, size, n, f, align).astype(float_numpy(x.dtype))
        lead = (1,) * (x.rank - 2)
        label = f"{out.name}_{mode.replace('-', '_')}wrap_axis{axis}"
        if axis == x.rank - 1:
            m = g.variable(matrix.T.reshape(lead + matrix.T.shape).copy(), label)
            y = g.op("matmul", y, m, transposeA=False, transposeB=False)
        else:
            m = g.variable(matrix.reshape(lead + matrix.shape).copy(), label)
            y = g.op("matmul", m, y, transposeA=False, transposeB=False)
    return g.op("copy", y, out=out.name)


def _unnormalize(ctx: Context, c: Ref, size: int, align: bool, border: bool) -> Ref:
    """A grid coordinate in [-1, 1] as a pixel coordinate (clamped to the image for ``border``)."""
    g = ctx.g
    if align:
        y = g.op("mul", g.op("add", c, 1.0), (size - 1) / 2.0)
    else:
        y = g.op("div", g.op("sub", g.op("mul", g.op("add", c, 1.0), float(size)), 1.0), 2.0)
    return g.op("min", g.op("max", y, 0.0), float(size - 1)) if border else y


def _round_half_even(ctx: Context, c: Ref) -> Ref:
    g = ctx.g
    r = g.op("floor", g.op("add", c, 0.5))
    tie = g.op("eq", g.op("sub", r, c), 0.5)
    odd = g.op("eq", g.op("sub", r, g.op("mul", g.op("floor", g.op("div", r, 2.0)), 2.0)), 1.0)
    return g.op("select", g.op("and", tie, odd), g.op("sub", r, 1.0), r)


def _sampling_weights(ctx: Context, c: Ref, size: int, nearest: bool, label: str) -> Ref:
    """``[N, P, size]`` weights of the input pixels along one axis for the coordinates ``c`` ``[N, P, 1]``:
    the tent ``max(0, 1 - |c - j|)`` (bilinear) or the pixel nearest to ``c`` (ties to even).
    """
    g = ctx.g
    positions = ctx.g.variable(np.arange(size, dtype=np.float32).reshape(1, 1, size), f"grid_positions_{size}")
    if nearest:
        return g.op("select", g.op("eq", _round_half_even(ctx, c), positions), 1.0, 0.0, out=label)
    return g.op("max", g.op("sub", 1.0, g.op("abs", g.op("sub", c, positions))), 0.0, out=label)


@register("aten::grid_sampler", "aten::grid_sampler_2d", "aten::grid_sampler_3d")
def aten_grid_sampler(
    ctx: Context, input: Value, grid: Value, interpolation_mode: int, padding_mode: int, align_corners: bool
) -> Ref:
    """grid_sampler(Tensor input, Tensor grid, int interpolation_mode, int padding_mode, bool align_corners) -> Tensor.

    Modes 0 bilinear, 1 nearest, 2 bicubic; padding 0 zeros, 1 border, 2 reflection. tract >= 0.23.3 runs
    ``tract_core_grid_sample`` (every mode); otherwise 2-D bilinear or nearest sampling with zeros or border
    padding is written with specification ops: the weights of every input pixel for every output point
    (static image sizes), applied by a matmul along the width and a weighted sum along the height.
    """
    x, node, out = input, current_node(ctx), ctx.out
    mode, padding, align = int(interpolation_mode), int(padding_mode), bool(align_corners)
    g = ctx.g
    if ctx.tract_at_least(GRID_SAMPLE_TRACT):
        g.need("tract_registry tract_core")
        return g.op(
            "tract_core_grid_sample",
            ctx.ref(x),
            ctx.ref(grid),
            mode=("bilinear", "nearest", "bicubic")[mode],
            padding_mode=("zeros", "border", "reflection")[padding],
            align_corners=align,
            out=out.name,
        )
    if x.rank != 4 or mode not in (0, 1) or padding not in (0, 1):
        raise TranslationError(
            f"{node.where()}: grid_sample of a {x.rank}-D input in mode {('bilinear', 'nearest', 'bicubic')[mode]} "
            f"with padding {('zeros', 'border', 'reflection')[padding]} needs tract_core_grid_sample: use "
            f"TractNNEF(version >= {version_text(GRID_SAMPLE_TRACT)})"
        )
    channels, height, width = static_sizes(node, x, [1, 2, 3], "grid_sample")
    ho, wo = static_sizes(node, grid, [1, 2], "grid_sample")
    points = g.op("reshape", ctx.ref(grid), shape=[-1, 2], axis_start=1, axis_count=3)  # [N, P, 2]
    cx = g.op("slice", points, axes=[2], begin=[0], end=[1], stride=[1])
    cy = g.op("slice", points, axes=[2], begin=[1], end=[2], stride=[1])
    border = padding == 1
    wx = _sampling_weights(ctx, _unnormalize(ctx, cx, width, align, border), width, mode == 1, out.name + "_wx")
    wy = _sampling_weights(ctx, _unnormalize(ctx, cy, height, align, border), height, mode == 1, out.name + "_wy")
    rows = g.op("reshape", ctx.ref(x), shape=[-1], axis_start=1, axis_count=2)  # [N, C*H, W]
    y = g.op("matmul", rows, wx, transposeA=False, transposeB=True)  # [N, C*H, P]
    y = g.op("reshape", y, shape=[channels, height], axis_start=1, axis_count=1)  # [N, C, H, P]
    y = g.op("mul", y, g.op("unsqueeze", g.op("transpose", wy, axes=[0, 2, 1]), axes=[1]))
    y = g.op("sum_reduce", y, axes=[2])  # [N, C, 1, P]
    return g.op("reshape", y, shape=[ho, wo], axis_start=2, axis_count=2, out=out.name)


def _cubic_matrix(size: int, out: int, factor: float | None, align: bool) -> np.ndarray:
    """The ``[out, size]`` matrix of PyTorch's bicubic resizing of one axis (A = -0.75, edges repeated)."""
    a = -0.75
    scale = np.float32(source_scale(size, out, factor, align))
    m = np.zeros((out, size), dtype=np.float64)
    for i in range(out):
        src = scale * np.float32(i) if align else scale * (np.float32(i) + np.float32(0.5)) - np.float32(0.5)
        base = math.floor(float(src))
        t = float(np.float32(src) - np.float32(base))
        taps = [
            ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
            ((a + 2) * t - (a + 3)) * t * t + 1,
            ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
            ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a,
        ]
        for k, w in enumerate(taps):
            m[i, min(max(base - 1 + k, 0), size - 1)] += w
    return m


def _cubic_antialias_matrix(size: int, out: int, factor: float | None, align: bool) -> np.ndarray:
    """The ``[out, size]`` matrix of PyTorch's antialiased bicubic resizing (A = -0.5, the filter widened by
    the downscaling factor, each row normalised).
    """

    def cubic(v: float) -> float:
        v = abs(v)
        if v < 1.0:
            return (1.5 * v - 2.5) * v * v + 1.0
        if v < 2.0:
            return (((v - 5.0) * v + 8.0) * v - 4.0) * -0.5
        return 0.0

    scale = float(source_scale(size, out, factor, align))
    support = 2.0 * scale if scale >= 1.0 else 2.0
    stretch = 1.0 / scale if scale >= 1.0 else 1.0
    m = np.zeros((out, size), dtype=np.float64)
    for i in range(out):
        center = scale * (i + 0.5)
        first = max(int(center - support + 0.5), 0)
        last = min(int(center + support + 0.5), size)
        taps = np.array([cubic((j - center + 0.5) * stretch) for j in range(first, last)])
        m[i, first:last] = taps / taps.sum() if taps.sum() else taps
    return m


def _bicubic(ctx: Context, x: Value, antialias: bool, align: bool, factors: list[float | None]) -> Ref:
    """Bicubic resizing of the two spatial axes of ``x``, separable: one matmul per axis with a constant
    ``[out, in]`` matrix of the cubic taps (static sizes), on both targets.
    """
    node, out = current_node(ctx), ctx.out
    sizes = static_sizes(node, x, [2, 3], "bicubic resizing")
    wanted = static_sizes(node, out, [2, 3], "bicubic resizing")
    g = ctx.g
    y = ctx.ref(x)
    dtype = float_numpy(x.dtype)
    for axis, size, n, f in zip((2, 3), sizes, wanted, factors):
        make = _cubic_antialias_matrix if antialias else _cubic_matrix
        matrix = make(size, n, f, align).astype(dtype)
        label = f"{out.name}_bicubic_axis{axis}"
        if axis == 3:
            y = g.op("matmul", y, g.variable(matrix.T.reshape(1, 1, size, n).copy(), label))
        else:
            y = g.op("matmul", g.variable(matrix.reshape(1, 1, n, size).copy(), label), y)
    return g.op("copy", y, out=out.name)


_MODES = {
    "aten::upsample_nearest1d": "nearest",
    "aten::upsample_nearest2d": "nearest",
    "aten::_upsample_nearest_exact1d": "nearest-exact",
    "aten::_upsample_nearest_exact2d": "nearest-exact",
    "aten::upsample_linear1d": "linear",
    "aten::upsample_bilinear2d": "linear",
    "aten::_upsample_bilinear2d_aa": "linear-antialias",
    "aten::upsample_bicubic2d": "cubic",
    "aten::_upsample_bicubic2d_aa": "cubic-antialias",
}
"""The resizing each upsampling kind does."""


def _upsample(ctx: Context, x: Value, align: bool, scales: Sequence[float | None] | None) -> Ref:
    """``x`` resized as the node's kind says (:data:`_MODES`) to the output's sizes; ``scales`` the scale factor
    of each spatial axis, if given (one stands for every axis; None: from the sizes).
    """
    spatial = x.rank - 2
    factors: list[float | None] = [None] * spatial
    if scales is not None:
        factors = [None if f is None else float(f) for f in scales]
    factors = factors * spatial if len(factors) == 1 else factors
    mode = _MODES[current_node(ctx).kind]
    if mode.startswith("cubic"):
        return _bicubic(ctx, x, mode == "cubic-antialias", align, factors)
    return _resize(ctx, x, mode, align, factors)


@register("aten::upsample_nearest1d", "aten::_upsample_nearest_exact1d")
def aten_upsample_nearest1d(ctx: Context, self: Value, output_size: Sequence[int], scales: float | None = None) -> Ref:
    """upsample_nearest1d(Tensor self, SymInt[1] output_size, float? scales=None) -> Tensor;
    _upsample_nearest_exact1d alike.

    A constant selection matrix (exact), or whole factors repeated.
    """
    return _upsample(ctx, self, False, [scales])


@register("aten::upsample_nearest2d", "aten::_upsample_nearest_exact2d")
def aten_upsample_nearest2d(
    ctx: Context,
    self: Value,
    output_size: Sequence[int],
    scales_h: float | None = None,
    scales_w: float | None = None,
) -> Ref:
    """upsample_nearest2d(Tensor self, SymInt[2] output_size, float? scales_h=None, float? scales_w=None) -> Tensor;
    _upsample_nearest_exact2d alike.

    Whole factors as ``nearest_upsample``, other sizes as a constant selection matrix (exact).
    """
    return _upsample(ctx, self, False, [scales_h, scales_w])


@register(
    "aten::upsample_nearest1d.vec",
    "aten::upsample_nearest2d.vec",
    "aten::_upsample_nearest_exact1d.vec",
    "aten::_upsample_nearest_exact2d.vec",
)
def aten_upsample_nearest_vec(
    ctx: Context, input: Value, output_size: Sequence[int] | None, scale_factors: Sequence[float] | None
) -> Ref:
    """upsample_nearest2d.vec(Tensor input, SymInt[]? output_size, float[]? scale_factors) -> Tensor; the 1-D and
    ``nearest-exact`` ones alike.

    Whole factors as ``nearest_upsample``, other sizes as a constant selection matrix (exact).
    """
    return _upsample(ctx, input, False, scale_factors)


@register("aten::upsample_linear1d")
def aten_upsample_linear1d(
    ctx: Context, self: Value, output_size: Sequence[int], align_corners: bool, scales: float | None = None
) -> Ref:
    """upsample_linear1d(Tensor self, SymInt[1] output_size, bool align_corners, float? scales=None) -> Tensor.

    A matmul with a constant interpolation matrix built from the static sizes (exact).
    """
    return _upsample(ctx, self, bool(align_corners), [scales])


@register(
    "aten::upsample_bilinear2d",
    "aten::_upsample_bilinear2d_aa",
    "aten::upsample_bicubic2d",
    "aten::_upsample_bicubic2d_aa",
)
def aten_upsample_2d(
    ctx: Context,
    self: Value,
    output_size: Sequence[int],
    align_corners: bool,
    scales_h: float | None = None,
    scales_w: float | None = None,
) -> Ref:
    """upsample_bilinear2d(Tensor self, SymInt[2] output_size, bool align_corners, float? scales_h=None,
    float? scales_w=None) -> Tensor; the antialiased and bicubic ones alike.

    Each spatial axis is a matmul with a constant interpolation matrix built from the static sizes: exact for
    any size, scale factor and ``align_corners``, on both targets.
    """
    return _upsample(ctx, self, bool(align_corners), [scales_h, scales_w])


@register(
    "aten::upsample_linear1d.vec",
    "aten::upsample_bilinear2d.vec",
    "aten::_upsample_bilinear2d_aa.vec",
    "aten::upsample_bicubic2d.vec",
    "aten::_upsample_bicubic2d_aa.vec",
)
def aten_upsample_interpolated_vec(
    ctx: Context,
    input: Value,
    output_size: Sequence[int] | None,
    align_corners: bool,
    scale_factors: Sequence[float] | None,
) -> Ref:
    """upsample_bilinear2d.vec(Tensor input, SymInt[]? output_size, bool align_corners, float[]? scale_factors)
    -> Tensor; the linear, antialiased bilinear, bicubic and antialiased bicubic ones alike.

    Each spatial axis is a matmul with a constant interpolation matrix built from the static sizes: exact for
    any size, scale factor and ``align_corners``, on both targets.
    """
    return _upsample(ctx, input, bool(align_corners), scale_factors)
