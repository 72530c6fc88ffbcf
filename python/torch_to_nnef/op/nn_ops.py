"""Translations of neural-network layers: convolutions, normalisations, pooling, resizing and attention."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from torch_to_nnef.check.targets import SDPA_TRACT
from torch_to_nnef.check.versions import NEAREST_UPSAMPLE_TRACT
from torch_to_nnef.errors import TranslationError
from torch_to_nnef.ir import Dim, Node, Value
from torch_to_nnef.nnef.builder import Ref, dim_literal
from torch_to_nnef.op.common import (
    NP_DTYPES,
    NP_FLOAT,
    adaptive_pool,
    align_rank,
    batch_norm,
    channel_count,
    conv,
    conv_transpose,
    dim_ref,
    node_arg,
    resize_args,
    scalar_const,
    source_scale,
    standardize,
    static_sizes,
    wrap_axis,
)
from torch_to_nnef.op.registry import Context, register


def _ints(value: Any, n: int) -> list[int]:
    """An int or an int list of one or ``n`` entries, as ``n`` ints."""
    values = [value] if isinstance(value, int) else list(value)
    return values * n if len(values) == 1 else values


# --- convolutions -----------------------------------------------------------------------------


@register("aten::conv_transpose1d", "aten::conv_transpose2d", "aten::conv_transpose3d")
def aten_conv_transpose(ctx: Context, node: Node) -> Ref:
    """conv_transpose2d.input(Tensor input, Tensor weight, Tensor? bias=None, SymInt[2] stride=1, SymInt[2] padding=0,
    SymInt[2] output_padding=0, SymInt groups=1, SymInt[2] dilation=1) -> Tensor.

    NNEF ``deconv``; ``output_padding`` shortens the end crop, or pads the end with the bias where it exceeds it.
    """
    spatial = node.args[0].rank - 2
    stride = _ints(node_arg(node, 3, "stride", 1), spatial)
    padding = _ints(node_arg(node, 4, "padding", 0), spatial)
    output_padding = _ints(node_arg(node, 5, "output_padding", 0), spatial)
    groups = int(node_arg(node, 6, "groups", 1))
    dilation = _ints(node_arg(node, 7, "dilation", 1), spatial)
    return conv_transpose(ctx, node, stride, padding, output_padding, groups, dilation)


@register("aten::convolution")
def aten_convolution(ctx: Context, node: Node) -> Ref:
    """convolution(Tensor input, Tensor weight, Tensor? bias, SymInt[] stride, SymInt[] padding, SymInt[] dilation,
    bool transposed, SymInt[] output_padding, SymInt groups) -> Tensor: a convolution or a transposed one.
    """
    spatial = node.args[0].rank - 2
    stride, padding, dilation = (_ints(node.args[i], spatial) for i in (3, 4, 5))
    groups = int(node.args[8])
    if not node.args[6]:
        return conv(ctx, node, stride, padding, dilation, groups)
    return conv_transpose(ctx, node, stride, padding, _ints(node.args[7], spatial), groups, dilation)


# --- normalisations ---------------------------------------------------------------------------


@register("aten::instance_norm")
def aten_instance_norm(ctx: Context, node: Node) -> Ref:
    """instance_norm(Tensor input, Tensor? weight, Tensor? bias, Tensor? running_mean, Tensor? running_var,
    bool use_input_stats, float momentum, float eps, bool cudnn_enabled) -> Tensor.
    """
    x = node.args[0]
    w, b, mean, var = (
        node_arg(node, i, name) for i, name in enumerate(("weight", "bias", "running_mean", "running_var"), 1)
    )
    use_input_stats = bool(node_arg(node, 5, "use_input_stats", True))
    eps = float(node_arg(node, 7, "eps", 1e-5))
    g, out = ctx.g, node.outputs[0]
    xr = ctx.ref(x)
    if use_input_stats or mean is None or var is None:
        y = standardize(ctx, xr, list(range(2, x.rank)), eps)
    else:
        centered = g.op("sub", xr, channel_count(ctx, mean, x.rank))
        y = g.op("mul", centered, g.op("rsqrt", g.op("add", channel_count(ctx, var, x.rank), eps)))
    if w is not None:
        y = g.op("mul", y, channel_count(ctx, w, x.rank))
    if b is not None:
        y = g.op("add", y, channel_count(ctx, b, x.rank))
    return g.op("copy", y, out=out.name)


@register("aten::_native_batch_norm_legit")
def aten_batch_norm_legit(ctx: Context, node: Node) -> Ref:
    """_native_batch_norm_legit(Tensor input, Tensor? weight, Tensor? bias, Tensor running_mean, Tensor running_var,
    bool training, float momentum, float eps) -> (Tensor, Tensor, Tensor); .no_stats (no running statistics).

    Training mode normalises with the batch's statistics (over every axis but the channels'); the running
    statistics are not updated. Only the output is exported.
    """
    x, w, b = node.args[:3]
    positional = node.args[:-1] if isinstance(node.args[-1], dict) else node.args
    stats = len(positional) >= 8  # the overload with running statistics
    mean, var = (node.args[3], node.args[4]) if stats else (None, None)
    training, eps = bool(positional[5 if stats else 3]), float(positional[7 if stats else 5])
    if not training and mean is not None and var is not None:
        return batch_norm(ctx, node, x, w, b, mean, var, eps)
    g, out = ctx.g, node.outputs[0]
    y = standardize(ctx, ctx.ref(x), [0, *range(2, x.rank)], eps)
    if w is not None:
        y = g.op("mul", y, channel_count(ctx, w, x.rank))
    if b is not None:
        y = g.op("add", y, channel_count(ctx, b, x.rank))
    return g.op("copy", y, out=out.name)


_EPS = {
    "f16": float(np.finfo(np.float16).eps),
    "f32": float(np.finfo(np.float32).eps),
    "f64": float(np.finfo(float).eps),
}


@register("aten::rms_norm")
def aten_rms_norm(ctx: Context, node: Node) -> Ref:
    """rms_norm(Tensor input, SymInt[] normalized_shape, Tensor? weight=None, float? eps=None) -> Tensor.

    ``eps=None`` is the machine epsilon of the input's dtype, as in PyTorch.
    """
    x = node.args[0]
    n = len(node.args[1])
    w = node_arg(node, 2, "weight")
    eps = node_arg(node, 3, "eps")
    eps = _EPS.get(x.dtype, _EPS["f32"]) if eps is None else float(eps)
    g, out = ctx.g, node.outputs[0]
    xr = ctx.ref(x)
    mean_square = g.op("mean_reduce", g.op("sqr", xr), axes=list(range(x.rank - n, x.rank)))
    y = g.op("mul", xr, g.op("rsqrt", g.op("add", mean_square, eps)))
    if w is None:
        return g.op("copy", y, out=out.name)
    return g.op("mul", y, align_rank(ctx, w, out.rank, out), out=out.name)


@register("aten::_weight_norm", "aten::_weight_norm_interface")
def aten_weight_norm(ctx: Context, node: Node) -> Ref:
    """_weight_norm(Tensor v, Tensor g, int dim=0) -> Tensor; _weight_norm_interface(v, g, dim) -> (Tensor, Tensor).

    ``v * g / ||v||`` (norm over every axis but ``dim``); of ``_weight_norm_interface``'s ``(w, norm)``, the weight
    only is exported.
    """
    v, gain = node.args[0], node.args[1]
    dim = node_arg(node, 2, "dim", 0)
    axes = list(range(v.rank)) if dim == -1 else [a for a in range(v.rank) if a != wrap_axis(dim, v.rank)]
    g, out = ctx.g, node.outputs[0]
    vr = ctx.ref(v)
    norm = g.op("sqrt", g.op("sum_reduce", g.op("sqr", vr), axes=axes), out=out.name + "_norm")
    return g.op("mul", vr, g.op("div", align_rank(ctx, gain, v.rank, out), norm), out=out.name)


@register("aten::baddbmm", "aten::addmm")
def aten_baddbmm(ctx: Context, node: Node) -> Ref:
    """baddbmm/addmm(Tensor self, Tensor batch1|mat1, Tensor batch2|mat2, *, Scalar beta=1, Scalar alpha=1) -> Tensor.

    ``beta * self + alpha * batch1 @ batch2`` (``addmm``: on matrices).
    """
    s, b1, b2 = node.args[0], node.args[1], node.args[2]
    beta, alpha = float(node_arg(node, 3, "beta", 1)), float(node_arg(node, 4, "alpha", 1))
    g, out = ctx.g, node.outputs[0]
    y = g.op("matmul", ctx.ref(b1), ctx.ref(b2), transposeA=False, transposeB=False, out=out.name + "_mm")
    if alpha != 1.0:
        y = g.op("mul", y, alpha)
    if beta == 0.0:
        return g.op("copy", y, out=out.name)
    bias = align_rank(ctx, s, out.rank, out)
    if beta != 1.0:
        bias = g.op("mul", bias, beta)
    return g.op("add", bias, y, out=out.name)


# --- pooling ----------------------------------------------------------------------------------


@register("aten::adaptive_max_pool1d", "aten::adaptive_max_pool2d")
def aten_adaptive_max_pool(ctx: Context, node: Node) -> list[Ref]:
    """adaptive_max_pool2d(Tensor self, int[2] output_size) -> (Tensor, Tensor): the values (indices are not
    exported: a model that uses them fails with an unknown tensor).
    """
    return [adaptive_pool(ctx, node, "max_reduce")]


# --- resizing ---------------------------------------------------------------------------------


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


def _resize_dynamic(ctx: Context, node: Node, mode: str, factors: list[int]) -> Ref:
    """Resizing by whole factors over axes whose size is symbolic, without any size-dependent constant.

    Output ``f * i + k`` takes input ``i`` (nearest), or for linear, input ``i`` blended with its neighbour
    ``i - 1`` or ``i + 1`` (edges repeated, as PyTorch clamps) by the offset of :func:`_whole_factor_taps`:
    a depthwise 3-tap convolution of the edge-padded input per phase ``k``, so that no slice bound depends on
    the symbolic size. The ``f`` phases are stacked after the axis and merged into it.
    """
    x, out = node.args[0], node.outputs[0]
    g = ctx.g
    if mode == "nearest" and ctx.tract_at_least(NEAREST_UPSAMPLE_TRACT):
        return g.op("nearest_upsample", ctx.ref(x), factor=factors, out=out.name)
    (channels,) = static_sizes(node, x, [1], f"{mode} resizing with dynamic channels")
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
                weights = np.broadcast_to(taps, (channels, 1, *kernel)).astype(NP_FLOAT.get(x.dtype, "float32"))
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


def _resize_gathered(ctx: Context, node: Node, mode: str, align: bool, factors: list[float | None]) -> Ref:
    """Resizing over dynamic sizes in any ratio (``interpolate(y, size=skip.shape[2:])`` in a U-Net), axis
    by axis as PyTorch computes it: each output position's source coordinate from the sizes at run time,
    the input rows there gathered (the two around it, blended, for linear).
    """
    x, out = node.args[0], node.outputs[0]
    g = ctx.g
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


def _resize(ctx: Context, node: Node, mode: str, linear: bool) -> Ref:
    x, out = node.args[0], node.outputs[0]
    axes = list(range(2, x.rank))
    align, factors = resize_args(node, linear)
    if any(not isinstance(x.shape[a], int) for a in axes) and any(f is None for f in factors):
        # a size given over dynamic axes (interpolate(size=(2 * H, 2 * W))): its whole factors
        factors = [f if f is not None else _whole_ratio(x.shape[a], out.shape[a]) for a, f in zip(axes, factors)]
    if (
        mode in ("nearest", "linear")
        and not align
        and any(not isinstance(x.shape[a], int) for a in axes)
        and all(f is not None and f >= 1 and float(f).is_integer() for f in factors)
    ):
        return _resize_dynamic(ctx, node, mode, [int(f or 1) for f in factors])
    if (
        ctx.tract
        and mode in ("nearest", "nearest-exact", "linear")
        and any(not isinstance(d, int) for a in axes for d in (x.shape[a], out.shape[a]))
    ):
        return _resize_gathered(ctx, node, mode, align, factors)
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
        matrix = _interpolation_matrix(mode, size, n, f, align).astype(NP_FLOAT.get(x.dtype, "float32"))
        lead = (1,) * (x.rank - 2)
        label = f"{out.name}_{mode.replace('-', '_')}wrap_axis{axis}"
        if axis == x.rank - 1:
            m = g.variable(matrix.T.reshape(lead + matrix.T.shape).copy(), label)
            y = g.op("matmul", y, m, transposeA=False, transposeB=False)
        else:
            m = g.variable(matrix.reshape(lead + matrix.shape).copy(), label)
            y = g.op("matmul", m, y, transposeA=False, transposeB=False)
    return g.op("copy", y, out=out.name)


@register("aten::upsample_nearest1d", "aten::upsample_nearest2d")
def aten_upsample_nearest(ctx: Context, node: Node) -> Ref:
    """upsample_nearest2d.vec(Tensor input, SymInt[]? output_size, float[]? scale_factors) -> Tensor.

    Whole factors as ``nearest_upsample``, other sizes as a constant selection matrix (exact).
    """
    return _resize(ctx, node, "nearest", linear=False)


@register("aten::_upsample_nearest_exact1d", "aten::_upsample_nearest_exact2d")
def aten_upsample_nearest_exact(ctx: Context, node: Node) -> Ref:
    """_upsample_nearest_exact2d.vec(Tensor input, SymInt[]? output_size, float[]? scale_factors) -> Tensor."""
    return _resize(ctx, node, "nearest-exact", linear=False)


@register("aten::upsample_linear1d", "aten::upsample_bilinear2d")
def aten_upsample_linear(ctx: Context, node: Node) -> Ref:
    """upsample_bilinear2d.vec(Tensor input, SymInt[]? output_size, bool align_corners, float[]? scale_factors).

    Each spatial axis is a matmul with a constant interpolation matrix built from the static sizes: exact for
    any size, scale factor and ``align_corners``, on both targets.
    """
    return _resize(ctx, node, "linear", linear=True)


@register("aten::_upsample_bilinear2d_aa")
def aten_upsample_bilinear_aa(ctx: Context, node: Node) -> Ref:
    """_upsample_bilinear2d_aa.vec(Tensor input, SymInt[]? output_size, bool align_corners, float[]? scale_factors).

    Antialiased bilinear resizing (``antialias=True``): a constant matrix per axis, as for plain bilinear.
    """
    return _resize(ctx, node, "linear-antialias", linear=True)


# --- channel rearrangements -------------------------------------------------------------------


@register("aten::pixel_shuffle")
def aten_pixel_shuffle(ctx: Context, node: Node) -> Ref:
    """pixel_shuffle(Tensor self, int upscale_factor) -> Tensor: ``[..., C*r*r, H, W] -> [..., C, H*r, W*r]``."""
    x, r = node.args[0], int(node.args[1])
    g, b = ctx.g, x.rank - 3
    y = g.op("reshape", ctx.ref(x), shape=[-1, r, r], axis_start=b, axis_count=1)
    y = g.op("transpose", y, axes=[*range(b), b, b + 3, b + 1, b + 4, b + 2])
    y = g.op("reshape", y, shape=[-1], axis_start=b + 1, axis_count=2)
    return g.op("reshape", y, shape=[-1], axis_start=b + 2, axis_count=2, out=node.outputs[0].name)


@register("aten::pixel_unshuffle")
def aten_pixel_unshuffle(ctx: Context, node: Node) -> Ref:
    """pixel_unshuffle(Tensor self, int downscale_factor) -> Tensor: ``[..., C, H*r, W*r] -> [..., C*r*r, H, W]``."""
    x, r = node.args[0], int(node.args[1])
    g, b = ctx.g, x.rank - 3
    y = g.op("reshape", ctx.ref(x), shape=[-1, r], axis_start=b + 1, axis_count=1)
    y = g.op("reshape", y, shape=[-1, r], axis_start=b + 3, axis_count=1)
    y = g.op("transpose", y, axes=[*range(b), b, b + 2, b + 4, b + 1, b + 3])
    return g.op("reshape", y, shape=[-1], axis_start=b, axis_count=3, out=node.outputs[0].name)


@register("aten::channel_shuffle", "aten::native_channel_shuffle")
def aten_channel_shuffle(ctx: Context, node: Node) -> Ref:
    """channel_shuffle(Tensor self, SymInt groups) -> Tensor: ``[N, g*k, ...] -> [N, k*g, ...]`` (transposed groups)."""
    x, groups = node.args[0], int(node.args[1])
    g = ctx.g
    y = g.op("reshape", ctx.ref(x), shape=[groups, -1], axis_start=1, axis_count=1)
    y = g.op("transpose", y, axes=[0, 2, 1, *range(3, x.rank + 1)])
    return g.op("reshape", y, shape=[-1], axis_start=1, axis_count=2, out=node.outputs[0].name)


# --- attention --------------------------------------------------------------------------------


@register("aten::scaled_dot_product_attention")
def aten_sdpa(ctx: Context, node: Node) -> Ref:
    """scaled_dot_product_attention(Tensor query, Tensor key, Tensor value, Tensor? attn_mask=None,
    float dropout_p=0.0, bool is_causal=False, *, float? scale=None, bool enable_gqa=False) -> Tensor.

    Expanded as matmul, scale, mask, softmax, matmul (dropout is off at inference), or written as tract's fused
    operator with ``reify_sdpa_operator``. With ``enable_gqa``, each run of ``Hq / Hk`` query heads attends one
    key/value head (grouped-query attention), without repeating the keys and values.
    """
    mask = node_arg(node, 3, "attn_mask")
    causal = bool(node_arg(node, 5, "is_causal", False))
    return sdpa(ctx, node, mask, causal, node_arg(node, 6, "scale"))


@register("aten::_scaled_dot_product_flash_attention_for_cpu")
def aten_sdpa_flash_cpu(ctx: Context, node: Node) -> Ref:
    """_scaled_dot_product_flash_attention_for_cpu(Tensor query, Tensor key, Tensor value, float dropout_p=0.0,
    bool is_causal=False, *, Tensor? attn_mask=None, float? scale=None) -> (Tensor output, Tensor logsumexp).

    The attention output only (the log-sum-exp is not exported).
    """
    causal = bool(node_arg(node, 4, "is_causal", False))
    return sdpa(ctx, node, node_arg(node, 5, "attn_mask"), causal, node_arg(node, 6, "scale"))


def _query_groups(node: Node, q: Value, k: Value, v: Value) -> int:
    """How many query heads share one key/value head: 1, or ``Hq / Hk`` under grouped-query attention."""
    if q.rank < 3 or k.rank < 3 or q.shape[-3] == k.shape[-3]:
        return 1
    hq, hk, hv = q.shape[-3], k.shape[-3], v.shape[-3]
    if not all(isinstance(h, int) for h in (hq, hk, hv)):
        raise TranslationError(
            f"{node.where()}: grouped-query attention needs static head counts, got query {list(q.shape)}, "
            f"key {list(k.shape)}, value {list(v.shape)}"
        )
    if hk != hv or int(hq) % int(hk):
        raise TranslationError(
            f"{node.where()}: grouped-query attention needs as many key as value heads, dividing the query "
            f"heads; got {hq} query, {hk} key and {hv} value heads"
        )
    return int(hq) // int(hk)


def sdpa(ctx: Context, node: Node, mask: Value | None, causal: bool, scale: float | None) -> Ref:
    """Attention of ``node``'s (query, key, value) arguments into its first output.

    ``causal`` masks as PyTorch does: query ``i`` attends the keys ``j <= i`` (the upper-left triangle, whatever
    the two lengths). Under grouped-query attention the query heads are split as ``[Hk, Hq / Hk]`` and the keys
    and values broadcast over the groups.
    """
    q, k, v = node.args[:3]
    head = q.shape[-1]
    if scale is None:
        if not isinstance(head, int):
            raise TranslationError(f"{node.where()}: attention with a dynamic head size needs an explicit scale")
        scale = 1.0 / math.sqrt(head)
    groups = _query_groups(node, q, k, v)
    g, out = ctx.g, node.outputs[0]
    rank = max(q.rank, k.rank, v.rank)
    qr, kr, vr = (align_rank(ctx, t, rank, out) for t in (q, k, v))
    if (
        ctx.flag("reify_sdpa_operator")
        and ctx.tract_at_least(SDPA_TRACT)
        and q.rank == k.rank == v.rank
        and (q.rank == 4 or (q.rank == 3 and groups == 1))
    ):
        return _reified_sdpa(ctx, node, qr, kr, vr, mask, causal, float(scale), rank)
    m = None if mask is None else align_rank(ctx, mask, rank, out)
    if groups > 1:
        axis = rank - 3
        qr = g.op("reshape", qr, shape=[k.shape[-3], groups], axis_start=axis, axis_count=1, out=q.name + "_groups")
        kr = g.op("unsqueeze", kr, axes=[axis + 1], out=k.name + "_groups")
        vr = g.op("unsqueeze", vr, axes=[axis + 1], out=v.name + "_groups")
        if m is not None and mask is not None:
            heads = mask.shape[-3] if mask.rank >= 3 else 1
            if heads == 1:
                m = g.op("unsqueeze", m, axes=[axis + 1], out=mask.name + "_groups")
            else:
                m = g.op("reshape", m, shape=[k.shape[-3], groups], axis_start=axis, axis_count=1)
        rank += 1
    lowest = _lowest(ctx, out.dtype, rank)
    scores = g.op("mul", g.op("matmul", qr, kr, transposeA=False, transposeB=True), float(scale))
    if causal:
        scores = g.op("select", _causal_keep(ctx, node, q.shape[-2], k.shape[-2], rank), scores, lowest)
    if m is not None and mask is not None:
        scores = g.op("select", m, scores, lowest) if mask.dtype == "bool" else g.op("add", scores, m)
    weights = g.op("softmax", scores, axes=[rank - 1])
    if groups == 1:
        return g.op("matmul", weights, vr, transposeA=False, transposeB=False, out=out.name)
    y = g.op("matmul", weights, vr, transposeA=False, transposeB=False, out=out.name + "_groups")
    return g.op("reshape", y, shape=[q.shape[-3]], axis_start=rank - 4, axis_count=2, out=out.name)


def _causal_keep(ctx: Context, node: Node, lq: Any, lk: Any, rank: int) -> Ref:
    """A boolean ``[.., Lq, Lk]`` mask, true where query ``i`` may attend key ``j`` (``j <= i``, as PyTorch).

    Static lengths give a constant; dynamic ones (tract) the lower triangle of a tiled ones tensor.
    """
    g = ctx.g
    if isinstance(lq, int) and isinstance(lk, int):
        keep = np.tril(np.ones((lq, lk), dtype=bool))
        return g.variable(
            np.broadcast_to(keep, (1,) * (rank - 2) + keep.shape).copy(), f"sdpa_causal_{lq}x{lk}_r{rank}"
        )
    if not ctx.tract:
        raise TranslationError(f"{node.where()}: causal attention over a dynamic length needs TractNNEF")
    g.need("tract_registry tract_core")
    one = g.variable(np.ones((1,) * rank, dtype=np.float32), f"constant_f32_1_r{rank}")
    ones = g.op("tile", one, repeats=[1] * (rank - 2) + [dim_ref(lq), dim_ref(lk)])
    lower = g.op("tract_core_trilu", ones, 0, upper=False)
    return g.op("gt", lower, 0.5)


def _lowest(ctx: Context, dtype: str, rank: int) -> Any:
    """The lowest finite value of ``dtype``, of rank ``rank``: masked scores vanish in the softmax."""
    return scalar_const(ctx, float(np.finfo(NP_DTYPES[dtype]).min), dtype, rank)


def _reified_sdpa(
    ctx: Context, node: Node, q: Ref, k: Ref, v: Ref, mask: Value | None, causal: bool, scale: float, rank: int
) -> Ref:
    """tract_transformers_sdpa (tract >= 0.22.0): one fused operator, the mask as an additive float tensor.

    tract splits the query heads into groups of ``Hq / Hk`` itself (grouped-query attention). Its causal mask
    is aligned on the last key, PyTorch's on the first: when the lengths may differ, the causal mask is given
    as an explicit mask instead. A mask broadcast over the queries or keys is repeated to their lengths.
    """
    g, out = ctx.g, node.outputs[0]
    g.need("tract_registry tract_transformers")
    lq, lk = node.args[0].shape[-2], node.args[1].shape[-2]
    inputs = [q, k, v]
    if mask is not None:
        m = align_rank(ctx, mask, rank, out)
        if mask.dtype == "bool":
            m = g.op("select", m, scalar_const(ctx, 0.0, out.dtype, rank), _lowest(ctx, out.dtype, rank))
        # tract reads the mask over every query and key: broadcast axes of one are repeated
        rows = mask.shape[-2] if mask.rank >= 2 else 1
        spread = [dim_ref(n) if size == 1 and n != 1 else 1 for size, n in ((rows, lq), (mask.shape[-1], lk))]
        if spread != [1, 1]:
            m = g.op("tile", m, repeats=[1] * (rank - 2) + spread, out=mask.name + "_full")
        inputs.append(m)
    elif causal and lq != lk:
        keep = _causal_keep(ctx, node, lq, lk, rank)
        inputs.append(g.op("select", keep, scalar_const(ctx, 0.0, out.dtype, rank), _lowest(ctx, out.dtype, rank)))
        causal = False
    accumulate = "f32" if ctx.flag("force_attention_inner_in_f32") else out.dtype
    return g.op(
        "tract_transformers_sdpa",
        *inputs,
        scale=scale,
        datum_type=out.dtype,
        acc_datum_type=accumulate,
        is_causal=causal,
        out=out.name,
    )


@register("aten::_safe_softmax")
def aten_safe_softmax(ctx: Context, node: Node) -> Ref:
    """_safe_softmax(Tensor self, int dim, ScalarType? dtype=None) -> Tensor: softmax, and zeros over a slice
    that is all -inf (torch 2.5 lowers the softmax of scaled_dot_product_attention to it).
    """
    x, out, g = node.args[0], node.outputs[0], ctx.g
    if x.dtype != out.dtype or not x.dtype.startswith("f"):
        raise TranslationError(f"{node.where()}: _safe_softmax from {x.dtype} to {out.dtype} is not supported")
    axis = wrap_axis(node.args[1], x.rank)
    xr = ctx.ref(x)
    y = g.op("softmax", xr, axes=[axis])
    # a slice is kept where any of its values is above -inf (tract's max_reduce starts at the lowest finite value)
    above = g.op("select", g.op("gt", xr, scalar_const(ctx, -math.inf, x.dtype, x.rank)), 1.0, 0.0)
    alive = g.op("gt", g.op("max_reduce", above, axes=[axis]), 0.0)
    return g.op("select", alive, y, scalar_const(ctx, 0.0, out.dtype, out.rank), out=out.name)
