"""Translations of integer/rounding arithmetic, reductions, tensor creation and indexing ops."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, cast

import numpy as np

from torch_to_nnef.ir import Dim, Node, SymInt, Value
from torch_to_nnef.nnef_graph import Ref, dim_literal
from torch_to_nnef.op.core import (
    _BIG,
    _NP_DTYPES,
    TranslationError,
    _align,
    _arg,
    _axis,
    _bound,
    _reduce_axes,
    _scalar,
    aten_matmul,
)
from torch_to_nnef.op.registry import Context, register
from torch_to_nnef.tract_versions import COPY_TRACT, CUMSUM_TRACT

# ----------------------------------------------------------------------------------------------
# Helpers


def _tract_only(ctx: Context, node: Node, why: str) -> None:
    """Raises unless the target is tract (``why`` says what plain NNEF lacks)."""
    if not ctx.tract:
        raise TranslationError(f"{node.where()}: {node.kind} {why}: use TractNNEF")
    ctx.g.need("tract_registry tract_core")


def _label_value(value: Any) -> str:
    return str(value).replace("-", "minus_").replace(".", "p")


def _cast(ctx: Context, node: Node, ref: Any, src: str, dst: str) -> Any:
    """``ref`` converted from ``src`` to ``dst`` (tract casts; the specification only turns booleans to floats)."""
    if src == dst:
        return ref
    if ctx.tract:
        ctx.g.need("tract_registry tract_core")
        return ctx.g.op("tract_core_cast", ref, to=dst)
    if src == "bool" and dst.startswith("f"):
        return ctx.g.op("select", ref, 1.0, 0.0)
    raise TranslationError(f"{node.where()}: {node.kind} needs a cast from {src} to {dst}: use TractNNEF")


def _symbolic(ctx: Context, node: Node, value: SymInt, dtype: str, rank: int) -> Ref:
    """A symbolic integer (``x.size(1)`` under a dynamic axis) as a tensor of ``dtype``; or a number
    computed from one in floats (``x.size(1) ** -0.5``: ``FloatPow(ToFloat(S), -0.5)``), computed in f32.
    """
    _tract_only(ctx, node, "uses a dynamic size as a value, which plain NNEF cannot express")
    if any(f in value.expr for f in _FLOAT_FUNCTIONS):
        result = _symbolic_float(ctx, node, value.expr)
        if not isinstance(result, Ref):
            return cast(Ref, _scalar(ctx, result, dtype, rank))
        ref = result if dtype == "f32" else ctx.g.op("tract_core_cast", result, to=dtype)
    else:
        ref = ctx.g.op("tract_core_cast", Ref(dim_literal(value.expr)), to=dtype)
    return ctx.g.op("unsqueeze", ref, axes=list(range(rank))) if rank else ref


_FLOAT_FUNCTIONS = ("ToFloat", "FloatPow", "FloatTrueDiv", "IntTrueDiv")
"""torch's functions of symbolic floats (a size turned to a float, powers, true divisions)."""


