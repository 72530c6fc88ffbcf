"""Translations of the core ATen ops used by common CNNs, MLPs and transformer blocks."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from torch_to_nnef.check.versions import POOL_PADDING_TRACT
from torch_to_nnef.errors import TranslationError
from torch_to_nnef.ir import Node, SymInt, Value
from torch_to_nnef.nnef.builder import Ref, dim_literal
from torch_to_nnef.op.common import (
    BIG,
    NP_DTYPES,
    adaptive_pool,
    align_rank,
    batch_norm,
    bitwise_integer,
    conv,
    dim_ref,
    div_rounded,
    node_arg,
    operand_ref,
    padding_pairs,
    reduce_axes,
    scalar_const,
    shape_attr,
    slice_bound,
    standardize,
    variance,
    wrap_axis,
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


@register("aten::leaky_relu")
def aten_leaky_relu(ctx: Context, self: Value, negative_slope: float = 0.01) -> Ref:
    """leaky_relu(Tensor self, Scalar negative_slope=0.01) -> Tensor."""
    return ctx.g.op("leaky_relu", ctx.ref(self), alpha=float(negative_slope), out=ctx.out.name)


@register("aten::elu")
def aten_elu(ctx: Context, self: Value, alpha: float = 1.0, scale: float = 1.0, input_scale: float = 1.0) -> Ref:
    """elu(Tensor self, Scalar alpha=1, Scalar scale=1, Scalar input_scale=1) -> Tensor (selu and celu too)."""
    g, x = ctx.g, ctx.ref(self)
    negative = g.op("mul", g.op("sub", g.op("exp", g.op("mul", x, float(input_scale))), 1.0), float(alpha))
    y = g.op("select", g.op("gt", x, 0.0), x, negative)
    return g.op("mul", y, float(scale), out=ctx.out.name) if scale != 1.0 else g.op("copy", y, out=ctx.out.name)


@register("aten::selu")
def aten_selu(ctx: Context, self: Value) -> Ref:
    """selu(Tensor self) -> Tensor: 1.0507 * elu(x, alpha=1.6733)."""
    g, x = ctx.g, ctx.ref(self)
    negative = g.op("mul", g.op("sub", g.op("exp", x), 1.0), 1.6732632423543772)
    y = g.op("select", g.op("gt", x, 0.0), x, negative)
    return g.op("mul", y, 1.0507009873554805, out=ctx.out.name)


@register("aten::celu")
def aten_celu(ctx: Context, self: Value, alpha: float = 1.0) -> Ref:
    """celu(Tensor self, Scalar alpha=1.0) -> Tensor: max(0, x) + min(0, alpha * (exp(x / alpha) - 1))."""
    g, x = ctx.g, ctx.ref(self)
    negative = g.op("mul", g.op("sub", g.op("exp", g.op("div", x, float(alpha))), 1.0), float(alpha))
    return g.op("add", g.op("max", x, 0.0), g.op("min", negative, 0.0), out=ctx.out.name)


def _softplus(ctx: Context, x: Ref, beta: float, threshold: float) -> Ref:
    g = ctx.g
    bx = g.op("mul", x, beta) if beta != 1.0 else x
    soft = g.op("log", g.op("add", g.op("exp", bx), 1.0))
    if beta != 1.0:
        soft = g.op("div", soft, beta)
    return g.op("select", g.op("gt", bx, threshold), x, soft)


@register("aten::softplus")
def aten_softplus(ctx: Context, self: Value, beta: float = 1.0, threshold: float = 20.0) -> Ref:
    """softplus(Tensor self, Scalar beta=1, Scalar threshold=20) -> Tensor: linear above the threshold."""
    return ctx.g.op("copy", _softplus(ctx, ctx.ref(self), float(beta), float(threshold)), out=ctx.out.name)


@register("aten::mish")
def aten_mish(ctx: Context, self: Value) -> Ref:
    """mish(Tensor self) -> Tensor: x * tanh(softplus(x))."""
    x = ctx.ref(self)
    return ctx.g.op("mul", x, ctx.g.op("tanh", _softplus(ctx, x, 1.0, 20.0)), out=ctx.out.name)


def _prelu(ctx: Context, x: Value, slope: Any, out: str) -> Ref:
    """``x`` where positive, else ``x * slope`` (a slope broadcastable to ``x``)."""
    g, xr = ctx.g, ctx.ref(x)
    return g.op("select", g.op("gt", xr, 0.0), xr, g.op("mul", xr, slope), out=out)


@register("aten::prelu")
def aten_prelu(ctx: Context, node: Node) -> Ref:
    """prelu(Tensor self, Tensor weight): one slope, or one per channel (axis 1)."""
    x, w = node.args[0], node.args[1]
    slope = ctx.ref(w)
    if x.rank >= 2 and w.rank == 1:
        slope = ctx.g.op("unsqueeze", slope, axes=[0, *range(2, x.rank)], out=w.name + "channel_count")
    return _prelu(ctx, x, slope, node.outputs[0].name)


@register("aten::_prelu_kernel")
def aten_prelu_kernel(ctx: Context, node: Node) -> Ref:
    """_prelu_kernel(Tensor self, Tensor weight) -> Tensor: the weight already broadcastable to the input."""
    x, w, out = node.args[0], node.args[1], node.outputs[0]
    return _prelu(ctx, x, align_rank(ctx, w, out.rank, out), out.name)


@register("aten::glu")
def aten_glu(ctx: Context, node: Node) -> Ref:
    """glu(Tensor self, int dim=-1) = first half * sigmoid(second half)."""
    x = node.args[0]
    axis = wrap_axis(node_arg(node, 1, "dim", -1), x.rank)
    size = x.shape[axis]
    half: Any = size // 2 if isinstance(size, int) else SymInt(f"({dim_literal(size)})/2")
    if not isinstance(size, int) and not ctx.tract:
        raise TranslationError(f"{node.where()}: glu over a dynamic axis needs TractNNEF")
    a = _slice(ctx, x, axis, 0, half, 1, node.outputs[0].name + "_a")
    b = _slice(ctx, x, axis, half, BIG, 1, node.outputs[0].name + "_b")
    return ctx.g.op("mul", a, ctx.g.op("sigmoid", b), out=node.outputs[0].name)


@register("aten::group_norm")
def aten_group_norm(ctx: Context, node: Node) -> Ref:
    """group_norm(Tensor input, int num_groups, Tensor? weight, Tensor? bias, float eps=1e-05)."""
    w, b = node_arg(node, 2, "weight"), node_arg(node, 3, "bias")
    return _group_norm(ctx, node, node.args[1], w, b, float(node_arg(node, 4, "eps", 1e-5)))


@register("aten::native_group_norm")
def aten_native_group_norm(ctx: Context, node: Node) -> Ref:
    """native_group_norm(Tensor input, Tensor? weight, Tensor? bias, SymInt N, SymInt C, SymInt HxW, int group,
    float eps) -> (Tensor, Tensor, Tensor): the output only (the mean and rstd are not exported).
    """
    return _group_norm(ctx, node, node.args[6], node.args[1], node.args[2], float(node.args[7]))


def _group_norm(ctx: Context, node: Node, groups: int, w: Value | None, b: Value | None, eps: float) -> Ref:
    x = node.args[0]
    if not isinstance(x.shape[0], int) or not isinstance(x.shape[1], int):
        raise TranslationError(f"{node.where()}: group_norm with dynamic batch or channels is not supported yet")
    g, out = ctx.g, node.outputs[0]
    grouped = g.op("reshape", ctx.ref(x), shape=[x.shape[0], groups, -1])
    normed = standardize(ctx, grouped, [2], eps)
    y = g.op("reshape", normed, shape=shape_attr(ctx, node, x.shape))
    channel_axes = [0, *range(2, x.rank)]
    if w is not None:
        y = g.op("mul", y, g.op("unsqueeze", ctx.ref(w), axes=channel_axes))
    if b is not None:
        y = g.op("add", y, g.op("unsqueeze", ctx.ref(b), axes=channel_axes))
    return g.op("copy", y, out=out.name)


@register("aten::hardsigmoid", "aten::hardswish")
def aten_hard(ctx: Context, node: Node) -> Ref:
    """hardsigmoid(x) = clamp(x / 6 + 0.5, 0, 1); hardswish(x) = x * hardsigmoid(x)."""
    g, x = ctx.g, ctx.ref(node.args[0])
    hs = g.op("min", g.op("max", g.op("add", g.op("div", x, 6.0), 0.5), 0.0), 1.0)
    if node.kind == "aten::hardsigmoid":
        return g.op("copy", hs, out=node.outputs[0].name)
    return g.op("mul", x, hs, out=node.outputs[0].name)


@register("aten::gelu")
def aten_gelu(ctx: Context, node: Node) -> Ref:
    """gelu(Tensor self, str approximate='none'): tanh form anywhere, exact form with tract's erf."""
    g, x = ctx.g, ctx.ref(node.args[0])
    approximate = node_arg(node, 1, "approximate", "none")
    if approximate == "tanh":
        inner = g.op("mul", g.op("add", x, g.op("mul", g.op("pow", x, 3.0), 0.044715)), 0.7978845608028654)
        return g.op("mul", g.op("mul", x, 0.5), g.op("add", g.op("tanh", inner), 1.0), out=node.outputs[0].name)
    if not ctx.tract:
        raise TranslationError(
            f"{node.where()}: exact gelu needs erf, which the NNEF specification lacks: "
            "use gelu(approximate='tanh') or TractNNEF"
        )
    erf = g.op("tract_core_erf", g.op("mul", x, 0.7071067811865476))
    return g.op("mul", g.op("mul", x, 0.5), g.op("add", erf, 1.0), out=node.outputs[0].name)


