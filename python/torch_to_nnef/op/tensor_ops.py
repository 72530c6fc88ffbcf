"""Translations of integer/rounding arithmetic, reductions, tensor creation and indexing ops."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, cast

import numpy as np

from torch_to_nnef.check.versions import COPY_TRACT, CUMSUM_TRACT
from torch_to_nnef.errors import TranslationError
from torch_to_nnef.ir import Dim, Node, SymInt, Value
from torch_to_nnef.nnef.builder import Ref, dim_literal
from torch_to_nnef.op.common import (
    BIG,
    NP_DTYPES,
    align_rank,
    binary_operands,
    bitwise_integer,
    broadcast_shape,
    cast_to,
    dim_of,
    div_rounded,
    filled_like,
    finish_reduction,
    int_arith,
    node_arg,
    operand_ref,
    reduce_axes,
    scalar_const,
    shape_attr,
    slice_bound,
    tract_only,
    trunc_ref,
    vector_norm,
    wrap_axis,
)
from torch_to_nnef.op.core import aten_matmul
from torch_to_nnef.op.registry import Context, register

# ----------------------------------------------------------------------------------------------
# Helpers


def _label_value(value: Any) -> str:
    return str(value).replace("-", "minus_").replace(".", "p")


def product_of(dims: list[Dim]) -> Dim:
    """The product of dimensions: an int when all are static, else tract's expression."""
    if all(isinstance(d, int) for d in dims):
        return math.prod(int(d) for d in dims)
    return "*".join(str(d) if isinstance(d, int) else f"({dim_literal(d)})" for d in dims)


def _slice_ref(ctx: Context, x: Any, dim: Dim, axis: int, start: Any, end: Any, out: str | None = None) -> Ref:
    return ctx.g.op(
        "slice", x, axes=[axis], begin=[slice_bound(start, dim)], end=[slice_bound(end, dim)], stride=[1], out=out
    )


# ----------------------------------------------------------------------------------------------
# Rounding division and remainders


def _fmod(ctx: Context, a: Any, b: Any, dtype: str) -> Ref:
    """The remainder of a truncated division, a - b * trunc(a / b) (integer division already truncates)."""
    q = ctx.g.op("div", a, b)
    if dtype.startswith("f"):
        q = trunc_ref(ctx, q)
    return ctx.g.op("sub", a, ctx.g.op("mul", q, b))


@register("aten::fmod")
def aten_fmod(ctx: Context, node: Node) -> Ref:
    """fmod.Tensor(Tensor self, Tensor other) / fmod.Scalar(Tensor self, Scalar other): the sign of self."""
    a, b, out = binary_operands(ctx, node)
    return ctx.g.op("copy", _fmod(ctx, a, b, out.dtype), out=out.name)


@register("aten::remainder")
def aten_remainder(ctx: Context, node: Node) -> Ref:
    """remainder.Tensor(Tensor self, Tensor other) / remainder.Scalar(...): Python's %, the sign of other."""
    a, b, out = binary_operands(ctx, node)
    g = ctx.g
    r = _fmod(ctx, a, b, out.dtype)
    zero = scalar_const(ctx, 0, out.dtype, out.rank)
    # A non-zero fmod whose sign differs from the divisor's is shifted by the divisor.
    wrong_sign = g.op("lt", g.op("mul", r, b), zero)
    return g.op("select", wrong_sign, g.op("add", r, b), r, out=out.name)


@register("aten::floor_divide")
def aten_floor_divide(ctx: Context, node: Node) -> Ref:
    """floor_divide(Tensor self, Tensor other) / floor_divide.Scalar(...): Python's //."""
    return div_rounded(ctx, node)


# ----------------------------------------------------------------------------------------------
# Bitwise and logical


def _as_bool(ctx: Context, node: Node, v: Any, rank: int) -> Any:
    if isinstance(v, Value):
        ref = ctx.ref(v) if v.rank >= rank else align_rank(ctx, v, rank, v)
        if v.dtype == "bool":
            return ref
        int_arith(ctx, node, v.dtype)
        return ctx.g.op("ne", ref, scalar_const(ctx, 0, v.dtype, rank))
    return bool(v)


