"""Tensor creation: filled tensors (``zeros``, ``full``, ``*_like``), ranges, ``eye``, ``diag``, triangles."""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from torch_to_nnef.errors import TranslationError
from torch_to_nnef.ir import Node, SymInt, Value
from torch_to_nnef.nnef.builder import Ref, dim_literal
from torch_to_nnef.op.common import (
    NP_DTYPES,
    dim_of,
    filled_like,
    node_arg,
    operand_ref,
    scalar_const,
    static_sizes,
    tract_only,
)
from torch_to_nnef.op.registry import Context, register
from torch_to_nnef.op.shape import aten_diagonal


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


def _label_value(value: Any) -> str:
    return str(value).replace("-", "minus_").replace(".", "p")


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


@register("aten::empty_strided", "aten::empty_like")
def aten_empty_strided(ctx: Context, node: Node) -> Ref:
    """empty_strided(SymInt[] size, SymInt[] stride, *, ScalarType? dtype, ...); empty_like(Tensor self, ...).

    Uninitialised memory in PyTorch: zeros here (strides do not exist in NNEF).
    """
    return filled_like(ctx, node, 0)


@register("aten::diag")
def aten_diag(ctx: Context, node: Node) -> Ref:
    """diag(Tensor self, int diagonal=0) -> Tensor: a vector onto a diagonal of a square matrix, or a matrix's
    diagonal as a vector.
    """
    x, out = node.args[0], node.outputs[0]
    k = int(node_arg(node, 1, "diagonal", 0))
    if x.rank == 2:
        fake = Node("aten::diagonal", (x, k, 0, 1), node.outputs, node.module_path, node.module_class, node.source)
        return cast(Ref, aten_diagonal(ctx, fake))
    (n,) = static_sizes(node, x, [0], "diag")
    size = n + abs(k)
    g = ctx.g
    # Pad the vector to the matrix size; row r holds x[r] at column r + k (k >= 0), column c holds x[c] at
    # row c - k (k < 0).
    y = g.op("pad", ctx.ref(x), padding=[(0, abs(k))], border="constant", value=0.0) if k else ctx.ref(x)
    y = g.op("unsqueeze", y, axes=[1 if k >= 0 else 0])
    y = g.op("tile", y, repeats=[1, size] if k >= 0 else [size, 1])
    mask = g.variable(np.eye(size, k=k, dtype=bool), f"diag_mask_{size}_{str(k).replace('-', 'minus_')}")
    return g.op("select", mask, y, scalar_const(ctx, 0, out.dtype, 2), out=out.name)


@register("aten::eye")
def aten_eye(ctx: Context, node: Node) -> Ref:
    """eye(SymInt n, *, ScalarType? dtype, ...) / eye.m(SymInt n, SymInt m, ...) -> Tensor.

    A constant for static sizes; with tract, ``range(n)[:, None] == range(m)[None, :]`` for dynamic ones.
    """
    out = node.outputs[0]
    rows, cols = out.shape
    g = ctx.g
    if isinstance(rows, int) and isinstance(cols, int):
        array = np.eye(rows, cols, dtype=NP_DTYPES[out.dtype])
        return g.op("copy", g.variable(array, f"eye_{out.dtype}_{rows}x{cols}"), out=out.name)
    tract_only(ctx, node, "with a dynamic size needs tract_core_range")
    i = g.op("unsqueeze", g.op("tract_core_range", 0, dim_of(node, rows), 1), axes=[1])
    j = g.op("unsqueeze", g.op("tract_core_range", 0, dim_of(node, cols), 1), axes=[0])
    return g.op("tract_core_cast", g.op("eq", i, j), to=out.dtype, out=out.name)
