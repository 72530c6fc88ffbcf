"""Elementwise ops: unary math, arithmetic and its integer forms, comparisons, logic and bitwise ops,
rounding, clamping, casts (``to``) and the identities (``clone``, ``dropout`` at inference...).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np

from torch_to_nnef.errors import TranslationError
from torch_to_nnef.ir import Node, SymInt, Value
from torch_to_nnef.ir.dtypes import FLOATS, INTEGERS, NUMPY, SIGNED_INTS, UNSIGNED_INTS
from torch_to_nnef.nnef.builder import Ref
from torch_to_nnef.op.common import (
    align_rank,
    as_bool,
    cast_to,
    const_ref,
    current_node,
    erf_ref,
    float_operand,
    int_arith,
    operand_ref,
    scalar_const,
    tract_only,
    trunc_ref,
)
from torch_to_nnef.op.registry import Context, register

UNARY = {
    "aten::relu": "relu",
    "aten::sigmoid": "sigmoid",
    "aten::tanh": "tanh",
    "aten::exp": "exp",
    "aten::log": "log",
    "aten::sqrt": "sqrt",
    "aten::rsqrt": "rsqrt",
    "aten::abs": "abs",
    "aten::neg": "neg",
    "aten::sin": "sin",
    "aten::cos": "cos",
    "aten::floor": "floor",
    "aten::ceil": "ceil",
    "aten::sign": "sign",
    "aten::tan": "tan",
    "aten::asin": "asin",
    "aten::acos": "acos",
    "aten::atan": "atan",
    "aten::sinh": "sinh",
    "aten::cosh": "cosh",
    "aten::logical_not": "not",
}

BOOLEAN_ONLY = {"aten::bitwise_not": "not"}


def _unary(ctx: Context, self: Value) -> Ref:
    """relu(Tensor self) -> Tensor, and every op of the UNARY table (sigmoid, exp, abs...): one NNEF op."""
    return ctx.g.op(UNARY[current_node(ctx).kind], ctx.ref(self), out=ctx.out.name)


for _kind in UNARY:
    register(_kind)(_unary)


@register("aten::reciprocal")
def aten_reciprocal(ctx: Context, self: Value) -> Ref:
    """reciprocal(Tensor self) -> Tensor.

    ``div(1.0, x)`` for Khronos: tract lacks the specification's ``rcp``.
    """
    if ctx.tract:
        return ctx.g.op("recip", ctx.ref(self), out=ctx.out.name)
    return ctx.g.op("div", 1.0, ctx.ref(self), out=ctx.out.name)


BINARY = {"aten::add": "add", "aten::sub": "sub", "aten::mul": "mul", "aten::div": "div"}


def _arithmetic(ctx: Context, a: Any, b: Any, alpha: Any) -> Ref:
    """``a op alpha * b`` with the BINARY op of the node's kind, in the output's dtype and rank.

    Tensors of another dtype are cast to the result's (type promotion); scalars and dynamic sizes
    become operands of that dtype.
    """
    node, out = current_node(ctx), ctx.out
    _float_only_for_khronos(ctx, node, out.dtype)
    ra, rb = (operand_ref(ctx, node, v, out.dtype, out.rank) for v in (a, b))
    if alpha != 1:
        rb = ctx.g.op("mul", rb, scalar_const(ctx, alpha, out.dtype, out.rank), out=out.name + "_alpha")
    if node.kind == "aten::mul" and a is b and ctx.tract and out.dtype in (*SIGNED_INTS, *UNSIGNED_INTS):
        return integer_square(ctx, ra, out.name, out.dtype)
    return ctx.g.op(BINARY[node.kind], ra, rb, out=out.name)


@register("aten::add.Tensor", "aten::sub.Tensor")
def aten_add(ctx: Context, self: Any, other: Any, *, alpha: float = 1) -> Ref:
    """add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor (sub.Tensor too): self +/- alpha * other.

    Either operand may be a number or a dynamic size (``x + 1``, ``x * x.size(1)``).
    """
    return _arithmetic(ctx, self, other, alpha)


@register("aten::add.Scalar", "aten::sub.Scalar")
def aten_add_scalar(ctx: Context, self: Any, other: Any, alpha: float = 1) -> Ref:
    """add.Scalar(Tensor self, Scalar other, Scalar alpha=1) -> Tensor (sub.Scalar too): self +/- alpha * other."""
    return _arithmetic(ctx, self, other, alpha)


@register("aten::mul.Tensor", "aten::mul.Scalar", "aten::div.Tensor", "aten::div.Scalar")
def aten_mul(ctx: Context, self: Any, other: Any) -> Ref:
    """mul.Tensor(Tensor self, Tensor other) -> Tensor (mul.Scalar, div.Tensor, div.Scalar too).

    ``x * x`` of integers avoids tract's float-only ``square`` (:func:`integer_square`).
    """
    return _arithmetic(ctx, self, other, 1)


@register("aten::div.Tensor_mode", "aten::div.Scalar_mode")
def aten_div_mode(ctx: Context, self: Any, other: Any, *, rounding_mode: str | None = None) -> Ref:
    """div.Tensor_mode(Tensor self, Tensor other, *, str? rounding_mode) -> Tensor (div.Scalar_mode too).

    'trunc' or 'floor' rounds the quotient; None is the true division. (The jit front-end leaves a
    keyword-only argument that is None out of the node, hence the default.)
    """
    if rounding_mode is None:
        return _arithmetic(ctx, self, other, 1)
    return _div_rounded(ctx, self, other, rounding_mode)


def _float_only_for_khronos(ctx: Context, node: Node, dtype: str) -> None:
    """The NNEF specification's arithmetic and comparisons take scalar (float) tensors: integers are
    refused for KhronosNNEF (its parser rejects the graph).
    """
    if not ctx.tract and dtype in INTEGERS and dtype != "bool":
        raise TranslationError(
            f"{node.where()}: {node.kind} on {dtype} tensors: the NNEF specification's arithmetic and comparisons "
            "take float tensors; export for TractNNEF, or compute in float in the model"
        )


def integer_square(ctx: Context, x: Ref, out: str, dtype: str) -> Ref:
    """``x * x`` of integers of ``dtype``: ``abs(x) * abs(-x)`` for signed ones, ``x * max(x, x)``
    for unsigned ones. tract turns a product of one wire by itself into its ``square`` operator,
    which has no kernels for wider integers and saturates u8 where PyTorch wraps around.
    """
    if dtype in UNSIGNED_INTS:
        return ctx.g.op("mul", x, ctx.g.op("max", x, x, out=out + "_same"), out=out)
    left = ctx.g.op("abs", x, out=out + "_abs")
    right = ctx.g.op("abs", ctx.g.op("neg", x, out=out + "_neg"), out=out + "_negabs")
    return ctx.g.op("mul", left, right, out=out)


def _binary_operands(ctx: Context, a: Any, b: Any) -> tuple[Any, Any, Value]:
    """``a`` and ``b`` as operands of an integer-capable binary op in the output's dtype and rank, and the output."""
    node, out = current_node(ctx), ctx.out
    int_arith(ctx, node, out.dtype)
    return operand_ref(ctx, node, a, out.dtype, out.rank), operand_ref(ctx, node, b, out.dtype, out.rank), out


