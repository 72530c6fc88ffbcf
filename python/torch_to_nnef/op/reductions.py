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
from torch_to_nnef.ir import Value
from torch_to_nnef.ir.dtypes import INTEGERS, NUMPY
from torch_to_nnef.nnef.builder import Ref
from torch_to_nnef.op.common import (
    as_bool,
    cast_to,
    current_node,
    finish_reduction,
    int_arith,
    mean_and_spread,
    norm_over,
    operand_ref,
    reduce_axes,
    scalar_const,
    static_sizes,
    tools_only,
    vector_norm,
    wrap_axis,
)
from torch_to_nnef.op.registry import Context, register, translate_node


def _sum_or_mean(ctx: Context, x: Value, dim: Any, keep: bool) -> Ref:
    """The sum (``aten::sum``) or the mean (``aten::mean``) of ``x`` over ``dim`` (every axis when None or empty)."""
    out = ctx.out
    axes = reduce_axes(x, dim)
    op = "mean_reduce" if current_node(ctx).kind == "aten::mean" else "sum_reduce"
    xr = ctx.ref(x)
    if x.dtype != out.dtype and ctx.tract:  # booleans counted in i64, or the dtype argument: tract casts first
        ctx.g.need("tract_registry tract_core")
        xr = ctx.g.op("tract_core_cast", xr, to=out.dtype)
    if not ctx.tract and out.dtype in INTEGERS:
        # Khronos sums floats: booleans are counted in f32 (exact below 2^24), then cast
        node = current_node(ctx)
        if x.dtype != "bool":
            int_arith(ctx, node, x.dtype)
        xr = cast_to(ctx, node, xr, x.dtype, "f32")
        y = ctx.g.op(op, xr, axes=axes)
        y = y if keep else ctx.g.op("squeeze", y, axes=axes)
        return cast_to(ctx, node, y, "f32", out.dtype, out=out.name)  # type: ignore[no-any-return]
    y = ctx.g.op(op, xr, axes=axes, out=out.name if keep else out.name + "_keep")
    return y if keep else ctx.g.op("squeeze", y, axes=axes, out=out.name)


@register("aten::mean", "aten::sum")
def aten_sum_mean(ctx: Context, self: Value, *, dtype: Any = None) -> Ref:
    """mean(Tensor self, *, ScalarType? dtype=None) -> Tensor; sum alike: over every axis (in the output's dtype)."""
    return _sum_or_mean(ctx, self, None, False)


@register("aten::mean.dim", "aten::sum.dim_IntList")
def aten_sum_mean_dim(
    ctx: Context, self: Value, dim: list[int] | None, keepdim: bool = False, *, dtype: Any = None
) -> Ref:
    """mean.dim(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor; sum.dim_IntList
    alike (every axis when ``dim`` is None or empty; in the output's dtype).
    """
    return _sum_or_mean(ctx, self, dim, bool(keepdim))


def _reduce(ctx: Context, op: str, x: Value, axes: list[int], keep: bool, out: str) -> Ref:
    y = ctx.g.op(op, ctx.ref(x), axes=axes, out=out if keep else out + "_keep")
    return y if keep or not axes else ctx.g.op("squeeze", y, axes=axes, out=out)


def _is_max(ctx: Context) -> bool:
    """Whether the node translated is the ``max`` kind of a max/min pair (amax, argmax, any...)."""
    return current_node(ctx).kind in ("aten::max", "aten::amax", "aten::argmax")


@register("aten::amax", "aten::amin")
def aten_amax(ctx: Context, self: Value, dim: Sequence[int] = (), keepdim: bool = False) -> Ref:
    """amax(Tensor self, int[1] dim=[], bool keepdim=False) -> Tensor; amin alike."""
    op = "max_reduce" if _is_max(ctx) else "min_reduce"
    return _reduce(ctx, op, self, reduce_axes(self, list(dim)), bool(keepdim), ctx.out.name)


@register("aten::max", "aten::min")
def aten_max(ctx: Context, self: Value) -> list[Ref]:
    """max(Tensor self) -> Tensor; min alike: over every axis."""
    op = "max_reduce" if _is_max(ctx) else "min_reduce"
    return [_reduce(ctx, op, self, list(range(self.rank)), False, ctx.out.name)]


