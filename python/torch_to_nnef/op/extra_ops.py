"""Translations of sampling, sorting, scattering, patch extraction, elementwise extras and losses.

grid sampling and bicubic resizing, sort/argsort/topk, scatter and index_put families, cumprod,
im2col/col2im and ``Tensor.unfold``, meshgrid/diag/eye, atan2/hypot/lerp/addcmul/addcdiv,
nan and infinity tests, similarity and distance, the loss functions as graph ops, and the ops whose
output shape depends on the data (refused with the user's line).
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np

from torch_to_nnef.check.versions import GRID_SAMPLE_TRACT, version_text
from torch_to_nnef.errors import TranslationError
from torch_to_nnef.ir import Dim, Node, SymInt, Value
from torch_to_nnef.nnef.builder import Ref, dim_literal, literal
from torch_to_nnef.op.common import (
    NP_DTYPES,
    NP_FLOAT,
    align_rank,
    broadcast_shape,
    cast_to,
    conv,
    conv_transpose,
    dim_of,
    finish_reduction,
    node_arg,
    operand_ref,
    resize_args,
    scalar_const,
    source_scale,
    static_sizes,
    tract_only,
    trunc_ref,
    vector_norm,
    wrap_axis,
)
from torch_to_nnef.op.registry import Context, register
from torch_to_nnef.op.tensor_ops import aten_diagonal

# ----------------------------------------------------------------------------------------------
# Helpers


def _multi(ctx: Context, op: str, args: list[Any], outs: list[str], **attrs: Any) -> list[Ref]:
    """Emits ``(a, b) = op(args, key = value, ...)`` for an operator with several results."""
    ctx.g.require(op)
    refs = [ctx.g.fresh(o) for o in outs]
    parts = [literal(a) for a in args] + [f"{k} = {literal(v)}" for k, v in attrs.items()]
    ctx.g.lines.append(f"({', '.join(refs)}) = {op}({', '.join(parts)});")
    return refs


def _alias(ctx: Context, name: str, ref: Ref, shape: tuple[Dim, ...] = ()) -> Value:
    """A stand-in IR value whose NNEF expression is ``ref`` (to reuse translations that take values)."""
    value = Value(name=f"__{name}", dtype="f32", shape=shape)
    ctx.refs[value.name] = ref
    return value


def _float_input(ctx: Context, node: Node, v: Any, out: Value) -> Any:
    """An operand of a floating-point op, in the output's dtype and rank."""
    if not out.dtype.startswith("f"):
        raise TranslationError(f"{node.where()}: {node.kind} on {out.dtype} is not supported (floats only)")
    return operand_ref(ctx, node, v, out.dtype, out.rank)


def _finite_max(dtype: str) -> float:
    return float(np.finfo(NP_DTYPES[dtype]).max)


# ----------------------------------------------------------------------------------------------
# Grid sampling


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
def aten_grid_sampler(ctx: Context, node: Node) -> Ref:
    """grid_sampler(Tensor input, Tensor grid, int interpolation_mode, int padding_mode, bool align_corners).

    Modes 0 bilinear, 1 nearest, 2 bicubic; padding 0 zeros, 1 border, 2 reflection. tract >= 0.23.3 runs
    ``tract_core_grid_sample`` (every mode); otherwise 2-D bilinear or nearest sampling with zeros or border
    padding is written with specification ops: the weights of every input pixel for every output point
    (static image sizes), applied by a matmul along the width and a weighted sum along the height.
    """
    x, grid, out = node.args[0], node.args[1], node.outputs[0]
    mode, padding, align = int(node.args[2]), int(node.args[3]), bool(node.args[4])
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


# ----------------------------------------------------------------------------------------------
# Bicubic resizing


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


@register("aten::upsample_bicubic2d", "aten::_upsample_bicubic2d_aa")
def aten_upsample_bicubic2d(ctx: Context, node: Node) -> Ref:
    """upsample_bicubic2d.vec(Tensor input, SymInt[]? output_size, bool align_corners, float[]? scale_factors);
    _upsample_bicubic2d_aa alike (``antialias=True``).

    Separable: one matmul per spatial axis with a constant ``[out, in]`` matrix of the cubic taps (static
    sizes), on both targets.
    """
    x, out = node.args[0], node.outputs[0]
    antialias = node.kind == "aten::_upsample_bicubic2d_aa"
    align, factors = resize_args(node, True)
    sizes = static_sizes(node, x, [2, 3], "bicubic resizing")
    wanted = static_sizes(node, out, [2, 3], "bicubic resizing")
    g = ctx.g
    y = ctx.ref(x)
    dtype = NP_FLOAT.get(x.dtype, "float32")
    for axis, size, n, f in zip((2, 3), sizes, wanted, factors):
        make = _cubic_antialias_matrix if antialias else _cubic_matrix
        matrix = make(size, n, f, align).astype(dtype)
        label = f"{out.name}_bicubic_axis{axis}"
        if axis == 3:
            y = g.op("matmul", y, g.variable(matrix.T.reshape(1, 1, size, n).copy(), label))
        else:
            y = g.op("matmul", g.variable(matrix.reshape(1, 1, n, size).copy(), label), y)
    return g.op("copy", y, out=out.name)


# ----------------------------------------------------------------------------------------------
# Sorting


def _topk(ctx: Context, node: Node, x: Value, k: Any, axis: int, largest: bool, names: list[str]) -> list[Ref]:
    """``[values, indices]`` of the ``k`` largest (smallest) along ``axis``, sorted; for Khronos the values only."""
    if not ctx.tract:
        return [_ranked_values(ctx, node, x, k, axis, largest, names[0])]
    ctx.g.need("tract_registry tract_core")
    kref = k if isinstance(k, int) else _runtime_size(ctx, x, axis) if k == x.shape[axis] else None
    if kref is None:
        raise TranslationError(f"{node.where()}: topk of a symbolic k other than the axis size is not supported")
    return _multi(ctx, "tract_core_topk", [ctx.ref(x), kref], names, axis=axis, largest=largest)


def _ranked_values(ctx: Context, node: Node, x: Value, k: Any, axis: int, largest: bool, out: str) -> Ref:
    """The first ``k`` values in order with specification ops (static sizes): each element's rank is the count
    of the elements before it (smaller or larger, or equal at a lower index), and output ``j`` sums the
    elements of rank ``j``. The indices need integer arithmetic, which the specification lacks.
    """
    (n,) = static_sizes(node, x, [axis], f"{node.kind} for KhronosNNEF")
    if not isinstance(k, int) or not x.dtype.startswith("f"):
        raise TranslationError(
            f"{node.where()}: {node.kind} for KhronosNNEF needs a static k and floats: use TractNNEF"
        )
    g, last = ctx.g, x.rank - 1
    perm = [a for a in range(x.rank) if a != axis] + [axis]
    y = g.op("transpose", ctx.ref(x), axes=perm) if axis != last else ctx.ref(x)
    mine, other = g.op("unsqueeze", y, axes=[last + 1]), g.op("unsqueeze", y, axes=[last])  # [.., n, 1], [.., 1, n]
    lead = (1,) * last
    earlier = g.variable(np.tril(np.ones((n, n), dtype=bool), -1).reshape((*lead, n, n)), f"sort_earlier_{n}_r{x.rank}")
    ahead = g.op("or", g.op("gt" if largest else "lt", other, mine), g.op("and", g.op("eq", other, mine), earlier))
    rank = g.op("sum_reduce", g.op("select", ahead, 1.0, 0.0), axes=[last + 1])  # [.., n, 1]
    slots = g.variable(np.arange(k, dtype=np.float32).reshape((*lead, 1, k)), f"sort_slots_{k}_r{x.rank}")
    picked = g.op("select", g.op("eq", rank, slots), mine, 0.0)  # [.., n, k]
    values = g.op("squeeze", g.op("sum_reduce", picked, axes=[last]), axes=[last])
    if axis == last:
        return g.op("copy", values, out=out)
    return g.op("transpose", values, axes=[perm.index(a) for a in range(x.rank)], out=out)