def _div_rounded(ctx: Context, a: Any, b: Any, mode: str) -> Ref:
    """``a / b`` rounded: ``mode`` 'trunc' (towards zero) or 'floor' (Python's //)."""
    if mode not in ("trunc", "floor"):
        raise TranslationError(f"{current_node(ctx).where()}: div with rounding_mode={mode!r} is not supported")
    ra, rb, out = _binary_operands(ctx, a, b)
    g = ctx.g
    q = g.op("div", ra, rb)
    if out.dtype.startswith("f"):
        return g.op("floor" if mode == "floor" else "copy", trunc_ref(ctx, q) if mode == "trunc" else q, out=out.name)
    if mode == "trunc":
        return g.op("copy", q, out=out.name)
    r = g.op("sub", ra, g.op("mul", q, rb))
    zero, one = scalar_const(ctx, 0, out.dtype, out.rank), scalar_const(ctx, 1, out.dtype, out.rank)
    return g.op("select", g.op("lt", g.op("mul", r, rb), zero), g.op("sub", q, one), q, out=out.name)


def _bitwise_integer(ctx: Context, op: str, *operands: Any) -> Ref:
    """An integer bitwise op of ``operands`` as tract's ``tract_core_bit*`` (the specification has none)."""
    node, out = current_node(ctx), ctx.out
    tract_only(ctx, node, f"on {out.dtype} needs bitwise integer operators, which the NNEF specification lacks")
    refs = [operand_ref(ctx, node, v, out.dtype, out.rank) for v in operands]
    return ctx.g.op(f"tract_core_{op}", *refs, out=out.name)


COMPARE = {
    "aten::eq": "eq",
    "aten::ne": "ne",
    "aten::lt": "lt",
    "aten::le": "le",
    "aten::gt": "gt",
    "aten::ge": "ge",
    "aten::minimum": "min",
    "aten::maximum": "max",
    "aten::logical_and": "and",
    "aten::logical_or": "or",
}

_COMPARISONS = ("aten::eq", "aten::ne", "aten::lt", "aten::le", "aten::gt", "aten::ge")
"""The kinds of COMPARE with a ``.Tensor`` and a ``.Scalar`` overload (the others have the default one)."""

BITWISE = {
    "aten::__and__": "and",
    "aten::__or__": "or",
    "aten::bitwise_and": "and",
    "aten::bitwise_or": "or",
}


@register(
    "aten::__and__.Tensor",
    "aten::__and__.Scalar",
    "aten::__or__.Tensor",
    "aten::__or__.Scalar",
    "aten::bitwise_and.Tensor",
    "aten::bitwise_and.Scalar",
    "aten::bitwise_and.Scalar_Tensor",
    "aten::bitwise_or.Tensor",
    "aten::bitwise_or.Scalar",
    "aten::bitwise_or.Scalar_Tensor",
)
def aten_bitwise(ctx: Context, self: Any, other: Any) -> Ref:
    """bitwise_and.Tensor(Tensor self, Tensor other) -> Tensor (``&``; ``|``, and the .Scalar overloads too).

    Booleans; integers with TractNNEF.
    """
    out, kind = ctx.out, current_node(ctx).kind
    if out.dtype != "bool":
        return _bitwise_integer(ctx, "bitand" if BITWISE[kind] == "and" else "bitor", self, other)
    a, b = (align_rank(ctx, v, out.rank, out) for v in (self, other))
    return ctx.g.op(BITWISE[kind], a, b, out=out.name)


@register(*BOOLEAN_ONLY)
def aten_bitwise_not(ctx: Context, self: Value) -> Ref:
    """bitwise_not(Tensor self) -> Tensor (``~``): booleans; integers with TractNNEF."""
    out = ctx.out
    if out.dtype != "bool":
        return _bitwise_integer(ctx, "bitnot", self)
    return ctx.g.op("not", ctx.ref(self), out=out.name)


def _round_even(ctx: Context, x: Value, decimals: int) -> Ref:
    """``x`` rounded half to even to ``decimals`` (as PyTorch: ``x * 10^d`` rounded, then divided by
    ``10^d``; for negative ``d``, divided then multiplied): tract's ``tract_core_round_even``; for
    Khronos, whose ``round`` takes halves away from zero, from floor, comparisons and select.
    """
    g, node, out = ctx.g, current_node(ctx), ctx.out
    if x.dtype not in FLOATS:  # integers are whole already
        return g.op("copy", ctx.ref(x), out=out.name)
    scale = 10.0 ** abs(int(decimals or 0))
    y = ctx.ref(x)
    if decimals:
        y = g.op("mul" if decimals > 0 else "div", y, const_ref(ctx, node, scale))
    if ctx.tract:
        g.need("tract_registry tract_core")
        y = g.op("tract_core_round_even", y, out=None if decimals else out.name)
    else:
        y = _round_half_even(ctx, node, y, None if decimals else out.name)
    if decimals:
        y = g.op("div" if decimals > 0 else "mul", y, const_ref(ctx, node, scale), out=out.name)
    return y


def _round_half_even(ctx: Context, node: Node, x: Any, out: str | None) -> Ref:
    """Half to even in the specification's operators: ``floor(x)``, plus one above the half, plus
    the parity of the floor at the half; numbers of 2^23 and more (whole, or infinite) kept.
    """
    g = ctx.g
    c = partial(const_ref, ctx, node)
    down = g.op("floor", x)
    rest = g.op("sub", x, down)
    odd = g.op("sub", down, g.op("mul", g.op("floor", g.op("mul", down, c(0.5))), c(2.0)))
    step = g.op("select", g.op("gt", rest, c(0.5)), c(1.0), g.op("select", g.op("lt", rest, c(0.5)), c(0.0), odd))
    whole = g.op("ge", g.op("abs", x), c(float(1 << 23)))
    return g.op("select", whole, x, g.op("add", down, step), out=out)


@register("aten::round")
def aten_round(ctx: Context, self: Value) -> Ref:
    """round(Tensor self) -> Tensor: half to even."""
    return _round_even(ctx, self, 0)


@register("aten::round.decimals")
def aten_round_decimals(ctx: Context, self: Value, *, decimals: int) -> Ref:
    """round.decimals(Tensor self, *, int decimals) -> Tensor: half to even at ``decimals`` places."""
    return _round_even(ctx, self, decimals)


