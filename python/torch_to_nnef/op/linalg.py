"""Linear algebra: linear layers, matrix products (``matmul``, ``baddbmm``, ``einsum``...), vector
products, traces, distances and similarities.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np

from torch_to_nnef.errors import TranslationError
from torch_to_nnef.ir import Dim, Node, Value
from torch_to_nnef.ir.dtypes import NUMPY
from torch_to_nnef.nnef.builder import Ref
from torch_to_nnef.op.common import (
    align_rank,
    cast_to,
    const_ref,
    current_node,
    dim_of,
    filled_like,
    finish_reduction,
    int_arith,
    norm_over,
    operand_ref,
    scalar_const,
    shape_attr,
    tract_only,
    vector_norm,
    wrap_axis,
)
from torch_to_nnef.op.registry import Context, register


@register("aten::linear")
def aten_linear(ctx: Context, input: Value, weight: Value, bias: Value | None = None) -> Ref:
    """linear(Tensor input, Tensor weight, Tensor? bias=None) -> Tensor: ``input @ weight.T + bias``."""
    out = ctx.out
    wr = align_rank(ctx, weight, input.rank, out)
    y = ctx.g.op("matmul", ctx.ref(input), wr, transposeA=False, transposeB=True, out=out.name + "_mm")
    if bias is None:
        return ctx.g.op("copy", y, out=out.name)
    return ctx.g.op("add", y, align_rank(ctx, bias, out.rank, out), out=out.name)


def _matmul(ctx: Context, a: Value, b: Value) -> Ref:
    """``a @ b`` into the node's output, as ``torch.matmul``: a 1-D operand is a row (left) or a column (right),
    the batch axes broadcast.
    """
    out, g = ctx.out, ctx.g
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


@register("aten::matmul")
def aten_matmul(ctx: Context, self: Value, other: Value) -> Ref:
    """matmul(Tensor self, Tensor other) -> Tensor; a 1-D operand is a row (left) or a column (right)."""
    return _matmul(ctx, self, other)


@register("aten::mm", "aten::bmm")
def aten_mm(ctx: Context, self: Value, mat2: Value) -> Ref:
    """mm(Tensor self, Tensor mat2) -> Tensor; bmm alike, on batches of matrices."""
    return _matmul(ctx, self, mat2)


@register("aten::mv")
def aten_mv(ctx: Context, self: Value, vec: Value) -> Ref:
    """mv(Tensor self, Tensor vec) -> Tensor: a matrix times a column."""
    return _matmul(ctx, self, vec)


@register("aten::dot")
def aten_dot(ctx: Context, self: Value, tensor: Value) -> Ref:
    """dot(Tensor self, Tensor tensor) -> Tensor: a row times a column."""
    return _matmul(ctx, self, tensor)


@register("aten::vdot")
def aten_vdot(ctx: Context, self: Value, other: Value) -> Ref:
    """vdot(Tensor self, Tensor other) -> Tensor: on real tensors, as dot."""
    return _matmul(ctx, self, other)


@register("aten::outer")
def aten_outer(ctx: Context, self: Value, vec2: Value) -> Ref:
    """outer(Tensor self, Tensor vec2) -> Tensor: a[:, None] * b[None, :]."""
    g = ctx.g
    return g.op(
        "mul",
        g.op("unsqueeze", ctx.ref(self), axes=[1]),
        g.op("unsqueeze", ctx.ref(vec2), axes=[0]),
        out=ctx.out.name,
    )


@register("aten::inner")
def aten_inner(ctx: Context, self: Value, other: Value) -> Ref:
    """inner(Tensor self, Tensor other) -> Tensor: the sum over the last axes of both."""
    a, b = self, other
    letters = iter("abcdefghijklmnopqrstuvwxyz")
    la = "".join(next(letters) for _ in range(max(a.rank - 1, 0)))
    lb = "".join(next(letters) for _ in range(max(b.rank - 1, 0)))
    k = next(letters)
    if a.rank == 0 or b.rank == 0:
        return ctx.g.op("mul", *(align_rank(ctx, v, ctx.out.rank, v) for v in (a, b)), out=ctx.out.name)
    return einsum_ref(ctx, current_node(ctx), f"{la}{k},{lb}{k}->{la}{lb}", [a, b])


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


def _diagonal_mask(ctx: Context, node: Node, n: Dim, rank: int, first: int, second: int) -> Any:
    """A boolean tensor of ``rank`` axes, of size ``n`` on axes ``first`` and ``second`` (1 elsewhere), true where
    their indices are equal: a constant for a static ``n``, ``range(n) == range(n)`` in tract for a dynamic one.
    """
    if isinstance(n, int):
        shape = [n if a in (first, second) else 1 for a in range(rank)]
        eye = np.eye(n, dtype=bool).reshape(shape)
        return ctx.g.variable(eye, f"einsum_diagonal_{n}_{first}_{second}_r{rank}")
    tract_only(ctx, node, f"takes the diagonal of the dynamic axis {n}, which needs tract_core_range")
    g = ctx.g
    i, j = (
        g.op("unsqueeze", g.op("tract_core_range", 0, dim_of(node, n), 1), axes=[a for a in range(rank) if a != k])
        for k in (first, second)
    )
    return g.op("eq", i, j)


def _diagonal(ctx: Context, node: Node, t: _Term, v: Value) -> _Term:
    """The operand ``t`` (of ``v``) with each letter it repeats once: the elements off the diagonal of two of its
    axes set to zero, then summed over the second axis, until no letter repeats.
    """
    g = ctx.g
    ref, letters, shape = t.ref, list(t.letters), list(v.shape)
    for c in dict.fromkeys(letters):
        while letters.count(c) > 1:
            int_arith(ctx, node, v.dtype)
            first = letters.index(c)
            second = letters.index(c, first + 1)
            mask = _diagonal_mask(ctx, node, shape[first], len(letters), first, second)
            ref = g.op("select", mask, ref, scalar_const(ctx, 0, v.dtype, len(letters)))
            ref = g.op("squeeze", g.op("sum_reduce", ref, axes=[second]), axes=[second])
            del letters[second], shape[second]
    return _Term(ref, letters)


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
    """``einsum`` of ``operands`` by ``equation``, as pairwise matmuls, products and sums of the spec (an operand
    repeating a letter is first reduced to its diagonal on those axes).
    """
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
    counts: list[str] = []  # every letter of the operands, a repeated one as often as it appears
    for spec, v in zip(specs, operands):
        if "..." in spec:
            before, after = spec.split("...")
            letters = list(before) + ellipsis[ellipsis_rank - (v.rank - len(before) - len(after)) :] + list(after)
        else:
            letters = list(spec)
        if len(letters) != v.rank:
            raise TranslationError(f"{node.where()}: einsum {equation!r} does not match an operand of rank {v.rank}")
        for c, d in zip(letters, v.shape):
            if d != 1 or c not in sizes:
                sizes[c] = d
        counts += [c for c in letters if c not in ellipsis]
        term = _Term(ctx.ref(v), letters)
        terms.append(_diagonal(ctx, node, term, v) if len(set(letters)) != len(letters) else term)
    if arrow:
        target = list(rhs.replace("...", "".join(ellipsis)))
    else:
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
def aten_einsum(ctx: Context, equation: str, tensors: list[Value], *, path: list[int] | None = None) -> Ref:
    """einsum(str equation, Tensor[] tensors, *, int[]? path=None) -> Tensor: pairwise matmuls and sums."""
    return einsum_ref(ctx, current_node(ctx), equation, list(tensors))


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
def aten_cdist(ctx: Context, x1: Value, x2: Value, p: float = 2.0, compute_mode: int | None = None) -> Ref:
    """cdist(Tensor x1, Tensor x2, float p=2., int? compute_mode=None) -> Tensor; _cdist_forward alike.

    Computed from the differences of every pair of rows (exact; PyTorch's matrix-product mode
    for large inputs rounds differently near zero).
    """
    return ctx.g.op("copy", _pairwise(ctx, current_node(ctx), x1, x2, float(p)), out=ctx.out.name)


@register("aten::pdist", "aten::_pdist_forward")
def aten_pdist(ctx: Context, self: Value, p: float = 2.0) -> Ref:
    """pdist(Tensor self, float p=2.) -> Tensor; _pdist_forward alike.

    The distances of rows i < j of an ``[N, M]`` tensor, row by row (the upper triangle of cdist(x, x),
    flattened).
    """
    node, x = current_node(ctx), self
    n = x.shape[0]
    if not isinstance(n, int):
        raise TranslationError(f"{node.where()}: pdist over a dynamic number of rows is not supported yet")
    g, out = ctx.g, ctx.out
    if n < 2:
        return filled_like(ctx, node, 0)
    full = _pairwise(ctx, node, x, x, float(p))
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
def aten_addmv(ctx: Context, self: Value, mat: Value, vec: Value, *, beta: Any = 1, alpha: Any = 1) -> Ref:
    """addmv(Tensor self, Tensor mat, Tensor vec, *, Scalar beta=1, Scalar alpha=1) -> Tensor.

    ``beta * self + alpha * mat @ vec``.
    """
    g = ctx.g
    column = g.op("unsqueeze", ctx.ref(vec), axes=[1])
    product = g.op("squeeze", g.op("matmul", ctx.ref(mat), column, transposeA=False, transposeB=False), axes=[1])
    return _scaled_sum(ctx, current_node(ctx), self, product, beta, alpha)


@register("aten::addr")
def aten_addr(ctx: Context, self: Value, vec1: Value, vec2: Value, *, beta: Any = 1, alpha: Any = 1) -> Ref:
    """addr(Tensor self, Tensor vec1, Tensor vec2, *, Scalar beta=1, Scalar alpha=1) -> Tensor.

    ``beta * self + alpha * outer(vec1, vec2)``.
    """
    g = ctx.g
    product = g.op("mul", g.op("unsqueeze", ctx.ref(vec1), axes=[1]), g.op("unsqueeze", ctx.ref(vec2), axes=[0]))
    return _scaled_sum(ctx, current_node(ctx), self, product, beta, alpha)


@register("aten::trace")
def aten_trace(ctx: Context, self: Value) -> Ref:
    """trace(Tensor self) -> Tensor: the sum of the main diagonal of a matrix (static sizes)."""
    node, x, out = current_node(ctx), self, ctx.out
    n, m = x.shape
    if not (isinstance(n, int) and isinstance(m, int)):
        raise TranslationError(f"{node.where()}: the trace of a dynamic matrix is not supported yet")
    if not out.dtype.startswith("f"):
        tract_only(ctx, node, f"on {out.dtype} needs integer arithmetic, which the NNEF specification lacks")
    g = ctx.g
    eye = ctx.g.variable(np.eye(n, m, dtype=NUMPY[x.dtype]), f"eye_{x.dtype}_{n}x{m}")
    total = g.op("sum_reduce", g.op("mul", ctx.ref(x), eye), axes=[0, 1])
    return g.op("squeeze", cast_to(ctx, node, total, x.dtype, out.dtype), axes=[0, 1], out=out.name)


def _add_product(ctx: Context, base: Value, a: Value, b: Value, beta: float, alpha: float) -> Ref:
    """``beta * base + alpha * a @ b`` into the node's output."""
    g, out = ctx.g, ctx.out
    y = g.op("matmul", ctx.ref(a), ctx.ref(b), transposeA=False, transposeB=False, out=out.name + "_mm")
    if alpha != 1.0:
        y = g.op("mul", y, alpha)
    if beta == 0.0:
        return g.op("copy", y, out=out.name)
    bias = align_rank(ctx, base, out.rank, out)
    if beta != 1.0:
        bias = g.op("mul", bias, beta)
    return g.op("add", bias, y, out=out.name)


