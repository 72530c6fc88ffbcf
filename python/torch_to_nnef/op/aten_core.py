"""Translations of the remaining ATen ops that ``torch.export`` graphs hold at inference.

Elementwise math (erf, expm1, log1p, log2, inverse hyperbolics, ...), bit shifts, one-sided
clamps, distances (``cdist``, ``pdist``), ``masked_scatter`` and ``empty_strided``: the core ATen
operators the other modules leave out; and the functions that ``run_decompositions({})`` keeps
whole (``logit``, ``xlogy``, ``logaddexp``, ``cosine_similarity``, ``nansum``, ``addmv``...).
Each is written with the NNEF specification's operators where they suffice, so that KhronosNNEF
gets it too.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np

from torch_to_nnef.errors import TranslationError
from torch_to_nnef.ir import Node, Value
from torch_to_nnef.nnef.builder import Ref
from torch_to_nnef.op.common import (
    NP_DTYPES,
    align_rank,
    cast_to,
    filled_like,
    node_arg,
    operand_ref,
    reduce_axes,
    scalar_const,
    tract_only,
    trunc_ref,
    variance,
    wrap_axis,
)
from torch_to_nnef.op.registry import Context, register

# ----------------------------------------------------------------------------------------------
# Helpers


def _float_in(ctx: Context, node: Node) -> Any:
    """The first argument as an operand of the (floating) output dtype: integer inputs are cast."""
    out = node.outputs[0]
    if not out.dtype.startswith("f"):
        raise TranslationError(f"{node.where()}: {node.kind} on {out.dtype} is not supported yet")
    return operand_ref(ctx, node, node.args[0], out.dtype, out.rank)


def _const(ctx: Context, node: Node, value: float) -> Any:
    """A scalar operand of the output's dtype (a literal in f32)."""
    out = node.outputs[0]
    return scalar_const(ctx, value, out.dtype, out.rank)


def _erf(ctx: Context, node: Node, x: Any) -> Ref:
    """erf: tract's ``tract_core_erf``; for the specification, Abramowitz and Stegun 7.1.26
    (absolute error below 1.5e-7), ``sign(x) * (1 - poly(t) * exp(-x^2))`` with ``t = 1 / (1 + p|x|)``.
    """
    g = ctx.g
    if ctx.tract:
        return g.op("tract_core_erf", x)
    c = partial(_const, ctx, node)
    ax = g.op("abs", x)
    t = g.op("div", c(1.0), g.op("add", c(1.0), g.op("mul", ax, c(0.3275911))))
    poly = c(1.061405429)
    for coefficient in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly = g.op("add", g.op("mul", poly, t), c(coefficient))
    poly = g.op("mul", poly, t)
    tail = g.op("mul", poly, g.op("exp", g.op("neg", g.op("sqr", ax))))
    return g.op("mul", g.op("sign", x), g.op("sub", c(1.0), tail))


# ----------------------------------------------------------------------------------------------
# Elementwise math

INVERSE_HYPERBOLIC = {"aten::asinh": "asinh", "aten::acosh": "acosh", "aten::atanh": "atanh"}


@register(*INVERSE_HYPERBOLIC)
def aten_inverse_hyperbolic(ctx: Context, node: Node) -> Ref:
    """asinh/acosh/atanh(Tensor self) -> Tensor (operators of tract and of the specification)."""
    return ctx.g.op(INVERSE_HYPERBOLIC[node.kind], _float_in(ctx, node), out=node.outputs[0].name)


@register("aten::erf", "aten::erfc")
def aten_erf(ctx: Context, node: Node) -> Ref:
    """erf(Tensor self) -> Tensor; erfc(self) = 1 - erf(self).

    tract's erf; the specification's operators through a rational approximation (error < 1.5e-7).
    """
    y = _erf(ctx, node, _float_in(ctx, node))
    if node.kind == "aten::erfc":
        return ctx.g.op("sub", _const(ctx, node, 1.0), y, out=node.outputs[0].name)
    return ctx.g.op("copy", y, out=node.outputs[0].name)