@register(
    *(f"{kind}.{overload}" for kind in _COMPARISONS for overload in ("Tensor", "Scalar")),
    "aten::minimum",
    "aten::maximum",
    "aten::logical_and",
    "aten::logical_or",
)
def aten_compare(ctx: Context, self: Any, other: Any) -> Ref:
    """eq.Tensor(Tensor self, Tensor other) -> Tensor (ne/lt/le/gt/ge, their .Scalar overloads, minimum,
    maximum, logical_and and logical_or too).
    """
    node, out = current_node(ctx), ctx.out
    dtype = out.dtype if out.dtype != "bool" or node.kind.startswith("aten::logical") else _promoted(self, other)
    _float_only_for_khronos(ctx, node, dtype)
    ra, rb = (operand_ref(ctx, node, v, dtype, out.rank) for v in (self, other))
    return ctx.g.op(COMPARE[node.kind], ra, rb, out=out.name)


def _promoted(a: Any, b: Any) -> str:
    """The dtype torch compares ``a`` and ``b`` in (tensors first, then the kind of a Python scalar)."""
    tensors = [v.dtype for v in (a, b) if isinstance(v, Value)]
    floats = [d for d in tensors if d in FLOATS]
    if floats:
        return max(floats, key=FLOATS.index)
    if any(isinstance(v, float) for v in (a, b)):
        return "f32"
    ints = [d for d in tensors if d in INTEGERS]
    return max(ints, key=INTEGERS.index) if ints else tensors[0]


@register("aten::where.self", "aten::where.ScalarSelf", "aten::where.ScalarOther", "aten::where.Scalar")
def aten_where(ctx: Context, condition: Value, self: Any, other: Any) -> Ref:
    """where.self(Tensor condition, Tensor self, Tensor other) -> Tensor (.ScalarSelf, .ScalarOther, .Scalar too).

    Scalars take the output's dtype (an f16 constant for an f16 result, an integer tensor for an
    integer one: tract reads bare float literals as f32 and bare integers as dimensions).
    """
    out = ctx.out
    c = align_rank(ctx, condition, out.rank, out)
    a, b = (
        align_rank(ctx, v, out.rank, out) if isinstance(v, Value) else scalar_const(ctx, v, out.dtype, out.rank)
        for v in (self, other)
    )
    return ctx.g.op("select", c, a, b, out=out.name)


def _number_to_power(ctx: Context, base: Any, exponent: Any) -> Ref:
    """A number raised to a tensor, in the (floating) output dtype (an integer exponent cast to it)."""
    node, out = current_node(ctx), ctx.out
    if not out.dtype.startswith("f"):
        raise TranslationError(f"{node.where()}: pow of a number to an integer tensor is not supported")
    number = scalar_const(ctx, float(base), out.dtype, out.rank)
    return ctx.g.op("pow", number, operand_ref(ctx, node, exponent, out.dtype, out.rank), out=out.name)


@register("aten::pow.Tensor_Tensor", "aten::pow.Tensor_Scalar")
def aten_pow(ctx: Context, self: Any, exponent: Any) -> Ref:
    """pow.Tensor_Tensor(Tensor self, Tensor exponent) -> Tensor (pow.Tensor_Scalar too: a Scalar exponent).

    Both operands are cast to the promoted output dtype, as torch computes (``0.25 ** arange(1, 5,
    dtype=int32)`` in f32, ALiBi's slopes; an integer tensor to a float power): tract has no mixed
    pow and would take the float operand's dtype. A square is ``sqr`` (integers squared
    without tract's float-only ``square``).
    """
    node, out = current_node(ctx), ctx.out
    if not isinstance(self, Value):  # a number as the base, as in pow.Scalar
        return _number_to_power(ctx, self, exponent)
    base = operand_ref(ctx, node, self, out.dtype, out.rank)
    if isinstance(exponent, (int, float)) and not isinstance(exponent, bool) and exponent == 2:
        if ctx.tract and out.dtype in (*SIGNED_INTS, *UNSIGNED_INTS):
            return integer_square(ctx, base, out.name, out.dtype)
        return ctx.g.op("sqr", base, out=out.name)
    return ctx.g.op("pow", base, operand_ref(ctx, node, exponent, out.dtype, out.rank), out=out.name)


@register("aten::pow.Scalar")
def aten_pow_scalar(ctx: Context, self: float, exponent: Value) -> Ref:
    """pow.Scalar(Scalar self, Tensor exponent) -> Tensor: a number raised to a tensor (floats only)."""
    return _number_to_power(ctx, self, exponent)


def _rsub(ctx: Context, x: Any, y: Any, alpha: float) -> Ref:
    """``y - alpha * x``."""
    out = ctx.out
    a, b = align_rank(ctx, x, out.rank, out), align_rank(ctx, y, out.rank, out)
    if isinstance(b, (int, float)) and not isinstance(b, Ref) and out.dtype.startswith("f"):
        b = float(b)
    if alpha != 1:
        a = ctx.g.op("mul", a, float(alpha), out=out.name + "_alpha")
    return ctx.g.op("sub", b, a, out=out.name)


@register("aten::rsub.Tensor")
def aten_rsub(ctx: Context, self: Any, other: Any, *, alpha: float = 1) -> Ref:
    """rsub.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor: other - alpha * self."""
    return _rsub(ctx, self, other, alpha)


@register("aten::rsub.Scalar")
def aten_rsub_scalar(ctx: Context, self: Any, other: Any, alpha: float = 1) -> Ref:
    """rsub.Scalar(Tensor self, Scalar other, Scalar alpha=1) -> Tensor: other - alpha * self (``1 - x``)."""
    return _rsub(ctx, self, other, alpha)


def _clamp(ctx: Context, x: Value, lo: Any, hi: Any) -> Ref:
    """``x`` clamped to ``[lo, hi]`` (a None bound is no bound)."""
    node, out = current_node(ctx), ctx.out
    y = ctx.ref(x)

    def bound(v: Any) -> Any:  # a dynamic size (clamping indices to it) as an operand of the input's dtype
        if isinstance(v, (SymInt, Value)):
            return operand_ref(ctx, node, v, out.dtype, out.rank)
        return float(v)

    # an infinite bound (Mamba-2's time-step limits default to (0, inf)) is no bound
    if lo is not None and not (isinstance(lo, float) and lo == -math.inf):
        y = ctx.g.op("max", y, bound(lo))
    if hi is not None and not (isinstance(hi, float) and hi == math.inf):
        y = ctx.g.op("min", y, bound(hi))
    return ctx.g.op("copy", y, out=out.name)


@register("aten::clamp", "aten::clamp.Tensor")
def aten_clamp(ctx: Context, self: Value, min: Any = None, max: Any = None) -> Ref:
    """clamp(Tensor self, Scalar? min=None, Scalar? max=None) -> Tensor (clamp.Tensor too: Tensor? bounds)."""
    return _clamp(ctx, self, min, max)


@register("aten::hardtanh")
def aten_hardtanh(ctx: Context, self: Value, min_val: float = -1, max_val: float = 1) -> Ref:
    """hardtanh(Tensor self, Scalar min_val=-1, Scalar max_val=1) -> Tensor: a clamp (relu6 too)."""
    return _clamp(ctx, self, min_val, max_val)


