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
from torch_to_nnef.nnef.builder import Ref
from torch_to_nnef.op.common import (
    NP_DTYPES,
    align_rank,
    as_bool,
    binary_operands,
    bitwise_integer,
    const_ref,
    div_rounded,
    float_in,
    node_arg,
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


def _unary(ctx: Context, node: Node) -> Ref:
    """op(Tensor self) -> Tensor: one-to-one elementwise ops (the UNARY table)."""
    return ctx.g.op(UNARY[node.kind], ctx.ref(node.args[0]), out=node.outputs[0].name)


for _kind in UNARY:
    register(_kind)(_unary)


@register("aten::reciprocal")
def aten_reciprocal(ctx: Context, node: Node) -> Ref:
    """reciprocal(Tensor self) -> Tensor (``div(1.0, x)`` for Khronos: tract lacks the spec's ``rcp``)."""
    if ctx.tract:
        return ctx.g.op("recip", ctx.ref(node.args[0]), out=node.outputs[0].name)
    return ctx.g.op("div", 1.0, ctx.ref(node.args[0]), out=node.outputs[0].name)


BINARY = {"aten::add": "add", "aten::sub": "sub", "aten::mul": "mul", "aten::div": "div"}


@register(*BINARY)
def aten_binary(ctx: Context, node: Node) -> Ref:
    """add/sub(Tensor self, Tensor|Scalar other, Scalar alpha=1); mul/div(self, other, *, str? rounding_mode)."""
    out = node.outputs[0]
    a, b = node_arg(node, 0, "self"), node_arg(node, 1, "other")
    if node.kind == "aten::div" and node_arg(node, 2, "rounding_mode") is not None:
        return div_rounded(ctx, node)
    alpha = node_arg(node, 2, "alpha", 1) if node.kind in ("aten::add", "aten::sub") else 1
    # Tensors of another dtype are cast to the result's (type promotion); scalars and dynamic sizes
    # become operands of that dtype.
    _float_only_for_khronos(ctx, node, out.dtype)
    ra, rb = (operand_ref(ctx, node, v, out.dtype, out.rank) for v in (a, b))
    if alpha != 1:
        rb = ctx.g.op("mul", rb, scalar_const(ctx, alpha, out.dtype, out.rank), out=out.name + "_alpha")
    if node.kind == "aten::mul" and a is b and ctx.tract and out.dtype in _SIGNED_INTS:
        return integer_square(ctx, ra, out.name)
    return ctx.g.op(BINARY[node.kind], ra, rb, out=out.name)


_SIGNED_INTS = ("i8", "i16", "i32", "i64")


def _float_only_for_khronos(ctx: Context, node: Node, dtype: str) -> None:
    """The NNEF specification's arithmetic and comparisons take scalar (float) tensors: integers are
    refused for KhronosNNEF (its parser rejects the graph).
    """
    if not ctx.tract and dtype in _INTS and dtype != "bool":
        raise TranslationError(
            f"{node.where()}: {node.kind} on {dtype} tensors: the NNEF specification's arithmetic and comparisons "
            "take float tensors; export for TractNNEF, or compute in float in the model"
        )


def integer_square(ctx: Context, x: Ref, out: str) -> Ref:
    """``x * x`` of signed integers as ``abs(x) * abs(-x)``: tract turns a product of one wire by
    itself into its ``square`` operator, which has no integer kernels.
    """
    left = ctx.g.op("abs", x, out=out + "_abs")
    right = ctx.g.op("abs", ctx.g.op("neg", x, out=out + "_neg"), out=out + "_negabs")
    return ctx.g.op("mul", left, right, out=out)


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

BITWISE = {
    "aten::__and__": "and",
    "aten::__or__": "or",
    "aten::bitwise_and": "and",
    "aten::bitwise_or": "or",
}


@register(*BITWISE)
def aten_bitwise(ctx: Context, node: Node) -> Ref:
    """bitwise_and/or(Tensor self, Tensor other) (``&``, ``|``): booleans; integers with TractNNEF."""
    out = node.outputs[0]
    if out.dtype != "bool":
        return bitwise_integer(ctx, node, "bitand" if BITWISE[node.kind] == "and" else "bitor")
    a, b = (align_rank(ctx, v, out.rank, out) for v in node.args[:2])
    return ctx.g.op(BITWISE[node.kind], a, b, out=out.name)


@register(*BOOLEAN_ONLY)
def aten_bitwise_not(ctx: Context, node: Node) -> Ref:
    """bitwise_not(Tensor self) (``~``): booleans; integers with TractNNEF."""
    out = node.outputs[0]
    if out.dtype != "bool":
        return bitwise_integer(ctx, node, "bitnot")
    return ctx.g.op("not", ctx.ref(node.args[0]), out=out.name)


@register("aten::round")
def aten_round(ctx: Context, node: Node) -> Ref:
    """round(Tensor self): half to even, as tract_core_round_even (the spec's round differs)."""
    if not ctx.tract or (node_arg(node, 1, "decimals", 0) or 0) != 0:
        raise TranslationError(f"{node.where()}: round (half to even, no decimals) needs TractNNEF")
    return ctx.g.op("tract_core_round_even", ctx.ref(node.args[0]), out=node.outputs[0].name)


@register(*COMPARE)
def aten_compare(ctx: Context, node: Node) -> Ref:
    """eq/ne/lt/le/gt/ge(Tensor self, Tensor|Scalar other); minimum/maximum; logical_and/or."""
    out = node.outputs[0]
    a, b = node.args[0], node.args[1]
    dtype = out.dtype if out.dtype != "bool" or node.kind.startswith("aten::logical") else _promoted(a, b)
    _float_only_for_khronos(ctx, node, dtype)
    ra, rb = (operand_ref(ctx, node, v, dtype, out.rank) for v in (a, b))
    return ctx.g.op(COMPARE[node.kind], ra, rb, out=out.name)


_FLOATS = ("f16", "f32", "f64")

_INTS = ("bool", "u8", "i8", "i16", "i32", "i64")


def _promoted(a: Any, b: Any) -> str:
    """The dtype torch compares ``a`` and ``b`` in (tensors first, then the kind of a Python scalar)."""
    tensors = [v.dtype for v in (a, b) if isinstance(v, Value)]
    floats = [d for d in tensors if d in _FLOATS]
    if floats:
        return max(floats, key=_FLOATS.index)
    if any(isinstance(v, float) for v in (a, b)):
        return "f32"
    ints = [d for d in tensors if d in _INTS]
    return max(ints, key=_INTS.index) if ints else tensors[0]


@register("aten::where")
def aten_where(ctx: Context, node: Node) -> Ref:
    """where.self(Tensor condition, Tensor self, Tensor other) -> Tensor; where.ScalarSelf/ScalarOther/Scalar.

    Scalars take the output's dtype (an f16 constant for an f16 result, an integer tensor for an
    integer one: tract reads bare float literals as f32 and bare integers as dimensions).
    """
    out = node.outputs[0]
    c = align_rank(ctx, node.args[0], out.rank, out)
    a, b = (
        align_rank(ctx, v, out.rank, out) if isinstance(v, Value) else scalar_const(ctx, v, out.dtype, out.rank)
        for v in node.args[1:3]
    )
    return ctx.g.op("select", c, a, b, out=out.name)


@register("aten::pow")
def aten_pow(ctx: Context, node: Node) -> Ref:
    """pow.Tensor_Scalar(Tensor self, Scalar exponent); pow.Tensor_Tensor(self, Tensor exponent);
    pow.Scalar(Scalar self, Tensor exponent).
    """
    out = node.outputs[0]
    a, b = node.args[0], node.args[1]
    if not isinstance(a, Value):  # pow.Scalar: a number raised to a tensor
        if not out.dtype.startswith("f"):
            raise TranslationError(f"{node.where()}: pow of a number to an integer tensor is not supported")
        base = scalar_const(ctx, float(a), out.dtype, out.rank)
        return ctx.g.op("pow", base, align_rank(ctx, b, out.rank, out), out=out.name)
    if b == 2:
        if ctx.tract and out.dtype in _SIGNED_INTS:
            return integer_square(ctx, ctx.ref(a), out.name)
        return ctx.g.op("sqr", ctx.ref(a), out=out.name)
    rb = align_rank(ctx, b, out.rank, out)
    return ctx.g.op("pow", ctx.ref(a), float(rb) if isinstance(rb, (int, float)) else rb, out=out.name)


@register("aten::rsub")
def aten_rsub(ctx: Context, node: Node) -> Ref:
    """rsub(Tensor self, Tensor|Scalar other, Scalar alpha=1) -> other - alpha * self."""
    out = node.outputs[0]
    a, b = align_rank(ctx, node.args[0], out.rank, out), align_rank(ctx, node.args[1], out.rank, out)
    if isinstance(b, (int, float)) and not isinstance(b, Ref) and out.dtype.startswith("f"):
        b = float(b)
    alpha = node_arg(node, 2, "alpha", 1)
    if alpha != 1:
        a = ctx.g.op("mul", a, float(alpha), out=out.name + "_alpha")
    return ctx.g.op("sub", b, a, out=out.name)


@register("aten::hardtanh", "aten::clamp")
def aten_clamp(ctx: Context, node: Node) -> Ref:
    """clamp(Tensor self, Scalar? min, Scalar? max); hardtanh(self, min_val=-1, max_val=1)."""
    default = (-1.0, 1.0) if node.kind == "aten::hardtanh" else (None, None)
    lo, hi = node_arg(node, 1, "min", default[0]), node_arg(node, 2, "max", default[1])
    out = node.outputs[0]
    y = ctx.ref(node.args[0])

    def bound(v: Any) -> Any:  # a dynamic size (clamping indices to it) as an operand of the input's dtype
        if isinstance(v, (SymInt, Value)):
            return operand_ref(ctx, node, v, out.dtype, out.rank)
        return float(v)

    if lo is not None:
        y = ctx.g.op("max", y, bound(lo))
    if hi is not None:
        y = ctx.g.op("min", y, bound(hi))
    return ctx.g.op("copy", y, out=out.name)


@register("aten::_to_copy", "aten::to", "aten::type_as")
def aten_to(ctx: Context, node: Node) -> Ref:
    """_to_copy(Tensor self, *, ScalarType? dtype, ...); type_as(self, other): a cast to the output's
    dtype (device and layout are ignored).
    """
    x, out = node.args[0], node.outputs[0]
    if x.dtype == out.dtype:
        return ctx.g.op("copy", ctx.ref(x), out=out.name)
    if ctx.tract:
        ctx.g.need("tract_registry tract_core")
        return ctx.g.op("tract_core_cast", ctx.ref(x), to=out.dtype, out=out.name)
    if x.dtype == "bool" and out.dtype.startswith("f"):
        return ctx.g.op("select", ctx.ref(x), 1.0, 0.0, out=out.name)
    raise TranslationError(
        f"{node.where()}: the NNEF specification cannot cast {x.dtype} to {out.dtype}; use TractNNEF"
    )


@register("aten::dropout", "aten::clone", "aten::contiguous", "aten::alias", "aten::detach")
def aten_identity(ctx: Context, node: Node) -> Ref:
    """Ops that are the identity at inference (dropout in eval, copies, aliases)."""
    return ctx.g.op("copy", ctx.ref(node.args[0]), out=node.outputs[0].name)


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
    a, b = (as_bool(ctx, node, v, out.rank) for v in node.args[:2])
    return _xor(ctx, a, b, out.name)


@register("aten::__xor__", "aten::bitwise_xor")
def aten_bitwise_xor(ctx: Context, node: Node) -> Ref:
    """bitwise_xor.Tensor(Tensor self, Tensor other) / .Scalar: ``^`` on booleans or integers (tract)."""
    out = node.outputs[0]
    if out.dtype != "bool":
        return bitwise_integer(ctx, node, "bitxor")
    a, b = (as_bool(ctx, node, v, out.rank) for v in node.args[:2])
    return _xor(ctx, a, b, out.name)


def _erf(ctx: Context, node: Node, x: Any) -> Ref:
    """erf: tract's ``tract_core_erf``; for the specification, Abramowitz and Stegun 7.1.26
    (absolute error below 1.5e-7), ``sign(x) * (1 - poly(t) * exp(-x^2))`` with ``t = 1 / (1 + p|x|)``.
    """
    g = ctx.g
    if ctx.tract:
        return g.op("tract_core_erf", x)
    c = partial(const_ref, ctx, node)
    ax = g.op("abs", x)
    t = g.op("div", c(1.0), g.op("add", c(1.0), g.op("mul", ax, c(0.3275911))))
    poly = c(1.061405429)
    for coefficient in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly = g.op("add", g.op("mul", poly, t), c(coefficient))
    poly = g.op("mul", poly, t)
    tail = g.op("mul", poly, g.op("exp", g.op("neg", g.op("sqr", ax))))
    return g.op("mul", g.op("sign", x), g.op("sub", c(1.0), tail))


INVERSE_HYPERBOLIC = {"aten::asinh": "asinh", "aten::acosh": "acosh", "aten::atanh": "atanh"}


@register(*INVERSE_HYPERBOLIC)
def aten_inverse_hyperbolic(ctx: Context, node: Node) -> Ref:
    """asinh/acosh/atanh(Tensor self) -> Tensor (operators of tract and of the specification)."""
    return ctx.g.op(INVERSE_HYPERBOLIC[node.kind], float_in(ctx, node), out=node.outputs[0].name)


@register("aten::erf", "aten::erfc")
def aten_erf(ctx: Context, node: Node) -> Ref:
    """erf(Tensor self) -> Tensor; erfc(self) = 1 - erf(self).

    tract's erf; the specification's operators through a rational approximation (error < 1.5e-7).
    """
    y = _erf(ctx, node, float_in(ctx, node))
    if node.kind == "aten::erfc":
        return ctx.g.op("sub", const_ref(ctx, node, 1.0), y, out=node.outputs[0].name)
    return ctx.g.op("copy", y, out=node.outputs[0].name)


@register("aten::expm1")
def aten_expm1(ctx: Context, node: Node) -> Ref:
    """expm1(Tensor self) -> Tensor: exp(x) - 1, accurate near 0.

    Kahan's form ``(u - 1) * x / log(u)`` with ``u = exp(x)`` for ``|x| <= 0.5`` (``x`` where ``u``
    rounds to 1), ``u - 1`` elsewhere.
    """
    g, x = ctx.g, float_in(ctx, node)
    c = partial(const_ref, ctx, node)
    u = g.op("exp", x)
    um1 = g.op("sub", u, c(1.0))
    near = g.op("le", g.op("abs", x), c(0.5))
    safe_log = g.op("select", near, g.op("log", u), c(1.0))
    kahan = g.op("select", g.op("eq", u, c(1.0)), x, g.op("div", g.op("mul", um1, x), safe_log))
    return g.op("select", near, kahan, um1, out=node.outputs[0].name)


@register("aten::log1p")
def aten_log1p(ctx: Context, node: Node) -> Ref:
    """log1p(Tensor self) -> Tensor: log(1 + x), accurate near 0.

    Goldberg's form ``log(u) * x / (u - 1)`` with ``u = 1 + x`` (``x`` where ``u`` rounds to 1).
    """
    g, x = ctx.g, float_in(ctx, node)
    c = partial(const_ref, ctx, node)
    u = g.op("add", x, c(1.0))
    one = g.op("eq", u, c(1.0))
    denominator = g.op("select", one, c(1.0), g.op("sub", u, c(1.0)))
    return g.op("select", one, x, g.op("div", g.op("mul", g.op("log", u), x), denominator), out=node.outputs[0].name)


_LOG_BASE = {"aten::log2": 2.0, "aten::log10": 10.0}


@register(*_LOG_BASE)
def aten_log_base(ctx: Context, node: Node) -> Ref:
    """log2/log10(Tensor self) -> Tensor: log(x) / log(base)."""
    g, x = ctx.g, float_in(ctx, node)
    scale = const_ref(ctx, node, 1.0 / math.log(_LOG_BASE[node.kind]))
    return g.op("mul", g.op("log", x), scale, out=node.outputs[0].name)


@register("aten::exp2")
def aten_exp2(ctx: Context, node: Node) -> Ref:
    """exp2(Tensor self) -> Tensor: exp(x * log(2))."""
    g, x = ctx.g, float_in(ctx, node)
    return g.op("exp", g.op("mul", x, const_ref(ctx, node, math.log(2.0))), out=node.outputs[0].name)


@register("aten::trunc", "aten::fix")
def aten_trunc(ctx: Context, node: Node) -> Ref:
    """trunc(Tensor self) -> Tensor (fix is its alias): rounding towards zero; integers unchanged."""
    out = node.outputs[0]
    x = ctx.ref(node.args[0])
    if not out.dtype.startswith("f"):
        return ctx.g.op("copy", x, out=out.name)
    return ctx.g.op("copy", trunc_ref(ctx, x), out=out.name)


_DEGREES = {"aten::rad2deg": 180.0 / math.pi, "aten::deg2rad": math.pi / 180.0}


@register(*_DEGREES)
def aten_degrees(ctx: Context, node: Node) -> Ref:
    """rad2deg/deg2rad(Tensor self) -> Tensor: a product by 180 / pi or pi / 180."""
    return ctx.g.op("mul", float_in(ctx, node), const_ref(ctx, node, _DEGREES[node.kind]), out=node.outputs[0].name)


@register("aten::sinc")
def aten_sinc(ctx: Context, node: Node) -> Ref:
    """sinc(Tensor self) -> Tensor: sin(pi x) / (pi x), 1 at 0."""
    g, x = ctx.g, float_in(ctx, node)
    c = partial(const_ref, ctx, node)
    zero = g.op("eq", x, c(0.0))
    px = g.op("mul", g.op("select", zero, c(1.0), x), c(math.pi))
    return g.op("select", zero, c(1.0), g.op("div", g.op("sin", px), px), out=node.outputs[0].name)


@register("aten::square")
def aten_square(ctx: Context, node: Node) -> Ref:
    """square(Tensor self) -> Tensor: x * x, for floats (tract rewrites an integer x * x to its float-only square)."""
    out = node.outputs[0]
    if not out.dtype.startswith("f"):
        raise TranslationError(
            f"{node.where()}: square of {out.dtype} is not supported (tract squares floats only): "
            "cast it to float first"
        )
    return ctx.g.op("sqr", ctx.ref(node.args[0]), out=out.name)


@register("aten::sgn")
def aten_sgn(ctx: Context, node: Node) -> Ref:
    """sgn(Tensor self) -> Tensor: the sign of real numbers."""
    out = node.outputs[0]
    if not out.dtype.startswith("f"):
        tract_only(ctx, node, f"on {out.dtype} needs integer arithmetic, which the NNEF specification lacks")
    return ctx.g.op("sign", ctx.ref(node.args[0]), out=out.name)


@register("aten::logit")
def aten_logit(ctx: Context, node: Node) -> Ref:
    """logit(Tensor self, float? eps=None) -> Tensor: log(x / (1 - x)), x clamped to [eps, 1 - eps]."""
    g, x = ctx.g, float_in(ctx, node)
    c = partial(const_ref, ctx, node)
    eps = node_arg(node, 1, "eps")
    if eps is not None:
        x = g.op("min", g.op("max", x, c(float(eps))), c(1.0 - float(eps)))
    return g.op("log", g.op("div", x, g.op("sub", c(1.0), x)), out=node.outputs[0].name)


def _float_pair(ctx: Context, node: Node) -> tuple[Any, Any, Value]:
    out = node.outputs[0]
    if not out.dtype.startswith("f"):
        raise TranslationError(f"{node.where()}: {node.kind} on {out.dtype} is not supported yet")
    a, b = node_arg(node, 0, "self"), node_arg(node, 1, "other")
    return operand_ref(ctx, node, a, out.dtype, out.rank), operand_ref(ctx, node, b, out.dtype, out.rank), out


@register("aten::xlogy")
def aten_xlogy(ctx: Context, node: Node) -> Ref:
    """xlogy.Tensor(Tensor self, Tensor other) / .Scalar_Self / .Scalar_Other: x * log(y), 0 where x is 0
    (NaN where y is NaN).
    """
    g = ctx.g
    x, y, out = _float_pair(ctx, node)
    c = partial(const_ref, ctx, node)
    product = g.op("mul", x, g.op("log", y))
    zero = g.op("and", g.op("eq", x, c(0.0)), g.op("eq", y, y))
    return g.op("select", zero, c(0.0), product, out=out.name)


_LOGADDEXP_BASE = {"aten::logaddexp": math.e, "aten::logaddexp2": 2.0}


@register(*_LOGADDEXP_BASE)
def aten_logaddexp(ctx: Context, node: Node) -> Ref:
    """logaddexp(Tensor self, Tensor other) = log(exp(a) + exp(b)); logaddexp2 in base 2.

    ``max(a, b) + log_base(1 + base^-|a - b|)``: no overflow; equal infinities give that infinity.
    """
    g = ctx.g
    a, b, out = _float_pair(ctx, node)
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
def aten_signbit(ctx: Context, node: Node) -> Ref:
    """signbit(Tensor self) -> Tensor: whether the sign bit is set (-0.0 included)."""
    x, out = node.args[0], node.outputs[0]
    if not x.dtype.startswith("f"):
        tract_only(ctx, node, f"on {x.dtype} compares integers, which the NNEF specification cannot")
        return ctx.g.op("lt", ctx.ref(x), scalar_const(ctx, 0, x.dtype, x.rank), out=out.name)
    return ctx.g.op("copy", _signbit(ctx, ctx.ref(x), x.dtype, x.rank), out=out.name)


@register("aten::copysign")
def aten_copysign(ctx: Context, node: Node) -> Ref:
    """copysign.Tensor(Tensor self, Tensor other) / .Scalar: |self| with the sign bit of other."""
    g = ctx.g
    a, b, out = _float_pair(ctx, node)
    magnitude = g.op("abs", a)
    return g.op("select", _signbit(ctx, b, out.dtype, out.rank), g.op("neg", magnitude), magnitude, out=out.name)


@register("aten::heaviside")
def aten_heaviside(ctx: Context, node: Node) -> Ref:
    """heaviside(Tensor self, Tensor values) -> Tensor: 0 below 0, values at 0, 1 above."""
    out = node.outputs[0]
    if not out.dtype.startswith("f"):
        tract_only(ctx, node, f"on {out.dtype} compares integers, which the NNEF specification cannot")
    g = ctx.g
    x, values = (operand_ref(ctx, node, v, out.dtype, out.rank) for v in node.args[:2])
    zero, one = scalar_const(ctx, 0, out.dtype, out.rank), scalar_const(ctx, 1, out.dtype, out.rank)
    step = g.op("select", g.op("gt", x, zero), one, zero)
    return g.op("select", g.op("eq", x, zero), values, step, out=out.name)


@register("aten::fmin", "aten::fmax")
def aten_fmin_fmax(ctx: Context, node: Node) -> Ref:
    """fmin/fmax(Tensor self, Tensor other) -> Tensor: min/max that ignore a NaN operand."""
    g = ctx.g
    a, b, out = _float_pair(ctx, node)
    both = g.op("min" if node.kind == "aten::fmin" else "max", a, b)
    return g.op("select", g.op("ne", a, a), b, g.op("select", g.op("ne", b, b), a, both), out=out.name)


@register("aten::true_divide")
def aten_true_divide(ctx: Context, node: Node) -> Ref:
    """true_divide.Tensor(Tensor self, Tensor other) / .Scalar: division in the (floating) result dtype."""
    a, b, out = _float_pair(ctx, node)
    return ctx.g.op("div", a, b, out=out.name)


@register("aten::clamp_min", "aten::clamp_max", "aten::clip")
def aten_clamp_bound(ctx: Context, node: Node) -> Ref:
    """clamp_min(Tensor self, Scalar|Tensor min); clamp_max(self, max); clip(self, min=None, max=None)
    (clip is clamp's alias).
    """
    out = node.outputs[0]
    if not out.dtype.startswith("f"):
        tract_only(ctx, node, f"on {out.dtype} compares integers, which the NNEF specification cannot")
    if node.kind == "aten::clip":
        lo, hi = node_arg(node, 1, "min"), node_arg(node, 2, "max")
    elif node.kind == "aten::clamp_min":
        lo, hi = node_arg(node, 1, "min"), None
    else:
        lo, hi = None, node_arg(node, 1, "max")
    y = operand_ref(ctx, node, node.args[0], out.dtype, out.rank)
    if lo is not None:
        y = ctx.g.op("max", y, operand_ref(ctx, node, lo, out.dtype, out.rank))
    if hi is not None:
        y = ctx.g.op("min", y, operand_ref(ctx, node, hi, out.dtype, out.rank))
    return ctx.g.op("copy", y, out=out.name)


_SHIFTS = {
    "aten::bitwise_left_shift": "tract_shl",
    "aten::__lshift__": "tract_shl",
    "aten::bitwise_right_shift": "tract_shr",
    "aten::__rshift__": "tract_shr",
}


@register(*_SHIFTS)
def aten_shift(ctx: Context, node: Node) -> Ref:
    """bitwise_left_shift/right_shift.Tensor(Tensor self, Tensor other) / .Tensor_Scalar; ``<<``, ``>>``.

    tract's shift operators, with the amount as a tensor of the value's dtype (right shifts of
    signed integers are arithmetic, as in PyTorch).
    """
    out = node.outputs[0]
    if out.dtype.startswith("f") or out.dtype == "bool":
        raise TranslationError(f"{node.where()}: {node.kind} shifts integers, not {out.dtype}")
    tract_only(ctx, node, "needs bit shifts, which the NNEF specification lacks")
    a, b = (operand_ref(ctx, node, v, out.dtype, out.rank) for v in node.args[:2])
    return ctx.g.op(_SHIFTS[node.kind], a, b, out=out.name)


def _float_input(ctx: Context, node: Node, v: Any, out: Value) -> Any:
    """An operand of a floating-point op, in the output's dtype and rank."""
    if not out.dtype.startswith("f"):
        raise TranslationError(f"{node.where()}: {node.kind} on {out.dtype} is not supported (floats only)")
    return operand_ref(ctx, node, v, out.dtype, out.rank)


def _finite_max(dtype: str) -> float:
    return float(np.finfo(NP_DTYPES[dtype]).max)


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