def _xor(ctx: Context, a: Any, b: Any, out: str) -> Ref:
    g = ctx.g
    if ctx.tract:
        ctx.g.need("tract_registry tract_core")
        return g.op("tract_core_xor", a, b, out=out)
    return g.op("or", g.op("and", a, g.op("not", b)), g.op("and", g.op("not", a), b), out=out)


@register("aten::logical_xor")
def aten_logical_xor(ctx: Context, node: Node) -> Ref:
    """logical_xor(Tensor self, Tensor other) -> Tensor (non-zero is true)."""
    out = node.outputs[0]
    a, b = (_as_bool(ctx, node, v, out.rank) for v in node.args[:2])
    return _xor(ctx, a, b, out.name)


@register("aten::__xor__", "aten::bitwise_xor")
def aten_bitwise_xor(ctx: Context, node: Node) -> Ref:
    """bitwise_xor.Tensor(Tensor self, Tensor other) / .Scalar: ``^`` on booleans or integers (tract)."""
    out = node.outputs[0]
    if out.dtype != "bool":
        return bitwise_integer(ctx, node, "bitxor")
    a, b = (_as_bool(ctx, node, v, out.rank) for v in node.args[:2])
    return _xor(ctx, a, b, out.name)


# ----------------------------------------------------------------------------------------------
# Reductions


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
    truth = _as_bool(ctx, node, x, x.rank)
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


# ----------------------------------------------------------------------------------------------
# Creation


_FILL_VALUE = {
    "aten::zeros": 0,
    "aten::new_zeros": 0,
    "aten::empty": 0,
    "aten::new_empty": 0,
    "aten::zero": 0,
    "aten::ones": 1,
    "aten::new_ones": 1,
}


@register(*_FILL_VALUE)
def aten_zeros_ones(ctx: Context, node: Node) -> Ref:
    """zeros/ones/empty(SymInt[] size, *, ScalarType? dtype, ...); new_zeros/new_ones/new_empty; zero(Tensor self).

    ``new_*(Tensor self, SymInt[] size, ...)`` take the size given; empty tensors are given zeros. A
    one-element constant is tiled to the size (symbolic sizes as tract expressions).
    """
    return filled_like(ctx, node, _FILL_VALUE[node.kind])


@register("aten::full", "aten::new_full", "aten::scalar_tensor", "aten::fill")
def aten_full(ctx: Context, node: Node) -> Ref:
    """full(SymInt[] size, Scalar fill_value, *, ScalarType? dtype, ...); new_full; scalar_tensor; fill.

    ``new_full(Tensor self, SymInt[] size, Scalar fill_value)``, ``scalar_tensor(Scalar s)``,
    ``fill.Scalar(Tensor self, Scalar value)`` / ``fill.Tensor(Tensor self, Tensor value)``.
    """
    index = {"aten::full": 1, "aten::new_full": 2, "aten::scalar_tensor": 0, "aten::fill": 1}[node.kind]
    return filled_like(ctx, node, node.args[index])