def _runtime_size(ctx: Context, x: Value, axis: int) -> Ref:
    """The size of a dynamic ``axis`` of ``x`` as an i64 tensor computed when the model runs (tract's topk
    reads its ``k`` there, where a symbol would be left unresolved): a count of ones along the axis.
    """
    g = ctx.g
    others = [a for a in range(x.rank) if a != axis]
    line = ctx.ref(x)
    if others:
        line = g.op(
            "slice", line, axes=others, begin=[0] * len(others), end=[1] * len(others), stride=[1] * len(others)
        )
    ones = g.op("tract_core_cast", g.op("or", g.op("eq", line, line), g.op("ne", line, line)), to="i64")
    count = g.op("sum_reduce", ones, axes=list(range(x.rank)))
    return g.op("reshape", count, shape=[1])


def _sort_args(node: Node) -> tuple[int, bool]:
    """``(dim, descending)`` of sort(self, int dim=-1, bool descending=False) or sort.stable(self, *, stable, dim,
    descending); argsort alike.
    """
    return int(node_arg(node, 1, "dim", -1)), bool(node_arg(node, 2, "descending", False))


@register("aten::sort")
def aten_sort(ctx: Context, node: Node) -> list[Ref]:
    """sort(Tensor self, int dim=-1, bool descending=False) -> (Tensor values, Tensor indices).

    A ``tract_core_topk`` of the whole axis (stable: equal values keep their order); for Khronos the values
    only, by ranking.
    """
    x = node.args[0]
    dim, descending = _sort_args(node)
    axis = wrap_axis(dim, x.rank)
    values, indices = node.outputs
    return _topk(ctx, node, x, x.shape[axis], axis, descending, [values.name, indices.name])


@register("aten::argsort")
def aten_argsort(ctx: Context, node: Node) -> Ref:
    """argsort(Tensor self, int dim=-1, bool descending=False) -> Tensor (also argsort.stable)."""
    x, out = node.args[0], node.outputs[0]
    dim, descending = _sort_args(node)
    axis = wrap_axis(dim, x.rank)
    if not ctx.tract:
        raise TranslationError(
            f"{node.where()}: argsort gives indices, which need integer arithmetic that the NNEF specification "
            "lacks: use TractNNEF"
        )
    _, indices = _topk(ctx, node, x, x.shape[axis], axis, descending, [out.name + "_values", out.name])
    return indices


@register("aten::topk")
def aten_topk(ctx: Context, node: Node) -> list[Ref]:
    """topk(Tensor self, SymInt k, int dim=-1, bool largest=True, bool sorted=True) -> (Tensor values, Tensor indices).

    Always sorted (``sorted=False`` leaves the order unspecified, so sorted is a valid answer).
    """
    x = node.args[0]
    axis = wrap_axis(node_arg(node, 2, "dim", -1), x.rank)
    largest = bool(node_arg(node, 3, "largest", True))
    values, indices = node.outputs
    return _topk(ctx, node, x, node.args[1], axis, largest, [values.name, indices.name])


# ----------------------------------------------------------------------------------------------
# Scatters


_REDUCTIONS = {"sum": "add", "add": "add", "prod": "mul", "multiply": "mul", "amax": "max", "amin": "min"}


def _scatter_elements(ctx: Context, x: Any, index: Any, updates: Any, axis: int, reduction: str, out: str) -> Ref:
    return ctx.g.op("tract_core_scatter_elements", x, index, updates, axis=axis, reduction=reduction, out=out)


def _updates(ctx: Context, node: Node, src: Any, index: Value, dtype: str) -> Any:
    """``src`` as updates of the shape of ``index``: a scalar filled in, a larger tensor cropped."""
    if not isinstance(src, Value):
        return _filled_like(ctx, node, index, src, dtype)
    ref = cast_to(ctx, node, ctx.ref(src), src.dtype, dtype)
    if tuple(src.shape) == tuple(index.shape):
        return ref
    ends = [dim_of(node, d) for d in index.shape]
    return ctx.g.op(
        "slice", ref, axes=list(range(index.rank)), begin=[0] * index.rank, end=ends, stride=[1] * index.rank
    )


def _filled_like(ctx: Context, node: Node, like: Value, value: Any, dtype: str) -> Ref:
    """A tensor of ``like``'s shape filled with the scalar ``value`` of ``dtype``."""
    array = np.full((1,) * like.rank, value, dtype=NP_DTYPES[dtype])
    label = f"constant_{dtype}_{str(value).replace('-', 'minus_').replace('.', 'p')}_r{like.rank}"
    one = ctx.g.variable(array, label)
    return ctx.g.op("tile", one, repeats=[dim_of(node, d) for d in like.shape])


@register("aten::scatter")
def aten_scatter(ctx: Context, node: Node) -> Ref:
    """scatter.src(Tensor self, int dim, Tensor index, Tensor src) / scatter.value(self, dim, index, Scalar value);
    scatter.reduce / value_reduce (..., *, str reduce): 'add' or 'multiply'.
    """
    x, out = node.args[0], node.outputs[0]
    tract_only(ctx, node, "needs tract_core_scatter_elements (the NNEF specification has no scatter)")
    axis = wrap_axis(node.args[1], x.rank)
    index = node.args[2]
    reduce = node_arg(node, 4, "reduce")
    reduction = "none" if reduce is None else _REDUCTIONS[reduce]
    updates = _updates(ctx, node, node.args[3], index, out.dtype)
    return _scatter_elements(ctx, ctx.ref(x), ctx.ref(index), updates, axis, reduction, out.name)


@register("aten::scatter_add")
def aten_scatter_add(ctx: Context, node: Node) -> Ref:
    """scatter_add(Tensor self, int dim, Tensor index, Tensor src) -> Tensor."""
    x, out = node.args[0], node.outputs[0]
    tract_only(ctx, node, "needs tract_core_scatter_elements (the NNEF specification has no scatter)")
    axis, index = wrap_axis(node.args[1], x.rank), node.args[2]
    updates = _updates(ctx, node, node.args[3], index, out.dtype)
    return _scatter_elements(ctx, ctx.ref(x), ctx.ref(index), updates, axis, "add", out.name)