@register("aten::expm1")
def aten_expm1(ctx: Context, node: Node) -> Ref:
    """expm1(Tensor self) -> Tensor: exp(x) - 1, accurate near 0.

    Kahan's form ``(u - 1) * x / log(u)`` with ``u = exp(x)`` for ``|x| <= 0.5`` (``x`` where ``u``
    rounds to 1), ``u - 1`` elsewhere.
    """
    g, x = ctx.g, _float_in(ctx, node)
    c = partial(_const, ctx, node)
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
    g, x = ctx.g, _float_in(ctx, node)
    c = partial(_const, ctx, node)
    u = g.op("add", x, c(1.0))
    one = g.op("eq", u, c(1.0))
    denominator = g.op("select", one, c(1.0), g.op("sub", u, c(1.0)))
    return g.op("select", one, x, g.op("div", g.op("mul", g.op("log", u), x), denominator), out=node.outputs[0].name)


_LOG_BASE = {"aten::log2": 2.0, "aten::log10": 10.0}


@register(*_LOG_BASE)
def aten_log_base(ctx: Context, node: Node) -> Ref:
    """log2/log10(Tensor self) -> Tensor: log(x) / log(base)."""
    g, x = ctx.g, _float_in(ctx, node)
    scale = _const(ctx, node, 1.0 / math.log(_LOG_BASE[node.kind]))
    return g.op("mul", g.op("log", x), scale, out=node.outputs[0].name)


@register("aten::exp2")
def aten_exp2(ctx: Context, node: Node) -> Ref:
    """exp2(Tensor self) -> Tensor: exp(x * log(2))."""
    g, x = ctx.g, _float_in(ctx, node)
    return g.op("exp", g.op("mul", x, _const(ctx, node, math.log(2.0))), out=node.outputs[0].name)


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
    return ctx.g.op("mul", _float_in(ctx, node), _const(ctx, node, _DEGREES[node.kind]), out=node.outputs[0].name)


@register("aten::sinc")
def aten_sinc(ctx: Context, node: Node) -> Ref:
    """sinc(Tensor self) -> Tensor: sin(pi x) / (pi x), 1 at 0."""
    g, x = ctx.g, _float_in(ctx, node)
    c = partial(_const, ctx, node)
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
    g, x = ctx.g, _float_in(ctx, node)
    c = partial(_const, ctx, node)
    eps = node_arg(node, 1, "eps")
    if eps is not None:
        x = g.op("min", g.op("max", x, c(float(eps))), c(1.0 - float(eps)))
    return g.op("log", g.op("div", x, g.op("sub", c(1.0), x)), out=node.outputs[0].name)


@register("aten::log_sigmoid")
def aten_log_sigmoid(ctx: Context, node: Node) -> Ref:
    """log_sigmoid(Tensor self) -> Tensor: min(x, 0) - log(1 + exp(-|x|)), stable for large |x|."""
    g, x = ctx.g, _float_in(ctx, node)
    c = partial(_const, ctx, node)
    soft = g.op("log", g.op("add", c(1.0), g.op("exp", g.op("neg", g.op("abs", x)))))
    return g.op("sub", g.op("min", x, c(0.0)), soft, out=node.outputs[0].name)


@register("aten::relu6")
def aten_relu6(ctx: Context, node: Node) -> Ref:
    """relu6(Tensor self) -> Tensor: min(max(x, 0), 6)."""
    g, x = ctx.g, _float_in(ctx, node)
    return g.op("min", g.op("max", x, _const(ctx, node, 0.0)), _const(ctx, node, 6.0), out=node.outputs[0].name)


@register("aten::threshold")
def aten_threshold(ctx: Context, node: Node) -> Ref:
    """threshold(Tensor self, Scalar threshold, Scalar value) -> Tensor: x where x > threshold, else value."""
    out = node.outputs[0]
    g, x = ctx.g, operand_ref(ctx, node, node.args[0], out.dtype, out.rank)
    if not out.dtype.startswith("f"):
        tract_only(ctx, node, f"on {out.dtype} compares integers, which the NNEF specification cannot")
    above = g.op("gt", x, scalar_const(ctx, node.args[1], out.dtype, out.rank))
    return g.op("select", above, x, scalar_const(ctx, node.args[2], out.dtype, out.rank), out=out.name)