@register("aten::arange")
def aten_arange(ctx: Context, node: Node) -> Ref:
    """arange.start_step(Scalar start, Scalar end, Scalar step=1, *, ScalarType? dtype, ...); arange(Scalar end)."""
    out = node.outputs[0]
    positional = [a for a in node.args if not isinstance(a, dict)]
    start, end, step = (0, positional[0], 1) if len(positional) == 1 else (*positional[:2], 1)
    if len(positional) >= 3:
        step = positional[2]
    g = ctx.g
    length = out.shape[0]
    if isinstance(length, int) and not any(isinstance(v, SymInt) for v in (start, end, step)):
        values = np.array([start + i * step for i in range(length)], dtype=np.float64)
        array = values.astype(NP_DTYPES[out.dtype])
        label = f"arange_{out.dtype}_{_label_value(start)}_{_label_value(end)}_{_label_value(step)}"
        return g.op("copy", g.variable(array, label), out=out.name)
    tract_only(ctx, node, "with a dynamic length needs tract_core_range, which the NNEF specification lacks")
    if all(isinstance(v, (int, SymInt)) and not isinstance(v, bool) for v in (start, end, step)):
        bounds = [Ref(dim_literal(v.expr)) if isinstance(v, SymInt) else v for v in (start, end, step)]
        return g.op("tract_core_cast", g.op("tract_core_range", *bounds), to=out.dtype, out=out.name)
    # Float bounds: start + step * [0, 1, ..., length - 1].
    y = g.op("tract_core_cast", g.op("tract_core_range", 0, dim_of(node, length), 1), to=out.dtype)
    if step != 1:
        y = g.op("mul", y, operand_ref(ctx, node, step, out.dtype, 1))
    if start != 0:
        y = g.op("add", y, operand_ref(ctx, node, start, out.dtype, 1))
    return g.op("copy", y, out=out.name)


@register("aten::linspace")
def aten_linspace(ctx: Context, node: Node) -> Ref:
    """linspace(Scalar start, Scalar end, int steps, *, ScalarType? dtype, ...) -> Tensor (a constant)."""
    out = node.outputs[0]
    start, end, steps = node.args[:3]
    if any(isinstance(v, (SymInt, Value)) for v in (start, end, steps)):
        raise TranslationError(f"{node.where()}: linspace with dynamic bounds is not supported")
    array = np.linspace(float(start), float(end), int(steps)).astype(NP_DTYPES[out.dtype])
    label = f"linspace_{out.dtype}_{_label_value(start)}_{_label_value(end)}_{steps}"
    return ctx.g.op("copy", ctx.g.variable(array, label), out=out.name)


# ----------------------------------------------------------------------------------------------
# Triangles, rolls, flips, unbind, repeat_interleave


@register("aten::tril", "aten::triu")
def aten_tril_triu(ctx: Context, node: Node) -> Ref:
    """tril/triu(Tensor self, int diagonal=0) -> Tensor (over the last two axes)."""
    x, out = node.args[0], node.outputs[0]
    diagonal = node_arg(node, 1, "diagonal", 0)
    upper = node.kind == "aten::triu"
    g = ctx.g
    if ctx.tract:
        ctx.g.need("tract_registry tract_core")
        k = diagonal if isinstance(diagonal, int) else Ref(dim_literal(diagonal.expr))
        return g.op("tract_core_trilu", ctx.ref(x), k, upper=upper, out=out.name)
    rows, cols = x.shape[-2:]
    if not isinstance(diagonal, int) or not isinstance(rows, int) or not isinstance(cols, int):
        raise TranslationError(f"{node.where()}: {node.kind} over dynamic axes needs TractNNEF")
    ones = np.ones((rows, cols), dtype=bool)
    keep = (np.triu(ones, diagonal) if upper else np.tril(ones, diagonal)).reshape((1,) * (x.rank - 2) + (rows, cols))
    mask = g.variable(keep, f"{'triu' if upper else 'tril'}_{rows}x{cols}_{_label_value(diagonal)}_r{x.rank}")
    return g.op("select", mask, ctx.ref(x), scalar_const(ctx, 0, x.dtype, x.rank), out=out.name)


def roll_axis(ctx: Context, x: Any, dim: Dim, axis: int, shift: int) -> Any:
    """``x`` rolled by ``shift`` along ``axis`` (of size ``dim``): the last ``shift`` items come first."""
    split = (-shift) % dim if isinstance(dim, int) else -shift
    if split == 0 or shift == 0:
        return x
    tail = _slice_ref(ctx, x, dim, axis, split, BIG)
    head = _slice_ref(ctx, x, dim, axis, 0, split)
    return ctx.g.op("concat", [tail, head], axis=axis)