@register("aten::scatter_reduce")
def aten_scatter_reduce(ctx: Context, node: Node) -> Ref:
    """scatter_reduce.two(Tensor self, int dim, Tensor index, Tensor src, str reduce, *, bool include_self=True).

    'sum', 'prod', 'amax', 'amin' as the matching tract reduction; 'mean' (floats) as a sum over a count.
    Without ``include_self`` the scattered places are first reset to the reduction's identity.
    """
    x, out = node.args[0], node.outputs[0]
    tract_only(ctx, node, "needs tract_core_scatter_elements (the NNEF specification has no scatter)")
    axis, index, reduce = wrap_axis(node.args[1], x.rank), node.args[2], node.args[4]
    include_self = bool(node_arg(node, 5, "include_self", True))
    updates = _updates(ctx, node, node.args[3], index, out.dtype)
    g, xr, ir = ctx.g, ctx.ref(x), ctx.ref(index)
    if reduce == "mean":
        if not out.dtype.startswith("f"):
            raise TranslationError(f"{node.where()}: scatter_reduce 'mean' of {out.dtype} is not supported (floats)")
        base = (
            xr
            if include_self
            else _scatter_elements(
                ctx, xr, ir, _filled_like(ctx, node, index, 0.0, out.dtype), axis, "none", out.name + "_reset"
            )
        )
        total = _scatter_elements(ctx, base, ir, updates, axis, "add", out.name + "_sum")
        ones = _filled_like(ctx, node, index, 1.0, out.dtype)
        start = _filled_like(ctx, node, x, 1.0 if include_self else 0.0, out.dtype)
        count = _scatter_elements(ctx, start, ir, ones, axis, "add", out.name + "_count")
        mean = g.op("div", total, g.op("max", count, 1.0))
        return g.op("select", g.op("gt", count, 0.0), mean, xr, out=out.name)
    if reduce not in _REDUCTIONS:
        raise TranslationError(f"{node.where()}: scatter_reduce {reduce!r} is not supported")
    reduction = _REDUCTIONS[reduce]
    if not include_self:
        if out.dtype.startswith("f"):
            info: Any = np.finfo(NP_DTYPES[out.dtype])
        else:
            info = np.iinfo(NP_DTYPES[out.dtype])
        identity = {"add": 0, "mul": 1, "max": info.min, "min": info.max}[reduction]
        reset = _filled_like(ctx, node, index, identity, out.dtype)
        xr = _scatter_elements(ctx, xr, ir, reset, axis, "none", out.name + "_reset")
    return _scatter_elements(ctx, xr, ir, updates, axis, reduction, out.name)


def _index_along(ctx: Context, node: Node, index: Value, axis: int, like: Value) -> Ref:
    """A 1-D ``index`` of positions along ``axis`` as an elementwise index of ``like``'s shape."""
    y = (
        ctx.g.op("unsqueeze", ctx.ref(index), axes=[a for a in range(like.rank) if a != axis])
        if like.rank > 1
        else ctx.ref(index)
    )
    repeats = [1 if a == axis else dim_of(node, d) for a, d in enumerate(like.shape)]
    return ctx.g.op("tile", y, repeats=repeats) if any(r != 1 for r in repeats) else y


@register("aten::index_copy", "aten::index_add")
def aten_index_copy(ctx: Context, node: Node) -> Ref:
    """index_copy(Tensor self, int dim, Tensor index, Tensor source); index_add(self, dim, index, source, *,
    Scalar alpha=1): rows of ``source`` written (or added) at ``index`` along ``dim``.
    """
    x, out = node.args[0], node.outputs[0]
    tract_only(ctx, node, "needs tract_core_scatter_elements (the NNEF specification has no scatter)")
    axis, index, source = wrap_axis(node.args[1], x.rank), node.args[2], node.args[3]
    updates = cast_to(ctx, node, ctx.ref(source), source.dtype, out.dtype)
    if node.kind == "aten::index_add":
        alpha = node_arg(node, 4, "alpha", 1)
        if alpha != 1:
            updates = ctx.g.op("mul", updates, scalar_const(ctx, alpha, out.dtype, out.rank))
    if source.rank == 0:
        updates = ctx.g.op("unsqueeze", updates, axes=[0])
    like = source if source.rank else Value(source.name, source.dtype, (1,))
    positions = _index_along(ctx, node, index, axis, like)
    reduction = "add" if node.kind == "aten::index_add" else "none"
    return _scatter_elements(ctx, ctx.ref(x), positions, updates, axis, reduction, out.name)


@register("aten::index_put")
def aten_index_put(ctx: Context, node: Node) -> Ref:
    """index_put(Tensor self, Tensor?[] indices, Tensor values, bool accumulate=False) -> Tensor.

    ``x[i, j] = v`` out of place: a ``tract_core_scatter_nd`` over the indexed axes moved to the front. A
    boolean mask with a single value (``x[mask] = 0``) is a ``select`` on both targets.
    """
    x, out = node.args[0], node.outputs[0]
    indices, values = list(node.args[1]), node.args[2]
    accumulate = bool(node_arg(node, 3, "accumulate", False))
    g = ctx.g
    masks = [i for i in indices if isinstance(i, Value) and i.dtype == "bool"]
    if masks:
        return _masked_put(ctx, node, indices, values, accumulate)
    tract_only(ctx, node, "needs tract_core_scatter_nd (the NNEF specification has no scatter)")
    positions = [k for k, i in enumerate(indices) if i is not None]
    others = [a for a in range(x.rank) if a not in positions]
    perm = positions + others
    xr = g.op("transpose", ctx.ref(x), axes=perm) if perm != list(range(x.rank)) else ctx.ref(x)
    batch = broadcast_shape([indices[k].shape for k in positions])
    columns = []
    for k in positions:
        idx = indices[k]
        ref = cast_to(ctx, node, _tile_to(ctx, node, ctx.ref(idx), idx.shape, batch), idx.dtype, "i64")
        size = operand_ref(
            ctx, node, x.shape[k] if isinstance(x.shape[k], int) else SymInt(str(x.shape[k])), "i64", len(batch)
        )
        wrapped = g.op("select", g.op("lt", ref, scalar_const(ctx, 0, "i64", len(batch))), g.op("add", ref, size), ref)
        columns.append(g.op("unsqueeze", wrapped, axes=[len(batch)]))
    stacked = g.op("concat", columns, axis=len(batch)) if len(columns) > 1 else columns[0]
    # The values broadcast against x[indices]: [lead..., batch..., trail...] when the indexed axes are
    # adjacent and not first, else [batch..., others...]; scatter_nd wants [batch..., others...].
    adjacent = positions == list(range(positions[0], positions[0] + len(positions)))
    lead = positions[0] if adjacent else 0
    rest = [x.shape[a] for a in others]
    result = rest[:lead] + batch + rest[lead:]
    vr = cast_to(ctx, node, ctx.ref(values), values.dtype, out.dtype)
    vr = _tile_to(ctx, node, vr, values.shape, result)
    nb = len(batch)
    if lead:
        vr = g.op(
            "transpose", vr, axes=list(range(lead, lead + nb)) + list(range(lead)) + list(range(lead + nb, len(result)))
        )
    y = g.op("tract_core_scatter_nd", xr, stacked, vr, reduction="add" if accumulate else "none")
    if perm == list(range(x.rank)):
        return g.op("copy", y, out=out.name)
    return g.op("transpose", y, axes=[perm.index(a) for a in range(x.rank)], out=out.name)


