"""Reductions: sums and means, minima and maxima with their indices, variance and standard deviation,
products, norms, ``any``/``all``, cumulative sums and products, ``logsumexp``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np

from torch_to_nnef.check.versions import COPY_TRACT, CUMSUM_TRACT
from torch_to_nnef.errors import TranslationError
from torch_to_nnef.ir import Node, Value
from torch_to_nnef.nnef.builder import Ref
from torch_to_nnef.op.common import (
    NP_DTYPES,
    as_bool,
    cast_to,
    finish_reduction,
    node_arg,
    norm_over,
    operand_ref,
    reduce_axes,
    scalar_const,
    static_sizes,
    tract_only,
    variance,
    vector_norm,
    wrap_axis,
)
from torch_to_nnef.op.elementwise import aten_compare
from torch_to_nnef.op.registry import Context, register


@register("aten::mean", "aten::sum")
def aten_reduce(ctx: Context, node: Node) -> Ref:
    """mean.dim / sum.dim_IntList(Tensor self, int[]? dim, bool keepdim=False, ScalarType? dtype)."""
    x = node.args[0]
    dims = node_arg(node, 1, "dim")
    axes = list(range(x.rank)) if not dims else sorted(wrap_axis(d, x.rank) for d in dims)
    keep = bool(node_arg(node, 2, "keepdim", False))
    op = "mean_reduce" if node.kind == "aten::mean" else "sum_reduce"
    out = node.outputs[0]
    xr = ctx.ref(x)
    if x.dtype != out.dtype and ctx.tract:  # booleans counted in i64, or the dtype argument: tract casts first
        ctx.g.need("tract_registry tract_core")
        xr = ctx.g.op("tract_core_cast", xr, to=out.dtype)
    y = ctx.g.op(op, xr, axes=axes, out=out.name if keep else out.name + "_keep")
    return y if keep else ctx.g.op("squeeze", y, axes=axes, out=out.name)


def _reduce(ctx: Context, op: str, x: Value, axes: list[int], keep: bool, out: str) -> Ref:
    y = ctx.g.op(op, ctx.ref(x), axes=axes, out=out if keep else out + "_keep")
    return y if keep or not axes else ctx.g.op("squeeze", y, axes=axes, out=out)


@register("aten::amax", "aten::amin")
def aten_amax(ctx: Context, node: Node) -> Ref:
    """amax/amin(Tensor self, int[] dim=[], bool keepdim=False) -> Tensor."""
    x = node.args[0]
    op = "max_reduce" if node.kind == "aten::amax" else "min_reduce"
    axes = reduce_axes(x, node_arg(node, 1, "dim"))
    return _reduce(ctx, op, x, axes, bool(node_arg(node, 2, "keepdim", False)), node.outputs[0].name)


@register("aten::max", "aten::min")
def aten_max_dim(ctx: Context, node: Node) -> Sequence[Ref] | Ref:
    """max.dim/min.dim(Tensor self, int dim, bool keepdim=False) -> (values, indices); max(self);
    max.other/min.other(Tensor self, Tensor other) (``torch.max(a, b)``): elementwise, as maximum/minimum.
    """
    x = node.args[0]
    if len(node.args) > 1 and isinstance(node.args[1], Value):
        kind = "aten::maximum" if node.kind == "aten::max" else "aten::minimum"
        return aten_compare(ctx, dataclasses.replace(node, kind=kind))
    red = "max_reduce" if node.kind == "aten::max" else "min_reduce"
    if len(node.outputs) == 1:  # max(self): over every axis
        return [_reduce(ctx, red, x, list(range(x.rank)), False, node.outputs[0].name)]
    axis = wrap_axis(node.args[1], x.rank)
    keep = bool(node_arg(node, 2, "keepdim", False))
    values = _reduce(ctx, red, x, [axis], keep, node.outputs[0].name)
    arg = "argmax_reduce" if node.kind == "aten::max" else "argmin_reduce"
    indices = _reduce(ctx, arg, x, [axis], keep, node.outputs[1].name)
    return [values, indices]


@register("aten::argmax", "aten::argmin")
def aten_argmax(ctx: Context, node: Node) -> Ref:
    """argmax/argmin(Tensor self, int? dim=None, bool keepdim=False) -> Tensor."""
    x = node.args[0]
    dim = node_arg(node, 1, "dim")
    op = "argmax_reduce" if node.kind == "aten::argmax" else "argmin_reduce"
    keep = bool(node_arg(node, 2, "keepdim", False))
    if dim is None:
        flat = ctx.g.op("reshape", ctx.ref(x), shape=[-1])
        return ctx.g.op("squeeze", ctx.g.op(op, flat, axes=[0]), axes=[0], out=node.outputs[0].name)
    return _reduce(ctx, op, x, [wrap_axis(dim, x.rank)], keep, node.outputs[0].name)


@register("aten::var", "aten::std")
def aten_var(ctx: Context, node: Node) -> Ref:
    """var/std.correction(Tensor self, int[]? dim, *, Scalar? correction=1, bool keepdim=False)."""
    _, var, axes, keep = variance(ctx, node)
    out = node.outputs[0].name
    return ctx.g.op("copy", var, out=out) if keep else ctx.g.op("squeeze", var, axes=axes, out=out)


def _dims_arg(node: Node, index: int, name: str) -> Any:
    dims = node_arg(node, index, name)
    return None if isinstance(dims, dict) else dims


@register("aten::prod")
def aten_prod(ctx: Context, node: Node) -> Ref:
    """prod.dim_int(Tensor self, int dim, bool keepdim=False, *, ScalarType? dtype=None); prod(self)."""
    x, out = node.args[0], node.outputs[0]
    dim = _dims_arg(node, 1, "dim")
    axes = reduce_axes(x, dim)
    keep = bool(node_arg(node, 2, "keepdim", False)) if dim is not None else False
    g = ctx.g
    if ctx.tract:
        ctx.g.need("tract_registry tract_core")
        xr = cast_to(ctx, node, ctx.ref(x), x.dtype, out.dtype)
        y = g.op("tract_core_product_reduce", xr, axes=axes)
    else:
        if not (x.dtype.startswith("f") and out.dtype == x.dtype):
            raise TranslationError(f"{node.where()}: prod of {x.dtype} needs TractNNEF (integer arithmetic)")
        # |product| = exp(sum(log|x|)) (a zero gives log 0 = -inf, exp(-inf) = 0); the sign is the parity of
        # the negative factors.
        xr = ctx.ref(x)
        magnitude = g.op("exp", g.op("sum_reduce", g.op("log", g.op("abs", xr)), axes=axes))
        negatives = g.op("sum_reduce", g.op("select", g.op("lt", xr, 0.0), 1.0, 0.0), axes=axes)
        odd = g.op("sub", negatives, g.op("mul", g.op("floor", g.op("div", negatives, 2.0)), 2.0))
        y = g.op("mul", magnitude, g.op("sub", 1.0, g.op("mul", odd, 2.0)))
    if keep or not axes:
        return g.op("copy", y, out=out.name)
    return g.op("squeeze", y, axes=axes, out=out.name)


def _norm_input(ctx: Context, node: Node, x: Value, out: Value) -> Any:
    if not out.dtype.startswith("f"):
        raise TranslationError(f"{node.where()}: norm to {out.dtype} is not supported")
    return cast_to(ctx, node, ctx.ref(x), x.dtype, out.dtype)


@register("aten::linalg_vector_norm")
def aten_linalg_vector_norm(ctx: Context, node: Node) -> Ref:
    """linalg_vector_norm(Tensor self, Scalar ord=2, int[1]? dim=None, bool keepdim=False, *, ScalarType? dtype)."""
    x, out = node.args[0], node.outputs[0]
    ord_ = node_arg(node, 1, "ord", 2)
    axes = reduce_axes(x, _dims_arg(node, 2, "dim"))
    keep = bool(node_arg(node, 3, "keepdim", False))
    y = vector_norm(ctx, node, _norm_input(ctx, node, x, out), ord_, axes)
    return finish_reduction(ctx, y, axes, keep, out.name)


def _matrix_norm(ctx: Context, node: Node, x: Value, ord_: Any, dims: list[int], keep: bool) -> Ref:
    out = node.outputs[0]
    xr = _norm_input(ctx, node, x, out)
    rows, cols = (wrap_axis(d, x.rank) for d in dims)
    axes = sorted((rows, cols))
    g = ctx.g
    if ord_ == "fro":
        y = vector_norm(ctx, node, xr, 2, axes)
    elif ord_ in (1, -1, math.inf, -math.inf):
        # 1: largest column sum of |x|; inf: largest row sum (and the smallest for the negative orders).
        summed, across = (rows, cols) if ord_ in (1, -1) else (cols, rows)
        sums = g.op("sum_reduce", g.op("abs", xr), axes=[summed])
        y = g.op("max_reduce" if ord_ > 0 else "min_reduce", sums, axes=[across])
    else:
        raise TranslationError(
            f"{node.where()}: matrix norm of order {ord_!r} needs singular values, which NNEF cannot express"
        )
    return finish_reduction(ctx, y, axes, keep, out.name)


@register("aten::linalg_matrix_norm")
def aten_linalg_matrix_norm(ctx: Context, node: Node) -> Ref:
    """linalg_matrix_norm(Tensor self, Scalar|str ord='fro', int[] dim=[-2,-1], bool keepdim=False, *, dtype)."""
    x = node.args[0]
    ord_ = node_arg(node, 1, "ord", "fro")
    dims = list(node_arg(node, 2, "dim", [-2, -1]))
    return _matrix_norm(ctx, node, x, ord_, dims, bool(node_arg(node, 3, "keepdim", False)))


@register("aten::linalg_norm")
def aten_linalg_norm(ctx: Context, node: Node) -> Ref:
    """linalg_norm(Tensor self, Scalar|str? ord=None, int[1]? dim=None, bool keepdim=False, *, dtype)."""
    x, out = node.args[0], node.outputs[0]
    ord_ = node_arg(node, 1, "ord")
    dim = _dims_arg(node, 2, "dim")
    keep = bool(node_arg(node, 3, "keepdim", False))
    dims = [dim] if isinstance(dim, int) else (list(dim) if dim is not None else None)
    matrix = (dims is not None and len(dims) == 2) or (dims is None and ord_ is not None and x.rank == 2)
    if ord_ is not None and matrix:
        return _matrix_norm(ctx, node, x, ord_, dims or [0, 1], keep)
    if isinstance(ord_, str):
        raise TranslationError(f"{node.where()}: norm {ord_!r} needs two dims")
    axes = reduce_axes(x, dims)
    y = vector_norm(ctx, node, _norm_input(ctx, node, x, out), 2 if ord_ is None else ord_, axes)
    return finish_reduction(ctx, y, axes, keep, out.name)


@register("aten::any", "aten::all")
def aten_any_all(ctx: Context, node: Node) -> Ref:
    """any.dim(Tensor self, int dim, bool keepdim=False) / any.dims(self, int[]? dim) / any(self); all alike."""
    x, out = node.args[0], node.outputs[0]
    dim = _dims_arg(node, 1, "dim")
    axes = reduce_axes(x, dim)
    keep = bool(node_arg(node, 2, "keepdim", False)) if dim is not None else False
    g = ctx.g
    truth = as_bool(ctx, node, x, x.rank)
    if not axes:
        y = truth
    elif not ctx.tract or ctx.tract_at_least(COPY_TRACT):
        y = g.op("any_reduce" if node.kind == "aten::any" else "all_reduce", truth, axes=axes)
    else:  # older tract: the largest (any) or smallest (all) of 0/1 values
        ones = g.op("select", truth, 1.0, 0.0)
        y = g.op("gt", g.op("max_reduce" if node.kind == "aten::any" else "min_reduce", ones, axes=axes), 0.5)
    return finish_reduction(ctx, y, axes, keep, out.name)


@register("aten::cumsum")
def aten_cumsum(ctx: Context, node: Node) -> Ref:
    """cumsum(Tensor self, int dim, *, ScalarType? dtype=None) -> Tensor."""
    x, out = node.args[0], node.outputs[0]
    axis = wrap_axis(node.args[1], x.rank)
    g = ctx.g
    xr = cast_to(ctx, node, ctx.ref(x), x.dtype, out.dtype)
    n = x.shape[axis] if x.rank else 1
    by_product = out.dtype.startswith("f") and isinstance(n, int)
    if ctx.tract_at_least(CUMSUM_TRACT) or (ctx.tract and not by_product):
        ctx.g.need("tract_registry tract_core")  # refused by name below tract_core_cumsum's release
        return g.op("tract_core_cumsum", xr, axis=axis, exclusive=False, reverse=False, out=out.name)
    if not by_product:
        raise TranslationError(f"{node.where()}: cumsum of {out.dtype} or over a dynamic axis needs TractNNEF")
    # A product by the upper triangle of ones: y[..., j] = sum over i <= j of x[..., i].
    rank = max(x.rank, 2)
    if x.rank < 2:
        xr = g.op("unsqueeze", xr, axes=list(range(2 - x.rank)))
        axis += 2 - x.rank
    perm = [a for a in range(rank) if a != axis] + [axis]
    moved = g.op("transpose", xr, axes=perm) if axis != rank - 1 else xr
    triangle = np.triu(np.ones((n, n), dtype=NP_DTYPES[out.dtype])).reshape((1,) * (rank - 2) + (n, n))
    y = g.op("matmul", moved, g.variable(triangle, f"cumsum_triangle_{out.dtype}_{n}_r{rank}"))
    if axis != rank - 1:
        y = g.op("transpose", y, axes=[perm.index(a) for a in range(rank)])
    if x.rank < 2:
        y = g.op("squeeze", y, axes=list(range(2 - x.rank)))
    return g.op("copy", y, out=out.name)


@register("aten::logsumexp")
def aten_logsumexp(ctx: Context, node: Node) -> Ref:
    """logsumexp(Tensor self, int[1] dim, bool keepdim=False) -> Tensor (stable: the maximum is factored out)."""
    x, out = node.args[0], node.outputs[0]
    axes = reduce_axes(x, _dims_arg(node, 1, "dim"))
    keep = bool(node_arg(node, 2, "keepdim", False))
    g = ctx.g
    xr = cast_to(ctx, node, ctx.ref(x), x.dtype, out.dtype)
    # Clamping the maximum to finite values keeps all -inf (or +inf) slices exact instead of NaN.
    top = g.op("min", g.op("max", g.op("max_reduce", xr, axes=axes), -3.4028234663852886e38), 3.4028234663852886e38)
    y = g.op("add", g.op("log", g.op("sum_reduce", g.op("exp", g.op("sub", xr, top)), axes=axes)), top)
    return finish_reduction(ctx, y, axes, keep, out.name)


@register("aten::var_mean", "aten::std_mean")
def aten_var_mean(ctx: Context, node: Node) -> list[Ref]:
    """var_mean/std_mean.correction(Tensor self, int[]? dim, *, Scalar? correction=1, bool keepdim=False)
    -> (Tensor, Tensor).
    """
    mean, spread, axes, keep = variance(ctx, node)
    g = ctx.g
    outs = node.outputs
    if keep or not axes:
        return [g.op("copy", spread, out=outs[0].name), g.op("copy", mean, out=outs[1].name)]
    return [g.op("squeeze", spread, axes=axes, out=outs[0].name), g.op("squeeze", mean, axes=axes, out=outs[1].name)]


@register("aten::aminmax")
def aten_aminmax(ctx: Context, node: Node) -> list[Ref]:
    """aminmax(Tensor self, *, int? dim=None, bool keepdim=False) -> (Tensor min, Tensor max)."""
    x = node.args[0]
    dim, keep = node_arg(node, 1, "dim"), bool(node_arg(node, 2, "keepdim", False))
    axes = list(range(x.rank)) if dim is None else [wrap_axis(dim, x.rank)]
    g, xr = ctx.g, ctx.ref(x)
    refs = []
    for op, o in zip(("min_reduce", "max_reduce"), node.outputs):
        y = g.op(op, xr, axes=axes)
        refs.append(g.op("copy", y, out=o.name) if keep or not axes else g.op("squeeze", y, axes=axes, out=o.name))
    return refs


@register("aten::dist")
def aten_dist(ctx: Context, node: Node) -> Ref:
    """dist(Tensor self, Tensor other, Scalar p=2) -> Tensor: the p-norm of ``self - other`` over every element."""
    g, out = ctx.g, node.outputs[0]
    a, b = node.args[:2]
    rank = max(a.rank, b.rank)
    p = float(node_arg(node, 2, "p", 2.0))
    diff = g.op("sub", operand_ref(ctx, node, a, out.dtype, rank), operand_ref(ctx, node, b, out.dtype, rank))
    return g.op("copy", norm_over(ctx, node, diff, p, list(range(rank)), False), out=out.name)


@register("aten::nansum", "aten::nanmean")
def aten_nansum(ctx: Context, node: Node) -> Ref:
    """nansum/nanmean(Tensor self, int[1]? dim=None, bool keepdim=False, *, ScalarType? dtype=None):
    the sum or the mean of the values that are not NaN.
    """
    x, out = node.args[0], node.outputs[0]
    if not out.dtype.startswith("f"):
        raise TranslationError(f"{node.where()}: {node.kind} to {out.dtype} is not supported yet")
    g = ctx.g
    c = partial(scalar_const, ctx, dtype=out.dtype, rank=x.rank)
    xr = cast_to(ctx, node, ctx.ref(x), x.dtype, out.dtype)
    axes = reduce_axes(x, node_arg(node, 1, "dim"))
    keep = bool(node_arg(node, 2, "keepdim", False))
    present = g.op("eq", xr, xr)
    y = g.op("sum_reduce", g.op("select", present, xr, c(0.0)), axes=axes)
    if node.kind == "aten::nanmean":
        y = g.op("div", y, g.op("sum_reduce", g.op("select", present, c(1.0), c(0.0)), axes=axes))
    return g.op("copy", y, out=out.name) if keep or not axes else g.op("squeeze", y, axes=axes, out=out.name)


@register("aten::count_nonzero")
def aten_count_nonzero(ctx: Context, node: Node) -> Ref:
    """count_nonzero.dim_IntList(Tensor self, int[] dim) / count_nonzero(self, int? dim=None) -> Tensor (i64)."""
    x, out = node.args[0], node.outputs[0]
    tract_only(ctx, node, "counts into an integer tensor, which the NNEF specification cannot")
    g = ctx.g
    xr = ctx.ref(x)
    nonzero = xr if x.dtype == "bool" else g.op("ne", xr, scalar_const(ctx, 0, x.dtype, x.rank))
    y = g.op("tract_core_cast", nonzero, to=out.dtype)
    axes = reduce_axes(x, node_arg(node, 1, "dim"))
    if not axes:
        return g.op("copy", y, out=out.name)
    return g.op("squeeze", g.op("sum_reduce", y, axes=axes), axes=axes, out=out.name)


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