@register("aten::roll")
def aten_roll(ctx: Context, node: Node) -> Ref:
    """roll(Tensor self, SymInt[1] shifts, int[1] dims=[]) -> Tensor (flattened when dims is empty)."""
    x, out = node.args[0], node.outputs[0]
    shifts = list(node.args[1]) if isinstance(node.args[1], (list, tuple)) else [node.args[1]]
    dims = node_arg(node, 2, "dims", [])
    dims = [dims] if isinstance(dims, int) else list(dims or [])
    if any(not isinstance(s, int) for s in shifts):
        raise TranslationError(f"{node.where()}: roll by a dynamic shift is not supported")
    g = ctx.g
    if not dims:
        flat = g.op("reshape", ctx.ref(x), shape=[-1])
        rolled = roll_axis(ctx, flat, product_of(list(x.shape)), 0, shifts[0])
        return g.op("reshape", rolled, shape=shape_attr(ctx, node, x.shape), out=out.name)
    y = ctx.ref(x)
    for shift, d in zip(shifts, dims):
        axis = wrap_axis(d, x.rank)
        y = roll_axis(ctx, y, x.shape[axis], axis, shift)
    return g.op("copy", y, out=out.name)


@register("aten::fliplr", "aten::flipud")
def aten_fliplr(ctx: Context, node: Node) -> Ref:
    """fliplr/flipud(Tensor self) -> Tensor: flip of axis 1 / axis 0 (torch.jit.trace keeps them whole)."""
    axis = 1 if node.kind == "aten::fliplr" else 0
    return cast(Ref, aten_flip(ctx, dataclasses.replace(node, kind="aten::flip", args=(node.args[0], [axis]))))


@register("aten::hstack", "aten::vstack")
def aten_hstack(ctx: Context, node: Node) -> Ref:
    """hstack/vstack(Tensor[] tensors) -> Tensor: concatenation along axis 1 (axis 0 for vectors) / along
    axis 0 with vectors as rows (torch.jit.trace keeps them whole).
    """
    tensors, out = node.args[0], node.outputs[0]
    if any(t.rank == 0 for t in tensors):
        raise TranslationError(f"{node.where()}: {node.kind.split('::')[1]} of scalars (rank 0) is not supported")
    g = ctx.g
    if node.kind == "aten::hstack":
        return g.op("concat", [ctx.ref(t) for t in tensors], axis=0 if out.rank == 1 else 1, out=out.name)
    rows = [g.op("unsqueeze", ctx.ref(t), axes=[0]) if t.rank == 1 else ctx.ref(t) for t in tensors]
    return g.op("concat", rows, axis=0, out=out.name)


@register("aten::flip")
def aten_flip(ctx: Context, node: Node) -> Ref:
    """flip(Tensor self, int[] dims) -> Tensor."""
    x, out = node.args[0], node.outputs[0]
    axes = sorted({wrap_axis(d, x.rank) for d in node.args[1]})
    g = ctx.g
    if not axes:
        return g.op("copy", ctx.ref(x), out=out.name)
    if ctx.tract:
        # tract slices [begin, end) then walks it backwards for a negative stride.
        ends = [dim_of(node, x.shape[a]) for a in axes]
        return g.op(
            "slice", ctx.ref(x), axes=axes, begin=[0] * len(axes), end=ends, stride=[-1] * len(axes), out=out.name
        )
    y = ctx.ref(x)
    for a in axes:
        n = x.shape[a]
        if not isinstance(n, int):
            raise TranslationError(f"{node.where()}: flip of a dynamic axis needs TractNNEF")
        if n > 1:
            y = g.op("concat", [_slice_ref(ctx, y, n, a, i, i + 1) for i in reversed(range(n))], axis=a)
    return g.op("copy", y, out=out.name)


@register("aten::unbind")
def aten_unbind(ctx: Context, node: Node) -> list[Ref]:
    """unbind.int(Tensor self, int dim=0) -> Tensor[]."""
    x = node.args[0]
    axis = wrap_axis(node_arg(node, 1, "dim", 0), x.rank)
    g = ctx.g
    refs = []
    for i, out in enumerate(node.outputs):
        part = _slice_ref(ctx, ctx.ref(x), x.shape[axis], axis, i, i + 1, out=out.name + "_slice")
        refs.append(g.op("squeeze", part, axes=[axis], out=out.name))
    return refs