@register("aten::rrelu")
def aten_rrelu(ctx: Context, node: Node) -> Ref:
    """rrelu(Tensor self, Scalar lower=1/8, Scalar upper=1/3, bool training=False, Generator? generator).

    At inference a leaky relu of slope (lower + upper) / 2; the training form draws random slopes.
    """
    if node_arg(node, 3, "training", False):
        raise TranslationError(
            f"{node.where()}: rrelu in training mode draws random slopes: export the model in eval mode"
        )
    lower, upper = float(node_arg(node, 1, "lower", 1.0 / 8.0)), float(node_arg(node, 2, "upper", 1.0 / 3.0))
    x = _float_in(ctx, node)
    return ctx.g.op("leaky_relu", x, alpha=(lower + upper) / 2.0, out=node.outputs[0].name)


# ----------------------------------------------------------------------------------------------
# Binary math


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
    c = partial(_const, ctx, node)
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
    c = partial(_const, ctx, node)
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


# ----------------------------------------------------------------------------------------------
# Clamps and shifts


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


# ----------------------------------------------------------------------------------------------
# Creation and scatter


@register("aten::empty_strided", "aten::empty_like")
def aten_empty_strided(ctx: Context, node: Node) -> Ref:
    """empty_strided(SymInt[] size, SymInt[] stride, *, ScalarType? dtype, ...); empty_like(Tensor self, ...).

    Uninitialised memory in PyTorch: zeros here (strides do not exist in NNEF).
    """
    return filled_like(ctx, node, 0)


@register("aten::masked_scatter")
def aten_masked_scatter(ctx: Context, node: Node) -> Ref:
    """masked_scatter(Tensor self, Tensor mask, Tensor source) -> Tensor.

    The positions where the (broadcast) mask holds take the source's elements in row-major
    order: element ``k`` of the flat source goes to the ``k``-th true position, found by a
    cumulative sum over the flat mask and gathered (tract).
    """
    out = node.outputs[0]
    x, mask, source = node.args[:3]
    tract_only(ctx, node, "needs a cumulative sum and a gather, which the NNEF specification lacks")
    if any(not isinstance(d, int) for d in (*out.shape, *source.shape)):
        raise TranslationError(f"{node.where()}: masked_scatter with a dynamic shape is not supported yet")
    g = ctx.g
    shape = [int(d) for d in out.shape]
    total = math.prod(shape)
    m = align_rank(ctx, mask, out.rank, out)
    have = (1,) * (out.rank - mask.rank) + tuple(mask.shape)
    repeats = [w if h == 1 and w != 1 else 1 for h, w in zip(have, shape)]
    if any(r != 1 for r in repeats):
        m = g.op("tile", m, repeats=repeats)
    flat_mask = g.op("reshape", m, shape=[total])
    counts = g.op(
        "tract_core_cumsum", g.op("tract_core_cast", flat_mask, to="i64"), axis=0, exclusive=True, reverse=False
    )
    source_size = math.prod(int(d) for d in source.shape)
    # Positions past the source (where the mask is false) are clamped: select drops them.
    index = g.op("min", counts, scalar_const(ctx, max(source_size - 1, 0), "i64", 1))
    flat_source = g.op("reshape", ctx.ref(source), shape=[source_size])
    picked = g.op("reshape", g.op("tract_core_gather", flat_source, index, axis=0), shape=shape)
    base = cast_to(ctx, node, align_rank(ctx, x, out.rank, out), x.dtype, out.dtype)
    return g.op("select", m, picked, base, out=out.name)


# ----------------------------------------------------------------------------------------------
# Distances


def _p_norm(ctx: Context, node: Node, diff: Any, p: float, axis: int) -> Ref:
    """The p-norm of ``diff`` over ``axis`` (reduced away): 0 counts non-zeros, inf takes the max."""
    return _norm_over(ctx, node, diff, p, [axis], False)


def _pairwise(ctx: Context, node: Node, a: Value, b: Value, p: float) -> Ref:
    """``[..., P, R]`` distances between the rows of ``a`` ``[..., P, M]`` and ``b`` ``[..., R, M]``."""
    if p < 0:
        raise TranslationError(f"{node.where()}: {node.kind} with p = {p}: p must be non-negative")
    out = node.outputs[0]
    g = ctx.g
    rank = max(a.rank, b.rank)
    ar = g.op("unsqueeze", align_rank(ctx, a, rank, out), axes=[rank - 1])
    br = g.op("unsqueeze", align_rank(ctx, b, rank, out), axes=[rank - 2])
    return _p_norm(ctx, node, g.op("sub", ar, br), p, rank)