@register("aten::max.dim", "aten::min.dim")
def aten_max_dim(ctx: Context, self: Value, dim: int, keepdim: bool = False) -> list[Ref]:
    """max.dim(Tensor self, int dim, bool keepdim=False) -> (Tensor values, Tensor indices); min.dim alike."""
    values, indices = current_node(ctx).outputs
    axis, keep = wrap_axis(dim, self.rank), bool(keepdim)
    largest = _is_max(ctx)
    found = _reduce(ctx, "max_reduce" if largest else "min_reduce", self, [axis], keep, values.name)
    at = _reduce(ctx, "argmax_reduce" if largest else "argmin_reduce", self, [axis], keep, indices.name)
    return [found, at]


@register("aten::max.other", "aten::min.other")
def aten_max_other(ctx: Context, self: Value, other: Value) -> Sequence[Ref] | Ref:
    """max.other(Tensor self, Tensor other) -> Tensor (``torch.max(a, b)``); min.other alike: elementwise, as
    maximum/minimum.
    """
    node = current_node(ctx)
    kind = "aten::maximum" if _is_max(ctx) else "aten::minimum"
    return translate_node(ctx, dataclasses.replace(node, kind=kind, args=(self, other), overload=""))


@register("aten::argmax", "aten::argmin")
def aten_argmax(ctx: Context, self: Value, dim: int | None = None, keepdim: bool = False) -> Ref:
    """argmax(Tensor self, int? dim=None, bool keepdim=False) -> Tensor; argmin alike (of the flattened tensor
    when ``dim`` is None).
    """
    op = "argmax_reduce" if _is_max(ctx) else "argmin_reduce"
    if dim is None:
        flat = ctx.g.op("reshape", ctx.ref(self), shape=[-1])
        return ctx.g.op("squeeze", ctx.g.op(op, flat, axes=[0]), axes=[0], out=ctx.out.name)
    return _reduce(ctx, op, self, [wrap_axis(dim, self.rank)], bool(keepdim), ctx.out.name)


def _is_std(ctx: Context) -> bool:
    """Whether the node translated gives a standard deviation (rather than a variance)."""
    return current_node(ctx).kind in ("aten::std", "aten::std_mean")


def _spread(ctx: Context, x: Value, dim: Any, correction: Any, keep: bool) -> Ref:
    """The variance (``var``) or the standard deviation (``std``) of ``x`` over ``dim``."""
    _, spread, axes = mean_and_spread(ctx, current_node(ctx), x, dim, correction, _is_std(ctx))
    return finish_reduction(ctx, spread, axes, keep, ctx.out.name)


@register("aten::var", "aten::std")
def aten_var(ctx: Context, self: Value, unbiased: bool = True) -> Ref:
    """var(Tensor self, bool unbiased=True) -> Tensor; std alike: over every axis."""
    return _spread(ctx, self, None, int(unbiased), False)


@register("aten::var.dim", "aten::std.dim")
def aten_var_dim(ctx: Context, self: Value, dim: list[int] | None, unbiased: bool = True, keepdim: bool = False) -> Ref:
    """var.dim(Tensor self, int[1]? dim, bool unbiased=True, bool keepdim=False) -> Tensor; std.dim alike (torch
    keeps ``x.std(1, keepdim=True)`` so).
    """
    return _spread(ctx, self, dim, int(unbiased), bool(keepdim))


@register("aten::var.correction", "aten::std.correction")
def aten_var_correction(
    ctx: Context, self: Value, dim: list[int] | None = None, *, correction: Any = None, keepdim: bool = False
) -> Ref:
    """var.correction(Tensor self, int[1]? dim=None, *, Scalar? correction=None, bool keepdim=False) -> Tensor;
    std.correction alike (a correction of None is 1).
    """
    return _spread(ctx, self, dim, correction, bool(keepdim))


def _spread_mean(ctx: Context, x: Value, dim: Any, correction: Any, keep: bool) -> list[Ref]:
    """The variance (``var_mean``) or the standard deviation (``std_mean``) of ``x`` over ``dim``, and its mean."""
    mean, spread, axes = mean_and_spread(ctx, current_node(ctx), x, dim, correction, _is_std(ctx))
    outs = current_node(ctx).outputs
    return [
        finish_reduction(ctx, spread, axes, keep, outs[0].name),
        finish_reduction(ctx, mean, axes, keep, outs[1].name),
    ]


@register("aten::var_mean", "aten::std_mean")
def aten_var_mean(ctx: Context, self: Value, unbiased: bool = True) -> list[Ref]:
    """var_mean(Tensor self, bool unbiased=True) -> (Tensor, Tensor); std_mean alike: over every axis."""
    return _spread_mean(ctx, self, None, int(unbiased), False)