def _symbolic_float(ctx: Context, node: Node, text: str) -> Ref | float:
    """The ops computing torch's float expression ``text`` of the symbols in f32 (a number when constant)."""
    import sympy  # type: ignore[import-untyped]

    known = {*_FLOAT_FUNCTIONS, "FloorDiv"}
    names = set(re.findall(r"[A-Za-z_]\w*", text))
    tree = sympy.sympify(
        text, locals={n: sympy.Function(n) if n in known else sympy.Symbol(n, integer=True) for n in names}
    )
    g = ctx.g

    def size(e: Any) -> str:  # an integer expression of the symbols in tract's syntax
        kind = type(e).__name__
        if e.is_Symbol or e.is_Integer:
            return str(e)
        if e.is_Add or e.is_Mul:
            return ("+" if e.is_Add else "*").join(f"({size(a)})" for a in e.args)
        if kind == "FloorDiv" and e.args[1].is_Integer:
            return f"({size(e.args[0])})/{e.args[1]}"
        if e.is_Pow and e.args[1].is_Integer and e.args[1] > 0:
            return "*".join([f"({size(e.args[0])})"] * int(e.args[1]))
        raise TranslationError(f"{node.where()}: {node.kind}: the size {text} has no tract expression")

    def binary(op: str, a: Any, b: Any) -> Ref | float:
        if isinstance(a, float) and isinstance(b, float):
            return float({"add": a + b, "mul": a * b, "div": a / b, "pow": a**b}[op])
        return g.op(op, a, b)

    def walk(e: Any) -> Ref | float:
        kind = type(e).__name__
        if e.is_Number:
            return float(e)
        if kind == "ToFloat" or not any(f in str(e) for f in _FLOAT_FUNCTIONS):
            return g.op("tract_core_cast", Ref(dim_literal(size(e.args[0] if kind == "ToFloat" else e))), to="f32")
        if kind == "FloatPow":
            return binary("pow", walk(e.args[0]), walk(e.args[1]))
        if kind in ("FloatTrueDiv", "IntTrueDiv"):
            return binary("div", walk(e.args[0]), walk(e.args[1]))
        if e.is_Add or e.is_Mul:
            parts = [walk(a) for a in e.args]
            result = parts[0]
            for part in parts[1:]:
                result = binary("add" if e.is_Add else "mul", result, part)
            return result
        raise TranslationError(f"{node.where()}: {node.kind}: the number {text} has no tract expression")

    return walk(tree)


def _operand(ctx: Context, node: Node, v: Any, dtype: str, rank: int) -> Any:
    """An elementwise operand of ``dtype``, aligned to ``rank`` (tensors are cast when needed)."""
    if isinstance(v, Value):
        aligned = ctx.ref(v) if v.rank >= rank else _align(ctx, v, rank, v)
        return _cast(ctx, node, aligned, v.dtype, dtype)
    if isinstance(v, SymInt):
        return _symbolic(ctx, node, v, dtype, rank)
    return _scalar(ctx, v, dtype, rank)


def _expressible(d: Dim) -> bool:
    """Whether tract can read a dimension: an int, or arithmetic over the user's single-letter symbols
    and those of the axes taken in steps (``H_8``), not over torch's own (``u0``: a size from data).
    """
    if isinstance(d, int):
        return True
    names = re.findall(r"[A-Za-z_]\w*", d)
    return re.fullmatch(r"[\w+\-*/() ]+", d) is not None and all(re.fullmatch(r"[A-Za-z](_\d+)?", n) for n in names)


def _dim(node: Node, d: Dim) -> Any:
    """A dimension as an NNEF integer: an int, or tract's expression of the symbols."""
    if isinstance(d, int):
        return d
    if not _expressible(d):
        raise TranslationError(f"{node.where()}: {node.kind}: the size {d} has no tract expression")
    return Ref(dim_literal(d))


def _shape_attr(ctx: Context, node: Node, shape: tuple[Dim, ...] | list[Dim]) -> list[Any]:
    """A full shape for ``reshape``: one symbolic dimension becomes -1, more need tract's expressions."""
    symbolic = [i for i, d in enumerate(shape) if not isinstance(d, int)]
    if len(symbolic) == 1:
        return [-1 if i == symbolic[0] else d for i, d in enumerate(shape)]
    if symbolic and not ctx.tract:
        raise TranslationError(f"{node.where()}: {node.kind} needs a symbolic reshape: use TractNNEF")
    return [_dim(node, d) for d in shape]


def _product(dims: list[Dim]) -> Dim:
    if all(isinstance(d, int) for d in dims):
        return math.prod(int(d) for d in dims)
    return "*".join(str(d) if isinstance(d, int) else f"({dim_literal(d)})" for d in dims)


def _slice_ref(ctx: Context, x: Any, dim: Dim, axis: int, start: Any, end: Any, out: str | None = None) -> Ref:
    return ctx.g.op("slice", x, axes=[axis], begin=[_bound(start, dim)], end=[_bound(end, dim)], stride=[1], out=out)


def _trunc(ctx: Context, q: Any) -> Ref:
    """Rounding towards zero with specification ops only."""
    return ctx.g.op("select", ctx.g.op("lt", q, 0.0), ctx.g.op("ceil", q), ctx.g.op("floor", q))