@register("aten::cdist", "aten::_cdist_forward")
def aten_cdist(ctx: Context, node: Node) -> Ref:
    """cdist(Tensor x1, Tensor x2, float p=2, int? compute_mode=None); _cdist_forward(x1, x2, p, compute_mode).

    Computed from the differences of every pair of rows (exact; PyTorch's matrix-product mode
    for large inputs rounds differently near zero).
    """
    a, b = node.args[:2]
    p = float(node_arg(node, 2, "p", 2.0))
    return ctx.g.op("copy", _pairwise(ctx, node, a, b, p), out=node.outputs[0].name)


@register("aten::pdist", "aten::_pdist_forward")
def aten_pdist(ctx: Context, node: Node) -> Ref:
    """pdist(Tensor self, float p=2); _pdist_forward(self, p): the distances of rows i < j of an ``[N, M]``
    tensor, row by row (the upper triangle of cdist(x, x), flattened).
    """
    x = node.args[0]
    p = float(node_arg(node, 1, "p", 2.0))
    n = x.shape[0]
    if not isinstance(n, int):
        raise TranslationError(f"{node.where()}: pdist over a dynamic number of rows is not supported yet")
    g, out = ctx.g, node.outputs[0]
    if n < 2:
        return filled_like(ctx, node, 0)
    full = _pairwise(ctx, node, x, x, p)
    rows = [g.op("slice", full, axes=[0, 1], begin=[i, i + 1], end=[i + 1, n], stride=[1, 1]) for i in range(n - 1)]
    flat = [g.op("reshape", row, shape=[n - 1 - i]) for i, row in enumerate(rows)]
    return g.op("concat", flat, axis=0, out=out.name) if len(flat) > 1 else g.op("copy", flat[0], out=out.name)


# ----------------------------------------------------------------------------------------------
# Reductions returning several tensors


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


# ----------------------------------------------------------------------------------------------
# Similarities and norms of differences


def _norm_over(ctx: Context, node: Node, diff: Any, p: float, axes: list[int], keep: bool) -> Ref:
    """The p-norm of ``diff`` over ``axes`` (kept when ``keep``)."""
    g = ctx.g
    c = partial(_const, ctx, node)
    magnitude = g.op("abs", diff)
    if p == 0:
        y = g.op("sum_reduce", g.op("select", g.op("ne", diff, c(0.0)), c(1.0), c(0.0)), axes=axes)
    elif math.isinf(p):
        y = g.op("max_reduce" if p > 0 else "min_reduce", magnitude, axes=axes)
    elif p == 1:
        y = g.op("sum_reduce", magnitude, axes=axes)
    elif p == 2:
        y = g.op("sqrt", g.op("sum_reduce", g.op("sqr", diff), axes=axes))
    else:
        y = g.op("pow", g.op("sum_reduce", g.op("pow", magnitude, c(p)), axes=axes), c(1.0 / p))
    return y if keep or not axes else g.op("squeeze", y, axes=axes)


@register("aten::dist")
def aten_dist(ctx: Context, node: Node) -> Ref:
    """dist(Tensor self, Tensor other, Scalar p=2) -> Tensor: the p-norm of ``self - other`` over every element."""
    g, out = ctx.g, node.outputs[0]
    a, b = node.args[:2]
    rank = max(a.rank, b.rank)
    p = float(node_arg(node, 2, "p", 2.0))
    diff = g.op("sub", operand_ref(ctx, node, a, out.dtype, rank), operand_ref(ctx, node, b, out.dtype, rank))
    return g.op("copy", _norm_over(ctx, node, diff, p, list(range(rank)), False), out=out.name)


# ----------------------------------------------------------------------------------------------
# Reductions that skip values


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


# ----------------------------------------------------------------------------------------------
# Products with an added term


def _scaled_sum(ctx: Context, node: Node, base: Value, product: Ref, beta: Any, alpha: Any) -> Ref:
    """``beta * base + alpha * product`` (beta 0 ignores base, NaN included, as PyTorch)."""
    g, out = ctx.g, node.outputs[0]
    c = partial(_const, ctx, node)
    if alpha != 1:
        product = g.op("mul", product, c(float(alpha)))
    if beta == 0:
        return g.op("copy", product, out=out.name)
    b = operand_ref(ctx, node, base, out.dtype, out.rank)
    if beta != 1:
        b = g.op("mul", b, c(float(beta)))
    return g.op("add", b, product, out=out.name)