@register("aten::log_softmax", "aten::_log_softmax")
def aten_log_softmax(ctx: Context, node: Node) -> Ref:
    """log_softmax(Tensor self, int dim, ScalarType? dtype): x - max - log(sum(exp(x - max)))."""
    x = node.args[0]
    axes = [wrap_axis(node.args[1], x.rank)]
    g, xr = ctx.g, ctx.ref(x)
    shifted = g.op("sub", xr, g.op("max_reduce", xr, axes=axes))
    lse = g.op("log", g.op("sum_reduce", g.op("exp", shifted), axes=axes))
    return g.op("sub", shifted, lse, out=node.outputs[0].name)


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


@register("aten::silu")
def aten_silu(ctx: Context, node: Node) -> Ref:
    """silu(Tensor self) -> Tensor."""
    x = ctx.ref(node.args[0])
    return ctx.g.op("mul", x, ctx.g.op("sigmoid", x), out=node.outputs[0].name)


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


@register("aten::softmax", "aten::_softmax")
def aten_softmax(ctx: Context, node: Node) -> Ref:
    """softmax(Tensor self, int dim, ScalarType? dtype) -> Tensor."""
    x = node.args[0]
    return ctx.g.op("softmax", ctx.ref(x), axes=[wrap_axis(node.args[1], x.rank)], out=node.outputs[0].name)