@register("aten::baddbmm")
def aten_baddbmm(ctx: Context, self: Value, batch1: Value, batch2: Value, *, beta: Any = 1, alpha: Any = 1) -> Ref:
    """baddbmm(Tensor self, Tensor batch1, Tensor batch2, *, Scalar beta=1, Scalar alpha=1) -> Tensor.

    ``beta * self + alpha * batch1 @ batch2``.
    """
    return _add_product(ctx, self, batch1, batch2, float(beta), float(alpha))


@register("aten::addmm")
def aten_addmm(ctx: Context, self: Value, mat1: Value, mat2: Value, *, beta: Any = 1, alpha: Any = 1) -> Ref:
    """addmm(Tensor self, Tensor mat1, Tensor mat2, *, Scalar beta=1, Scalar alpha=1) -> Tensor.

    ``beta * self + alpha * mat1 @ mat2``.
    """
    return _add_product(ctx, self, mat1, mat2, float(beta), float(alpha))


@register("aten::cosine_similarity")
def aten_cosine_similarity(ctx: Context, x1: Value, x2: Value, dim: int = 1, eps: float = 1e-08) -> Ref:
    """cosine_similarity(Tensor x1, Tensor x2, int dim=1, float eps=1e-08) -> Tensor.

    Each operand divided by its norm (at least ``eps``), then the sum of the products over ``dim``.
    """
    node, out = current_node(ctx), ctx.out
    rank = out.rank + 1
    a, b = (operand_ref(ctx, node, v, out.dtype, rank) for v in (x1, x2))
    axis = wrap_axis(dim, rank)
    g = ctx.g
    unit_a = g.op("div", a, g.op("max", vector_norm(ctx, node, a, 2, [axis]), float(eps)))
    unit_b = g.op("div", b, g.op("max", vector_norm(ctx, node, b, 2, [axis]), float(eps)))
    y = g.op("sum_reduce", g.op("mul", unit_a, unit_b), axes=[axis])
    return g.op("squeeze", y, axes=[axis], out=out.name)


@register("aten::pairwise_distance")
def aten_pairwise_distance(
    ctx: Context, x1: Value, x2: Value, p: float = 2.0, eps: float = 1e-06, keepdim: bool = False
) -> Ref:
    """pairwise_distance(Tensor x1, Tensor x2, float p=2., float eps=1e-06, bool keepdim=False) -> Tensor.

    The p-norm of ``x1 - x2 + eps`` over the last axis.
    """
    node, out = current_node(ctx), ctx.out
    rank = max(x1.rank, x2.rank)
    a, b = (operand_ref(ctx, node, v, out.dtype, rank) for v in (x1, x2))
    order = float(p)
    g = ctx.g
    diff = g.op("add", g.op("sub", a, b), float(eps))
    norm_order: Any = order if not order.is_integer() or math.isinf(order) else int(order)
    y = vector_norm(ctx, node, diff, norm_order, [rank - 1])
    return finish_reduction(ctx, y, [rank - 1], bool(keepdim), out.name)