def _cast(ctx: Context, x: Value) -> Ref:
    """``x`` cast to the output's dtype (a copy when it has it already)."""
    out = ctx.out
    result: Ref = cast_to(ctx, current_node(ctx), ctx.ref(x), x.dtype, out.dtype, out=out.name)
    return result


@register("aten::_to_copy")
def aten__to_copy(
    ctx: Context,
    self: Value,
    *,
    dtype: str | None = None,
    layout: Any = None,
    device: Any = None,
    pin_memory: bool | None = None,
    non_blocking: bool = False,
    memory_format: Any = None,
) -> Ref:
    """_to_copy(Tensor self, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool?
    pin_memory=None, bool non_blocking=False, MemoryFormat? memory_format=None) -> Tensor.

    A cast to the output's dtype (device, layout and memory format are ignored).
    """
    return _cast(ctx, self)


@register("aten::to.dtype")
def aten_to_dtype(
    ctx: Context,
    self: Value,
    dtype: str,
    non_blocking: bool = False,
    copy: bool = False,
    memory_format: Any = None,
) -> Ref:
    """to.dtype(Tensor(a) self, ScalarType dtype, bool non_blocking=False, bool copy=False, MemoryFormat?
    memory_format=None) -> Tensor(a): a cast to the output's dtype.
    """
    return _cast(ctx, self)


@register("aten::to.dtype_layout")
def aten_to_dtype_layout(
    ctx: Context,
    self: Value,
    *,
    dtype: str | None = None,
    layout: Any = None,
    device: Any = None,
    pin_memory: bool | None = None,
    non_blocking: bool = False,
    copy: bool = False,
    memory_format: Any = None,
) -> Ref:
    """to.dtype_layout(Tensor(a) self, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool?
    pin_memory=None, bool non_blocking=False, bool copy=False, MemoryFormat? memory_format=None) -> Tensor(a).

    A cast to the output's dtype (device and layout are ignored).
    """
    return _cast(ctx, self)


@register("aten::to.device")
def aten_to_device(
    ctx: Context,
    self: Value,
    device: Any,
    dtype: str,
    non_blocking: bool = False,
    copy: bool = False,
    memory_format: Any = None,
) -> Ref:
    """to.device(Tensor(a) self, Device device, ScalarType dtype, bool non_blocking=False, bool copy=False,
    MemoryFormat? memory_format=None) -> Tensor(a): a cast to the output's dtype (the device is ignored).
    """
    return _cast(ctx, self)


@register("aten::to.other")
def aten_to_other(
    ctx: Context,
    self: Value,
    other: Value,
    non_blocking: bool = False,
    copy: bool = False,
    memory_format: Any = None,
) -> Ref:
    """to.other(Tensor(a) self, Tensor other, bool non_blocking=False, bool copy=False, MemoryFormat?
    memory_format=None) -> Tensor(a): a cast to the dtype of ``other`` (the output's).
    """
    return _cast(ctx, self)


@register("aten::type_as")
def aten_type_as(ctx: Context, self: Value, other: Value) -> Ref:
    """type_as(Tensor self, Tensor other) -> Tensor: a cast to the dtype of ``other`` (the output's)."""
    return _cast(ctx, self)


@register("aten::dropout")
def aten_dropout(ctx: Context, input: Value, p: float, train: bool) -> Ref:
    """dropout(Tensor input, float p, bool train) -> Tensor: the identity at inference."""
    return ctx.g.op("copy", ctx.ref(input), out=ctx.out.name)


@register("aten::clone")
def aten_clone(ctx: Context, self: Value, *, memory_format: Any = None) -> Ref:
    """clone(Tensor self, *, MemoryFormat? memory_format=None) -> Tensor: a copy."""
    return ctx.g.op("copy", ctx.ref(self), out=ctx.out.name)


@register("aten::contiguous")
def aten_contiguous(ctx: Context, self: Value, *, memory_format: Any = 0) -> Ref:
    """contiguous(Tensor(a) self, *, MemoryFormat memory_format=0) -> Tensor(a): a copy (NNEF has no strides)."""
    return ctx.g.op("copy", ctx.ref(self), out=ctx.out.name)


@register("aten::alias", "aten::detach")
def aten_alias(ctx: Context, self: Value) -> Ref:
    """alias(Tensor(a) self) -> Tensor(a) (detach too): a copy."""
    return ctx.g.op("copy", ctx.ref(self), out=ctx.out.name)


def _fmod(ctx: Context, a: Any, b: Any, dtype: str) -> Ref:
    """The remainder of a truncated division, a - b * trunc(a / b) (integer division already truncates)."""
    q = ctx.g.op("div", a, b)
    if dtype.startswith("f"):
        q = trunc_ref(ctx, q)
    return ctx.g.op("sub", a, ctx.g.op("mul", q, b))


@register("aten::fmod.Tensor", "aten::fmod.Scalar")
def aten_fmod(ctx: Context, self: Any, other: Any) -> Ref:
    """fmod.Tensor(Tensor self, Tensor other) -> Tensor (fmod.Scalar too): the remainder with the sign of self."""
    a, b, out = _binary_operands(ctx, self, other)
    return ctx.g.op("copy", _fmod(ctx, a, b, out.dtype), out=out.name)


@register("aten::remainder.Tensor", "aten::remainder.Scalar", "aten::remainder.Scalar_Tensor")
def aten_remainder(ctx: Context, self: Any, other: Any) -> Ref:
    """remainder.Tensor(Tensor self, Tensor other) -> Tensor (.Scalar, .Scalar_Tensor too): Python's %, the sign
    of other.
    """
    a, b, out = _binary_operands(ctx, self, other)
    g = ctx.g
    r = _fmod(ctx, a, b, out.dtype)
    zero = scalar_const(ctx, 0, out.dtype, out.rank)
    # A non-zero fmod whose sign differs from the divisor's is shifted by the divisor.
    wrong_sign = g.op("lt", g.op("mul", r, b), zero)
    return g.op("select", wrong_sign, g.op("add", r, b), r, out=out.name)


@register("aten::floor_divide", "aten::floor_divide.Scalar")
def aten_floor_divide(ctx: Context, self: Any, other: Any) -> Ref:
    """floor_divide(Tensor self, Tensor other) -> Tensor (floor_divide.Scalar too): Python's //."""
    return _div_rounded(ctx, self, other, "floor")


def _xor(ctx: Context, a: Any, b: Any, out: str) -> Ref:
    g = ctx.g
    if ctx.tract:
        ctx.g.need("tract_registry tract_core")
        return g.op("tract_core_xor", a, b, out=out)
    return g.op("or", g.op("and", a, g.op("not", b)), g.op("and", g.op("not", a), b), out=out)