def _tile_to(ctx: Context, node: Node, ref: Any, shape: tuple[Dim, ...], target: list[Dim]) -> Any:
    """``ref`` of ``shape`` broadcast (aligned right, then tiled) to ``target``."""
    if len(shape) < len(target):
        ref = ctx.g.op("unsqueeze", ref, axes=list(range(len(target) - len(shape))))
    have = (1,) * (len(target) - len(shape)) + tuple(shape)
    repeats = [dim_of(node, w) if h == 1 and w != 1 else 1 for h, w in zip(have, target)]
    return ctx.g.op("tile", ref, repeats=repeats) if any(r != 1 for r in repeats) else ref


def _masked_put(ctx: Context, node: Node, indices: list[Any], values: Value, accumulate: bool) -> Ref:
    x, out = node.args[0], node.outputs[0]
    lead = next(k for k, i in enumerate(indices) if i is not None)
    mask = indices[lead]
    if len([i for i in indices if i is not None]) != 1 or any(d != 1 for d in values.shape):
        raise TranslationError(
            f"{node.where()}: assigning through a boolean mask (x[mask] = v) is only supported with a single value: "
            "the number of selected elements depends on the data. Write torch.where(mask, v, x) instead"
        )
    g = ctx.g
    m = ctx.ref(mask)
    if lead:
        m = g.op("unsqueeze", m, axes=list(range(lead)))
    if lead + mask.rank < x.rank:
        m = g.op("unsqueeze", m, axes=list(range(lead + mask.rank, x.rank)))
    v = operand_ref(ctx, node, values, out.dtype, out.rank)
    if accumulate:
        v = g.op("add", ctx.ref(x), v)
    return g.op("select", m, v, ctx.ref(x), out=out.name)


# ----------------------------------------------------------------------------------------------
# Cumulative product


@register("aten::cumprod")
def aten_cumprod(ctx: Context, node: Node) -> Ref:
    """cumprod(Tensor self, int dim, *, ScalarType? dtype=None) -> Tensor.

    A scan by doubling: ``ceil(log2 n)`` products of the running result with itself shifted by 1, 2, 4...
    (the shift pads with ones); static axis, floats on both targets.
    """
    x, out = node.args[0], node.outputs[0]
    if not out.dtype.startswith("f"):
        raise TranslationError(f"{node.where()}: cumprod of {out.dtype} is not supported (floats only)")
    if x.rank == 0:
        return ctx.g.op("copy", cast_to(ctx, node, ctx.ref(x), x.dtype, out.dtype), out=out.name)
    axis = wrap_axis(node.args[1], x.rank)
    (n,) = static_sizes(node, x, [axis], "cumprod")
    g = ctx.g
    y = cast_to(ctx, node, ctx.ref(x), x.dtype, out.dtype)
    shift = 1
    while shift < n:
        padding = [(shift, 0) if a == axis else (0, 0) for a in range(x.rank)]
        shifted = g.op("pad", y, padding=padding, border="constant", value=1.0)
        shifted = g.op("slice", shifted, axes=[axis], begin=[0], end=[n], stride=[1])
        y = g.op("mul", y, shifted)
        shift *= 2
    return g.op("copy", y, out=out.name)


# ----------------------------------------------------------------------------------------------
# Patches: im2col, col2im, Tensor.unfold


def _patch_filter(ctx: Context, channels: int, kernel: list[int], dtype: str) -> Value:
    """``[C * kh * kw, 1, kh, kw]``: output channel ``c * K + k`` picks kernel position ``k`` of channel ``c``."""
    count = kernel[0] * kernel[1]
    eye = np.eye(count, dtype=NP_FLOAT.get(dtype, "float32")).reshape(count, 1, *kernel)
    weights = np.tile(eye, (channels, 1, 1, 1))
    ref = ctx.g.variable(weights, f"patches_{channels}x{kernel[0]}x{kernel[1]}_{dtype}")
    return _alias(ctx, str(ref), ref, weights.shape)


@register("aten::im2col")
def aten_im2col(ctx: Context, node: Node) -> Ref:
    """im2col(Tensor self, int[2] kernel_size, int[2] dilation, int[2] padding, int[2] stride) -> Tensor (F.unfold).

    A depthwise convolution with a one-hot filter (exact: one tap per output), the spatial axes merged.
    """
    x, out = node.args[0], node.outputs[0]
    kernel, dilation, padding, stride = (list(node.args[i]) for i in (1, 2, 3, 4))
    batched = x.rank == 4
    (channels,) = static_sizes(node, x, [1 if batched else 0], "F.unfold")
    g = ctx.g
    src = x if batched else _alias(ctx, x.name + "_batched", g.op("unsqueeze", ctx.ref(x), axes=[0]), (1, *x.shape))
    fake = Node(
        node.kind,
        (src, _patch_filter(ctx, channels, kernel, x.dtype), None),
        (Value(out.name + "_patches", out.dtype, ()),),
        source=node.source,
    )
    y = conv(ctx, fake, stride, padding, dilation, channels)
    y = g.op("reshape", y, shape=[-1], axis_start=2, axis_count=2)
    if not batched:
        return g.op("squeeze", y, axes=[0], out=out.name)
    return g.op("copy", y, out=out.name)


@register("aten::col2im")
def aten_col2im(ctx: Context, node: Node) -> Ref:
    """col2im(Tensor self, SymInt[2] output_size, int[2] kernel_size, int[2] dilation, int[2] padding, int[2] stride)
    -> Tensor (F.fold): a transposed depthwise convolution with the one-hot filter of :func:`aten_im2col`
    (overlapping patches add up).
    """
    x, out = node.args[0], node.outputs[0]
    size, kernel, dilation, padding, stride = (list(node.args[i]) for i in (1, 2, 3, 4, 5))
    batched = x.rank == 3
    g = ctx.g
    (rows,) = static_sizes(node, x, [1 if batched else 0], "F.fold")
    channels = rows // (kernel[0] * kernel[1])
    blocks = [
        (s + 2 * p - d * (k - 1) - 1) // st + 1 for s, p, d, k, st in zip(size, padding, dilation, kernel, stride)
    ]
    y = ctx.ref(x) if batched else g.op("unsqueeze", ctx.ref(x), axes=[0])
    y = g.op("reshape", y, shape=blocks, axis_start=2, axis_count=1)
    natural = [
        (b - 1) * st - 2 * p + d * (k - 1) + 1 for b, st, p, d, k in zip(blocks, stride, padding, dilation, kernel)
    ]
    extra = [s - n for s, n in zip(size, natural)]
    src = _alias(ctx, out.name + "_blocks", y, (x.shape[0] if batched else 1, rows, *blocks))
    filt = _patch_filter(ctx, channels, kernel, x.dtype)
    target = Value(out.name if batched else out.name + "_batched", out.dtype, ())
    fake = Node(node.kind, (src, filt, None), (target,), source=node.source)
    y = conv_transpose(ctx, fake, stride, padding, extra, channels, dilation)
    if not batched:
        return g.op("squeeze", y, axes=[0], out=out.name)
    return y