@register("aten::addmv")
def aten_addmv(ctx: Context, node: Node) -> Ref:
    """addmv(Tensor self, Tensor mat, Tensor vec, *, Scalar beta=1, Scalar alpha=1) -> Tensor."""
    base, mat, vec = node.args[:3]
    g = ctx.g
    column = g.op("unsqueeze", ctx.ref(vec), axes=[1])
    product = g.op("squeeze", g.op("matmul", ctx.ref(mat), column, transposeA=False, transposeB=False), axes=[1])
    return _scaled_sum(ctx, node, base, product, node_arg(node, 3, "beta", 1), node_arg(node, 4, "alpha", 1))


@register("aten::addr")
def aten_addr(ctx: Context, node: Node) -> Ref:
    """addr(Tensor self, Tensor vec1, Tensor vec2, *, Scalar beta=1, Scalar alpha=1) -> Tensor (an outer product)."""
    base, u, v = node.args[:3]
    g = ctx.g
    product = g.op("mul", g.op("unsqueeze", ctx.ref(u), axes=[1]), g.op("unsqueeze", ctx.ref(v), axes=[0]))
    return _scaled_sum(ctx, node, base, product, node_arg(node, 3, "beta", 1), node_arg(node, 4, "alpha", 1))


@register("aten::trace")
def aten_trace(ctx: Context, node: Node) -> Ref:
    """trace(Tensor self) -> Tensor: the sum of the main diagonal of a matrix (static sizes)."""
    x, out = node.args[0], node.outputs[0]
    n, m = x.shape
    if not (isinstance(n, int) and isinstance(m, int)):
        raise TranslationError(f"{node.where()}: the trace of a dynamic matrix is not supported yet")
    if not out.dtype.startswith("f"):
        tract_only(ctx, node, f"on {out.dtype} needs integer arithmetic, which the NNEF specification lacks")
    g = ctx.g
    eye = ctx.g.variable(np.eye(n, m, dtype=NP_DTYPES[x.dtype]), f"eye_{x.dtype}_{n}x{m}")
    total = g.op("sum_reduce", g.op("mul", ctx.ref(x), eye), axes=[0, 1])
    return g.op("squeeze", cast_to(ctx, node, total, x.dtype, out.dtype), axes=[0, 1], out=out.name)


# ----------------------------------------------------------------------------------------------
# Tests of values


# ----------------------------------------------------------------------------------------------
# Strided views and bags of embeddings


@register("aten::as_strided")
def aten_as_strided(ctx: Context, node: Node) -> Ref:
    """as_strided(Tensor self, SymInt[] size, SymInt[] stride, SymInt? storage_offset=None) -> Tensor.

    The input is read as the contiguous tensor a functionalised graph holds: element ``i`` of the
    result is element ``offset + sum(i_k * stride_k)`` of its flattened values, gathered (tract).
    """
    x, out = node.args[0], node.outputs[0]
    size, stride = list(node.args[1]), list(node.args[2])
    offset = node_arg(node, 3, "storage_offset", 0) or 0
    tract_only(ctx, node, "needs a gather, which the NNEF specification lacks")
    static = [*x.shape, *size, *stride, offset]
    if not all(isinstance(d, int) for d in static):
        raise TranslationError(f"{node.where()}: as_strided over a dynamic shape is not supported")
    total = math.prod(int(d) for d in x.shape)
    index = np.full(size, offset, dtype=np.int64)
    for axis, (n, step) in enumerate(zip(size, stride)):
        index += (np.arange(n, dtype=np.int64) * step).reshape([n if a == axis else 1 for a in range(len(size))])
    if index.size and (index.min() < 0 or index.max() >= total):
        raise TranslationError(f"{node.where()}: as_strided reads outside its input ({total} elements)")
    g = ctx.g
    flat = g.op("reshape", ctx.ref(x), shape=[total])
    label = f"as_strided_{'x'.join(map(str, size))}_{'_'.join(map(str, stride))}_{offset}_of_{total}"
    return g.op("tract_core_gather", flat, g.variable(index, label), axis=0, out=out.name)


_BAG_MODES = {0: "sum", 1: "mean", 2: "max"}