@register("aten::logical_xor")
def aten_logical_xor(ctx: Context, self: Any, other: Any) -> Ref:
    """logical_xor(Tensor self, Tensor other) -> Tensor (non-zero is true)."""
    node, out = current_node(ctx), ctx.out
    a, b = (as_bool(ctx, node, v, out.rank) for v in (self, other))
    return _xor(ctx, a, b, out.name)


@register(
    "aten::__xor__.Tensor",
    "aten::__xor__.Scalar",
    "aten::bitwise_xor.Tensor",
    "aten::bitwise_xor.Scalar",
    "aten::bitwise_xor.Scalar_Tensor",
)
def aten_bitwise_xor(ctx: Context, self: Any, other: Any) -> Ref:
    """bitwise_xor.Tensor(Tensor self, Tensor other) -> Tensor (``^``, the .Scalar overloads too): booleans, or
    integers with TractNNEF.
    """
    node, out = current_node(ctx), ctx.out
    if out.dtype != "bool":
        return _bitwise_integer(ctx, "bitxor", self, other)
    a, b = (as_bool(ctx, node, v, out.rank) for v in (self, other))
    return _xor(ctx, a, b, out.name)


INVERSE_HYPERBOLIC = {"aten::asinh": "asinh", "aten::acosh": "acosh", "aten::atanh": "atanh"}


@register(*INVERSE_HYPERBOLIC)
def aten_inverse_hyperbolic(ctx: Context, self: Value) -> Ref:
    """asinh(Tensor self) -> Tensor (acosh, atanh too): operators of tract and of the Khronos tools."""
    node = current_node(ctx)
    return ctx.g.op(INVERSE_HYPERBOLIC[node.kind], float_operand(ctx, node, self), out=ctx.out.name)


@register("aten::erf", "aten::erfc")
def aten_erf(ctx: Context, self: Value) -> Ref:
    """erf(Tensor self) -> Tensor (erfc too: 1 - erf(self)).

    tract's erf; the specification's operators through a rational approximation (error < 1.5e-7).
    """
    node = current_node(ctx)
    y = erf_ref(ctx, node, float_operand(ctx, node, self))
    if node.kind == "aten::erfc":
        return ctx.g.op("sub", const_ref(ctx, node, 1.0), y, out=ctx.out.name)
    return ctx.g.op("copy", y, out=ctx.out.name)


_ERFINV_CENTRAL = (
    2.81022636e-08,
    3.43273939e-07,
    -3.5233877e-06,
    -4.39150654e-06,
    0.00021858087,
    -0.00125372503,
    -0.00417768164,
    0.246640727,
    1.50140941,
)
_ERFINV_TAIL = (
    -0.000200214257,
    0.000100950558,
    0.00134934322,
    -0.00367342844,
    0.00573950773,
    -0.0076224613,
    0.00943887047,
    1.00167406,
    2.83297682,
)
"""M. Giles, "Approximating the erfinv function" (GPU Computing Gems, 2011), single precision:
``erfinv(x) = x * p(w)`` with ``w = -log((1 - x)(1 + x))``, ``p`` a polynomial in ``w - 2.5`` for
``w < 5`` (the central part), in ``sqrt(w) - 3`` beyond (the tails); a few float32 ulps from
the exact value."""


@register("aten::erfinv")
def aten_erfinv(ctx: Context, self: Value) -> Ref:
    """erfinv(Tensor self) -> Tensor: the inverse error function, as Giles' approximation in the
    operators of tract and of the specification (``+-inf`` at ``+-1``, NaN outside ``[-1, 1]``, as
    PyTorch gives).
    """
    node = current_node(ctx)
    g = ctx.g
    c = partial(const_ref, ctx, node)
    x = float_operand(ctx, node, self)
    w = g.op("neg", g.op("log", g.op("mul", g.op("sub", c(1.0), x), g.op("add", c(1.0), x))))

    def polynomial(coefficients: tuple[float, ...], t: Ref) -> Ref:
        p: Ref = c(coefficients[0])
        for coefficient in coefficients[1:]:
            p = g.op("add", g.op("mul", p, t), c(coefficient))
        return p

    central = polynomial(_ERFINV_CENTRAL, g.op("sub", w, c(2.5)))
    tail = polynomial(_ERFINV_TAIL, g.op("sub", g.op("sqrt", w), c(3.0)))
    p = g.op("select", g.op("lt", w, c(5.0)), central, tail)
    pole = g.op("eq", g.op("abs", x), c(1.0))  # +-1 / 0: +-inf, where the tails' polynomial turns
    return g.op("select", pole, g.op("div", x, c(0.0)), g.op("mul", p, x), out=ctx.out.name)


@register("aten::expm1")
def aten_expm1(ctx: Context, self: Value) -> Ref:
    """expm1(Tensor self) -> Tensor: exp(x) - 1, accurate near 0.

    Kahan's form ``(u - 1) * x / log(u)`` with ``u = exp(x)`` for ``|x| <= 0.5`` (``x`` where ``u``
    rounds to 1), ``u - 1`` elsewhere.
    """
    node = current_node(ctx)
    g, x = ctx.g, float_operand(ctx, node, self)
    c = partial(const_ref, ctx, node)
    u = g.op("exp", x)
    um1 = g.op("sub", u, c(1.0))
    near = g.op("le", g.op("abs", x), c(0.5))
    safe_log = g.op("select", near, g.op("log", u), c(1.0))
    kahan = g.op("select", g.op("eq", u, c(1.0)), x, g.op("div", g.op("mul", um1, x), safe_log))
    return g.op("select", near, kahan, um1, out=ctx.out.name)


@register("aten::log1p")
def aten_log1p(ctx: Context, self: Value) -> Ref:
    """log1p(Tensor self) -> Tensor: log(1 + x), accurate near 0.

    Goldberg's form ``log(u) * x / (u - 1)`` with ``u = 1 + x`` (``x`` where ``u`` rounds to 1).
    """
    node = current_node(ctx)
    g, x = ctx.g, float_operand(ctx, node, self)
    c = partial(const_ref, ctx, node)
    u = g.op("add", x, c(1.0))
    one = g.op("eq", u, c(1.0))
    denominator = g.op("select", one, c(1.0), g.op("sub", u, c(1.0)))
    return g.op("select", one, x, g.op("div", g.op("mul", g.op("log", u), x), denominator), out=ctx.out.name)


_LOG_BASE = {"aten::log2": 2.0, "aten::log10": 10.0}


@register(*_LOG_BASE)
def aten_log_base(ctx: Context, self: Value) -> Ref:
    """log2(Tensor self) -> Tensor (log10 too): log(x) / log(base)."""
    node = current_node(ctx)
    g, x = ctx.g, float_operand(ctx, node, self)
    scale = const_ref(ctx, node, 1.0 / math.log(_LOG_BASE[node.kind]))
    return g.op("mul", g.op("log", x), scale, out=ctx.out.name)