@register("aten::unfold")
def aten_unfold(ctx: Context, node: Node) -> Ref:
    """unfold(Tensor self, int dimension, int size, int step) -> Tensor: windows along ``dimension`` as a new
    last axis (one strided slice per window position, stacked).
    """
    x, out = node.args[0], node.outputs[0]
    size, step = int(node.args[2]), int(node.args[3])
    g = ctx.g
    if x.rank == 0:
        return g.op("unsqueeze", ctx.ref(x), axes=[0], out=out.name)
    axis = wrap_axis(node.args[1], x.rank)
    windows = out.shape[axis]
    if not isinstance(windows, int) and not ctx.tract:
        static_sizes(node, out, [axis], "Tensor.unfold (without TractNNEF)")

    def end(k: int) -> Any:  # just after the last element: tract then proves every slice has ``windows`` rows
        if isinstance(windows, int):
            return k + (windows - 1) * step + 1
        return Ref(f"{k}+{step}*({dim_literal(windows)}-1)+1")

    parts = [g.op("slice", ctx.ref(x), axes=[axis], begin=[k], end=[end(k)], stride=[step]) for k in range(size)]
    return g.op("stack", parts, axis=x.rank, out=out.name)


# ----------------------------------------------------------------------------------------------
# Creation: meshgrid, diag, eye


@register("aten::meshgrid")
def aten_meshgrid(ctx: Context, node: Node) -> list[Ref]:
    """meshgrid(Tensor[] tensors) / meshgrid.indexing(Tensor[] tensors, *, str indexing) -> Tensor[]."""
    tensors = list(node.args[0])
    indexing = node_arg(node, 1, "indexing", "ij")
    g, refs = ctx.g, []
    for i, (t, out) in enumerate(zip(tensors, node.outputs)):
        axis = i
        if indexing == "xy" and len(tensors) >= 2 and i < 2:
            axis = 1 - i
        y = ctx.ref(t) if t.rank == 1 else g.op("reshape", ctx.ref(t), shape=[1])
        if out.rank > 1:
            y = g.op("unsqueeze", y, axes=[a for a in range(out.rank) if a != axis])
        repeats = [1 if a == axis else dim_of(node, d) for a, d in enumerate(out.shape)]
        refs.append(
            g.op("tile", y, repeats=repeats, out=out.name)
            if any(r != 1 for r in repeats)
            else g.op("copy", y, out=out.name)
        )
    return refs


@register("aten::diag")
def aten_diag(ctx: Context, node: Node) -> Ref:
    """diag(Tensor self, int diagonal=0) -> Tensor: a vector onto a diagonal of a square matrix, or a matrix's
    diagonal as a vector.
    """
    x, out = node.args[0], node.outputs[0]
    k = int(node_arg(node, 1, "diagonal", 0))
    if x.rank == 2:
        fake = Node("aten::diagonal", (x, k, 0, 1), node.outputs, node.module_path, node.module_class, node.source)
        return cast(Ref, aten_diagonal(ctx, fake))
    (n,) = static_sizes(node, x, [0], "diag")
    size = n + abs(k)
    g = ctx.g
    # Pad the vector to the matrix size; row r holds x[r] at column r + k (k >= 0), column c holds x[c] at
    # row c - k (k < 0).
    y = g.op("pad", ctx.ref(x), padding=[(0, abs(k))], border="constant", value=0.0) if k else ctx.ref(x)
    y = g.op("unsqueeze", y, axes=[1 if k >= 0 else 0])
    y = g.op("tile", y, repeats=[1, size] if k >= 0 else [size, 1])
    mask = g.variable(np.eye(size, k=k, dtype=bool), f"diag_mask_{size}_{str(k).replace('-', 'minus_')}")
    return g.op("select", mask, y, scalar_const(ctx, 0, out.dtype, 2), out=out.name)


@register("aten::eye")
def aten_eye(ctx: Context, node: Node) -> Ref:
    """eye(SymInt n, *, ScalarType? dtype, ...) / eye.m(SymInt n, SymInt m, ...) -> Tensor.

    A constant for static sizes; with tract, ``range(n)[:, None] == range(m)[None, :]`` for dynamic ones.
    """
    out = node.outputs[0]
    rows, cols = out.shape
    g = ctx.g
    if isinstance(rows, int) and isinstance(cols, int):
        array = np.eye(rows, cols, dtype=NP_DTYPES[out.dtype])
        return g.op("copy", g.variable(array, f"eye_{out.dtype}_{rows}x{cols}"), out=out.name)
    tract_only(ctx, node, "with a dynamic size needs tract_core_range")
    i = g.op("unsqueeze", g.op("tract_core_range", 0, dim_of(node, rows), 1), axes=[1])
    j = g.op("unsqueeze", g.op("tract_core_range", 0, dim_of(node, cols), 1), axes=[0])
    return g.op("tract_core_cast", g.op("eq", i, j), to=out.dtype, out=out.name)


# ----------------------------------------------------------------------------------------------
# Elementwise extras


@register("aten::atan2")
def aten_atan2(ctx: Context, node: Node) -> Ref:
    """atan2(Tensor self, Tensor other) -> Tensor: the angle of (other, self), in (-pi, pi]."""
    out = node.outputs[0]
    y, x = (_float_input(ctx, node, v, out) for v in node.args[:2])
    return atan2(ctx, y, x, out.name)


def atan2(ctx: Context, y: Any, x: Any, out: str | None = None) -> Ref:
    """The angle of the point (x, y) in (-pi, pi] (0 at the origin) with specification ops only."""
    g = ctx.g
    base = g.op("atan", g.op("div", y, x))
    turned = g.op("select", g.op("ge", y, 0.0), g.op("add", base, math.pi), g.op("sub", base, math.pi))
    vertical = g.op("select", g.op("gt", y, 0.0), math.pi / 2, g.op("select", g.op("lt", y, 0.0), -math.pi / 2, 0.0))
    angle = g.op("select", g.op("lt", x, 0.0), turned, base)
    return g.op("select", g.op("eq", x, 0.0), vertical, angle, out=out)


@register("aten::hypot")
def aten_hypot(ctx: Context, node: Node) -> Ref:
    """hypot(Tensor self, Tensor other) -> Tensor: sqrt(self^2 + other^2)."""
    out = node.outputs[0]
    a, b = (_float_input(ctx, node, v, out) for v in node.args[:2])
    g = ctx.g
    return g.op("sqrt", g.op("add", g.op("sqr", a), g.op("sqr", b)), out=out.name)


@register("aten::lerp")
def aten_lerp(ctx: Context, node: Node) -> Ref:
    """lerp.Scalar(Tensor self, Tensor end, Scalar weight) / lerp.Tensor(self, end, Tensor weight).

    As PyTorch: ``start + w * (end - start)`` for ``|w| < 0.5``, else ``end - (end - start) * (1 - w)``.
    """
    out = node.outputs[0]
    start, end, weight = (_float_input(ctx, node, v, out) for v in node.args[:3])
    g = ctx.g
    diff = g.op("sub", end, start)
    low = g.op("add", start, g.op("mul", weight, diff))
    high = g.op("sub", end, g.op("mul", diff, g.op("sub", 1.0, weight)))
    if isinstance(weight, float):
        return g.op("copy", low if abs(weight) < 0.5 else high, out=out.name)
    return g.op("select", g.op("lt", g.op("abs", weight), 0.5), low, high, out=out.name)