def _int_arith(ctx: Context, node: Node, dtype: str) -> None:
    if not dtype.startswith("f") and not ctx.tract:
        raise TranslationError(
            f"{node.where()}: {node.kind} on {dtype} needs integer arithmetic, which the NNEF specification "
            "lacks (its arithmetic is on scalars only): use TractNNEF"
        )


# ----------------------------------------------------------------------------------------------
# Rounding division and remainders


def _binary_operands(ctx: Context, node: Node) -> tuple[Any, Any, Value]:
    out = node.outputs[0]
    _int_arith(ctx, node, out.dtype)
    a, b = _arg(node, 0, "self"), _arg(node, 1, "other")
    return _operand(ctx, node, a, out.dtype, out.rank), _operand(ctx, node, b, out.dtype, out.rank), out


def _fmod(ctx: Context, a: Any, b: Any, dtype: str) -> Ref:
    """The remainder of a truncated division, a - b * trunc(a / b) (integer division already truncates)."""
    q = ctx.g.op("div", a, b)
    if dtype.startswith("f"):
        q = _trunc(ctx, q)
    return ctx.g.op("sub", a, ctx.g.op("mul", q, b))


@register("aten::fmod")
def aten_fmod(ctx: Context, node: Node) -> Ref:
    """fmod.Tensor(Tensor self, Tensor other) / fmod.Scalar(Tensor self, Scalar other): the sign of self."""
    a, b, out = _binary_operands(ctx, node)
    return ctx.g.op("copy", _fmod(ctx, a, b, out.dtype), out=out.name)


@register("aten::remainder")
def aten_remainder(ctx: Context, node: Node) -> Ref:
    """remainder.Tensor(Tensor self, Tensor other) / remainder.Scalar(...): Python's %, the sign of other."""
    a, b, out = _binary_operands(ctx, node)
    g = ctx.g
    r = _fmod(ctx, a, b, out.dtype)
    zero = _scalar(ctx, 0, out.dtype, out.rank)
    # A non-zero fmod whose sign differs from the divisor's is shifted by the divisor.
    wrong_sign = g.op("lt", g.op("mul", r, b), zero)
    return g.op("select", wrong_sign, g.op("add", r, b), r, out=out.name)


def div_rounded(ctx: Context, node: Node) -> Ref:
    """div.Tensor_mode(Tensor self, Tensor other, *, str? rounding_mode): 'trunc' or 'floor'."""
    mode = _arg(node, 2, "rounding_mode") if node.kind == "aten::div" else "floor"
    if mode not in ("trunc", "floor"):
        raise TranslationError(f"{node.where()}: div with rounding_mode={mode!r} is not supported")
    a, b, out = _binary_operands(ctx, node)
    g = ctx.g
    q = g.op("div", a, b)
    if out.dtype.startswith("f"):
        return g.op("floor" if mode == "floor" else "copy", _trunc(ctx, q) if mode == "trunc" else q, out=out.name)
    if mode == "trunc":
        return g.op("copy", q, out=out.name)
    r = g.op("sub", a, g.op("mul", q, b))
    zero, one = _scalar(ctx, 0, out.dtype, out.rank), _scalar(ctx, 1, out.dtype, out.rank)
    return g.op("select", g.op("lt", g.op("mul", r, b), zero), g.op("sub", q, one), q, out=out.name)


@register("aten::floor_divide")
def aten_floor_divide(ctx: Context, node: Node) -> Ref:
    """floor_divide(Tensor self, Tensor other) / floor_divide.Scalar(...): Python's //."""
    return div_rounded(ctx, node)


# ----------------------------------------------------------------------------------------------
# Bitwise and logical