@register("aten::repeat_interleave")
def aten_repeat_interleave(ctx: Context, node: Node) -> Ref:
    """repeat_interleave.self_int(Tensor self, SymInt repeats, int? dim=None, *, SymInt? output_size=None)."""
    x, out = node.args[0], node.outputs[0]
    repeats = node_arg(node, 1, "repeats")  # repeat_interleave.Tensor(Tensor repeats) has no int
    if not isinstance(repeats, int):
        raise TranslationError(
            f"{node.where()}: repeat_interleave with per-item repeats gives a data-dependent shape: use an int"
        )
    dim = node_arg(node, 2, "dim")
    g = ctx.g
    y = ctx.ref(x)
    if dim is None:
        y, rank, axis = g.op("reshape", y, shape=[-1]), 1, 0
    else:
        rank, axis = x.rank, wrap_axis(dim, x.rank)
    y = g.op("unsqueeze", y, axes=[axis + 1])
    y = g.op("tile", y, repeats=[repeats if a == axis + 1 else 1 for a in range(rank + 1)])
    return g.op("reshape", y, shape=[-1], axis_start=axis, axis_count=2, out=out.name)


# ----------------------------------------------------------------------------------------------
# Gathers


@register("aten::gather")
def aten_gather(ctx: Context, node: Node) -> Ref:
    """gather(Tensor self, int dim, Tensor index, *, bool sparse_grad=False) -> Tensor."""
    x, out = node.args[0], node.outputs[0]
    tract_only(ctx, node, "needs an elementwise gather, which the NNEF specification lacks")
    axis = wrap_axis(node.args[1], x.rank)
    return ctx.g.op("tract_core_gather_elements", ctx.ref(x), ctx.ref(node.args[2]), axis=axis, out=out.name)


def _broadcast_to(ctx: Context, node: Node, v: Value, shape: list[Dim]) -> Any:
    ref = align_rank(ctx, v, len(shape), v)
    have = (1,) * (len(shape) - v.rank) + tuple(v.shape)
    repeats = [dim_of(node, w) if h == 1 and w != 1 else 1 for h, w in zip(have, shape)]
    return ctx.g.op("tile", ref, repeats=repeats) if any(r != 1 for r in repeats) else ref


@register("aten::diagonal")
def aten_diagonal(ctx: Context, node: Node) -> Ref:
    """diagonal(Tensor(a) self, int offset=0, int dim1=0, int dim2=1) -> Tensor(a): the diagonal as a last axis.

    ``dim1`` and ``dim2`` move to the end and merge; from the first diagonal element on, rows of ``dim2 + 1``
    elements start with one (static sizes; tract cannot take the strided slice of a reshape).
    """
    x, out = node.args[0], node.outputs[0]
    offset = int(node_arg(node, 1, "offset", 0))
    a, b = wrap_axis(node_arg(node, 2, "dim1", 0), x.rank), wrap_axis(node_arg(node, 3, "dim2", 1), x.rank)
    n, m, count = x.shape[a], x.shape[b], out.shape[-1]
    if not all(isinstance(d, int) for d in (n, m, count)) or not count:
        raise TranslationError(f"{node.where()}: the diagonal of a dynamic or empty axis is not supported yet")
    g, last = ctx.g, x.rank - 2
    perm = [d for d in range(x.rank) if d not in (a, b)] + [a, b]
    y = g.op("transpose", ctx.ref(x), axes=perm) if perm != list(range(x.rank)) else ctx.ref(x)
    y = g.op("reshape", y, shape=[n * m], axis_start=last, axis_count=2)
    begin = offset if offset >= 0 else -offset * m
    end = min(begin + count * (m + 1), n * m)
    y = g.op("slice", y, axes=[last], begin=[begin], end=[end], stride=[1])
    if begin + count * (m + 1) > end:
        rest = begin + count * (m + 1) - end
        y = g.op("pad", y, padding=[(0, rest) if d == last else (0, 0) for d in range(last + 1)], value=0.0)
    y = g.op("reshape", y, shape=[count, m + 1], axis_start=last, axis_count=1)
    y = g.op("slice", y, axes=[last + 1], begin=[0], end=[1], stride=[1])
    return g.op("squeeze", y, axes=[last + 1], out=out.name)