@register("aten::linear")
def aten_linear(ctx: Context, node: Node) -> Ref:
    """linear(Tensor input, Tensor weight, Tensor? bias=None) -> Tensor."""
    x, w, b = node.args[0], node.args[1], node_arg(node, 2, "bias")
    out = node.outputs[0]
    wr = align_rank(ctx, w, x.rank, out)
    y = ctx.g.op("matmul", ctx.ref(x), wr, transposeA=False, transposeB=True, out=out.name + "_mm")
    if b is None:
        return ctx.g.op("copy", y, out=out.name)
    return ctx.g.op("add", y, align_rank(ctx, b, out.rank, out), out=out.name)


@register("aten::matmul", "aten::mm", "aten::bmm")
def aten_matmul(ctx: Context, node: Node) -> Ref:
    """matmul(Tensor self, Tensor other) -> Tensor; a 1-D operand is a row (left) or a column (right)."""
    a, b = node.args[0], node.args[1]
    out, g = node.outputs[0], ctx.g
    rank = max(a.rank, b.rank, 2)
    ra = g.op("unsqueeze", ctx.ref(a), axes=[0]) if a.rank == 1 else ctx.ref(a)
    rb = g.op("unsqueeze", ctx.ref(b), axes=[1]) if b.rank == 1 else ctx.ref(b)
    if max(a.rank, 2) < rank:
        ra = g.op("unsqueeze", ra, axes=list(range(rank - max(a.rank, 2))))
    if max(b.rank, 2) < rank:
        rb = g.op("unsqueeze", rb, axes=list(range(rank - max(b.rank, 2))))
    squeezed = ([rank - 2] if a.rank == 1 else []) + ([rank - 1] if b.rank == 1 else [])
    if not squeezed:
        return g.op("matmul", ra, rb, out=out.name)
    return g.op("squeeze", g.op("matmul", ra, rb), axes=squeezed, out=out.name)


@register("aten::conv1d", "aten::conv2d", "aten::conv3d")
def aten_conv(ctx: Context, node: Node) -> Ref:
    """conv2d(Tensor input, Tensor weight, Tensor? bias, int[] stride, int[]|str padding, int[] dilation,
    int groups).
    """
    spatial = node.args[0].rank - 2
    stride = list(node_arg(node, 3, "stride", [1] * spatial))
    padding = node_arg(node, 4, "padding", [0] * spatial)
    dilation = list(node_arg(node, 5, "dilation", [1] * spatial))
    return conv(ctx, node, stride, padding, dilation, int(node_arg(node, 6, "groups", 1)))


@register("aten::_native_batch_norm_legit_no_training")
def aten_batch_norm(ctx: Context, node: Node) -> Ref:
    """_native_batch_norm_legit_no_training(input, weight, bias, running_mean, running_var, momentum, eps)."""
    x, w, b, mean, var = node.args[:5]
    return batch_norm(ctx, node, x, w, b, mean, var, float(node.args[6]))


@register("aten::layer_norm", "aten::native_layer_norm")
def aten_layer_norm(ctx: Context, node: Node) -> Ref:
    """layer_norm/native_layer_norm(Tensor input, int[] normalized_shape, Tensor? weight, Tensor? bias, float eps).

    ``native_layer_norm`` returns ``(out, mean, rstd)``: the output only is exported.
    """
    x = node.args[0]
    n = len(node.args[1])
    w, b = node_arg(node, 2, "weight"), node_arg(node, 3, "bias")
    eps = float(node_arg(node, 4, "eps", 1e-5))
    out = node.outputs[0]
    g = ctx.g
    y = standardize(ctx, ctx.ref(x), list(range(x.rank - n, x.rank)), eps)
    if w is not None:
        y = g.op("mul", y, align_rank(ctx, w, out.rank, out))
    if b is not None:
        y = g.op("add", y, align_rank(ctx, b, out.rank, out))
    return g.op("copy", y, out=out.name)


@register("aten::transpose")
def aten_transpose(ctx: Context, node: Node) -> Ref:
    """transpose.int(Tensor self, int dim0, int dim1) -> Tensor."""
    x = node.args[0]
    perm = list(range(x.rank))
    a, b = wrap_axis(node.args[1], x.rank), wrap_axis(node.args[2], x.rank)
    perm[a], perm[b] = perm[b], perm[a]
    return ctx.g.op("transpose", ctx.ref(x), axes=perm, out=node.outputs[0].name)