@register("aten::exp2")
def aten_exp2(ctx: Context, self: Value) -> Ref:
    """exp2(Tensor self) -> Tensor: exp(x * log(2))."""
    node = current_node(ctx)
    g, x = ctx.g, float_operand(ctx, node, self)
    return g.op("exp", g.op("mul", x, const_ref(ctx, node, math.log(2.0))), out=ctx.out.name)


@register("aten::trunc", "aten::fix")
def aten_trunc(ctx: Context, self: Value) -> Ref:
    """trunc(Tensor self) -> Tensor (fix is its alias): rounding towards zero; integers unchanged."""
    out = ctx.out
    x = ctx.ref(self)
    if not out.dtype.startswith("f"):
        return ctx.g.op("copy", x, out=out.name)
    return ctx.g.op("copy", trunc_ref(ctx, x), out=out.name)


_DEGREES = {"aten::rad2deg": 180.0 / math.pi, "aten::deg2rad": math.pi / 180.0}


@register(*_DEGREES)
def aten_degrees(ctx: Context, self: Value) -> Ref:
    """rad2deg(Tensor self) -> Tensor (deg2rad too): a product by 180 / pi or pi / 180."""
    node = current_node(ctx)
    factor = const_ref(ctx, node, _DEGREES[node.kind])
    return ctx.g.op("mul", float_operand(ctx, node, self), factor, out=ctx.out.name)


@register("aten::sinc")
def aten_sinc(ctx: Context, self: Value) -> Ref:
    """sinc(Tensor self) -> Tensor: sin(pi x) / (pi x), 1 at 0."""
    node = current_node(ctx)
    g, x = ctx.g, float_operand(ctx, node, self)
    c = partial(const_ref, ctx, node)
    zero = g.op("eq", x, c(0.0))
    px = g.op("mul", g.op("select", zero, c(1.0), x), c(math.pi))
    return g.op("select", zero, c(1.0), g.op("div", g.op("sin", px), px), out=ctx.out.name)


@register("aten::square")
def aten_square(ctx: Context, self: Value) -> Ref:
    """square(Tensor self) -> Tensor: x * x, for floats (tract rewrites an integer x * x to its float-only square)."""
    out = ctx.out
    if not out.dtype.startswith("f"):
        raise TranslationError(
            f"{current_node(ctx).where()}: square of {out.dtype} is not supported (tract squares floats only): "
            "cast it to float first"
        )
    return ctx.g.op("sqr", ctx.ref(self), out=out.name)


@register("aten::sgn")
def aten_sgn(ctx: Context, self: Value) -> Ref:
    """sgn(Tensor self) -> Tensor: the sign of real numbers."""
    out = ctx.out
    if not out.dtype.startswith("f"):
        tract_only(
            ctx, current_node(ctx), f"on {out.dtype} needs integer arithmetic, which the NNEF specification lacks"
        )
    return ctx.g.op("sign", ctx.ref(self), out=out.name)


@register("aten::logit")
def aten_logit(ctx: Context, self: Value, eps: float | None = None) -> Ref:
    """logit(Tensor self, float? eps=None) -> Tensor: log(x / (1 - x)), x clamped to [eps, 1 - eps]."""
    node = current_node(ctx)
    g, x = ctx.g, float_operand(ctx, node, self)
    c = partial(const_ref, ctx, node)
    if eps is not None:
        x = g.op("min", g.op("max", x, c(float(eps))), c(1.0 - float(eps)))
    return g.op("log", g.op("div", x, g.op("sub", c(1.0), x)), out=ctx.out.name)


def _float_pair(ctx: Context, a: Any, b: Any) -> tuple[Any, Any, Value]:
    """``a`` and ``b`` as operands of a floating-point binary op in the output's dtype and rank, and the output."""
    node, out = current_node(ctx), ctx.out
    if not out.dtype.startswith("f"):
        raise TranslationError(f"{node.where()}: {node.kind} on {out.dtype} is not supported yet")
    return operand_ref(ctx, node, a, out.dtype, out.rank), operand_ref(ctx, node, b, out.dtype, out.rank), out


@register("aten::xlogy.Tensor", "aten::xlogy.Scalar_Self", "aten::xlogy.Scalar_Other")
def aten_xlogy(ctx: Context, self: Any, other: Any) -> Ref:
    """xlogy.Tensor(Tensor self, Tensor other) -> Tensor (.Scalar_Self, .Scalar_Other too): x * log(y), 0 where x
    is 0 (NaN where y is NaN).
    """
    g = ctx.g
    x, y, out = _float_pair(ctx, self, other)
    c = partial(const_ref, ctx, current_node(ctx))
    product = g.op("mul", x, g.op("log", y))
    zero = g.op("and", g.op("eq", x, c(0.0)), g.op("eq", y, y))
    return g.op("select", zero, c(0.0), product, out=out.name)


_LOGADDEXP_BASE = {"aten::logaddexp": math.e, "aten::logaddexp2": 2.0}


@register(*_LOGADDEXP_BASE)
def aten_logaddexp(ctx: Context, self: Value, other: Value) -> Ref:
    """logaddexp(Tensor self, Tensor other) -> Tensor: log(exp(a) + exp(b)) (logaddexp2 too, in base 2).

    ``max(a, b) + log_base(1 + base^-|a - b|)``: no overflow; equal infinities give that infinity.
    """
    node, g = current_node(ctx), ctx.g
    a, b, out = _float_pair(ctx, self, other)
    c = partial(const_ref, ctx, node)
    ln_base = math.log(_LOGADDEXP_BASE[node.kind])
    high = g.op("max", a, b)
    gap = g.op("abs", g.op("sub", a, b))
    gap = g.op("select", g.op("eq", a, b), c(0.0), gap)  # inf - inf
    soft = g.op("log", g.op("add", c(1.0), g.op("exp", g.op("mul", gap, c(-ln_base)))))
    if ln_base != 1.0:
        soft = g.op("mul", soft, c(1.0 / ln_base))
    return g.op("add", high, soft, out=out.name)


def _signbit(ctx: Context, x: Any, dtype: str, rank: int) -> Ref:
    """Whether ``x`` (floats of ``dtype`` and ``rank``) is below 0 or is -0.0 (its reciprocal is -inf)."""
    g = ctx.g
    zero, one = scalar_const(ctx, 0.0, dtype, rank), scalar_const(ctx, 1.0, dtype, rank)
    negative_zero = g.op("and", g.op("eq", x, zero), g.op("lt", g.op("div", one, x), zero))
    return g.op("or", g.op("lt", x, zero), negative_zero)


@register("aten::signbit")
def aten_signbit(ctx: Context, self: Value) -> Ref:
    """signbit(Tensor self) -> Tensor: whether the sign bit is set (-0.0 included)."""
    x, out = self, ctx.out
    if not x.dtype.startswith("f"):
        tract_only(ctx, current_node(ctx), f"on {x.dtype} compares integers, which the NNEF specification cannot")
        return ctx.g.op("lt", ctx.ref(x), scalar_const(ctx, 0, x.dtype, x.rank), out=out.name)
    return ctx.g.op("copy", _signbit(ctx, ctx.ref(x), x.dtype, x.rank), out=out.name)