@register("aten::var_mean.dim", "aten::std_mean.dim")
def aten_var_mean_dim(
    ctx: Context, self: Value, dim: list[int] | None, unbiased: bool = True, keepdim: bool = False
) -> list[Ref]:
    """var_mean.dim(Tensor self, int[1]? dim, bool unbiased=True, bool keepdim=False) -> (Tensor, Tensor);
    std_mean.dim alike.
    """
    return _spread_mean(ctx, self, dim, int(unbiased), bool(keepdim))


@register("aten::var_mean.correction", "aten::std_mean.correction")
def aten_var_mean_correction(
    ctx: Context, self: Value, dim: list[int] | None = None, *, correction: Any = None, keepdim: bool = False
) -> list[Ref]:
    """var_mean.correction(Tensor self, int[1]? dim=None, *, Scalar? correction=None, bool keepdim=False) ->
    (Tensor, Tensor); std_mean.correction alike (a correction of None is 1).
    """
    return _spread_mean(ctx, self, dim, correction, bool(keepdim))


def _prod(ctx: Context, x: Value, axes: list[int], keep: bool) -> Ref:
    """The product of ``x`` over ``axes``: tract's product reduction, or for Khronos (floats) exp(sum(log|x|))
    with the sign of the parity of the negative factors.
    """
    node, out = current_node(ctx), ctx.out
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


@register("aten::prod")
def aten_prod(ctx: Context, self: Value, *, dtype: Any = None) -> Ref:
    """prod(Tensor self, *, ScalarType? dtype=None) -> Tensor: over every axis."""
    return _prod(ctx, self, reduce_axes(self, None), False)


@register("aten::prod.dim_int")
def aten_prod_dim(ctx: Context, self: Value, dim: int, keepdim: bool = False, *, dtype: Any = None) -> Ref:
    """prod.dim_int(Tensor self, int dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor."""
    return _prod(ctx, self, reduce_axes(self, dim), bool(keepdim))


def _norm_input(ctx: Context, x: Value) -> Any:
    out = ctx.out
    if not out.dtype.startswith("f"):
        raise TranslationError(f"{current_node(ctx).where()}: norm to {out.dtype} is not supported")
    return cast_to(ctx, current_node(ctx), ctx.ref(x), x.dtype, out.dtype)


@register("aten::linalg_vector_norm")
def aten_linalg_vector_norm(
    ctx: Context,
    self: Value,
    ord: Any = 2,
    dim: list[int] | None = None,
    keepdim: bool = False,
    *,
    dtype: Any = None,
) -> Ref:
    """linalg_vector_norm(Tensor self, Scalar ord=2, int[1]? dim=None, bool keepdim=False, *, ScalarType?
    dtype=None) -> Tensor.
    """
    axes = reduce_axes(self, dim)
    y = vector_norm(ctx, current_node(ctx), _norm_input(ctx, self), ord, axes)
    return finish_reduction(ctx, y, axes, bool(keepdim), ctx.out.name)


def _matrix_norm(ctx: Context, x: Value, ord_: Any, dims: list[int], keep: bool) -> Ref:
    node, out = current_node(ctx), ctx.out
    xr = _norm_input(ctx, x)
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


@register("aten::linalg_matrix_norm", "aten::linalg_matrix_norm.str_ord")
def aten_linalg_matrix_norm(
    ctx: Context,
    self: Value,
    ord: Any = "fro",
    dim: Sequence[int] = (-2, -1),
    keepdim: bool = False,
    *,
    dtype: Any = None,
) -> Ref:
    """linalg_matrix_norm(Tensor self, Scalar ord, int[] dim=[-2, -1], bool keepdim=False, *, ScalarType?
    dtype=None) -> Tensor; .str_ord alike (str ord="fro"): 'fro' and the orders 1, -1, inf, -inf.
    """
    return _matrix_norm(ctx, self, ord, list(dim), bool(keepdim))


@register("aten::linalg_norm", "aten::linalg_norm.ord_str")
def aten_linalg_norm(
    ctx: Context,
    self: Value,
    ord: Any = None,
    dim: list[int] | None = None,
    keepdim: bool = False,
    *,
    dtype: Any = None,
) -> Ref:
    """linalg_norm(Tensor self, Scalar? ord=None, int[1]? dim=None, bool keepdim=False, *, ScalarType? dtype=None)
    -> Tensor; .ord_str alike (str ord): a matrix norm over two dims (or of a matrix with an order), else a
    vector norm.
    """
    x, out = self, ctx.out
    keep = bool(keepdim)
    dims = [dim] if isinstance(dim, int) else (list(dim) if dim is not None else None)
    matrix = (dims is not None and len(dims) == 2) or (dims is None and ord is not None and x.rank == 2)
    if ord is not None and matrix:
        return _matrix_norm(ctx, x, ord, dims or [0, 1], keep)
    if isinstance(ord, str):
        raise TranslationError(f"{current_node(ctx).where()}: norm {ord!r} needs two dims")
    axes = reduce_axes(x, dims)
    y = vector_norm(ctx, current_node(ctx), _norm_input(ctx, x), 2 if ord is None else ord, axes)
    return finish_reduction(ctx, y, axes, keep, out.name)