def bitwise_integer(ctx: Context, node: Node, op: str) -> Ref:
    """An integer bitwise op as tract's ``tract_core_bit*`` (the specification has none)."""
    out = node.outputs[0]
    _tract_only(ctx, node, f"on {out.dtype} needs bitwise integer operators, which the NNEF specification lacks")
    if op == "bitnot":
        return ctx.g.op("tract_core_bitnot", _operand(ctx, node, node.args[0], out.dtype, out.rank), out=out.name)
    a, b = (_operand(ctx, node, v, out.dtype, out.rank) for v in node.args[:2])
    return ctx.g.op(f"tract_core_{op}", a, b, out=out.name)


def _as_bool(ctx: Context, node: Node, v: Any, rank: int) -> Any:
    if isinstance(v, Value):
        ref = ctx.ref(v) if v.rank >= rank else _align(ctx, v, rank, v)
        if v.dtype == "bool":
            return ref
        _int_arith(ctx, node, v.dtype)
        return ctx.g.op("ne", ref, _scalar(ctx, 0, v.dtype, rank))
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
    dims = _arg(node, index, name)
    return None if isinstance(dims, dict) else dims


@register("aten::prod")
def aten_prod(ctx: Context, node: Node) -> Ref:
    """prod.dim_int(Tensor self, int dim, bool keepdim=False, *, ScalarType? dtype=None); prod(self)."""
    x, out = node.args[0], node.outputs[0]
    dim = _dims_arg(node, 1, "dim")
    axes = _reduce_axes(x, dim)
    keep = bool(_arg(node, 2, "keepdim", False)) if dim is not None else False
    g = ctx.g
    if ctx.tract:
        ctx.g.need("tract_registry tract_core")
        xr = _cast(ctx, node, ctx.ref(x), x.dtype, out.dtype)
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


def _vector_norm(ctx: Context, node: Node, xr: Any, ord_: Any, axes: list[int]) -> Ref:
    """The p-norm over ``axes``, dimensions kept."""
    g = ctx.g
    if ord_ in (math.inf, -math.inf):
        return g.op("max_reduce" if ord_ > 0 else "min_reduce", g.op("abs", xr), axes=axes)
    if ord_ == 0:
        return g.op("sum_reduce", g.op("select", g.op("ne", xr, 0.0), 1.0, 0.0), axes=axes)
    if ord_ == 1:
        return g.op("sum_reduce", g.op("abs", xr), axes=axes)
    if ord_ == 2:
        return g.op("sqrt", g.op("sum_reduce", g.op("sqr", xr), axes=axes))
    if not isinstance(ord_, (int, float)) or isinstance(ord_, bool):
        raise TranslationError(f"{node.where()}: vector norm of order {ord_!r} is not supported")
    p = float(ord_)
    return g.op("pow", g.op("sum_reduce", g.op("pow", g.op("abs", xr), p), axes=axes), 1.0 / p)


def _norm_input(ctx: Context, node: Node, x: Value, out: Value) -> Any:
    if not out.dtype.startswith("f"):
        raise TranslationError(f"{node.where()}: norm to {out.dtype} is not supported")
    return _cast(ctx, node, ctx.ref(x), x.dtype, out.dtype)


def _finish(ctx: Context, y: Ref, axes: list[int], keep: bool, out: str) -> Ref:
    if keep or not axes:
        return ctx.g.op("copy", y, out=out)
    return ctx.g.op("squeeze", y, axes=axes, out=out)


@register("aten::linalg_vector_norm")
def aten_linalg_vector_norm(ctx: Context, node: Node) -> Ref:
    """linalg_vector_norm(Tensor self, Scalar ord=2, int[1]? dim=None, bool keepdim=False, *, ScalarType? dtype)."""
    x, out = node.args[0], node.outputs[0]
    ord_ = _arg(node, 1, "ord", 2)
    axes = _reduce_axes(x, _dims_arg(node, 2, "dim"))
    keep = bool(_arg(node, 3, "keepdim", False))
    y = _vector_norm(ctx, node, _norm_input(ctx, node, x, out), ord_, axes)
    return _finish(ctx, y, axes, keep, out.name)