@register("aten::copysign.Tensor", "aten::copysign.Scalar")
def aten_copysign(ctx: Context, self: Value, other: Any) -> Ref:
    """copysign.Tensor(Tensor self, Tensor other) -> Tensor (copysign.Scalar too): |self| with the sign bit of
    other.
    """
    g = ctx.g
    a, b, out = _float_pair(ctx, self, other)
    magnitude = g.op("abs", a)
    return g.op("select", _signbit(ctx, b, out.dtype, out.rank), g.op("neg", magnitude), magnitude, out=out.name)


@register("aten::heaviside")
def aten_heaviside(ctx: Context, self: Value, values: Any) -> Ref:
    """heaviside(Tensor self, Tensor values) -> Tensor: 0 below 0, values at 0, 1 above."""
    node, out = current_node(ctx), ctx.out
    if not out.dtype.startswith("f"):
        tract_only(ctx, node, f"on {out.dtype} compares integers, which the NNEF specification cannot")
    g = ctx.g
    x, at_zero = (operand_ref(ctx, node, v, out.dtype, out.rank) for v in (self, values))
    zero, one = scalar_const(ctx, 0, out.dtype, out.rank), scalar_const(ctx, 1, out.dtype, out.rank)
    step = g.op("select", g.op("gt", x, zero), one, zero)
    return g.op("select", g.op("eq", x, zero), at_zero, step, out=out.name)


@register("aten::fmin", "aten::fmax")
def aten_fmin_fmax(ctx: Context, self: Any, other: Any) -> Ref:
    """fmin(Tensor self, Tensor other) -> Tensor (fmax too): min/max that ignore a NaN operand."""
    g = ctx.g
    a, b, out = _float_pair(ctx, self, other)
    both = g.op("min" if current_node(ctx).kind == "aten::fmin" else "max", a, b)
    return g.op("select", g.op("ne", a, a), b, g.op("select", g.op("ne", b, b), a, both), out=out.name)


@register("aten::true_divide.Tensor", "aten::true_divide.Scalar")
def aten_true_divide(ctx: Context, self: Any, other: Any) -> Ref:
    """true_divide.Tensor(Tensor self, Tensor other) -> Tensor (.Scalar too): division in the (floating) result
    dtype.
    """
    a, b, out = _float_pair(ctx, self, other)
    return ctx.g.op("div", a, b, out=out.name)


def _clamp_between(ctx: Context, x: Any, lo: Any, hi: Any) -> Ref:
    """``x`` clamped to ``[lo, hi]`` in the output's dtype (bounds: numbers, sizes or tensors; None is no bound)."""
    node, out = current_node(ctx), ctx.out
    if not out.dtype.startswith("f"):
        tract_only(ctx, node, f"on {out.dtype} compares integers, which the NNEF specification cannot")
    y = operand_ref(ctx, node, x, out.dtype, out.rank)
    if lo is not None:
        y = ctx.g.op("max", y, operand_ref(ctx, node, lo, out.dtype, out.rank))
    if hi is not None:
        y = ctx.g.op("min", y, operand_ref(ctx, node, hi, out.dtype, out.rank))
    return ctx.g.op("copy", y, out=out.name)


@register("aten::clamp_min", "aten::clamp_min.Tensor")
def aten_clamp_min(ctx: Context, self: Value, min: Any) -> Ref:
    """clamp_min(Tensor self, Scalar min) -> Tensor (clamp_min.Tensor too: a Tensor min)."""
    return _clamp_between(ctx, self, min, None)


@register("aten::clamp_max", "aten::clamp_max.Tensor")
def aten_clamp_max(ctx: Context, self: Value, max: Any) -> Ref:
    """clamp_max(Tensor self, Scalar max) -> Tensor (clamp_max.Tensor too: a Tensor max)."""
    return _clamp_between(ctx, self, None, max)


@register("aten::clip", "aten::clip.Tensor")
def aten_clip(ctx: Context, self: Value, min: Any = None, max: Any = None) -> Ref:
    """clip(Tensor self, Scalar? min=None, Scalar? max=None) -> Tensor (clip.Tensor too): clamp's alias."""
    return _clamp_between(ctx, self, min, max)


_SHIFTS = {
    "aten::bitwise_left_shift": "tract_shl",
    "aten::__lshift__": "tract_shl",
    "aten::bitwise_right_shift": "tract_shr",
    "aten::__rshift__": "tract_shr",
}


@register(
    "aten::bitwise_left_shift.Tensor",
    "aten::bitwise_left_shift.Tensor_Scalar",
    "aten::bitwise_left_shift.Scalar_Tensor",
    "aten::__lshift__.Tensor",
    "aten::__lshift__.Scalar",
    "aten::bitwise_right_shift.Tensor",
    "aten::bitwise_right_shift.Tensor_Scalar",
    "aten::bitwise_right_shift.Scalar_Tensor",
    "aten::__rshift__.Tensor",
    "aten::__rshift__.Scalar",
)
def aten_shift(ctx: Context, self: Any, other: Any) -> Ref:
    """bitwise_left_shift.Tensor(Tensor self, Tensor other) -> Tensor (right shifts, ``<<``, ``>>`` and the
    Scalar overloads too).

    tract's shift operators, with the amount as a tensor of the value's dtype (right shifts of
    signed integers are arithmetic, as in PyTorch).
    """
    node, out = current_node(ctx), ctx.out
    if out.dtype.startswith("f") or out.dtype == "bool":
        raise TranslationError(f"{node.where()}: {node.kind} shifts integers, not {out.dtype}")
    tract_only(ctx, node, "needs bit shifts, which the NNEF specification lacks")
    a, b = (operand_ref(ctx, node, v, out.dtype, out.rank) for v in (self, other))
    return ctx.g.op(_SHIFTS[node.kind], a, b, out=out.name)


def _float_input(ctx: Context, v: Any) -> Any:
    """An operand of a floating-point op, in the output's dtype and rank."""
    node, out = current_node(ctx), ctx.out
    if not out.dtype.startswith("f"):
        raise TranslationError(f"{node.where()}: {node.kind} on {out.dtype} is not supported (floats only)")
    return operand_ref(ctx, node, v, out.dtype, out.rank)


def _finite_max(dtype: str) -> float:
    return float(np.finfo(NUMPY[dtype]).max)


@register("aten::atan2")
def aten_atan2(ctx: Context, self: Any, other: Any) -> Ref:
    """atan2(Tensor self, Tensor other) -> Tensor: the angle of (other, self), in (-pi, pi]."""
    y, x = (_float_input(ctx, v) for v in (self, other))
    return atan2(ctx, y, x, ctx.out.name)


