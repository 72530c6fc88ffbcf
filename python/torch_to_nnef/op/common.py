"""What the translation modules share: axes and ranks, scalars and casts, operands of a dtype,
symbolic sizes, and the building blocks of several translations (convolutions, normalisations,
reductions, pooling).

Translation modules import from here; nothing here registers a translation.
"""

from __future__ import annotations

import math
import re
from functools import partial
from typing import Any, cast

import numpy as np

from torch_to_nnef.errors import TranslationError
from torch_to_nnef.ir import Dim, Node, SymInt, Value
from torch_to_nnef.ir.dtypes import NUMPY
from torch_to_nnef.nnef.builder import Ref, dim_literal
from torch_to_nnef.op.registry import Context


def current_node(ctx: Context) -> Node:
    """The node ``ctx`` translates (for the helpers that take it: its outputs, its place in messages)."""
    if ctx.node is None:
        raise TranslationError("no node is being translated")
    return ctx.node


def wrap_axis(axis: int, rank: int) -> int:
    """An axis in ``[0, rank)`` (a negative axis counts from the end; 0 for a scalar)."""
    return axis % rank if rank else 0


def align_rank(ctx: Context, x: Any, rank: int, out: Value) -> Any:
    """Unsqueezes a tensor of lower rank on the left (numpy broadcasting)."""
    if isinstance(x, Value) and x.rank < rank:
        return ctx.g.op("unsqueeze", ctx.ref(x), axes=list(range(rank - x.rank)), out=x.name + "_aligned")
    return ctx.ref(x)


def standardize(ctx: Context, x: Any, axes: list[int], eps: float) -> Ref:
    """``(x - mean) / sqrt(var + eps)`` with the mean and the biased variance over ``axes``."""
    g = ctx.g
    centered = g.op("sub", x, g.op("mean_reduce", x, axes=axes))
    var = g.op("mean_reduce", g.op("sqr", centered), axes=axes)
    return g.op("mul", centered, g.op("rsqrt", g.op("add", var, eps)))


def padding_pairs(values: list[int]) -> list[tuple[int, int]]:
    """Symmetric padding: each value as a ``(before, after)`` pair."""
    return [(v, v) for v in values]


