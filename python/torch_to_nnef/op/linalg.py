"""Linear algebra: linear layers, matrix products (``matmul``, ``baddbmm``, ``einsum``...), vector
products, traces, distances and similarities.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, cast

import numpy as np

from torch_to_nnef.errors import TranslationError
from torch_to_nnef.ir import Dim, Node, Value
from torch_to_nnef.nnef.builder import Ref
from torch_to_nnef.op.common import (
    NP_DTYPES,
    align_rank,
    cast_to,
    const_ref,
    filled_like,
    finish_reduction,
    node_arg,
    norm_over,
    operand_ref,
    shape_attr,
    tract_only,
    vector_norm,
    wrap_axis,
)
from torch_to_nnef.op.registry import Context, register


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


def _p_norm(ctx: Context, node: Node, diff: Any, p: float, axis: int) -> Ref:
    """The p-norm of ``diff`` over ``axis`` (reduced away): 0 counts non-zeros, inf takes the max."""
    return norm_over(ctx, node, diff, p, [axis], False)


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


def _scaled_sum(ctx: Context, node: Node, base: Value, product: Ref, beta: Any, alpha: Any) -> Ref:
    """``beta * base + alpha * product`` (beta 0 ignores base, NaN included, as PyTorch)."""
    g, out = ctx.g, node.outputs[0]
    c = partial(const_ref, ctx, node)
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


@register("aten::baddbmm", "aten::addmm")
def aten_baddbmm(ctx: Context, node: Node) -> Ref:
    """baddbmm/addmm(Tensor self, Tensor batch1|mat1, Tensor batch2|mat2, *, Scalar beta=1, Scalar alpha=1) -> Tensor.

    ``beta * self + alpha * batch1 @ batch2`` (``addmm``: on matrices).
    """
    s, b1, b2 = node.args[0], node.args[1], node.args[2]
    beta, alpha = float(node_arg(node, 3, "beta", 1)), float(node_arg(node, 4, "alpha", 1))
    g, out = ctx.g, node.outputs[0]
    y = g.op("matmul", ctx.ref(b1), ctx.ref(b2), transposeA=False, transposeB=False, out=out.name + "_mm")
    if alpha != 1.0:
        y = g.op("mul", y, alpha)
    if beta == 0.0:
        return g.op("copy", y, out=out.name)
    bias = align_rank(ctx, s, out.rank, out)
    if beta != 1.0:
        bias = g.op("mul", bias, beta)
    return g.op("add", bias, y, out=out.name)


@register("aten::cosine_similarity")
def aten_cosine_similarity(ctx: Context, node: Node) -> Ref:
    """cosine_similarity(Tensor x1, Tensor x2, int dim=1, float eps=1e-08) -> Tensor.

    Each operand divided by its norm (at least ``eps``), then the sum of the products over ``dim``.
    """
    out = node.outputs[0]
    rank = out.rank + 1
    a, b = (operand_ref(ctx, node, v, out.dtype, rank) for v in node.args[:2])
    axis = wrap_axis(node_arg(node, 2, "dim", 1), rank)
    eps = float(node_arg(node, 3, "eps", 1e-8))
    g = ctx.g
    unit_a = g.op("div", a, g.op("max", vector_norm(ctx, node, a, 2, [axis]), eps))
    unit_b = g.op("div", b, g.op("max", vector_norm(ctx, node, b, 2, [axis]), eps))
    y = g.op("sum_reduce", g.op("mul", unit_a, unit_b), axes=[axis])
    return g.op("squeeze", y, axes=[axis], out=out.name)


@register("aten::pairwise_distance")
def aten_pairwise_distance(ctx: Context, node: Node) -> Ref:
    """pairwise_distance(Tensor x1, Tensor x2, float p=2, float eps=1e-06, bool keepdim=False) -> Tensor.

    The p-norm of ``x1 - x2 + eps`` over the last axis.
    """
    x1, x2, out = node.args[0], node.args[1], node.outputs[0]
    rank = max(x1.rank, x2.rank)
    a, b = (operand_ref(ctx, node, v, out.dtype, rank) for v in (x1, x2))
    p = float(node_arg(node, 2, "p", 2.0))
    eps = float(node_arg(node, 3, "eps", 1e-6))
    keep = bool(node_arg(node, 4, "keepdim", False))
    g = ctx.g
    diff = g.op("add", g.op("sub", a, b), eps)
    order: Any = p if not p.is_integer() or math.isinf(p) else int(p)
    y = vector_norm(ctx, node, diff, order, [rank - 1])
    return finish_reduction(ctx, y, [rank - 1], keep, out.name)