def atan2(ctx: Context, y: Any, x: Any, out: str | None = None) -> Ref:
    """The angle of the point (x, y) in (-pi, pi] (0 at the origin) with specification ops only."""
    g = ctx.g
    base = g.op("atan", g.op("div", y, x))
    turned = g.op("select", g.op("ge", y, 0.0), g.op("add", base, math.pi), g.op("sub", base, math.pi))
    vertical = g.op("select", g.op("gt", y, 0.0), math.pi / 2, g.op("select", g.op("lt", y, 0.0), -math.pi / 2, 0.0))
    angle = g.op("select", g.op("lt", x, 0.0), turned, base)
    return g.op("select", g.op("eq", x, 0.0), vertical, angle, out=out)


@register("aten::hypot")
def aten_hypot(ctx: Context, self: Any, other: Any) -> Ref:
    """hypot(Tensor self, Tensor other) -> Tensor: sqrt(self^2 + other^2)."""
    a, b = (_float_input(ctx, v) for v in (self, other))
    g = ctx.g
    return g.op("sqrt", g.op("add", g.op("sqr", a), g.op("sqr", b)), out=ctx.out.name)


@register("aten::lerp.Scalar", "aten::lerp.Tensor")
def aten_lerp(ctx: Context, self: Any, end: Any, weight: Any) -> Ref:
    """lerp.Scalar(Tensor self, Tensor end, Scalar weight) -> Tensor (lerp.Tensor too: a Tensor weight).

    As PyTorch: ``start + w * (end - start)`` for ``|w| < 0.5``, else ``end - (end - start) * (1 - w)``.
    """
    out = ctx.out
    start, stop, w = (_float_input(ctx, v) for v in (self, end, weight))
    g = ctx.g
    diff = g.op("sub", stop, start)
    low = g.op("add", start, g.op("mul", w, diff))
    high = g.op("sub", stop, g.op("mul", diff, g.op("sub", 1.0, w)))
    if isinstance(w, float):
        return g.op("copy", low if abs(w) < 0.5 else high, out=out.name)
    return g.op("select", g.op("lt", g.op("abs", w), 0.5), low, high, out=out.name)


@register("aten::addcmul", "aten::addcdiv")
def aten_addcmul(ctx: Context, self: Any, tensor1: Any, tensor2: Any, *, value: float = 1) -> Ref:
    """addcmul(Tensor self, Tensor tensor1, Tensor tensor2, *, Scalar value=1) -> Tensor: self + value * t1 * t2
    (addcdiv too: self + value * t1 / t2).
    """
    node, out = current_node(ctx), ctx.out
    if node.kind == "aten::addcdiv" and not out.dtype.startswith("f"):
        raise TranslationError(f"{node.where()}: addcdiv of {out.dtype} is not supported (floats only)")
    _float_only_for_khronos(ctx, node, out.dtype)
    x, a, b = (operand_ref(ctx, node, v, out.dtype, out.rank) for v in (self, tensor1, tensor2))
    g = ctx.g
    term = g.op("mul" if node.kind == "aten::addcmul" else "div", a, b)
    if value != 1:
        term = g.op("mul", scalar_const(ctx, value, out.dtype, out.rank), term)
    return g.op("add", x, term, out=out.name)


def _is_inf(ctx: Context, x: Value, positive: bool, negative: bool) -> Ref:
    """Whether each element is an infinity (of the signs asked): beyond the dtype's largest finite value."""
    g, xr = ctx.g, ctx.ref(x)
    if not x.dtype.startswith("f"):
        return g.op("ne", xr, xr)  # integers are never infinite (a false of the input's shape)
    top = scalar_const(ctx, _finite_max(x.dtype), x.dtype, x.rank)
    if positive and negative:
        return g.op("gt", g.op("abs", xr), top)
    return g.op("gt", xr if positive else g.op("neg", xr), top)


@register("aten::isnan")
def aten_isnan(ctx: Context, self: Value) -> Ref:
    """isnan(Tensor self) -> Tensor: ``x != x`` (true for NaN only)."""
    xr = ctx.ref(self)
    return ctx.g.op("ne", xr, xr, out=ctx.out.name)


@register("aten::isinf", "aten::isposinf", "aten::isneginf")
def aten_isinf(ctx: Context, self: Value) -> Ref:
    """isinf(Tensor self) -> Tensor (isposinf, isneginf too): beyond the largest finite value of the dtype."""
    kind = current_node(ctx).kind
    y = _is_inf(ctx, self, kind != "aten::isneginf", kind != "aten::isposinf")
    return ctx.g.op("copy", y, out=ctx.out.name)


@register("aten::isfinite")
def aten_isfinite(ctx: Context, self: Value) -> Ref:
    """isfinite(Tensor self) -> Tensor: neither NaN nor infinite (``|x| <= max``, false for NaN)."""
    x, out = self, ctx.out
    g, xr = ctx.g, ctx.ref(x)
    if not x.dtype.startswith("f"):  # integers are always finite
        if ctx.tract or not all(isinstance(d, int) for d in x.shape):
            return g.op("eq", xr, xr, out=out.name)
        # the specification compares scalars only: a constant of trues
        dims = [int(d) for d in x.shape]
        truth = g.variable(np.ones(dims, dtype=bool), f"isfinite_{x.dtype}_{'x'.join(map(str, dims))}")
        return g.op("copy", truth, out=out.name)
    top = scalar_const(ctx, _finite_max(x.dtype), x.dtype, x.rank)
    return g.op("le", g.op("abs", xr), top, out=out.name)


@register("aten::nan_to_num")
def aten_nan_to_num(
    ctx: Context, self: Value, nan: float | None = None, posinf: float | None = None, neginf: float | None = None
) -> Ref:
    """nan_to_num(Tensor self, float? nan=None, float? posinf=None, float? neginf=None) -> Tensor.

    NaN becomes ``nan`` (0), +inf ``posinf`` and -inf ``neginf`` (the dtype's largest and lowest by default).
    """
    x, out = self, ctx.out
    g, xr = ctx.g, ctx.ref(x)
    if not x.dtype.startswith("f"):
        return g.op("copy", xr, out=out.name)
    top = _finite_max(x.dtype)

    def value(v: Any, default: float) -> Any:
        return scalar_const(ctx, default if v is None else v, x.dtype, x.rank)

    y = g.op("select", _is_inf(ctx, x, True, False), value(posinf, top), xr)
    y = g.op("select", _is_inf(ctx, x, False, True), value(neginf, -top), y)
    return g.op("select", g.op("ne", xr, xr), value(nan, 0.0), y, out=out.name)


@register("aten::frac")
def aten_frac(ctx: Context, self: Value) -> Ref:
    """frac(Tensor self) -> Tensor: ``x - trunc(x)`` (the sign of x)."""
    xr = ctx.ref(self)
    return ctx.g.op("sub", xr, trunc_ref(ctx, xr), out=ctx.out.name)