def _matrix_norm(ctx: Context, node: Node, x: Value, ord_: Any, dims: list[int], keep: bool) -> Ref:
    out = node.outputs[0]
    xr = _norm_input(ctx, node, x, out)
    rows, cols = (_axis(d, x.rank) for d in dims)
    axes = sorted((rows, cols))
    g = ctx.g
    if ord_ == "fro":
        y = _vector_norm(ctx, node, xr, 2, axes)
    elif ord_ in (1, -1, math.inf, -math.inf):
        # 1: largest column sum of |x|; inf: largest row sum (and the smallest for the negative orders).
        summed, across = (rows, cols) if ord_ in (1, -1) else (cols, rows)
        sums = g.op("sum_reduce", g.op("abs", xr), axes=[summed])
        y = g.op("max_reduce" if ord_ > 0 else "min_reduce", sums, axes=[across])
    else:
        raise TranslationError(
            f"{node.where()}: matrix norm of order {ord_!r} needs singular values, which NNEF cannot express"
        )
    return _finish(ctx, y, axes, keep, out.name)


@register("aten::linalg_matrix_norm")
def aten_linalg_matrix_norm(ctx: Context, node: Node) -> Ref:
    """linalg_matrix_norm(Tensor self, Scalar|str ord='fro', int[] dim=[-2,-1], bool keepdim=False, *, dtype)."""
    x = node.args[0]
    ord_ = _arg(node, 1, "ord", "fro")
    dims = list(_arg(node, 2, "dim", [-2, -1]))
    return _matrix_norm(ctx, node, x, ord_, dims, bool(_arg(node, 3, "keepdim", False)))


@register("aten::linalg_norm")
def aten_linalg_norm(ctx: Context, node: Node) -> Ref:
    """linalg_norm(Tensor self, Scalar|str? ord=None, int[1]? dim=None, bool keepdim=False, *, dtype)."""
    x, out = node.args[0], node.outputs[0]
    ord_ = _arg(node, 1, "ord")
    dim = _dims_arg(node, 2, "dim")
    keep = bool(_arg(node, 3, "keepdim", False))
    dims = [dim] if isinstance(dim, int) else (list(dim) if dim is not None else None)
    matrix = (dims is not None and len(dims) == 2) or (dims is None and ord_ is not None and x.rank == 2)
    if ord_ is not None and matrix:
        return _matrix_norm(ctx, node, x, ord_, dims or [0, 1], keep)
    if isinstance(ord_, str):
        raise TranslationError(f"{node.where()}: norm {ord_!r} needs two dims")
    axes = _reduce_axes(x, dims)
    y = _vector_norm(ctx, node, _norm_input(ctx, node, x, out), 2 if ord_ is None else ord_, axes)
    return _finish(ctx, y, axes, keep, out.name)


@register("aten::any", "aten::all")
def aten_any_all(ctx: Context, node: Node) -> Ref:
    """any.dim(Tensor self, int dim, bool keepdim=False) / any.dims(self, int[]? dim) / any(self); all alike."""
    x, out = node.args[0], node.outputs[0]
    dim = _dims_arg(node, 1, "dim")
    axes = _reduce_axes(x, dim)
    keep = bool(_arg(node, 2, "keepdim", False)) if dim is not None else False
    g = ctx.g
    truth = _as_bool(ctx, node, x, x.rank)
    if not axes:
        y = truth
    elif not ctx.tract or ctx.tract_at_least(COPY_TRACT):
        y = g.op("any_reduce" if node.kind == "aten::any" else "all_reduce", truth, axes=axes)
    else:  # older tract: the largest (any) or smallest (all) of 0/1 values
        ones = g.op("select", truth, 1.0, 0.0)
        y = g.op("gt", g.op("max_reduce" if node.kind == "aten::any" else "min_reduce", ones, axes=axes), 0.5)
    return _finish(ctx, y, axes, keep, out.name)