@register("aten::copy")
def aten_copy(ctx: Context, node: Node) -> Ref:
    """copy(Tensor self, Tensor src, bool non_blocking=False) -> Tensor: ``src`` broadcast to the shape of
    ``self`` and cast to its dtype (out-of-place ``self.copy_(src)``).
    """
    src, out = node.args[1], node.outputs[0]
    y = _broadcast_to(ctx, node, src, list(out.shape)) if tuple(src.shape) != tuple(out.shape) else ctx.ref(src)
    y = cast_to(ctx, node, y, src.dtype, out.dtype)
    return ctx.g.op("copy", y, out=out.name)


@register("aten::index", "aten::_unsafe_index")
def aten_index(ctx: Context, node: Node) -> Ref:
    """index.Tensor/_unsafe_index(Tensor self, Tensor?[] indices) -> Tensor: ``x[idx]``, ``x[:, idx]``, ``x[i, j]``.

    ``_unsafe_index`` (indices not checked) is translated alike.
    """
    x, out = node.args[0], node.outputs[0]
    indices = list(node.args[1])
    tract_only(ctx, node, "needs a gather, which tract reads only as its tract_core_gather extensions")
    if any(isinstance(i, Value) and i.dtype == "bool" for i in indices):
        raise TranslationError(f"{node.where()}: indexing with a boolean mask gives a data-dependent shape")
    g = ctx.g
    positions = [k for k, i in enumerate(indices) if i is not None]
    if len(positions) == 1:
        k = positions[0]
        return g.op("tract_core_gather", ctx.ref(x), ctx.ref(indices[k]), axis=k, out=out.name)
    # Several index tensors: their axes move to the front, the broadcast indices are stacked on a last
    # axis and gathered at once (tract_core_gather_nd does not wrap negative indices: they are wrapped here).
    others = [a for a in range(x.rank) if a not in positions]
    perm = positions + others
    xr = g.op("transpose", ctx.ref(x), axes=perm) if perm != list(range(x.rank)) else ctx.ref(x)
    batch = broadcast_shape([indices[k].shape for k in positions])
    dtype = "i64"
    columns = []
    for k in positions:
        idx = cast_to(ctx, node, _broadcast_to(ctx, node, indices[k], batch), indices[k].dtype, dtype)
        size = operand_ref(
            ctx, node, x.shape[k] if isinstance(x.shape[k], int) else SymInt(str(x.shape[k])), dtype, len(batch)
        )
        wrapped = g.op("select", g.op("lt", idx, scalar_const(ctx, 0, dtype, len(batch))), g.op("add", idx, size), idx)
        columns.append(g.op("unsqueeze", wrapped, axes=[len(batch)]))
    stacked = g.op("concat", columns, axis=len(batch))
    y = g.op("tract_core_gather_nd", xr, stacked, batch_dims=0)
    adjacent = positions == list(range(positions[0], positions[0] + len(positions)))
    if adjacent and positions[0] > 0:
        # Adjacent indexed axes keep their place: the leading untouched axes go back in front.
        nb, lead = len(batch), positions[0]
        back = list(range(nb, nb + lead)) + list(range(nb)) + list(range(nb + lead, out.rank))
        return g.op("transpose", y, axes=back, out=out.name)
    return g.op("copy", y, out=out.name)


# ----------------------------------------------------------------------------------------------
# Products: matmul relatives and einsum


@register("aten::mv", "aten::dot", "aten::vdot")
def aten_mv_dot(ctx: Context, node: Node) -> Ref:
    """mv(Tensor self, Tensor vec); dot(Tensor self, Tensor tensor); vdot (real tensors): as matmul."""
    return cast(Ref, aten_matmul(ctx, node))