@register("aten::addcmul", "aten::addcdiv")
def aten_addcmul(ctx: Context, node: Node) -> Ref:
    """addcmul(Tensor self, Tensor tensor1, Tensor tensor2, *, Scalar value=1): self + value * t1 * t2; addcdiv:
    self + value * t1 / t2.
    """
    out = node.outputs[0]
    if node.kind == "aten::addcdiv" and not out.dtype.startswith("f"):
        raise TranslationError(f"{node.where()}: addcdiv of {out.dtype} is not supported (floats only)")
    x, a, b = (operand_ref(ctx, node, v, out.dtype, out.rank) for v in node.args[:3])
    value = node_arg(node, 3, "value", 1)
    g = ctx.g
    term = g.op("mul" if node.kind == "aten::addcmul" else "div", a, b)
    if value != 1:
        term = g.op("mul", scalar_const(ctx, value, out.dtype, out.rank), term)
    return g.op("add", x, term, out=out.name)


def _is_inf(ctx: Context, node: Node, x: Value, positive: bool, negative: bool) -> Ref:
    """Whether each element is an infinity (of the signs asked): beyond the dtype's largest finite value."""
    g, xr = ctx.g, ctx.ref(x)
    if not x.dtype.startswith("f"):
        return g.op("ne", xr, xr)  # integers are never infinite (a false of the input's shape)
    top = scalar_const(ctx, _finite_max(x.dtype), x.dtype, x.rank)
    if positive and negative:
        return g.op("gt", g.op("abs", xr), top)
    return g.op("gt", xr if positive else g.op("neg", xr), top)


@register("aten::isnan")
def aten_isnan(ctx: Context, node: Node) -> Ref:
    """isnan(Tensor self) -> Tensor: ``x != x`` (true for NaN only)."""
    xr = ctx.ref(node.args[0])
    return ctx.g.op("ne", xr, xr, out=node.outputs[0].name)


@register("aten::isinf", "aten::isposinf", "aten::isneginf")
def aten_isinf(ctx: Context, node: Node) -> Ref:
    """isinf/isposinf/isneginf(Tensor self) -> Tensor: beyond the largest finite value of the dtype."""
    positive = node.kind != "aten::isneginf"
    negative = node.kind != "aten::isposinf"
    y = _is_inf(ctx, node, node.args[0], positive, negative)
    return ctx.g.op("copy", y, out=node.outputs[0].name)


@register("aten::isfinite")
def aten_isfinite(ctx: Context, node: Node) -> Ref:
    """isfinite(Tensor self) -> Tensor: neither NaN nor infinite (``|x| <= max``, false for NaN)."""
    x = node.args[0]
    g, xr = ctx.g, ctx.ref(x)
    if not x.dtype.startswith("f"):  # integers are always finite
        if ctx.tract or not all(isinstance(d, int) for d in x.shape):
            return g.op("eq", xr, xr, out=node.outputs[0].name)
        # the specification compares scalars only: a constant of trues
        dims = [int(d) for d in x.shape]
        truth = g.variable(np.ones(dims, dtype=bool), f"isfinite_{x.dtype}_{'x'.join(map(str, dims))}")
        return g.op("copy", truth, out=node.outputs[0].name)
    top = scalar_const(ctx, _finite_max(x.dtype), x.dtype, x.rank)
    return g.op("le", g.op("abs", xr), top, out=node.outputs[0].name)


@register("aten::nan_to_num")
def aten_nan_to_num(ctx: Context, node: Node) -> Ref:
    """nan_to_num(Tensor self, float? nan=None, float? posinf=None, float? neginf=None) -> Tensor.

    NaN becomes ``nan`` (0), +inf ``posinf`` and -inf ``neginf`` (the dtype's largest and lowest by default).
    """
    x, out = node.args[0], node.outputs[0]
    g, xr = ctx.g, ctx.ref(x)
    if not x.dtype.startswith("f"):
        return g.op("copy", xr, out=out.name)
    top = _finite_max(x.dtype)
    nan = node_arg(node, 1, "nan")
    posinf, neginf = node_arg(node, 2, "posinf"), node_arg(node, 3, "neginf")

    def value(v: Any, default: float) -> Any:
        return scalar_const(ctx, default if v is None else v, x.dtype, x.rank)

    y = g.op("select", _is_inf(ctx, node, x, True, False), value(posinf, top), xr)
    y = g.op("select", _is_inf(ctx, node, x, False, True), value(neginf, -top), y)
    return g.op("select", g.op("ne", xr, xr), value(nan, 0.0), y, out=out.name)


@register("aten::frac")
def aten_frac(ctx: Context, node: Node) -> Ref:
    """frac(Tensor self) -> Tensor: ``x - trunc(x)`` (the sign of x)."""
    xr = ctx.ref(node.args[0])
    return ctx.g.op("sub", xr, trunc_ref(ctx, xr), out=node.outputs[0].name)


# ----------------------------------------------------------------------------------------------
# Similarity and distance


@register("aten::cosine_similarity")
def aten_cosine_similarity(ctx: Context, node: Node) -> Ref:
    """cosine_similarity(Tensor x1, Tensor x2, int dim=1, float eps=1e-08) -> Tensor.

    Each operand divided by its norm (at least ``eps``), then the sum of the products over ``dim``.
    """
    out = node.outputs[0]
    rank = out.rank + 1
    a, b = (operand_ref(ctx, node, v, out.dtype, rank) for v in node.args[:2])
    axis = wrap_axis(node_arg(node, 2, "dim", 1), rank)
    eps = float(node_arg(node, 3, "eps", 1e-8))
    g = ctx.g
    unit_a = g.op("div", a, g.op("max", vector_norm(ctx, node, a, 2, [axis]), eps))
    unit_b = g.op("div", b, g.op("max", vector_norm(ctx, node, b, 2, [axis]), eps))
    y = g.op("sum_reduce", g.op("mul", unit_a, unit_b), axes=[axis])
    return g.op("squeeze", y, axes=[axis], out=out.name)


@register("aten::pairwise_distance")
def aten_pairwise_distance(ctx: Context, node: Node) -> Ref:
    """pairwise_distance(Tensor x1, Tensor x2, float p=2, float eps=1e-06, bool keepdim=False) -> Tensor.

    The p-norm of ``x1 - x2 + eps`` over the last axis.
    """
    x1, x2, out = node.args[0], node.args[1], node.outputs[0]
    rank = max(x1.rank, x2.rank)
    a, b = (operand_ref(ctx, node, v, out.dtype, rank) for v in (x1, x2))
    p = float(node_arg(node, 2, "p", 2.0))
    eps = float(node_arg(node, 3, "eps", 1e-6))
    keep = bool(node_arg(node, 4, "keepdim", False))
    g = ctx.g
    diff = g.op("add", g.op("sub", a, b), eps)
    order: Any = p if not p.is_integer() or math.isinf(p) else int(p)
    y = vector_norm(ctx, node, diff, order, [rank - 1])
    return finish_reduction(ctx, y, [rank - 1], keep, out.name)


# ----------------------------------------------------------------------------------------------
# Losses


_REDUCTION_NAMES = ("none", "mean", "sum")