@register("aten::cumsum")
def aten_cumsum(ctx: Context, node: Node) -> Ref:
    """cumsum(Tensor self, int dim, *, ScalarType? dtype=None) -> Tensor."""
    x, out = node.args[0], node.outputs[0]
    axis = _axis(node.args[1], x.rank)
    g = ctx.g
    xr = _cast(ctx, node, ctx.ref(x), x.dtype, out.dtype)
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
    triangle = np.triu(np.ones((n, n), dtype=_NP_DTYPES[out.dtype])).reshape((1,) * (rank - 2) + (n, n))
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
    axes = _reduce_axes(x, _dims_arg(node, 1, "dim"))
    keep = bool(_arg(node, 2, "keepdim", False))
    g = ctx.g
    xr = _cast(ctx, node, ctx.ref(x), x.dtype, out.dtype)
    # Clamping the maximum to finite values keeps all -inf (or +inf) slices exact instead of NaN.
    top = g.op("min", g.op("max", g.op("max_reduce", xr, axes=axes), -3.4028234663852886e38), 3.4028234663852886e38)
    y = g.op("add", g.op("log", g.op("sum_reduce", g.op("exp", g.op("sub", xr, top)), axes=axes)), top)
    return _finish(ctx, y, axes, keep, out.name)


# ----------------------------------------------------------------------------------------------
# Creation


def _filled(ctx: Context, node: Node, value: Any) -> Ref:
    """A tensor of the output's shape and dtype filled with ``value`` (a scalar, SymInt or 0-d Value)."""
    out = node.outputs[0]
    g = ctx.g
    if isinstance(value, Value):
        one = _operand(ctx, node, value, out.dtype, out.rank)
    elif isinstance(value, SymInt):
        one = _symbolic(ctx, node, value, out.dtype, out.rank)
    else:
        array = np.full((1,) * out.rank, value, dtype=_NP_DTYPES[out.dtype])
        one = g.variable(array, f"constant_{out.dtype}_{str(value).replace('-', 'minus_')}_r{out.rank}")
    if not out.rank:
        return g.op("copy", one, out=out.name)
    if any(not isinstance(d, int) for d in out.shape):
        _tract_only(ctx, node, "has a dynamic shape, which plain NNEF cannot express")
    return g.op("tile", one, repeats=[_dim(node, d) for d in out.shape], out=out.name)


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
    return _filled(ctx, node, _FILL_VALUE[node.kind])


@register("aten::full", "aten::new_full", "aten::scalar_tensor", "aten::fill")
def aten_full(ctx: Context, node: Node) -> Ref:
    """full(SymInt[] size, Scalar fill_value, *, ScalarType? dtype, ...); new_full; scalar_tensor; fill.

    ``new_full(Tensor self, SymInt[] size, Scalar fill_value)``, ``scalar_tensor(Scalar s)``,
    ``fill.Scalar(Tensor self, Scalar value)`` / ``fill.Tensor(Tensor self, Tensor value)``.
    """
    index = {"aten::full": 1, "aten::new_full": 2, "aten::scalar_tensor": 0, "aten::fill": 1}[node.kind]
    return _filled(ctx, node, node.args[index])


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
        array = values.astype(_NP_DTYPES[out.dtype])
        label = f"arange_{out.dtype}_{_label_value(start)}_{_label_value(end)}_{_label_value(step)}"
        return g.op("copy", g.variable(array, label), out=out.name)
    _tract_only(ctx, node, "with a dynamic length needs tract_core_range, which the NNEF specification lacks")
    if all(isinstance(v, (int, SymInt)) and not isinstance(v, bool) for v in (start, end, step)):
        bounds = [Ref(dim_literal(v.expr)) if isinstance(v, SymInt) else v for v in (start, end, step)]
        return g.op("tract_core_cast", g.op("tract_core_range", *bounds), to=out.dtype, out=out.name)
    # Float bounds: start + step * [0, 1, ..., length - 1].
    y = g.op("tract_core_cast", g.op("tract_core_range", 0, _dim(node, length), 1), to=out.dtype)
    if step != 1:
        y = g.op("mul", y, _operand(ctx, node, step, out.dtype, 1))
    if start != 0:
        y = g.op("add", y, _operand(ctx, node, start, out.dtype, 1))
    return g.op("copy", y, out=out.name)