@register("aten::embedding_bag", "aten::_embedding_bag")
def aten_embedding_bag(ctx: Context, node: Node) -> Ref:
    """embedding_bag(Tensor weight, Tensor indices, Tensor offsets, bool scale_grad_by_freq, int mode,
    bool sparse, Tensor? per_sample_weights, bool include_last_offset, int? padding_idx): output 0.

    Rows are gathered, then each bag (positions from its offset to the next, read at run time) is
    reduced by a membership mask: a product for sum and mean, a masked maximum for max; empty bags
    give zeros, and rows at ``padding_idx`` are left out, as in PyTorch.
    """
    weight, indices, offsets = node.args[:3]
    out = node.outputs[0]
    mode = _BAG_MODES[int(node_arg(node, 4, "mode", 0))]
    per_sample = node_arg(node, 6, "per_sample_weights", None)
    include_last = bool(node_arg(node, 7, "include_last_offset", False))
    padding_idx = node_arg(node, 8, "padding_idx", None)
    tract_only(ctx, node, "needs a gather, which the NNEF specification lacks")
    if not all(isinstance(d, int) for d in (*indices.shape, *offsets.shape, *out.shape)):
        raise TranslationError(f"{node.where()}: embedding_bag over a dynamic number of indices is not supported")
    g = ctx.g
    n = math.prod(int(d) for d in indices.shape)
    bags = int(out.shape[0])
    flat = g.op("reshape", ctx.ref(indices), shape=[n]) if indices.rank != 1 else ctx.ref(indices)
    rows = g.op("tract_core_gather", ctx.ref(weight), flat, axis=0)  # [n, d]
    if indices.rank == 2:  # fixed-size bags: offsets are 0, L, 2L...
        length = int(indices.shape[1])
        starts: Any = g.variable(np.arange(0, n, length, dtype=np.int64).reshape(bags, 1), f"bag_starts_{n}_{length}")
        ends: Any = g.variable(
            np.arange(length, n + 1, length, dtype=np.int64).reshape(bags, 1), f"bag_ends_{n}_{length}"
        )
    else:
        offs = g.op("unsqueeze", cast_to(ctx, node, ctx.ref(offsets), offsets.dtype, "i64"), axes=[1])  # [k, 1]
        starts = g.op("slice", offs, axes=[0], begin=[0], end=[bags], stride=[1])
        if include_last:
            ends = g.op("slice", offs, axes=[0], begin=[1], end=[bags + 1], stride=[1])
        else:
            last = g.variable(np.full((1, 1), n, dtype=np.int64), f"bag_total_{n}")
            ends = g.op("concat", [g.op("slice", offs, axes=[0], begin=[1], end=[bags], stride=[1]), last], axis=0)
    positions = g.variable(np.arange(n, dtype=np.int64).reshape(1, n), f"bag_positions_{n}")
    member = g.op("and", g.op("ge", positions, starts), g.op("lt", positions, ends))  # [bags, n]
    if padding_idx is not None and padding_idx >= 0:
        keep = g.op("ne", cast_to(ctx, node, flat, indices.dtype, "i64"), scalar_const(ctx, int(padding_idx), "i64", 1))
        member = g.op("and", member, g.op("unsqueeze", keep, axes=[0]))
    one, zero = scalar_const(ctx, 1.0, out.dtype, 2), scalar_const(ctx, 0.0, out.dtype, 2)
    mask = g.op("select", member, one, zero)  # [bags, n] in the output's dtype
    count = g.op("sum_reduce", mask, axes=[1])  # [bags, 1]
    if mode == "max":
        lowest = scalar_const(ctx, float(np.finfo(NP_DTYPES[out.dtype]).min), out.dtype, 3)
        masked = g.op("select", g.op("unsqueeze", member, axes=[2]), g.op("unsqueeze", rows, axes=[0]), lowest)
        top = g.op("squeeze", g.op("max_reduce", masked, axes=[1]), axes=[1])
        return g.op("select", g.op("gt", count, zero), top, zero, out=out.name)
    if per_sample is not None:
        mask = g.op("mul", mask, g.op("reshape", ctx.ref(per_sample), shape=[1, n]))
    total = g.op("matmul", mask, rows, transposeA=False, transposeB=False)
    if mode == "sum":
        return g.op("copy", total, out=out.name)
    return g.op("div", total, g.op("max", count, one), out=out.name)