def _reduced(ctx: Context, node: Node, loss: Ref, rank: int, reduction: int) -> Ref:
    """The per-element ``loss`` (of rank ``rank``) reduced as asked: 0 none, 1 mean, 2 sum."""
    out, g = node.outputs[0], ctx.g
    if reduction == 0 or rank == 0:
        return g.op("copy", loss, out=out.name)
    op = "mean_reduce" if reduction == 1 else "sum_reduce"
    axes = list(range(rank))
    return g.op("squeeze", g.op(op, loss, axes=axes), axes=axes, out=out.name)


def _reduction(node: Node, index: int) -> int:
    value = node_arg(node, index, "reduction", 1)
    if value not in (0, 1, 2):
        raise TranslationError(f"{node.where()}: unknown loss reduction {value!r}")
    return int(value)


@register("aten::broadcast_tensors")
def aten_broadcast_tensors(ctx: Context, node: Node) -> list[Ref]:
    """broadcast_tensors(Tensor[] tensors) -> Tensor[]: each tensor tiled to the common shape."""
    refs = []
    for t, out in zip(node.args[0], node.outputs):
        y = _tile_to(ctx, node, ctx.ref(t), t.shape, list(out.shape))
        refs.append(ctx.g.op("copy", y, out=out.name))
    return refs


@register("aten::mse_loss", "aten::l1_loss")
def aten_mse_loss(ctx: Context, node: Node) -> Ref:
    """mse_loss/l1_loss(Tensor self, Tensor target, int reduction=Mean) -> Tensor."""
    a, b = node.args[0], node.args[1]
    rank = max(a.rank, b.rank)
    diff = ctx.g.op("sub", align_rank(ctx, a, rank, a), align_rank(ctx, b, rank, b))
    loss = ctx.g.op("sqr" if node.kind == "aten::mse_loss" else "abs", diff)
    return _reduced(ctx, node, loss, rank, _reduction(node, 2))


@register("aten::smooth_l1_loss", "aten::huber_loss")
def aten_smooth_l1_loss(ctx: Context, node: Node) -> Ref:
    """smooth_l1_loss(Tensor self, Tensor target, int reduction=Mean, float beta=1.0);
    huber_loss(self, target, reduction=Mean, float delta=1.0).

    smooth L1: ``0.5 d^2 / beta`` below ``beta``, else ``|d| - 0.5 beta``; Huber: ``0.5 d^2`` below ``delta``,
    else ``delta (|d| - 0.5 delta)``.
    """
    a, b = node.args[0], node.args[1]
    rank = max(a.rank, b.rank)
    limit = float(node_arg(node, 3, "beta" if node.kind == "aten::smooth_l1_loss" else "delta", 1.0))
    g = ctx.g
    d = g.op("abs", g.op("sub", align_rank(ctx, a, rank, a), align_rank(ctx, b, rank, b)))
    if node.kind == "aten::smooth_l1_loss":
        if limit == 0.0:
            loss = d
        else:
            loss = g.op(
                "select",
                g.op("lt", d, limit),
                g.op("div", g.op("mul", g.op("sqr", d), 0.5), limit),
                g.op("sub", d, 0.5 * limit),
            )
    else:
        loss = g.op(
            "select",
            g.op("lt", d, limit),
            g.op("mul", g.op("sqr", d), 0.5),
            g.op("mul", g.op("sub", d, 0.5 * limit), limit),
        )
    return _reduced(ctx, node, loss, rank, _reduction(node, 2))


def _class_terms(
    ctx: Context, node: Node, logp: Any, x: Value, target: Value, weight: Value | None, ignore: int
) -> tuple[Ref, Ref, Ref]:
    """For class-index targets: ``(-w[t] * logp[t], w[t] masked, valid)`` per element (classes on axis 1 of a
    batched input, axis 0 of a single one); ignored elements give 0.
    """
    tract_only(ctx, node, "with class indices needs integer comparisons, which the NNEF specification lacks")
    g = ctx.g
    axis = 1 if x.rank > 1 else 0
    (classes,) = static_sizes(node, x, [axis], "a loss over classes")
    shape = [1] * x.rank
    shape[axis] = classes
    ids = g.variable(np.arange(classes, dtype=np.int64).reshape(shape), f"class_ids_{classes}_r{x.rank}_a{axis}")
    t = g.op("unsqueeze", ctx.ref(target), axes=[axis])
    t = cast_to(ctx, node, t, target.dtype, "i64")
    onehot = g.op("eq", t, ids)
    valid = g.op("ne", t, scalar_const(ctx, ignore, "i64", x.rank))
    w = _class_weight(ctx, node, x, weight, axis)
    picked = g.op("select", onehot, g.op("mul", logp, w) if w is not None else logp, 0.0)
    picked_weight = g.op("select", onehot, w if w is not None else 1.0, 0.0)
    nll = g.op("neg", g.op("sum_reduce", picked, axes=[axis]))
    wt = g.op("sum_reduce", picked_weight, axes=[axis])
    valid_f = g.op("select", valid, 1.0, 0.0)
    return g.op("mul", nll, valid_f), g.op("mul", wt, valid_f), valid_f


def _class_weight(ctx: Context, node: Node, x: Value, weight: Value | None, axis: int) -> Ref | None:
    if weight is None:
        return None
    axes = [a for a in range(x.rank) if a != axis]
    return ctx.g.op("unsqueeze", ctx.ref(weight), axes=axes) if axes else ctx.ref(weight)


def _squeeze_class(ctx: Context, y: Ref, x: Value) -> Ref:
    axis = 1 if x.rank > 1 else 0
    return ctx.g.op("squeeze", y, axes=[axis])


def _class_loss(ctx: Context, node: Node, logp: Any, label_smoothing: float) -> Ref:
    """nll_loss / cross_entropy over log-probabilities ``logp`` (the class axis of ``node``'s input)."""
    x, target = node.args[0], node.args[1]
    weight = node_arg(node, 2, "weight")
    reduction = _reduction(node, 3)
    ignore = int(node_arg(node, 4, "ignore_index", -100))
    g, out = ctx.g, node.outputs[0]
    nll, wt, valid = _class_terms(ctx, node, logp, x, target, weight, ignore)
    nll, wt, valid = (_squeeze_class(ctx, v, x) for v in (nll, wt, valid))
    rank = target.rank
    axes = list(range(rank))

    def total(v: Ref) -> Ref:
        return g.op("sum_reduce", v, axes=axes) if axes else v

    def scalar(v: Ref) -> Ref:
        return g.op("squeeze", v, axes=axes) if axes else v

    loss: Ref = nll
    if reduction == 1:
        loss = g.op("div", total(nll), total(wt))
    elif reduction == 2:
        loss = total(nll)
    if label_smoothing > 0.0:
        axis = 1 if x.rank > 1 else 0
        classes = x.shape[axis]
        w = _class_weight(ctx, node, x, weight, axis)
        smooth = g.op("neg", g.op("sum_reduce", g.op("mul", logp, w) if w is not None else logp, axes=[axis]))
        smooth = g.op("mul", _squeeze_class(ctx, smooth, x), valid)
        if reduction == 1:
            smooth = (
                g.op("div", total(smooth), total(wt))
                if weight is not None
                else (g.op("mean_reduce", smooth, axes=axes) if axes else smooth)
            )
        elif reduction == 2:
            smooth = total(smooth)
        loss = g.op(
            "add", g.op("mul", loss, 1.0 - label_smoothing), g.op("mul", smooth, label_smoothing / float(classes))
        )
    return g.op("copy", scalar(loss) if reduction else loss, out=out.name)