@register("aten::outer")
def aten_outer(ctx: Context, node: Node) -> Ref:
    """outer(Tensor self, Tensor vec2) -> Tensor: a[:, None] * b[None, :]."""
    a, b = node.args[:2]
    g = ctx.g
    return g.op(
        "mul",
        g.op("unsqueeze", ctx.ref(a), axes=[1]),
        g.op("unsqueeze", ctx.ref(b), axes=[0]),
        out=node.outputs[0].name,
    )


@register("aten::inner")
def aten_inner(ctx: Context, node: Node) -> Ref:
    """inner(Tensor self, Tensor other) -> Tensor: the sum over the last axes of both."""
    a, b = node.args[:2]
    letters = iter("abcdefghijklmnopqrstuvwxyz")
    la = "".join(next(letters) for _ in range(max(a.rank - 1, 0)))
    lb = "".join(next(letters) for _ in range(max(b.rank - 1, 0)))
    k = next(letters)
    if a.rank == 0 or b.rank == 0:
        return ctx.g.op("mul", *(align_rank(ctx, v, node.outputs[0].rank, v) for v in (a, b)), out=node.outputs[0].name)
    return einsum_ref(ctx, node, f"{la}{k},{lb}{k}->{la}{lb}", [a, b])


class _Term:
    """An operand of an einsum: its NNEF expression and one letter per axis."""

    def __init__(self, ref: Any, letters: list[str]) -> None:
        self.ref = ref
        self.letters = letters


def _permute(ctx: Context, t: _Term, order: list[str]) -> Any:
    if t.letters == order:
        return t.ref
    return ctx.g.op("transpose", t.ref, axes=[t.letters.index(c) for c in order])


def _sum_out(ctx: Context, t: _Term, letters: list[str]) -> _Term:
    if not letters:
        return t
    axes = sorted(t.letters.index(c) for c in letters)
    y = ctx.g.op("squeeze", ctx.g.op("sum_reduce", t.ref, axes=axes), axes=axes)
    return _Term(y, [c for c in t.letters if c not in letters])


def _merge(ctx: Context, y: Any, start: int, count: int) -> Any:
    """Axes [start, start + count) of ``y`` as one axis (inserted when count is 0)."""
    if count == 0:
        return ctx.g.op("unsqueeze", y, axes=[start])
    if count == 1:
        return y
    return ctx.g.op("reshape", y, shape=[-1], axis_start=start, axis_count=count)


def _unmerge(ctx: Context, node: Node, y: Any, start: int, dims: list[Dim]) -> Any:
    """Axis ``start`` of ``y`` split back into ``dims`` (removed when there are none)."""
    if not dims:
        return ctx.g.op("squeeze", y, axes=[start])
    if len(dims) == 1:
        return y
    return ctx.g.op("reshape", y, shape=shape_attr(ctx, node, dims), axis_start=start, axis_count=1)