@register("aten::linspace")
def aten_linspace(ctx: Context, node: Node) -> Ref:
    """linspace(Scalar start, Scalar end, int steps, *, ScalarType? dtype, ...) -> Tensor (a constant)."""
    out = node.outputs[0]
    start, end, steps = node.args[:3]
    if any(isinstance(v, (SymInt, Value)) for v in (start, end, steps)):
        raise TranslationError(f"{node.where()}: linspace with dynamic bounds is not supported")
    array = np.linspace(float(start), float(end), int(steps)).astype(_NP_DTYPES[out.dtype])
    label = f"linspace_{out.dtype}_{_label_value(start)}_{_label_value(end)}_{steps}"
    return ctx.g.op("copy", ctx.g.variable(array, label), out=out.name)


# ----------------------------------------------------------------------------------------------
# Triangles, rolls, flips, unbind, repeat_interleave


@register("aten::tril", "aten::triu")
def aten_tril_triu(ctx: Context, node: Node) -> Ref:
    """tril/triu(Tensor self, int diagonal=0) -> Tensor (over the last two axes)."""
    x, out = node.args[0], node.outputs[0]
    diagonal = _arg(node, 1, "diagonal", 0)
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
    return g.op("select", mask, ctx.ref(x), _scalar(ctx, 0, x.dtype, x.rank), out=out.name)


def _roll_axis(ctx: Context, x: Any, dim: Dim, axis: int, shift: int) -> Any:
    """``x`` rolled by ``shift`` along ``axis`` (of size ``dim``): the last ``shift`` items come first."""
    split = (-shift) % dim if isinstance(dim, int) else -shift
    if split == 0 or shift == 0:
        return x
    tail = _slice_ref(ctx, x, dim, axis, split, _BIG)
    head = _slice_ref(ctx, x, dim, axis, 0, split)
    return ctx.g.op("concat", [tail, head], axis=axis)


@register("aten::roll")
def aten_roll(ctx: Context, node: Node) -> Ref:
    """roll(Tensor self, SymInt[1] shifts, int[1] dims=[]) -> Tensor (flattened when dims is empty)."""
    x, out = node.args[0], node.outputs[0]
    shifts = list(node.args[1]) if isinstance(node.args[1], (list, tuple)) else [node.args[1]]
    dims = _arg(node, 2, "dims", [])
    dims = [dims] if isinstance(dims, int) else list(dims or [])
    if any(not isinstance(s, int) for s in shifts):
        raise TranslationError(f"{node.where()}: roll by a dynamic shift is not supported")
    g = ctx.g
    if not dims:
        flat = g.op("reshape", ctx.ref(x), shape=[-1])
        rolled = _roll_axis(ctx, flat, _product(list(x.shape)), 0, shifts[0])
        return g.op("reshape", rolled, shape=_shape_attr(ctx, node, x.shape), out=out.name)
    y = ctx.ref(x)
    for shift, d in zip(shifts, dims):
        axis = _axis(d, x.rank)
        y = _roll_axis(ctx, y, x.shape[axis], axis, shift)
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
    axes = sorted({_axis(d, x.rank) for d in node.args[1]})
    g = ctx.g
    if not axes:
        return g.op("copy", ctx.ref(x), out=out.name)
    if ctx.tract:
        # tract slices [begin, end) then walks it backwards for a negative stride.
        ends = [_dim(node, x.shape[a]) for a in axes]
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
    axis = _axis(_arg(node, 1, "dim", 0), x.rank)
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
    repeats = _arg(node, 1, "repeats")  # repeat_interleave.Tensor(Tensor repeats) has no int
    if not isinstance(repeats, int):
        raise TranslationError(
            f"{node.where()}: repeat_interleave with per-item repeats gives a data-dependent shape: use an int"
        )
    dim = _arg(node, 2, "dim")
    g = ctx.g
    y = ctx.ref(x)
    if dim is None:
        y, rank, axis = g.op("reshape", y, shape=[-1]), 1, 0
    else:
        rank, axis = x.rank, _axis(dim, x.rank)
    y = g.op("unsqueeze", y, axes=[axis + 1])
    y = g.op("tile", y, repeats=[repeats if a == axis + 1 else 1 for a in range(rank + 1)])
    return g.op("reshape", y, shape=[-1], axis_start=axis, axis_count=2, out=out.name)