@register("aten::t")
def aten_t(ctx: Context, node: Node) -> Ref:
    """t(Tensor self) -> Tensor."""
    x = node.args[0]
    if x.rank < 2:
        return ctx.g.op("copy", ctx.ref(x), out=node.outputs[0].name)
    return ctx.g.op("transpose", ctx.ref(x), axes=[1, 0], out=node.outputs[0].name)


@register("aten::permute")
def aten_permute(ctx: Context, node: Node) -> Ref:
    """permute(Tensor self, int[] dims) -> Tensor."""
    x = node.args[0]
    return ctx.g.op(
        "transpose", ctx.ref(x), axes=[wrap_axis(d, x.rank) for d in node.args[1]], out=node.outputs[0].name
    )


def _reshape_to(ctx: Context, node: Node, x: Value) -> Ref:
    """Reshape to the node's output shape, preferring what needs no symbol arithmetic: the sizes the
    code asked for (ints and -1), 0 for a dimension kept from the input, one -1 for the remaining
    symbolic one; only then tract's expressions of the symbols.
    """
    out = node.outputs[0]
    if out.rank == 0 and all(d == 1 for d in x.shape):  # tract cannot read a reshape to the shape []
        if not x.rank:
            return ctx.g.op("copy", ctx.ref(x), out=out.name)
        return ctx.g.op("squeeze", ctx.ref(x), axes=list(range(x.rank)), out=out.name)
    asked = node.args[1] if node.kind in _SIZED_RESHAPES and len(node.args) > 1 else None
    if not isinstance(asked, (list, tuple)) or len(asked) != out.rank:
        asked = [None] * out.rank
    shape: list[Any] = []
    symbolic: list[int] = []
    for i, (want, d) in enumerate(zip(asked, out.shape)):
        if isinstance(want, int) and not isinstance(want, bool):
            shape.append(want)
        elif isinstance(d, int):
            shape.append(d)
        elif i < x.rank and x.shape[i] == d:
            shape.append(0)  # NNEF: keep the input's dimension
        else:
            shape.append(d)
            symbolic.append(i)
    if len(symbolic) == 1 and -1 not in shape:
        shape[symbolic[0]] = -1
    elif symbolic:
        if not ctx.tract:
            raise TranslationError(f"{node.where()}: symbolic reshape needs TractNNEF")
        shape = [Ref(dim_literal(d)) if i in symbolic else d for i, d in enumerate(shape)]
    return ctx.g.op("reshape", ctx.ref(x), shape=shape, out=out.name)


_SIZED_RESHAPES = ("aten::view", "aten::reshape", "aten::_unsafe_view")


@register("aten::view", "aten::reshape", "aten::_unsafe_view", "aten::flatten", "aten::unflatten")
def aten_view(ctx: Context, node: Node) -> Ref:
    """view(Tensor self, SymInt[] size) and friends: the output shape is known from the IR.
    view.dtype(Tensor self, ScalarType dtype) reinterprets the bytes: refused unless the dtype is the same.
    """
    x = node.args[0]
    if node.kind == "aten::view" and isinstance(node.args[1], str):
        if node.args[1] != x.dtype:
            raise TranslationError(
                f"{node.where()}: view({node.args[1]}) reinterprets the bytes of a {x.dtype} tensor, and NNEF has no "
                f"bit cast: convert the values with .to() instead, or keep the reinterpretation out of the exported "
                "module"
            )
        return ctx.g.op("copy", ctx.ref(x), out=node.outputs[0].name)
    return _reshape_to(ctx, node, x)


@register("aten::unsqueeze")
def aten_unsqueeze(ctx: Context, node: Node) -> Ref:
    """unsqueeze(Tensor self, int dim) -> Tensor."""
    x = node.args[0]
    return ctx.g.op("unsqueeze", ctx.ref(x), axes=[wrap_axis(node.args[1], x.rank + 1)], out=node.outputs[0].name)


@register("aten::squeeze")
def aten_squeeze(ctx: Context, node: Node) -> Ref:
    """squeeze.dim(s)(Tensor self, int[]? dim) -> Tensor; only axes of size 1 are removed."""
    x = node.args[0]
    dims = node_arg(node, 1, "dim")
    dims = list(range(x.rank)) if dims is None else ([dims] if isinstance(dims, int) else list(dims))
    axes = [wrap_axis(d, x.rank) for d in dims if x.shape[wrap_axis(d, x.rank)] == 1]
    if not axes:
        return ctx.g.op("copy", ctx.ref(x), out=node.outputs[0].name)
    return ctx.g.op("squeeze", ctx.ref(x), axes=axes, out=node.outputs[0].name)


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


@register("aten::cat")
def aten_cat(ctx: Context, node: Node) -> Ref:
    """cat(Tensor[] tensors, int dim=0) -> Tensor."""
    tensors = [t for t in node.args[0] if t.shape != (0,)]
    out = node.outputs[0]
    return ctx.g.op(
        "concat", [ctx.ref(t) for t in tensors], axis=wrap_axis(node_arg(node, 1, "dim", 0), out.rank), out=out.name
    )