def _log_softmax(ctx: Context, x: Value) -> Ref:
    axis = 1 if x.rank > 1 else 0
    g, xr = ctx.g, ctx.ref(x)
    shifted = g.op("sub", xr, g.op("max_reduce", xr, axes=[axis]))
    return g.op("sub", shifted, g.op("log", g.op("sum_reduce", g.op("exp", shifted), axes=[axis])))


@register("aten::nll_loss_nd")
def aten_nll_loss(ctx: Context, node: Node) -> Ref:
    """nll_loss_nd(Tensor self, Tensor target, Tensor? weight=None, int reduction=Mean, SymInt ignore_index=-100).

    ``-w[t] * self[t]`` per element; the mean divides by the sum of the weights of the counted elements.
    """
    return _class_loss(ctx, node, ctx.ref(node.args[0]), 0.0)


@register("aten::cross_entropy_loss")
def aten_cross_entropy_loss(ctx: Context, node: Node) -> Ref:
    """cross_entropy_loss(Tensor self, Tensor target, Tensor? weight=None, int reduction=Mean,
    SymInt ignore_index=-100, float label_smoothing=0.0) -> Tensor.

    Class indices (integer target, TractNNEF) or class probabilities (float target, both targets).
    """
    x, target = node.args[0], node.args[1]
    smoothing = float(node_arg(node, 5, "label_smoothing", 0.0))
    logp = _log_softmax(ctx, x)
    if target.dtype.startswith("f"):
        return _probability_loss(ctx, node, logp, smoothing)
    return _class_loss(ctx, node, logp, smoothing)


def _probability_loss(ctx: Context, node: Node, logp: Ref, smoothing: float) -> Ref:
    x, target, out = node.args[0], node.args[1], node.outputs[0]
    weight = node_arg(node, 2, "weight")
    reduction = _reduction(node, 3)
    axis = 1 if x.rank > 1 else 0
    classes = x.shape[axis]
    g = ctx.g
    t = ctx.ref(target)
    if smoothing > 0.0:
        t = g.op("add", g.op("mul", t, 1.0 - smoothing), smoothing / float(classes))
    w = _class_weight(ctx, node, x, weight, axis)
    terms = g.op("mul", logp, t)
    if w is not None:
        terms = g.op("mul", terms, w)
    loss = _squeeze_class(ctx, g.op("neg", g.op("sum_reduce", terms, axes=[axis])), x)
    return _reduced(ctx, node, loss, x.rank - 1, reduction) if reduction else g.op("copy", loss, out=out.name)


@register("aten::binary_cross_entropy")
def aten_binary_cross_entropy(ctx: Context, node: Node) -> Ref:
    """binary_cross_entropy(Tensor self, Tensor target, Tensor? weight=None, int reduction=Mean) -> Tensor.

    ``-(t log p + (1 - t) log(1 - p))`` with each log clamped at -100, as PyTorch.
    """
    p, t = node.args[0], node.args[1]
    weight = node_arg(node, 2, "weight")
    rank = max(p.rank, t.rank)
    g = ctx.g
    pr, tr = align_rank(ctx, p, rank, p), align_rank(ctx, t, rank, t)
    log_p = g.op("max", g.op("log", pr), -100.0)
    log_q = g.op("max", g.op("log", g.op("sub", 1.0, pr)), -100.0)
    loss = g.op("neg", g.op("add", g.op("mul", tr, log_p), g.op("mul", g.op("sub", 1.0, tr), log_q)))
    if weight is not None:
        loss = g.op("mul", loss, align_rank(ctx, weight, rank, weight))
    return _reduced(ctx, node, loss, rank, _reduction(node, 3))


@register("aten::binary_cross_entropy_with_logits")
def aten_binary_cross_entropy_with_logits(ctx: Context, node: Node) -> Ref:
    """binary_cross_entropy_with_logits(Tensor self, Tensor target, Tensor? weight=None, Tensor? pos_weight=None,
    int reduction=Mean) -> Tensor.

    Stable form: ``(1 - t) x + l (log(1 + exp(-|x|)) + max(-x, 0))`` with ``l = 1 + (pos_weight - 1) t``.
    """
    x, t = node.args[0], node.args[1]
    weight, pos_weight = node_arg(node, 2, "weight"), node_arg(node, 3, "pos_weight")
    rank = max(x.rank, t.rank)
    g = ctx.g
    xr, tr = align_rank(ctx, x, rank, x), align_rank(ctx, t, rank, t)
    softplus = g.op(
        "add",
        g.op("log", g.op("add", g.op("exp", g.op("neg", g.op("abs", xr))), 1.0)),
        g.op("max", g.op("neg", xr), 0.0),
    )
    if pos_weight is not None:
        pw = align_rank(ctx, pos_weight, rank, pos_weight)
        softplus = g.op("mul", softplus, g.op("add", g.op("mul", g.op("sub", pw, 1.0), tr), 1.0))
    loss = g.op("add", g.op("mul", g.op("sub", 1.0, tr), xr), softplus)
    if weight is not None:
        loss = g.op("mul", loss, align_rank(ctx, weight, rank, weight))
    return _reduced(ctx, node, loss, rank, _reduction(node, 4))


@register("aten::kl_div")
def aten_kl_div(ctx: Context, node: Node) -> Ref:
    """kl_div(Tensor self, Tensor target, int reduction=Mean, *, bool log_target=False) -> Tensor.

    ``t (log t - x)`` (0 where t is 0), or ``exp(t) (t - x)`` for a log target; 'batchmean' is this sum over
    the batch size, divided after the op.
    """
    x, t = node.args[0], node.args[1]
    rank = max(x.rank, t.rank)
    g = ctx.g
    xr, tr = align_rank(ctx, x, rank, x), align_rank(ctx, t, rank, t)
    if bool(node_arg(node, 3, "log_target", False)):
        loss = g.op("mul", g.op("exp", tr), g.op("sub", tr, xr))
    else:
        positive = g.op("mul", tr, g.op("sub", g.op("log", tr), xr))
        loss = g.op("select", g.op("gt", tr, 0.0), positive, g.op("mul", g.op("neg", tr), xr))
    return _reduced(ctx, node, loss, rank, _reduction(node, 2))


# ----------------------------------------------------------------------------------------------
# Data-dependent shapes


@register("aten::masked_select", "aten::nonzero")
def aten_data_dependent(ctx: Context, node: Node) -> Ref:
    """masked_select(Tensor self, Tensor mask) / nonzero(Tensor self): refused.

    Their output size is the number of true (non-zero) elements, known only when the model runs; neither NNEF
    nor tract can express such a shape.
    """
    what = "masked_select" if node.kind == "aten::masked_select" else "nonzero"
    raise TranslationError(
        f"{node.where()}: {what} gives a tensor whose size depends on the data (the number of selected "
        "elements), which NNEF cannot express. Keep the full shape instead: torch.where(mask, x, 0) or a "
        "multiplication by the mask, then reduce."
    )