def _any_all(ctx: Context, x: Value, dim: Any, keep: bool) -> Ref:
    """Whether any (``aten::any``) or every (``aten::all``) element of ``x`` over ``dim`` is true."""
    node, out = current_node(ctx), ctx.out
    axes = reduce_axes(x, dim)
    g = ctx.g
    truth = as_bool(ctx, node, x, x.rank)
    any_ = node.kind == "aten::any"
    if not axes:
        y = truth
    elif ctx.khronos_tools or ctx.tract_at_least(COPY_TRACT):
        y = g.op("any_reduce" if any_ else "all_reduce", truth, axes=axes)
    else:  # older tract, the specification's text: the largest (any) or smallest (all) of 0/1 values
        ones = g.op("select", truth, 1.0, 0.0)
        y = g.op("gt", g.op("max_reduce" if any_ else "min_reduce", ones, axes=axes), 0.5)
    return finish_reduction(ctx, y, axes, keep, out.name)


@register("aten::any", "aten::all")
def aten_any_all(ctx: Context, self: Value) -> Ref:
    """any(Tensor self) -> Tensor; all alike: over every axis."""
    return _any_all(ctx, self, None, False)


@register("aten::any.dim", "aten::any.dims", "aten::all.dim", "aten::all.dims")
def aten_any_all_dim(ctx: Context, self: Value, dim: int | list[int] | None = None, keepdim: bool = False) -> Ref:
    """any.dims(Tensor self, int[]? dim=None, bool keepdim=False) -> Tensor; any.dim (int dim), all.dim and
    all.dims alike (every axis when ``dim`` is None).
    """
    return _any_all(ctx, self, dim, bool(keepdim))


@register("aten::cumsum")
def aten_cumsum(ctx: Context, self: Value, dim: int, *, dtype: Any = None) -> Ref:
    """cumsum(Tensor self, int dim, *, ScalarType? dtype=None) -> Tensor."""
    x, out, node = self, ctx.out, current_node(ctx)
    axis = wrap_axis(dim, x.rank)
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
    size = int(n)  # static: by_product
    triangle = np.triu(np.ones((size, size), dtype=NUMPY[out.dtype])).reshape((1,) * (rank - 2) + (size, size))
    y = g.op("matmul", moved, g.variable(triangle, f"cumsum_triangle_{out.dtype}_{size}_r{rank}"))
    if axis != rank - 1:
        y = g.op("transpose", y, axes=[perm.index(a) for a in range(rank)])
    if x.rank < 2:
        y = g.op("squeeze", y, axes=list(range(2 - x.rank)))
    return g.op("copy", y, out=out.name)


@register("aten::logsumexp")
def aten_logsumexp(ctx: Context, self: Value, dim: list[int], keepdim: bool = False) -> Ref:
    """logsumexp(Tensor self, int[1] dim, bool keepdim=False) -> Tensor (stable: the maximum is factored out)."""
    x, out = self, ctx.out
    axes = reduce_axes(x, dim)
    g = ctx.g
    xr = cast_to(ctx, current_node(ctx), ctx.ref(x), x.dtype, out.dtype)
    # Clamping the maximum to finite values keeps all -inf (or +inf) slices exact instead of NaN.
    top = g.op("min", g.op("max", g.op("max_reduce", xr, axes=axes), -3.4028234663852886e38), 3.4028234663852886e38)
    y = g.op("add", g.op("log", g.op("sum_reduce", g.op("exp", g.op("sub", xr, top)), axes=axes)), top)
    return finish_reduction(ctx, y, axes, bool(keepdim), out.name)


@register("aten::aminmax")
def aten_aminmax(ctx: Context, self: Value, *, dim: int | None = None, keepdim: bool = False) -> list[Ref]:
    """aminmax(Tensor self, *, int? dim=None, bool keepdim=False) -> (Tensor min, Tensor max)."""
    x = self
    keep = bool(keepdim)
    axes = list(range(x.rank)) if dim is None else [wrap_axis(dim, x.rank)]
    g, xr = ctx.g, ctx.ref(x)
    refs = []
    for op, o in zip(("min_reduce", "max_reduce"), current_node(ctx).outputs):
        y = g.op(op, xr, axes=axes)
        refs.append(g.op("copy", y, out=o.name) if keep or not axes else g.op("squeeze", y, axes=axes, out=o.name))
    return refs