# ----------------------------------------------------------------------------------------------
# Gathers


@register("aten::gather")
def aten_gather(ctx: Context, node: Node) -> Ref:
    """gather(Tensor self, int dim, Tensor index, *, bool sparse_grad=False) -> Tensor."""
    x, out = node.args[0], node.outputs[0]
    _tract_only(ctx, node, "needs an elementwise gather, which the NNEF specification lacks")
    axis = _axis(node.args[1], x.rank)
    return ctx.g.op("tract_core_gather_elements", ctx.ref(x), ctx.ref(node.args[2]), axis=axis, out=out.name)


def _broadcast_to(ctx: Context, node: Node, v: Value, shape: list[Dim]) -> Any:
    ref = _align(ctx, v, len(shape), v)
    have = (1,) * (len(shape) - v.rank) + tuple(v.shape)
    repeats = [_dim(node, w) if h == 1 and w != 1 else 1 for h, w in zip(have, shape)]
    return ctx.g.op("tile", ref, repeats=repeats) if any(r != 1 for r in repeats) else ref


@register("aten::diagonal")
def aten_diagonal(ctx: Context, node: Node) -> Ref:
    """diagonal(Tensor(a) self, int offset=0, int dim1=0, int dim2=1) -> Tensor(a): the diagonal as a last axis.

    ``dim1`` and ``dim2`` move to the end and merge; from the first diagonal element on, rows of ``dim2 + 1``
    elements start with one (static sizes; tract cannot take the strided slice of a reshape).
    """
    x, out = node.args[0], node.outputs[0]
    offset = int(_arg(node, 1, "offset", 0))
    a, b = _axis(_arg(node, 2, "dim1", 0), x.rank), _axis(_arg(node, 3, "dim2", 1), x.rank)
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
    y = _cast(ctx, node, y, src.dtype, out.dtype)
    return ctx.g.op("copy", y, out=out.name)


def _broadcast_shape(shapes: list[tuple[Dim, ...]]) -> list[Dim]:
    rank = max(len(s) for s in shapes)
    result: list[Dim] = []
    for i in range(rank):
        dims = [s[i - rank + len(s)] for s in shapes if i - rank + len(s) >= 0]
        non_one = [d for d in dims if d != 1]
        result.append(non_one[0] if non_one else 1)
    return result


@register("aten::index", "aten::_unsafe_index")
def aten_index(ctx: Context, node: Node) -> Ref:
    """index.Tensor/_unsafe_index(Tensor self, Tensor?[] indices) -> Tensor: ``x[idx]``, ``x[:, idx]``, ``x[i, j]``.

    ``_unsafe_index`` (indices not checked) is translated alike.
    """
    x, out = node.args[0], node.outputs[0]
    indices = list(node.args[1])
    _tract_only(ctx, node, "needs a gather, which tract reads only as its tract_core_gather extensions")
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
    batch = _broadcast_shape([indices[k].shape for k in positions])
    dtype = "i64"
    columns = []
    for k in positions:
        idx = _cast(ctx, node, _broadcast_to(ctx, node, indices[k], batch), indices[k].dtype, dtype)
        size = _operand(
            ctx, node, x.shape[k] if isinstance(x.shape[k], int) else SymInt(str(x.shape[k])), dtype, len(batch)
        )
        wrapped = g.op("select", g.op("lt", idx, _scalar(ctx, 0, dtype, len(batch))), g.op("add", idx, size), idx)
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
        return ctx.g.op("mul", *(_align(ctx, v, node.outputs[0].rank, v) for v in (a, b)), out=node.outputs[0].name)
    return _einsum(ctx, node, f"{la}{k},{lb}{k}->{la}{lb}", [a, b])


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
    return ctx.g.op("reshape", y, shape=_shape_attr(ctx, node, dims), axis_start=start, axis_count=1)


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


def _einsum(ctx: Context, node: Node, equation: str, operands: list[Value]) -> Ref:
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
    return _einsum(ctx, node, node.args[0], list(node.args[1]))