def convolve(
    ctx: Context,
    x: Value,
    w: Value,
    b: Value | None,
    stride: list[int],
    padding: Any,
    dilation: list[int],
    groups: int,
    out: str,
) -> Ref:
    """NNEF ``conv`` of ``x`` by the filter ``w`` (and ``b``) into ``out``; ``padding`` a list, 'valid' or 'same'
    (a list of one entry, like ``stride`` and ``dilation``, stands for every spatial axis).
    """
    spatial = x.rank - 2
    stride, dilation = stride * (spatial // len(stride)), dilation * (spatial // len(dilation))
    if padding == "valid":
        pads: list[tuple[int, int]] = [(0, 0)] * spatial
    elif padding == "same":
        pads = []
        for k, d in zip(w.shape[2:], dilation):
            total = d * (int(k) - 1)
            pads.append((total // 2, total - total // 2))
    else:
        padding = list(padding)
        pads = padding_pairs(padding * (spatial // len(padding)))
    bias: Any = 0.0
    if b is not None:
        bias = ctx.g.op("unsqueeze", ctx.ref(b), axes=[0], out=b.name + "_2d")
    return ctx.g.op(
        "conv",
        ctx.ref(x),
        ctx.ref(w),
        bias,
        border="constant",
        padding=pads,
        stride=stride,
        dilation=dilation,
        groups=groups,
        out=out,
    )


def batch_norm(
    ctx: Context,
    node: Node,
    x: Value,
    w: Value | None,
    b: Value | None,
    mean: Value | None,
    var: Value | None,
    eps: float,
) -> Ref:
    """NNEF ``batch_normalization`` with the running statistics ``mean`` and ``var``."""

    def chan(v: Value | None, fill: float) -> Any:
        if v is None:
            return fill
        return ctx.g.op("unsqueeze", ctx.ref(v), axes=[0], out=v.name + "_2d")

    return ctx.g.op(
        "batch_normalization",
        ctx.ref(x),
        chan(mean, 0.0),
        chan(var, 1.0),
        chan(b, 0.0),
        chan(w, 1.0),
        epsilon=eps,
        out=node.outputs[0].name,
    )


BIG = 1 << 62


def slice_bound(value: Any, dim: Any) -> Any:
    """A slice bound as NNEF can take it: negative ones counted from the end, clamped to the dim."""
    if isinstance(value, SymInt):
        if _negative(value.expr):  # ``x[-S:]``: counted from the end, as tract takes no negative bound
            if _is_negated(value.expr):
                return Ref(f"{dim_literal(dim)}-({dim_literal(value.expr.strip()[1:])})")
            return Ref(f"{dim_literal(dim)}+({dim_literal(value.expr)})")
        return Ref(dim_literal(value.expr))
    if isinstance(dim, int):
        if value < 0:
            value += dim
        return max(0, min(value, dim))
    if value >= BIG:
        return Ref(dim_literal(dim))
    if value < 0:
        return Ref(f"{dim_literal(dim)}-{-value}")
    return value


def parse_size(text: str) -> Any:
    """The size expression ``text`` (symbols, ``Min``, ``Max``) as a sympy expression whose symbols are
    sizes (integers, at least 1); None when sympy cannot read it.
    """
    import sympy  # type: ignore[import-untyped]

    names = set(re.findall(r"[A-Za-z_]\w*", text)) - {"Min", "Max"}
    try:
        return sympy.sympify(text, locals={n: sympy.Symbol(n, positive=True, integer=True) for n in names})
    except (sympy.SympifyError, TypeError, SyntaxError):
        return None


def _negative(expr: str) -> bool:
    """Whether the size expression ``expr`` is negative for every value of its symbols (sizes, at least 1)."""
    tree = parse_size(expr)
    return tree is not None and bool(tree.is_negative)


def _is_negated(expr: str) -> bool:
    """Whether ``expr`` is a minus before a single symbol or parenthesised term (``-S``, ``-(P+S)``)."""
    return re.fullmatch(r"-([A-Za-z_]\w*|\([^()]*\))", expr.strip()) is not None


def reduce_axes(x: Value, dims: Any) -> list[int]:
    """The axes a reduction over ``dims`` covers (every axis when ``dims`` is None or empty)."""
    if dims is None or dims == []:
        return list(range(x.rank))
    dims = [dims] if isinstance(dims, int) else dims
    return sorted(wrap_axis(d, x.rank) for d in dims)


def mean_and_spread(
    ctx: Context, node: Node, x: Value, dim: Any, correction: Any, std: bool
) -> tuple[Ref, Ref, list[int]]:
    """The mean of ``x`` over ``dim`` (every axis when None or empty) and its variance with ``correction``
    subtracted from the count of values (None: 1), or the standard deviation if ``std``; both reduced with
    kept axes; and the axes. ``node`` is the op translated.
    """
    correction = 1 if correction is None else correction
    axes = reduce_axes(x, dim)
    dims = [x.shape[a] for a in axes]
    g, xr = ctx.g, ctx.ref(x)
    mean = g.op("mean_reduce", xr, axes=axes)
    squares = g.op("sqr", g.op("sub", xr, mean))
    if all(isinstance(d, int) for d in dims):
        count = math.prod(int(d) for d in dims)
        spread = g.op("div", g.op("sum_reduce", squares, axes=axes), float(max(count - correction, 0)))
    elif correction == 0:
        spread = g.op("mean_reduce", squares, axes=axes)
    else:  # over a dynamic axis: the count of values, less the correction, from the symbols
        count_expr = "*".join(f"({dim_literal(d)})" for d in dims)
        divisor = operand_ref(ctx, node, SymInt(f"{count_expr}-{correction}"), x.dtype, x.rank)
        spread = g.op("div", g.op("sum_reduce", squares, axes=axes), divisor)
    if std:
        spread = g.op("sqrt", spread)
    return mean, spread, axes


def scalar_const(ctx: Context, value: Any, dtype: str, rank: int) -> Any:
    """A scalar operand of ``dtype``: a literal for f32/f64 and booleans, else a one-element variable
    (tract reads float literals as f32, so an f16 operand needs an f16 constant, and integer literals
    as dimensions, which do not mix with integer tensors).
    """
    import math

    import numpy as np

    if dtype in ("f32", "f64") and isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    if dtype == "bool" and isinstance(value, (bool, int)):
        return bool(value)
    array = np.full((1,) * rank, value, dtype=NUMPY[dtype])
    label = str(value).replace("-", "minus_").replace(".", "p")
    return ctx.g.variable(array, f"constant_{dtype}_{label}_r{rank}")


def dim_ref(d: Any) -> Any:
    """A dimension as an NNEF argument: an int, or a ref to tract's expression of the symbols."""
    return d if isinstance(d, int) else Ref(dim_literal(d))


def tract_only(ctx: Context, node: Node, why: str) -> None:
    """Raises unless the target is tract (``why`` says what plain NNEF lacks)."""
    if not ctx.tract:
        raise TranslationError(f"{node.where()}: {node.kind} {why}: TractNNEF writes it")
    ctx.g.need("tract_registry tract_core")


KHRONOS_TYPES = {"bool": "logical", "f32": "scalar", **{d: "integer" for d in ("u8", "i8", "i16", "i32", "i64")}}
"""The Khronos type of each dtype the tools' ``cast`` converts between."""


def tools_only(ctx: Context, node: Node, what: str) -> None:
    """Raises for ``KhronosNNEF(strict_spec=True)``, whose text lacks what the Khronos tools add (a
    gather, a cast: ``what`` names the need).
    """
    if not ctx.tract and not ctx.khronos_tools:
        raise TranslationError(
            f"{node.where()}: {node.kind} {what}, which the NNEF 1.0.5 text lacks: KhronosNNEF() writes it "
            "for the Khronos tools, and TractNNEF"
        )


def cast_to(ctx: Context, node: Node, ref: Any, src: str, dst: str, out: str | None = None) -> Any:
    """``ref`` converted from ``src`` to ``dst``: tract's cast; for Khronos, the tools' ``cast``
    (floats truncated toward zero, any non-zero true, as in PyTorch) between f32, booleans and
    integers widened, and with the specification alone booleans to floats only.
    """
    g = ctx.g
    if src == dst:
        return g.op("copy", ref, out=out) if out else ref
    if ctx.tract:
        g.need("tract_registry tract_core")
        return g.op("tract_core_cast", ref, to=dst, out=out)
    if src == "bool" and dst.startswith("f"):
        return g.op("select", ref, 1.0, 0.0, out=out)
    if ctx.khronos_tools and src in KHRONOS_TYPES and dst in KHRONOS_TYPES:
        kinds = KHRONOS_TYPES[src], KHRONOS_TYPES[dst]
        widened = np.can_cast(NUMPY[src], NUMPY[dst], casting="safe")
        if kinds[0] == kinds[1] and widened:  # every value of src is one of dst
            return g.op("copy", ref, out=out) if out else ref
        if kinds[1] == "logical":  # non-zero is true (the interpreter casts to no logical type)
            number = ref if kinds[0] == "scalar" else g.op("cast<scalar>", ref)
            return g.op("ne", number, 0.0, out=out)
        if kinds[0] != kinds[1]:
            return g.op(f"cast<{kinds[1]}>", ref, out=out)
    hint = (
        "TractNNEF writes it"
        if ctx.khronos_tools or src not in KHRONOS_TYPES or dst not in KHRONOS_TYPES
        else "KhronosNNEF() (without strict_spec) or TractNNEF writes it"
    )
    raise TranslationError(f"{node.where()}: {node.kind} needs a cast from {src} to {dst}: {hint}")


def symint_ref(ctx: Context, node: Node, value: SymInt, dtype: str, rank: int) -> Ref:
    """A symbolic integer (``x.size(1)`` under a dynamic axis) as a tensor of ``dtype``; or a number
    computed from one in floats (``x.size(1) ** -0.5``: ``FloatPow(ToFloat(S), -0.5)``), computed in f32.
    """
    tract_only(ctx, node, "uses a dynamic size as a value, which plain NNEF cannot express")
    if any(f in value.expr for f in FLOAT_FUNCTIONS):
        result = symbolic_float(ctx, node, value.expr)
        if not isinstance(result, Ref):
            return cast(Ref, scalar_const(ctx, result, dtype, rank))
        ref = result if dtype == "f32" else ctx.g.op("tract_core_cast", result, to=dtype)
    else:
        ref = ctx.g.op("tract_core_cast", Ref(dim_literal(value.expr)), to=dtype)
    return ctx.g.op("unsqueeze", ref, axes=list(range(rank))) if rank else ref


FLOAT_FUNCTIONS = ("ToFloat", "FloatPow", "FloatTrueDiv", "IntTrueDiv")
"""torch's functions of symbolic floats (a size turned to a float, powers, true divisions)."""


def symbolic_float(ctx: Context, node: Node, text: str) -> Ref | float:
    """The ops computing torch's float expression ``text`` of the symbols in f32 (a number when constant)."""
    import sympy  # type: ignore[import-untyped]

    known = {*FLOAT_FUNCTIONS, "FloorDiv"}
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
        if kind == "ToFloat" or not any(f in str(e) for f in FLOAT_FUNCTIONS):
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


def operand_ref(ctx: Context, node: Node, v: Any, dtype: str, rank: int) -> Any:
    """An elementwise operand of ``dtype``, aligned to ``rank`` (tensors are cast when needed)."""
    if isinstance(v, Value):
        aligned = ctx.ref(v) if v.rank >= rank else align_rank(ctx, v, rank, v)
        return cast_to(ctx, node, aligned, v.dtype, dtype)
    if isinstance(v, SymInt):
        return symint_ref(ctx, node, v, dtype, rank)
    return scalar_const(ctx, v, dtype, rank)


def expressible(d: Dim) -> bool:
    """Whether tract can read a dimension: an int, or arithmetic (with ``Max`` and ``Min``) over the
    user's single-letter symbols and those of the axes taken in steps (``H_8``), not over torch's own
    (``u0``: a size from data).
    """
    if isinstance(d, int):
        return True
    names = [n for n in re.findall(r"[A-Za-z_]\w*", d) if n not in ("Max", "Min")]
    return re.fullmatch(r"[\w+\-*/(), ]+", d) is not None and all(re.fullmatch(r"[A-Za-z](_\d+)?", n) for n in names)


def dim_of(node: Node, d: Dim) -> Any:
    """A dimension as an NNEF integer: an int, or tract's expression of the symbols."""
    if isinstance(d, int):
        return d
    if not expressible(d):
        raise TranslationError(f"{node.where()}: {node.kind}: the size {d} has no tract expression")
    return Ref(dim_literal(d))


def shape_attr(ctx: Context, node: Node, shape: tuple[Dim, ...] | list[Dim]) -> list[Any]:
    """A full shape for ``reshape``: one symbolic dimension becomes -1, more need tract's expressions."""
    symbolic = [i for i, d in enumerate(shape) if not isinstance(d, int)]
    if len(symbolic) == 1:
        return [-1 if i == symbolic[0] else d for i, d in enumerate(shape)]
    if symbolic and not ctx.tract:
        raise TranslationError(f"{node.where()}: {node.kind} needs a symbolic reshape: use TractNNEF")
    return [dim_of(node, d) for d in shape]


def trunc_ref(ctx: Context, q: Any) -> Ref:
    """Rounding towards zero with specification ops only."""
    return ctx.g.op("select", ctx.g.op("lt", q, 0.0), ctx.g.op("ceil", q), ctx.g.op("floor", q))


def int_arith(ctx: Context, node: Node, dtype: str) -> None:
    """Refuses integer arithmetic for KhronosNNEF (the specification's arithmetic takes floats)."""
    if not dtype.startswith("f") and not ctx.tract:
        raise TranslationError(
            f"{node.where()}: {node.kind} on {dtype} needs integer arithmetic, which the NNEF specification "
            "lacks (its arithmetic is on scalars only): use TractNNEF"
        )


def vector_norm(ctx: Context, node: Node, xr: Any, ord_: Any, axes: list[int]) -> Ref:
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


def finish_reduction(ctx: Context, y: Ref, axes: list[int], keep: bool, out: str) -> Ref:
    """The result of a reduction computed with kept axes: squeezed unless ``keep``."""
    if keep or not axes:
        return ctx.g.op("copy", y, out=out)
    return ctx.g.op("squeeze", y, axes=axes, out=out)


def filled_like(ctx: Context, node: Node, value: Any) -> Ref:
    """A tensor of the output's shape and dtype filled with ``value`` (a scalar, SymInt or 0-d Value)."""
    out = node.outputs[0]
    g = ctx.g
    if isinstance(value, Value):
        one = operand_ref(ctx, node, value, out.dtype, out.rank)
    elif isinstance(value, SymInt):
        one = symint_ref(ctx, node, value, out.dtype, out.rank)
    else:
        array = np.full((1,) * out.rank, value, dtype=NUMPY[out.dtype])
        one = g.variable(array, f"constant_{out.dtype}_{str(value).replace('-', 'minus_')}_r{out.rank}")
    if not out.rank:
        return g.op("copy", one, out=out.name)
    if any(not isinstance(d, int) for d in out.shape):
        tract_only(ctx, node, "has a dynamic shape, which plain NNEF cannot express")
    return g.op("tile", one, repeats=[dim_of(node, d) for d in out.shape], out=out.name)


def broadcast_shape(shapes: list[tuple[Dim, ...]]) -> list[Dim]:
    """The shape of several shapes broadcast together (numpy's rules)."""
    rank = max(len(s) for s in shapes)
    result: list[Dim] = []
    for i in range(rank):
        dims = [s[i - rank + len(s)] for s in shapes if i - rank + len(s) >= 0]
        non_one = [d for d in dims if d != 1]
        result.append(non_one[0] if non_one else 1)
    return result


def static_sizes(node: Node, x: Value, axes: list[int], what: str) -> list[int]:
    """The static sizes of ``x`` on ``axes``; a clear error when one is symbolic."""
    dims = [x.shape[a] for a in axes]
    if not all(isinstance(d, int) for d in dims):
        raise TranslationError(
            f"{node.where()}: {what} over a dynamic axis (shape {list(x.shape)}) is not supported yet"
        )
    return [int(d) for d in dims]


def channel_count(ctx: Context, v: Value, rank: int) -> Ref:
    """A per-channel vector ``[C]`` as ``[1, C, 1, ...]`` against an input of rank ``rank``."""
    return ctx.g.op("unsqueeze", ctx.ref(v), axes=[0, *range(2, rank)], out=v.name + "channel_count")


def convolve_transposed(
    ctx: Context,
    node: Node,
    x: Value,
    w: Value,
    b: Value | None,
    stride: list[int],
    padding: list[int],
    output_padding: list[int],
    groups: int,
    dilation: list[int],
    out: str,
) -> Ref:
    """A transposed convolution of ``x`` by the filter ``w`` (and ``b``) into ``out``: tract's ``deconv``, or for
    Khronos the equivalent ``conv`` (``node``, the op translated, for messages).
    """
    g = ctx.g
    if not ctx.tract:
        return convolve_transposed_as_conv(ctx, node, x, w, b, stride, padding, output_padding, groups, dilation, out)
    crops = [(p, p - op) if op <= p else (p, 0) for p, op in zip(padding, output_padding)]
    overhang = [max(op - p, 0) for p, op in zip(padding, output_padding)]
    # tract reads a deconv filter as [C_out, C_in / groups, ...] (the specification and torch: [C_in, C_out / groups]).
    filt = swap_filter_channels(ctx, node, w, groups, out + "_filter")
    bias: Any = 0.0
    if b is not None and not any(overhang):
        bias = g.op("unsqueeze", ctx.ref(b), axes=[0], out=b.name + "_2d")
    y = g.op(
        "deconv",
        ctx.ref(x),
        filt,
        bias,
        border="constant",
        padding=crops,
        stride=stride,
        dilation=dilation,
        groups=groups,
        out=out if not any(overhang) else out + "_deconv",
    )
    if not any(overhang):
        return y
    y = g.op("pad", y, padding=[(0, 0), (0, 0), *((0, e) for e in overhang)], border="constant", value=0.0)
    if b is None:
        return g.op("copy", y, out=out)
    return g.op("add", y, channel_count(ctx, b, x.rank), out=out)


def swap_filter_channels(ctx: Context, node: Node, w: Value, groups: int, name: str) -> Ref:
    """A ``[C_in, C_out / groups, ...]`` filter as ``[C_out, C_in / groups, ...]`` (channels swapped per group)."""
    c_in, c_out_g, *kernel = static_sizes(node, w, list(range(w.rank)), "a transposed convolution's filter")
    g = ctx.g
    filt = g.op("reshape", ctx.ref(w), shape=[groups, c_in // groups, c_out_g, *kernel], out=name + "_grouped")
    filt = g.op("transpose", filt, axes=[0, 2, 1, *range(3, w.rank + 1)], out=name + "_swapped")
    return g.op("reshape", filt, shape=[groups * c_out_g, c_in // groups, *kernel], out=name)


def convolve_transposed_as_conv(
    ctx: Context,
    node: Node,
    x: Value,
    w: Value,
    b: Value | None,
    stride: list[int],
    padding: list[int],
    output_padding: list[int],
    groups: int,
    dilation: list[int],
    out: str,
) -> Ref:
    """A transposed convolution of ``x`` by the filter ``w`` (and ``b``) into ``out`` as the specification's
    ``conv`` (for Khronos; ``node``, the op translated, for messages).

    tract's reader takes ``deconv``'s filter as ``[C_out, C_in / groups, ...]`` where the specification says
    ``[C_in, C_out / groups, ...]``, so a Khronos ``deconv`` could neither run nor be checked there. The
    equivalent convolution reads the input with ``stride - 1`` zeros between samples, padded by
    ``dilation * (kernel - 1) - padding`` (plus ``output_padding`` at the end), with the channel-swapped,
    spatially flipped filter. Exact, and only operators of the specification.
    """
    g = ctx.g
    rank = x.rank
    kernel = static_sizes(node, w, list(range(2, w.rank)), "a transposed convolution's filter")
    sizes = static_sizes(node, x, list(range(2, rank)), "a transposed convolution (KhronosNNEF)")
    y = ctx.ref(x)
    for i, (s, size) in enumerate(zip(stride, sizes)):
        if s == 1:
            continue
        axis = 2 + i
        y = g.op("unsqueeze", y, axes=[axis + 1])
        y = g.op("pad", y, padding=[(0, s - 1) if a == axis + 1 else (0, 0) for a in range(rank + 1)], value=0.0)
        y = g.op("reshape", y, shape=[size * s], axis_start=axis, axis_count=2)
        y = g.op("slice", y, axes=[axis], begin=[0], end=[(size - 1) * s + 1], stride=[1])
    pads = []
    for i, (k, d, p, op) in enumerate(zip(kernel, dilation, padding, output_padding)):
        before, after = d * (k - 1) - p, d * (k - 1) - p + op
        if before < 0 or after < 0:  # more padding than kernel reach: crop the stuffed input instead
            length = (sizes[i] - 1) * stride[i] + 1
            y = g.op("slice", y, axes=[2 + i], begin=[max(-before, 0)], end=[length - max(-after, 0)], stride=[1])
        pads.append((max(before, 0), max(after, 0)))
    filt = swap_filter_channels(ctx, node, w, groups, out + "_filter")
    for i, k in enumerate(kernel):
        if k > 1:
            axis = 2 + i
            taps = [g.op("slice", filt, axes=[axis], begin=[j], end=[j + 1], stride=[1]) for j in reversed(range(k))]
            filt = g.op("concat", taps, axis=axis, out=out + "_flipped")
    bias: Any = 0.0 if b is None else g.op("unsqueeze", ctx.ref(b), axes=[0], out=b.name + "_2d")
    return g.op(
        "conv",
        y,
        filt,
        bias,
        border="constant",
        padding=pads,
        stride=[1] * len(kernel),
        dilation=dilation,
        groups=groups,
        out=out,
    )


def regions(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive pooling windows: ``[floor(i * size / out), ceil((i + 1) * size / out))``."""
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


def adaptive_pooling(ctx: Context, node: Node, x: Value, reduce: str) -> Ref:
    """Adaptive pooling of ``x`` into ``node``'s first output, axis by axis (both reductions are separable
    over a window's axes).

    An axis of size 1 is a reduction, one divided evenly a strided pool; otherwise each window is sliced,
    reduced and the results concatenated, which gives the exact windows of PyTorch (over a dynamic axis,
    with TractNNEF, its bounds are expressions of the symbol).
    """
    out = node.outputs[0]
    axes = list(range(2, x.rank))
    sizes = [x.shape[a] for a in axes] if ctx.tract else static_sizes(node, x, axes, "adaptive pooling")
    wanted = [int(s) for s in out.shape[2:]]
    g = ctx.g
    y = ctx.ref(x)
    pool = "avg_pool" if reduce == "mean_reduce" else "max_pool"
    for axis, size, n in zip(axes, sizes, wanted):
        if size == n:
            continue
        if n == 1:
            y = g.op(reduce, y, axes=[axis])
        elif not isinstance(size, int):  # the same windows, their bounds expressions of the symbol
            parts = []
            for i in range(n):
                d = dim_literal(size)
                first: Any = Ref(f"({i}*({d}))/{n}") if i else 0
                last = Ref(f"({i + 1}*({d})+{n - 1})/{n}")
                part = g.op("slice", y, axes=[axis], begin=[first], end=[last], stride=[1])
                parts.append(g.op(reduce, part, axes=[axis]))
            y = g.op("concat", parts, axis=axis)
        elif size % n == 0:
            k = size // n
            window = [k if a == axis else 1 for a in range(x.rank)]
            y = g.op(pool, y, size=window, stride=window, padding=[(0, 0)] * x.rank, border="ignore")
        else:
            parts = []
            for start, end in regions(size, n):
                part = g.op("slice", y, axes=[axis], begin=[start], end=[end], stride=[1])
                parts.append(part if end - start == 1 else g.op(reduce, part, axes=[axis]))
            y = g.op("concat", parts, axis=axis)
    return g.op("copy", y, out=out.name)


def source_scale(size: int, out: int, factor: float | None, align_corners: bool) -> float:
    """PyTorch's step from an output coordinate to an input coordinate."""
    if align_corners:
        return (size - 1) / (out - 1) if out > 1 else 0.0
    return 1.0 / factor if factor is not None and factor > 0 else size / out


def as_bool(ctx: Context, node: Node, v: Any, rank: int) -> Any:
    """``v`` as a boolean operand aligned to ``rank`` (a tensor of another dtype compared with zero)."""
    if isinstance(v, Value):
        ref = ctx.ref(v) if v.rank >= rank else align_rank(ctx, v, rank, v)
        if v.dtype == "bool":
            return ref
        int_arith(ctx, node, v.dtype)
        return ctx.g.op("ne", ref, scalar_const(ctx, 0, v.dtype, rank))
    return bool(v)


def float_operand(ctx: Context, node: Node, x: Any) -> Any:
    """``x`` as an operand of ``node``'s (floating) output dtype: integer inputs are cast."""
    out = node.outputs[0]
    if not out.dtype.startswith("f"):
        raise TranslationError(f"{node.where()}: {node.kind} on {out.dtype} is not supported yet")
    return operand_ref(ctx, node, x, out.dtype, out.rank)


def const_ref(ctx: Context, node: Node, value: float) -> Any:
    """A scalar operand of the output's dtype (a literal in f32)."""
    out = node.outputs[0]
    return scalar_const(ctx, value, out.dtype, out.rank)


ERF_NUMERATOR = (
    -2.72614225801306e-10,
    2.77068142495902e-08,
    -2.10102402082508e-06,
    -5.69250639462346e-05,
    -7.34990630326855e-04,
    -2.95459980854025e-03,
    -1.60960333262415e-02,
)
ERF_DENOMINATOR = (
    -1.45660718464996e-05,
    -2.13374055278905e-04,
    -1.68282697438203e-03,
    -7.37332916720468e-03,
    -1.42647390514189e-02,
)
"""erf(x) = x p(x^2) / q(x^2) over [-4, 4] (a rational minimax fit of single-precision libraries;
erf is 1 to f32 rounding beyond): within 7 f32 ulps of PyTorch's erf everywhere, relative accuracy
kept near zero. Coefficients from the highest power down."""


def erf_ref(ctx: Context, node: Node, x: Any) -> Ref:
    """The erf of the float operand ``x``: tract's ``tract_core_erf``; for Khronos the rational form of
    :data:`ERF_NUMERATOR` / :data:`ERF_DENOMINATOR` in the specification's operators.
    """
    g = ctx.g
    if ctx.tract:
        ctx.g.need("tract_registry tract_core")
        return g.op("tract_core_erf", x)
    c = partial(const_ref, ctx, node)
    xc = g.op("clamp", x, c(-4.0), c(4.0))
    x2 = g.op("mul", xc, xc)
    p, q = c(ERF_NUMERATOR[0]), c(ERF_DENOMINATOR[0])
    for coefficient in ERF_NUMERATOR[1:]:
        p = g.op("add", g.op("mul", p, x2), c(coefficient))
    for coefficient in ERF_DENOMINATOR[1:]:
        q = g.op("add", g.op("mul", q, x2), c(coefficient))
    return g.op("div", g.op("mul", xc, p), q)


def norm_over(ctx: Context, node: Node, diff: Any, p: float, axes: list[int], keep: bool) -> Ref:
    """The p-norm of ``diff`` over ``axes`` (kept when ``keep``)."""
    g = ctx.g
    c = partial(const_ref, ctx, node)
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


def tile_to(ctx: Context, node: Node, ref: Any, shape: tuple[Dim, ...], target: list[Dim]) -> Any:
    """``ref`` of ``shape`` broadcast (aligned right, then tiled) to ``target``."""
    if len(shape) < len(target):
        ref = ctx.g.op("unsqueeze", ref, axes=list(range(len(target) - len(shape))))
    have = (1,) * (len(target) - len(shape)) + tuple(shape)
    repeats = [dim_of(node, w) if h == 1 and w != 1 else 1 for h, w in zip(have, target)]
    return ctx.g.op("tile", ref, repeats=repeats) if any(r != 1 for r in repeats) else ref