@register("aten::dist")
def aten_dist(ctx: Context, self: Value, other: Value, p: Any = 2) -> Ref:
    """dist(Tensor self, Tensor other, Scalar p=2) -> Tensor: the p-norm of ``self - other`` over every element."""
    g, out, node = ctx.g, ctx.out, current_node(ctx)
    rank = max(self.rank, other.rank)
    diff = g.op("sub", operand_ref(ctx, node, self, out.dtype, rank), operand_ref(ctx, node, other, out.dtype, rank))
    return g.op("copy", norm_over(ctx, node, diff, float(p), list(range(rank)), False), out=out.name)


@register("aten::nansum", "aten::nanmean")
def aten_nansum(
    ctx: Context, self: Value, dim: list[int] | None = None, keepdim: bool = False, *, dtype: Any = None
) -> Ref:
    """nansum(Tensor self, int[1]? dim=None, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor; nanmean
    alike: the sum or the mean of the values that are not NaN.
    """
    x, out, node = self, ctx.out, current_node(ctx)
    if not out.dtype.startswith("f"):
        raise TranslationError(f"{node.where()}: {node.kind} to {out.dtype} is not supported yet")
    g = ctx.g
    c = partial(scalar_const, ctx, dtype=out.dtype, rank=x.rank)
    xr = cast_to(ctx, node, ctx.ref(x), x.dtype, out.dtype)
    axes = reduce_axes(x, dim)
    keep = bool(keepdim)
    present = g.op("eq", xr, xr)
    y = g.op("sum_reduce", g.op("select", present, xr, c(0.0)), axes=axes)
    if node.kind == "aten::nanmean":
        y = g.op("div", y, g.op("sum_reduce", g.op("select", present, c(1.0), c(0.0)), axes=axes))
    return g.op("copy", y, out=out.name) if keep or not axes else g.op("squeeze", y, axes=axes, out=out.name)


@register("aten::count_nonzero", "aten::count_nonzero.dim_IntList")
def aten_count_nonzero(ctx: Context, self: Value, dim: int | list[int] | None = None) -> Ref:
    """count_nonzero(Tensor self, int? dim=None) -> Tensor (i64); .dim_IntList alike (int[] dim).

    For the Khronos tools, counted in f32 (exact below 2^24) and cast.
    """
    x, out, node = self, ctx.out, current_node(ctx)
    if not ctx.tract:
        tools_only(ctx, node, "counts into an integer tensor, which needs a cast")
    g = ctx.g
    xr = ctx.ref(x)
    axes = reduce_axes(x, dim)
    if not ctx.tract:
        nonzero = cast_to(ctx, node, xr, x.dtype, "bool")
        counted = g.op("select", nonzero, 1.0, 0.0)
        if axes:
            counted = g.op("squeeze", g.op("sum_reduce", counted, axes=axes), axes=axes)
        return cast_to(ctx, node, counted, "f32", out.dtype, out=out.name)  # type: ignore[no-any-return]
    nonzero = xr if x.dtype == "bool" else g.op("ne", xr, scalar_const(ctx, 0, x.dtype, x.rank))
    y = g.op("tract_core_cast", nonzero, to=out.dtype)
    if not axes:
        return g.op("copy", y, out=out.name)
    return g.op("squeeze", g.op("sum_reduce", y, axes=axes), axes=axes, out=out.name)


@register("aten::cumprod")
def aten_cumprod(ctx: Context, self: Value, dim: int, *, dtype: Any = None) -> Ref:
    """cumprod(Tensor self, int dim, *, ScalarType? dtype=None) -> Tensor.

    A scan by doubling: ``ceil(log2 n)`` products of the running result with itself shifted by 1, 2, 4...
    (the shift pads with ones); static axis, floats on both targets.
    """
    x, out, node = self, ctx.out, current_node(ctx)
    if not out.dtype.startswith("f"):
        raise TranslationError(f"{node.where()}: cumprod of {out.dtype} is not supported (floats only)")
    if x.rank == 0:
        return ctx.g.op("copy", cast_to(ctx, node, ctx.ref(x), x.dtype, out.dtype), out=out.name)
    axis = wrap_axis(dim, x.rank)
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
