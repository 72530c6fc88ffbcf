"""Activation functions: the ReLU family, ELU/SELU/CELU, GELU, SiLU, Mish, softplus, hard sigmoid and
swish, GLU, PReLU, softmax and log-softmax.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

from torch_to_nnef.errors import TranslationError
from torch_to_nnef.ir import SymInt, Value
from torch_to_nnef.nnef.builder import Ref, dim_literal
from torch_to_nnef.op.common import (
    BIG,
    align_rank,
    const_ref,
    current_node,
    erf_ref,
    float_operand,
    operand_ref,
    scalar_const,
    tract_only,
    wrap_axis,
)
from torch_to_nnef.op.indexing import slice_ref
from torch_to_nnef.op.registry import Context, register


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


def _softplus(ctx: Context, x: Ref, beta: float, threshold: float, dtype: str | None = None) -> Ref:
    """``log(1 + exp(beta x)) / beta``, ``x`` where ``beta x > threshold``; constants of ``dtype``
    (the output's by default).
    """
    out = ctx.out
    g = ctx.g
    c = partial(scalar_const, ctx, dtype=dtype or out.dtype, rank=out.rank)
    bx = g.op("mul", x, c(beta)) if beta != 1.0 else x
    soft = g.op("log", g.op("add", g.op("exp", bx), c(1.0)))
    if beta != 1.0:
        soft = g.op("div", soft, c(beta))
    return g.op("select", g.op("gt", bx, c(threshold)), x, soft)


@register("aten::softplus")
def aten_softplus(ctx: Context, self: Value, beta: float = 1.0, threshold: float = 20.0) -> Ref:
    """softplus(Tensor self, Scalar beta=1, Scalar threshold=20) -> Tensor: linear above the threshold."""
    return ctx.g.op("copy", _softplus(ctx, ctx.ref(self), float(beta), float(threshold)), out=ctx.out.name)


@register("aten::mish")
def aten_mish(ctx: Context, self: Value) -> Ref:
    """mish(Tensor self) -> Tensor: x * tanh(softplus(x)); of f16 in f32, as PyTorch computes it
    (in f16 steps, values near zero lose every digit).
    """
    g, x = ctx.g, ctx.ref(self)
    if not (ctx.tract and self.dtype == "f16"):
        return g.op("mul", x, g.op("tanh", _softplus(ctx, x, 1.0, 20.0)), out=ctx.out.name)
    g.need("tract_registry tract_core")
    wide = g.op("tract_core_cast", x, to="f32")
    y = g.op("mul", wide, g.op("tanh", _softplus(ctx, wide, 1.0, 20.0, "f32")))
    return g.op("tract_core_cast", y, to="f16", out=ctx.out.name)


def _prelu(ctx: Context, x: Value, slope: Any, out: str) -> Ref:
    """``x`` where positive, else ``x * slope`` (a slope broadcastable to ``x``)."""
    g, xr = ctx.g, ctx.ref(x)
    return g.op("select", g.op("gt", xr, 0.0), xr, g.op("mul", xr, slope), out=out)


@register("aten::prelu")
def aten_prelu(ctx: Context, self: Value, weight: Value) -> Ref:
    """prelu(Tensor self, Tensor weight) -> Tensor: one slope, or one per channel (axis 1)."""
    slope = ctx.ref(weight)
    if self.rank >= 2 and weight.rank == 1:
        slope = ctx.g.op("unsqueeze", slope, axes=[0, *range(2, self.rank)], out=weight.name + "channel_count")
    return _prelu(ctx, self, slope, ctx.out.name)


@register("aten::_prelu_kernel")
def aten_prelu_kernel(ctx: Context, self: Value, weight: Value) -> Ref:
    """_prelu_kernel(Tensor self, Tensor weight) -> Tensor: the weight already broadcastable to the input."""
    out = ctx.out
    return _prelu(ctx, self, align_rank(ctx, weight, out.rank, out), out.name)


@register("aten::glu")
def aten_glu(ctx: Context, self: Value, dim: int = -1) -> Ref:
    """glu(Tensor self, int dim=-1) -> Tensor: first half * sigmoid(second half)."""
    axis = wrap_axis(dim, self.rank)
    size = self.shape[axis]
    half: Any = size // 2 if isinstance(size, int) else SymInt(f"({dim_literal(size)})/2")
    if not isinstance(size, int) and not ctx.tract:
        raise TranslationError(f"{ctx.where()}: glu over a dynamic axis needs TractNNEF")
    out = ctx.out.name
    a = slice_ref(ctx, self, axis, 0, half, 1, out + "_a")
    b = slice_ref(ctx, self, axis, half, BIG, 1, out + "_b")
    return ctx.g.op("mul", a, ctx.g.op("sigmoid", b), out=out)


@register("aten::hardsigmoid", "aten::hardswish")
def aten_hard(ctx: Context, self: Value) -> Ref:
    """hardsigmoid(Tensor self) -> Tensor, hardswish(Tensor self) -> Tensor.

    hardsigmoid(x) = clamp(x / 6 + 0.5, 0, 1); hardswish(x) = x * hardsigmoid(x).
    """
    g, x = ctx.g, ctx.ref(self)
    hs = g.op("min", g.op("max", g.op("add", g.op("div", x, 6.0), 0.5), 0.0), 1.0)
    if current_node(ctx).kind == "aten::hardsigmoid":
        return g.op("copy", hs, out=ctx.out.name)
    return g.op("mul", x, hs, out=ctx.out.name)


@register("aten::gelu")
def aten_gelu(ctx: Context, self: Value, *, approximate: str = "none") -> Ref:
    """gelu(Tensor self, *, str approximate="none") -> Tensor: the tanh form, or the exact form
    ``x/2 (1 + erf(x/sqrt(2)))`` with tract's erf or, for Khronos, an erf to f32 rounding (the
    tools' own ``gelu`` is the sigmoid approximation, not PyTorch's).
    """
    g, x, out = ctx.g, ctx.ref(self), ctx.out.name
    if approximate == "tanh":
        inner = g.op("mul", g.op("add", x, g.op("mul", g.op("pow", x, 3.0), 0.044715)), 0.7978845608028654)
        return g.op("mul", g.op("mul", x, 0.5), g.op("add", g.op("tanh", inner), 1.0), out=out)
    erf = erf_ref(ctx, current_node(ctx), g.op("mul", x, 0.7071067811865476))
    return g.op("mul", g.op("mul", x, 0.5), g.op("add", erf, 1.0), out=out)


def _log_softmax(ctx: Context, x: Value, dim: int) -> Ref:
    """The log-softmax over ``dim``: x - max - log(sum(exp(x - max)))."""
    axes = [wrap_axis(dim, x.rank)]
    g, xr = ctx.g, ctx.ref(x)
    shifted = g.op("sub", xr, g.op("max_reduce", xr, axes=axes))
    lse = g.op("log", g.op("sum_reduce", g.op("exp", shifted), axes=axes))
    return g.op("sub", shifted, lse, out=ctx.out.name)


@register("aten::log_softmax.int")
def aten_log_softmax(ctx: Context, self: Value, dim: int, dtype: Any = None) -> Ref:
    """log_softmax.int(Tensor self, int dim, ScalarType? dtype=None) -> Tensor."""
    return _log_softmax(ctx, self, dim)


@register("aten::_log_softmax")
def aten_log_softmax_kernel(ctx: Context, self: Value, dim: int, half_to_float: bool) -> Ref:
    """_log_softmax(Tensor self, int dim, bool half_to_float) -> Tensor."""
    return _log_softmax(ctx, self, dim)


@register("aten::silu")
def aten_silu(ctx: Context, self: Value) -> Ref:
    """silu(Tensor self) -> Tensor: x * sigmoid(x)."""
    x = ctx.ref(self)
    return ctx.g.op("mul", x, ctx.g.op("sigmoid", x), out=ctx.out.name)


def _softmax(ctx: Context, x: Value, dim: int) -> Ref:
    return ctx.g.op("softmax", ctx.ref(x), axes=[wrap_axis(dim, x.rank)], out=ctx.out.name)


@register("aten::softmax.int")
def aten_softmax(ctx: Context, self: Value, dim: int, dtype: Any = None) -> Ref:
    """softmax.int(Tensor self, int dim, ScalarType? dtype=None) -> Tensor."""
    return _softmax(ctx, self, dim)


@register("aten::_softmax")
def aten_softmax_kernel(ctx: Context, self: Value, dim: int, half_to_float: bool) -> Ref:
    """_softmax(Tensor self, int dim, bool half_to_float) -> Tensor."""
    return _softmax(ctx, self, dim)


@register("aten::log_sigmoid")
def aten_log_sigmoid(ctx: Context, self: Value) -> Ref:
    """log_sigmoid(Tensor self) -> Tensor: min(x, 0) - log(1 + exp(-|x|)), stable for large |x|."""
    node = current_node(ctx)
    g, x = ctx.g, float_operand(ctx, node, self)
    c = partial(const_ref, ctx, node)
    soft = g.op("log", g.op("add", c(1.0), g.op("exp", g.op("neg", g.op("abs", x)))))
    return g.op("sub", g.op("min", x, c(0.0)), soft, out=ctx.out.name)


@register("aten::relu6")
def aten_relu6(ctx: Context, self: Value) -> Ref:
    """relu6(Tensor self) -> Tensor: min(max(x, 0), 6)."""
    node = current_node(ctx)
    g, x = ctx.g, float_operand(ctx, node, self)
    return g.op("min", g.op("max", x, const_ref(ctx, node, 0.0)), const_ref(ctx, node, 6.0), out=ctx.out.name)


@register("aten::threshold")
def aten_threshold(ctx: Context, self: Value, threshold: float, value: float) -> Ref:
    """threshold(Tensor self, Scalar threshold, Scalar value) -> Tensor: x where x > threshold, else value."""
    node, out = current_node(ctx), ctx.out
    g, x = ctx.g, operand_ref(ctx, node, self, out.dtype, out.rank)
    if not out.dtype.startswith("f"):
        tract_only(ctx, node, f"on {out.dtype} compares integers, which the NNEF specification cannot")
    above = g.op("gt", x, scalar_const(ctx, threshold, out.dtype, out.rank))
    return g.op("select", above, x, scalar_const(ctx, value, out.dtype, out.rank), out=out.name)


@register("aten::rrelu")
def aten_rrelu(
    ctx: Context,
    self: Value,
    lower: float = 0.125,
    upper: float = 1.0 / 3.0,
    training: bool = False,
    generator: Any = None,
) -> Ref:
    """rrelu(Tensor self, Scalar lower=0.125, Scalar upper=0.3333333333333333, bool training=False,
    Generator? generator=None) -> Tensor.

    At inference a leaky relu of slope (lower + upper) / 2; the training form draws random slopes.
    """
    if training:
        raise TranslationError(
            f"{ctx.where()}: rrelu in training mode draws random slopes: export the model in eval mode"
        )
    x = float_operand(ctx, current_node(ctx), self)
    return ctx.g.op("leaky_relu", x, alpha=(float(lower) + float(upper)) / 2.0, out=ctx.out.name)


@register("aten::_safe_softmax")
def aten_safe_softmax(ctx: Context, self: Value, dim: int, dtype: Any = None) -> Ref:
    """_safe_softmax(Tensor self, int dim, ScalarType? dtype=None) -> Tensor: softmax, and zeros over a slice
    that is all -inf (torch 2.5 lowers the softmax of scaled_dot_product_attention to it).
    """
    x, out, g = self, ctx.out, ctx.g
    if x.dtype != out.dtype or not x.dtype.startswith("f"):
        raise TranslationError(f"{ctx.where()}: _safe_softmax from {x.dtype} to {out.dtype} is not supported")
    axis = wrap_axis(dim, x.rank)
    xr = ctx.ref(x)
    y = g.op("softmax", xr, axes=[axis])
    # a slice is kept where any of its values is above -inf (tract's max_reduce starts at the lowest finite value)
    above = g.op("select", g.op("gt", xr, scalar_const(ctx, -math.inf, x.dtype, x.rank)), 1.0, 0.0)
    alive = g.op("gt", g.op("max_reduce", above, axes=[axis]), 0.0)
    return g.op("select", alive, y, scalar_const(ctx, 0.0, out.dtype, out.rank), out=out.name)