def _contract(ctx: Context, node: Node, a: _Term, b: _Term, keep: set[str], sizes: dict[str, Dim]) -> _Term:
    """The einsum of two operands, keeping the letters in ``keep``: a batched matmul (or a product)."""
    a = _sum_out(ctx, a, [c for c in a.letters if c not in b.letters and c not in keep])
    b = _sum_out(ctx, b, [c for c in b.letters if c not in a.letters and c not in keep])
    batch = [c for c in a.letters if c in b.letters and c in keep]
    contracted = [c for c in a.letters if c in b.letters and c not in keep]
    free_a = [c for c in a.letters if c not in b.letters]
    free_b = [c for c in b.letters if c not in a.letters]
    g, nb = ctx.g, len(batch)
    if not contracted:
        ya = _permute(ctx, a, batch + free_a)
        if free_b:
            ya = g.op("unsqueeze", ya, axes=list(range(nb + len(free_a), nb + len(free_a) + len(free_b))))
        yb = _permute(ctx, b, batch + free_b)
        if free_a:
            yb = g.op("unsqueeze", yb, axes=list(range(nb, nb + len(free_a))))
        return _Term(g.op("mul", ya, yb), batch + free_a + free_b)
    # An operand already laid out as the transpose of what matmul wants is read with transposeA/B.
    transpose_a = a.letters == batch + contracted + free_a != batch + free_a + contracted
    groups_a = [contracted, free_a] if transpose_a else [free_a, contracted]
    ya = _permute(ctx, a, batch + groups_a[0] + groups_a[1])
    ya = _merge(ctx, _merge(ctx, ya, nb + len(groups_a[0]), len(groups_a[1])), nb, len(groups_a[0]))
    transpose_b = b.letters == batch + free_b + contracted != batch + contracted + free_b
    groups_b = [free_b, contracted] if transpose_b else [contracted, free_b]
    yb = _permute(ctx, b, batch + groups_b[0] + groups_b[1])
    yb = _merge(ctx, _merge(ctx, yb, nb + len(groups_b[0]), len(groups_b[1])), nb, len(groups_b[0]))
    y = g.op("matmul", ya, yb, transposeA=transpose_a, transposeB=transpose_b)
    y = _unmerge(ctx, node, y, nb + 1, [sizes[c] for c in free_b])
    y = _unmerge(ctx, node, y, nb, [sizes[c] for c in free_a])
    return _Term(y, batch + free_a + free_b)


def einsum_ref(ctx: Context, node: Node, equation: str, operands: list[Value]) -> Ref:
    """``einsum`` of ``operands`` by ``equation``, as tract's einsum or a product and sum of the spec."""
    out = node.outputs[0]
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    specs = lhs.split(",")
    if len(specs) != len(operands):
        raise TranslationError(f"{node.where()}: einsum {equation!r} names {len(specs)} operands, got {len(operands)}")
    # The ellipsis stands for the same broadcast axes in every operand: private letters, right-aligned.
    spare = [chr(c) for c in range(0x3B1, 0x3B1 + 24) if chr(c) not in eq]
    ellipsis_rank = max((v.rank - len(s.replace("...", "")) for s, v in zip(specs, operands) if "..." in s), default=0)
    ellipsis = spare[:ellipsis_rank]
    terms: list[_Term] = []
    sizes: dict[str, Dim] = {}
    for spec, v in zip(specs, operands):
        if "..." in spec:
            before, after = spec.split("...")
            letters = list(before) + ellipsis[ellipsis_rank - (v.rank - len(before) - len(after)) :] + list(after)
        else:
            letters = list(spec)
        if len(letters) != v.rank:
            raise TranslationError(f"{node.where()}: einsum {equation!r} does not match an operand of rank {v.rank}")
        if len(set(letters)) != len(letters):
            raise TranslationError(f"{node.where()}: einsum {equation!r} takes a diagonal, which is not supported")
        for c, d in zip(letters, v.shape):
            if d != 1 or c not in sizes:
                sizes[c] = d
        terms.append(_Term(ctx.ref(v), letters))
    if arrow:
        target = list(rhs.replace("...", "".join(ellipsis)))
    else:
        counts = [c for t in terms for c in t.letters if c not in ellipsis]
        target = ellipsis + sorted(c for c in set(counts) if counts.count(c) == 1)
    result = terms[0]
    for i, other in enumerate(terms[1:], start=2):
        keep = set(target) | {c for t in terms[i:] for c in t.letters}
        result = _contract(ctx, node, result, other, keep, sizes)
    result = _sum_out(ctx, result, [c for c in result.letters if c not in target])
    if sorted(result.letters) != sorted(target):
        raise TranslationError(f"{node.where()}: einsum {equation!r}: an output letter is missing from the operands")
    return ctx.g.op("copy", _permute(ctx, result, target), out=out.name)


@register("aten::einsum")
def aten_einsum(ctx: Context, node: Node) -> Ref:
    """einsum(str equation, Tensor[] tensors, *, int[]? path=None) -> Tensor: pairwise matmuls and sums."""
    return einsum_ref(ctx, node, node.args[0], list(node.args[1]))