def _pool(ctx: Context, node: Node, op: str, border: str, out: str | None = None) -> Ref:
    x = node.args[0]
    spatial = x.rank - 2
    kernel = list(node.args[1])
    kernel = kernel * (spatial // len(kernel))
    stride = list(node_arg(node, 2, "stride", []) or kernel)
    stride = stride * (spatial // len(stride))
    padding = list(node_arg(node, 3, "padding", [0]))
    padding = padding * (spatial // len(padding))
    dilation = list(node_arg(node, 4, "dilation", [1])) if op == "max_pool" else [1]
    dilation = dilation * (spatial // len(dilation))
    pads, xr = padding_pairs(padding), ctx.ref(x)
    if node_arg(node, 5 if op == "max_pool" else 4, "ceil_mode", False):
        # The last windows may overhang the padded input: pad its end further, outside of any count.
        sizes, wanted = x.shape[2:], node.outputs[0].shape[2:]
        if not all(isinstance(d, int) for d in (*sizes, *wanted)):
            raise TranslationError(f"{node.where()}: pooling with ceil_mode=True over a dynamic axis is not supported")
        overhang = [
            max(0, (n - 1) * s + d * (k - 1) + 1 - (size + 2 * p))
            for n, s, d, k, size, p in zip(wanted, stride, dilation, kernel, sizes, padding)
        ]
        if any(overhang) and border == "constant":  # counted padding: explicit zeros, then an ignored overhang
            xr = ctx.g.op("pad", xr, padding=[(0, 0), (0, 0), *pads], border="constant", value=0.0)
            pads, border = [(0, e) for e in overhang], "ignore"
        else:
            pads = [(p, p + e) for p, e in zip(padding, overhang)]
    attrs: dict[str, Any] = {"dilation": [1, 1, *dilation]} if any(d != 1 for d in dilation) else {}
    counted = op == "box" or (op == "avg_pool" and border == "constant")
    if counted and ctx.tract and not ctx.tract_at_least(POOL_PADDING_TRACT):
        # Older tract releases miscount padded windows and sum boxes differently (measured): the
        # zeros are written explicitly, and a box is an average times the window's size.
        if any(p != (0, 0) for p in pads):
            xr = ctx.g.op("pad", xr, padding=[(0, 0), (0, 0), *pads], border="constant", value=0.0)
            pads = [(0, 0)] * spatial
        if op == "box":
            mean = ctx.g.op(
                "avg_pool",
                xr,
                size=[1, 1, *kernel],
                stride=[1, 1, *stride],
                padding=[(0, 0)] * (spatial + 2),
                border="constant",
                **attrs,
            )
            return ctx.g.op("mul", mean, float(math.prod(kernel)), out=out or node.outputs[0].name)
    return ctx.g.op(
        op,
        xr,
        size=[1, 1, *kernel],
        stride=[1, 1, *stride],
        padding=[(0, 0), (0, 0), *pads],
        border=border,
        out=out or node.outputs[0].name,
        **attrs,
    )


@register("aten::max_pool1d", "aten::max_pool2d", "aten::max_pool3d")
def aten_max_pool(ctx: Context, node: Node) -> Ref:
    """max_pool2d(Tensor self, int[] kernel_size, int[] stride, int[] padding, int[] dilation, bool ceil_mode)."""
    return _pool(ctx, node, "max_pool", "ignore")


@register("aten::max_pool1d_with_indices", "aten::max_pool2d_with_indices", "aten::max_pool3d_with_indices")
def aten_max_pool_with_indices(ctx: Context, node: Node) -> list[Ref]:
    """max_pool2d_with_indices(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0,
    int[2] dilation=1, bool ceil_mode=False) -> (Tensor, Tensor): the values (the indices are not exported).
    """
    return [_pool(ctx, node, "max_pool", "ignore")]


@register("aten::avg_pool1d", "aten::avg_pool2d", "aten::avg_pool3d")
def aten_avg_pool(ctx: Context, node: Node) -> Ref:
    """avg_pool2d(Tensor self, int[] kernel_size, int[] stride, int[] padding, bool ceil_mode,
    bool count_include_pad, int? divisor_override).
    """
    include_pad = node_arg(node, 5, "count_include_pad", True)
    divisor = node_arg(node, 6, "divisor_override")
    if divisor:  # the window sums ('box'), over the given divisor
        out = node.outputs[0].name
        return ctx.g.op("div", _pool(ctx, node, "box", "constant", out=out + "_sum"), float(divisor), out=out)
    return _pool(ctx, node, "avg_pool", "constant" if include_pad else "ignore")


@register(
    "aten::adaptive_avg_pool1d",
    "aten::adaptive_avg_pool2d",
    "aten::adaptive_avg_pool3d",
    "aten::_adaptive_avg_pool2d",
    "aten::_adaptive_avg_pool3d",
)
def aten_adaptive_avg_pool(ctx: Context, node: Node) -> Ref:
    """adaptive_avg_pool2d(Tensor self, SymInt[] output_size): global pooling, strided pooling or exact windows."""
    x = node.args[0]
    if any(s != 1 for s in node.args[1]):
        return adaptive_pool(ctx, node, "mean_reduce")
    return ctx.g.op("mean_reduce", ctx.ref(x), axes=list(range(2, x.rank)), out=node.outputs[0].name)


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


def _slice(ctx: Context, x: Value, axis: int, start: Any, end: Any, step: int, out: str) -> Ref:
    dim = x.shape[axis]
    return ctx.g.op(
        "slice",
        ctx.ref(x),
        axes=[axis],
        begin=[slice_bound(start, dim)],
        end=[slice_bound(end, dim)],
        stride=[step],
        out=out,
    )


@register("aten::slice")
def aten_slice(ctx: Context, node: Node) -> Ref:
    """slice.Tensor(Tensor self, int dim=0, SymInt? start=None, SymInt? end=None, SymInt step=1)."""
    x = node.args[0]
    axis = wrap_axis(node_arg(node, 1, "dim", 0), x.rank)
    start = node_arg(node, 2, "start") or 0
    end = node_arg(node, 3, "end")
    end = BIG if end is None else end
    step = node_arg(node, 4, "step", 1)
    size = node.outputs[0].shape[axis]
    if step > 1 and ctx.tract and not (isinstance(size, int) and isinstance(x.shape[axis], int)) and size != 0:
        # over a dynamic axis, the end just after the last element taken: tract counts ceil((end - begin) / step)
        # elements, and proves that equal to the size torch gives only from such an end ([0:2*T:2] has T)
        begin = slice_bound(start, x.shape[axis])
        last = Ref(f"{dim_literal(str(begin))}+{step}*({dim_literal(size)}-1)+1")
        if not isinstance(begin, int):  # tract cannot pull a stride over a slice from a symbolic start: gather
            ctx.g.need("tract_registry tract_core")
            rows = ctx.g.op("tract_core_range", begin, last, step)
            return ctx.g.op("tract_core_gather", ctx.ref(x), rows, axis=axis, out=node.outputs[0].name)
        return ctx.g.op(
            "slice", ctx.ref(x), axes=[axis], begin=[begin], end=[last], stride=[step], out=node.outputs[0].name
        )
    return _slice(ctx, x, axis, start, end, step, node.outputs[0].name)


def _scatter_slice(ctx: Context, node: Node, x: Value, src: Any, axis: int, start: Any, end: Any) -> Ref:
    """``x`` with ``x[start:end]`` on ``axis`` replaced by ``src``: the parts of ``x`` around it, concatenated."""
    dim, out = x.shape[axis], node.outputs[0]
    start = 0 if start is None else start
    end = BIG if end is None else end
    parts = []
    if slice_bound(start, dim) != 0:
        parts.append(_slice(ctx, x, axis, 0, start, 1, out.name + "_before"))
    parts.append(src)
    if slice_bound(end, dim) != slice_bound(BIG, dim):
        parts.append(_slice(ctx, x, axis, end, BIG, 1, out.name + "_after"))
    return ctx.g.op("concat", parts, axis=axis, out=out.name)


@register("aten::slice_scatter")
def aten_slice_scatter(ctx: Context, node: Node) -> Ref:
    """slice_scatter(Tensor self, Tensor src, int dim=0, SymInt? start=None, SymInt? end=None, SymInt step=1).

    ``x[..., start:end] = src`` out of place (in-place writes into a slice): slices of ``self`` around
    ``src``, concatenated; steps other than 1 are not supported.
    """
    x, src = node.args[0], node.args[1]
    axis = wrap_axis(node_arg(node, 2, "dim", 0), x.rank)
    if node_arg(node, 5, "step", 1) != 1:
        raise TranslationError(f"{node.where()}: slice_scatter with a step other than 1 is not supported yet")
    return _scatter_slice(ctx, node, x, ctx.ref(src), axis, node_arg(node, 3, "start"), node_arg(node, 4, "end"))


@register("aten::select_scatter")
def aten_select_scatter(ctx: Context, node: Node) -> Ref:
    """select_scatter(Tensor self, Tensor src, int dim, SymInt index) -> Tensor: ``x[..., index] = src``."""
    x, src, index = node.args[0], node.args[1], node.args[3]
    axis = wrap_axis(node.args[2], x.rank)
    if not isinstance(index, int):
        raise TranslationError(f"{node.where()}: select_scatter at a symbolic index is not supported yet")
    row = ctx.g.op("unsqueeze", ctx.ref(src), axes=[axis], out=node.outputs[0].name + "_row")
    end = index + 1 if index != -1 else None
    return _scatter_slice(ctx, node, x, row, axis, index, end)


@register("aten::select")
def aten_select(ctx: Context, node: Node) -> Ref:
    """select.int(Tensor self, int dim, SymInt index) -> Tensor (the axis is removed)."""
    x = node.args[0]
    axis = wrap_axis(node.args[1], x.rank)
    index = node.args[2]
    end = index + 1 if isinstance(index, int) and index != -1 else BIG
    y = _slice(ctx, x, axis, index, end, 1, node.outputs[0].name + "_slice")
    return ctx.g.op("squeeze", y, axes=[axis], out=node.outputs[0].name)


@register("aten::split_with_sizes", "aten::split")
def aten_split(ctx: Context, node: Node) -> list[Ref]:
    """split_with_sizes(Tensor self, SymInt[] split_sizes, int dim=0); split.Tensor(self, int size, dim)."""
    x = node.args[0]
    axis = wrap_axis(node_arg(node, 2, "dim", 0), x.rank)
    refs: list[Ref] = []
    start: Any = 0
    for out in node.outputs:
        size = out.shape[axis]
        end: Any = start + size if isinstance(start, int) and isinstance(size, int) else f"{start}+({size})"
        if not isinstance(end, int) and not ctx.tract:
            raise TranslationError(f"{node.where()}: splitting a dynamic axis needs TractNNEF")
        refs.append(
            ctx.g.op(
                "slice",
                ctx.ref(x),
                axes=[axis],
                begin=[dim_ref(start)],
                end=[dim_ref(end)],
                stride=[1],
                out=out.name,
            )
        )
        start = end
    return refs


@register("aten::stack")
def aten_stack(ctx: Context, node: Node) -> Ref:
    """stack(Tensor[] tensors, int dim=0) -> Tensor."""
    out = node.outputs[0]
    axis = wrap_axis(node_arg(node, 1, "dim", 0), out.rank)
    return ctx.g.op("stack", [ctx.ref(t) for t in node.args[0]], axis=axis, out=out.name)


@register("aten::expand", "aten::repeat")
def aten_tile(ctx: Context, node: Node) -> Ref:
    """expand(Tensor self, SymInt[] size); repeat(Tensor self, SymInt[] repeats): both as tile."""
    x, out = node.args[0], node.outputs[0]
    xr = align_rank(ctx, x, out.rank, out)
    if node.kind == "aten::repeat":  # the counts as given: a dynamic axis repeated has no ratio to find
        counts = [c.expr if isinstance(c, SymInt) else c for c in node.args[1]]
        return ctx.g.op("tile", xr, repeats=[dim_ref(c) for c in counts], out=out.name)
    src = (1,) * (out.rank - x.rank) + tuple(x.shape)
    repeats: list[Any] = []
    for have, want in zip(src, out.shape):
        if have == want:
            repeats.append(1)
        elif have == 1:
            repeats.append(want if isinstance(want, int) else Ref(dim_literal(want)))
        elif isinstance(have, int) and isinstance(want, int):
            repeats.append(want // have)
        else:
            raise TranslationError(f"{node.where()}: cannot tile {list(src)} to {list(out.shape)}")
    return ctx.g.op("tile", xr, repeats=repeats, out=out.name)


@register("aten::constant_pad_nd", "aten::pad")
def aten_pad(ctx: Context, node: Node) -> Ref:
    """constant_pad_nd(Tensor self, SymInt[] pad, Scalar value=0); pad(self, pad, str mode, float? value).

    Pad pairs run from the last axis; modes constant, reflect, replicate and circular; negative
    amounts crop.
    """
    if node.kind == "aten::pad":
        mode, value = node_arg(node, 2, "mode", "constant"), node_arg(node, 3, "value")
    else:
        mode, value = "constant", node_arg(node, 2, "value", 0.0)
    return pad_nd(ctx, node, list(node.args[1]), mode, value)


_BORDER_PADS = {
    f"aten::{mode}_pad{n}d": border
    for mode, border in (("reflection", "reflect"), ("replication", "replicate"))
    for n in (1, 2, 3)
}


@register(*_BORDER_PADS)
def aten_border_pad(ctx: Context, node: Node) -> Ref:
    """reflection_pad2d(Tensor self, SymInt[4] padding) -> Tensor; replication_pad1d/2d/3d alike.

    Pad pairs from the last axis, as for ``pad`` in the modes 'reflect' and 'replicate'.
    """
    return pad_nd(ctx, node, list(node.args[1]), _BORDER_PADS[node.kind], None)


def pad_nd(ctx: Context, node: Node, pad: list[Any], mode: str, value: Any) -> Ref:
    """Pads ``node``'s first argument by ``pad`` (pairs from the last axis) in ``mode``; negative amounts crop."""
    x = node.args[0]
    if mode not in ("constant", "reflect", "replicate", "circular"):
        raise TranslationError(f"{node.where()}: padding mode {mode!r} is not supported yet")
    if any(not isinstance(p, int) for p in pad):
        if mode != "constant" or not ctx.tract:
            raise TranslationError(
                f"{node.where()}: padding by a symbolic amount is supported in the constant mode with TractNNEF only"
            )
        return _pad_symbolic(ctx, node, pad, value)
    pairs = [(0, 0)] * x.rank
    for i in range(len(pad) // 2):
        pairs[x.rank - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    g, out = ctx.g, node.outputs[0]
    y: Any = ctx.ref(x)
    shape = list(x.shape)
    for axis, (before, after) in enumerate(pairs):  # negative amounts: crop first
        if before < 0 or after < 0:
            end: Any = BIG if after >= 0 else after
            y = g.op(
                "slice",
                y,
                axes=[axis],
                begin=[max(-before, 0)],
                end=[slice_bound(end, shape[axis])],
                stride=[1],
            )
            if isinstance(shape[axis], int):
                shape[axis] = shape[axis] - max(-before, 0) - max(-after, 0)
            pairs[axis] = (max(before, 0), max(after, 0))
    if mode == "circular":
        for axis, (before, after) in enumerate(pairs):
            if not (before or after):
                continue
            size = shape[axis]
            parts = []
            if before:
                parts.append(
                    g.op("slice", y, axes=[axis], begin=[slice_bound(-before, size)], end=[slice_bound(BIG, size)])
                )
            parts.append(y)
            if after:
                parts.append(g.op("slice", y, axes=[axis], begin=[0], end=[after]))
            y = g.op("concat", parts, axis=axis)
        return g.op("copy", y, out=out.name)
    if all(p == (0, 0) for p in pairs):
        return g.op("copy", y, out=out.name)
    # tract spells the specification's 'replicate' border 'replicated'.
    border = "replicated" if (mode == "replicate" and ctx.tract) else mode
    attrs: dict[str, Any] = {"padding": pairs, "border": border}
    if mode == "constant":
        attrs["value"] = float(value or 0.0)
    return g.op("pad", y, out=out.name, **attrs)


def _pad_symbolic(ctx: Context, node: Node, pad: list[Any], value: Any) -> Ref:
    """Constant padding by amounts computed from a dynamic size (``F.pad(x, (0, (4 - S % 4) % 4))``, to a
    multiple of 4): blocks of the value tiled to each amount, concatenated around the input (the
    amounts are taken as non-negative).
    """
    import numpy as np

    x, out = node.args[0], node.outputs[0]
    g = ctx.g
    fill = g.variable(
        np.full((1,) * x.rank, float(value or 0.0), dtype=NP_DTYPES[x.dtype]),
        f"constant_{x.dtype}_{str(float(value or 0.0)).replace('-', 'minus_').replace('.', 'p')}_r{x.rank}",
    )
    y: Any = ctx.ref(x)
    shape = list(x.shape)
    for i in range(len(pad) // 2):
        axis = x.rank - 1 - i
        blocks: list[list[Ref]] = [[], []]  # before and after the input
        for side, amount in enumerate(pad[2 * i : 2 * i + 2]):
            size = amount.expr if isinstance(amount, SymInt) else amount
            if size != 0:
                repeats = [dim_ref(size if a == axis else d) for a, d in enumerate(shape)]
                blocks[side].append(g.op("tile", fill, repeats=repeats))
        if blocks[0] or blocks[1]:
            y = g.op("concat", [*blocks[0], y, *blocks[1]], axis=axis)
            shape[axis] = out.shape[axis]
    return g.op("copy", y, out=out.name)


def _gather(ctx: Context, node: Node, data: Value, indices: Value, axis: int) -> Ref:
    if not ctx.tract:
        raise TranslationError(f"{node.where()}: {node.kind} needs a gather, which the NNEF specification lacks")
    ctx.g.need("tract_registry tract_core")
    table = ctx.ref(data)
    # tract gathers rows of Q4_0 blocks only when told the dtype to decode them to.
    attrs = {"datum_type": node.outputs[0].dtype} if table in ctx.g.block_quantized else {}
    return ctx.g.op("tract_core_gather", table, ctx.ref(indices), axis=axis, out=node.outputs[0].name, **attrs)


@register("aten::embedding")
def aten_embedding(ctx: Context, node: Node) -> Ref:
    """embedding(Tensor weight, Tensor indices, ...) -> weight[indices]."""
    return _gather(ctx, node, node.args[0], node.args[1], 0)


@register("aten::index_select")
def aten_index_select(ctx: Context, node: Node) -> Ref:
    """index_select(Tensor self, int dim, Tensor index) -> Tensor."""
    x = node.args[0]
    return _gather(ctx, node, x, node.args[2], wrap_axis(node.args[1], x.rank))


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


@register("aten::masked_fill")
def aten_masked_fill(ctx: Context, node: Node) -> Ref:
    """masked_fill.Scalar(Tensor self, Tensor mask, Scalar value) -> where(mask, value, self)."""
    out = node.outputs[0]
    x, mask, value = node.args[:3]
    fill = (
        align_rank(ctx, value, out.rank, out)
        if isinstance(value, Value)
        else scalar_const(ctx, value, out.dtype, out.rank)
    )
    return ctx.g.op(
        "select", align_rank(ctx, mask, out.rank, out), fill, align_rank(ctx, x, out.rank, out), out=out.name
    )


@register("aten::zeros_like", "aten::ones_like", "aten::full_like")
def aten_full_like(ctx: Context, node: Node) -> Ref:
    """zeros_like/ones_like(Tensor self, *, dtype...); full_like(Tensor self, Scalar fill_value, ...)."""
    out = node.outputs[0]
    value = {"aten::zeros_like": 0, "aten::ones_like": 1}.get(node.kind)
    if value is None:
        value = node.args[1]
    import numpy as np

    array = np.full((1,) * out.rank, value, dtype=NP_DTYPES[out.dtype])
    one = ctx.g.variable(array, f"constant_{out.dtype}_{str(value).replace('-', 'minus_')}_r{out.rank}")
    repeats = [d if isinstance(d, int) else Ref(dim_literal(d)) for d in out.shape]
    return ctx.g.op("tile", one, repeats=repeats, out=out.name)
