"""Tensor creation: filled tensors (``zeros``, ``full``, ``*_like``), ranges, ``eye``, ``diag``, triangles."""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from torch_to_nnef.errors import TranslationError
from torch_to_nnef.ir import SymInt, Value
from torch_to_nnef.ir.dtypes import NUMPY
from torch_to_nnef.nnef.builder import Ref, dim_literal
from torch_to_nnef.op.common import (
    cast_to,
    current_node,
    dim_of,
    filled_like,
    operand_ref,
    scalar_const,
    static_sizes,
    symint_ref,
    tract_only,
)
from torch_to_nnef.op.registry import Context, register
from torch_to_nnef.op.shape import aten_diagonal


def _tiled_constant(ctx: Context, value: Any) -> Ref:
    """The output of the node translated, filled with the number ``value`` (a one-element constant tiled)."""
    out = ctx.out
    array = np.full((1,) * out.rank, value, dtype=NUMPY[out.dtype])
    one = ctx.g.variable(array, f"constant_{out.dtype}_{str(value).replace('-', 'minus_')}_r{out.rank}")
    repeats = [d if isinstance(d, int) else Ref(dim_literal(d)) for d in out.shape]
    return ctx.g.op("tile", one, repeats=repeats, out=out.name)


FILL_VALUES = {
    "aten::zeros_like": 0,
    "aten::ones_like": 1,
    "aten::zeros": 0,
    "aten::ones": 1,
    "aten::empty": 0,
    "aten::new_zeros": 0,
    "aten::new_ones": 1,
    "aten::new_empty": 0,
}
"""The value each filled-tensor kind writes (``empty``: uninitialised memory in PyTorch, zeros here)."""


def _fill_value(ctx: Context) -> int:
    return FILL_VALUES[current_node(ctx).kind]


@register("aten::zeros_like", "aten::ones_like")
def aten_zeros_like(
    ctx: Context,
    self: Value,
    *,
    dtype: str | None = None,
    layout: Any = None,
    device: Any = None,
    pin_memory: bool | None = None,
    memory_format: Any = None,
) -> Ref:
    """zeros_like(Tensor self, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool?
    pin_memory=None, MemoryFormat? memory_format=None) -> Tensor (``ones_like`` too): the output filled
    with the kind's value of :data:`FILL_VALUES`.
    """
    return _tiled_constant(ctx, _fill_value(ctx))


@register("aten::full_like")
def aten_full_like(
    ctx: Context,
    self: Value,
    fill_value: Any,
    *,
    dtype: str | None = None,
    layout: Any = None,
    device: Any = None,
    pin_memory: bool | None = None,
    memory_format: Any = None,
) -> Ref:
    """full_like(Tensor self, Scalar fill_value, *, ScalarType? dtype=None, Layout? layout=None, Device?
    device=None, bool? pin_memory=None, MemoryFormat? memory_format=None) -> Tensor.
    """
    return _tiled_constant(ctx, fill_value)


def _label_value(value: Any) -> str:
    return str(value).replace("-", "minus_").replace(".", "p")


def _filled(ctx: Context, value: Any) -> Ref:
    """The output of the node translated, filled with ``value`` (a scalar, SymInt or 0-d Value)."""
    return filled_like(ctx, current_node(ctx), value)


@register("aten::zeros", "aten::ones")
def aten_zeros(
    ctx: Context,
    size: list[Any],
    *,
    dtype: str | None = None,
    layout: Any = None,
    device: Any = None,
    pin_memory: bool | None = None,
) -> Ref:
    """zeros(SymInt[] size, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool?
    pin_memory=None) -> Tensor (``ones`` too): a one-element constant tiled to the size (symbolic sizes as
    tract expressions).
    """
    return _filled(ctx, _fill_value(ctx))


@register("aten::empty.memory_format")
def aten_empty(
    ctx: Context,
    size: list[Any],
    *,
    dtype: str | None = None,
    layout: Any = None,
    device: Any = None,
    pin_memory: bool | None = None,
    memory_format: Any = None,
) -> Ref:
    """empty.memory_format(SymInt[] size, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None,
    bool? pin_memory=None, MemoryFormat? memory_format=None) -> Tensor: uninitialised memory in PyTorch, zeros
    here.
    """
    return _filled(ctx, _fill_value(ctx))


@register("aten::new_zeros", "aten::new_ones", "aten::new_empty")
def aten_new_zeros(
    ctx: Context,
    self: Value,
    size: list[Any],
    *,
    dtype: str | None = None,
    layout: Any = None,
    device: Any = None,
    pin_memory: bool | None = None,
) -> Ref:
    """new_zeros(Tensor self, SymInt[] size, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None,
    bool? pin_memory=None) -> Tensor (``new_ones``, ``new_empty`` too): filled with the kind's value of
    :data:`FILL_VALUES`.
    """
    return _filled(ctx, _fill_value(ctx))


@register("aten::zero")
def aten_zero(ctx: Context, self: Value) -> Ref:
    """zero(Tensor self) -> Tensor: zeros of the shape of ``self``."""
    return _filled(ctx, 0)


@register("aten::full")
def aten_full(
    ctx: Context,
    size: list[Any],
    fill_value: Any,
    *,
    dtype: str | None = None,
    layout: Any = None,
    device: Any = None,
    pin_memory: bool | None = None,
) -> Ref:
    """full(SymInt[] size, Scalar fill_value, *, ScalarType? dtype=None, Layout? layout=None, Device?
    device=None, bool? pin_memory=None) -> Tensor.
    """
    return _filled(ctx, fill_value)


@register("aten::new_full")
def aten_new_full(
    ctx: Context,
    self: Value,
    size: list[Any],
    fill_value: Any,
    *,
    dtype: str | None = None,
    layout: Any = None,
    device: Any = None,
    pin_memory: bool | None = None,
) -> Ref:
    """new_full(Tensor self, SymInt[] size, Scalar fill_value, *, ScalarType? dtype=None, Layout? layout=None,
    Device? device=None, bool? pin_memory=None) -> Tensor.
    """
    return _filled(ctx, fill_value)


@register("aten::scalar_tensor")
def aten_scalar_tensor(
    ctx: Context,
    s: Any,
    *,
    dtype: str | None = None,
    layout: Any = None,
    device: Any = None,
    pin_memory: bool | None = None,
) -> Ref:
    """scalar_tensor(Scalar s, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool?
    pin_memory=None) -> Tensor.
    """
    return _filled(ctx, s)


@register("aten::fill.Scalar", "aten::fill.Tensor")
def aten_fill(ctx: Context, self: Value, value: Any) -> Ref:
    """fill.Scalar(Tensor self, Scalar value) -> Tensor (and .Tensor, a 0-d tensor value, which torch.jit.trace
    may give as a number): ``value`` in the shape of ``self``.
    """
    return _filled(ctx, value)


def _arange(ctx: Context, start: Any, end: Any, step: Any) -> Ref:
    """``start, start + step, ...`` below ``end``: a constant for a static length, else tract's range."""
    node, out = current_node(ctx), ctx.out
    g = ctx.g
    length = out.shape[0]
    if isinstance(length, int) and not any(isinstance(v, SymInt) for v in (start, end, step)):
        values = np.array([start + i * step for i in range(length)], dtype=np.float64)
        array = values.astype(NUMPY[out.dtype])
        label = f"arange_{out.dtype}_{_label_value(start)}_{_label_value(end)}_{_label_value(step)}"
        return g.op("copy", g.variable(array, label), out=out.name)
    tract_only(ctx, node, "with a dynamic length needs tract_core_range, which the NNEF specification lacks")
    if any(isinstance(v, Value) for v in (start, end, step)):
        return _arange_of_tensors(ctx, start, end, step)
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


def _range_bound(ctx: Context, v: Any, dtype: str) -> Any:
    """A bound of tract's range: a 0-d tensor of ``dtype`` (the three bounds share their dtype)."""
    node = current_node(ctx)
    if isinstance(v, Value):
        ref = ctx.ref(v) if v.rank == 0 else ctx.g.op("squeeze", ctx.ref(v), axes=list(range(v.rank)))
        return cast_to(ctx, node, ref, v.dtype, dtype)
    if isinstance(v, SymInt):
        return symint_ref(ctx, node, v, dtype, 0)
    return ctx.g.variable(np.array(v, dtype=NUMPY[dtype]), f"constant_{dtype}_{_label_value(v)}")


def _arange_of_tensors(ctx: Context, start: Any, end: Any, step: Any) -> Ref:
    """A range whose bounds are tensors of the model (its length comes from their values): tract's range over
    i64 for an integer result, over f64 for a float one (torch's length ``ceil((end - start) / step)`` and
    values ``start + i * step`` are computed in doubles), cast to the output's dtype.
    """
    node, out = current_node(ctx), ctx.out
    bounds = (start, end, step)
    floats = any(v.dtype.startswith("f") if isinstance(v, Value) else isinstance(v, float) for v in bounds)
    if floats and not out.dtype.startswith("f"):
        raise TranslationError(f"{node.where()}: arange of float bounds into {out.dtype}: round the bounds first")
    dtype = "f64" if out.dtype.startswith("f") else "i64"
    refs = [_range_bound(ctx, v, dtype) for v in bounds]
    if dtype == out.dtype:
        return ctx.g.op("tract_core_range", *refs, out=out.name)
    return ctx.g.op("tract_core_cast", ctx.g.op("tract_core_range", *refs), to=out.dtype, out=out.name)


@register("aten::arange")
def aten_arange(
    ctx: Context,
    end: Any,
    *,
    dtype: str | None = None,
    layout: Any = None,
    device: Any = None,
    pin_memory: bool | None = None,
) -> Ref:
    """arange(Scalar end, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool?
    pin_memory=None) -> Tensor.
    """
    return _arange(ctx, 0, end, 1)


@register("aten::arange.start")
def aten_arange_start(
    ctx: Context,
    start: Any,
    end: Any,
    *,
    dtype: str | None = None,
    layout: Any = None,
    device: Any = None,
    pin_memory: bool | None = None,
) -> Ref:
    """arange.start(Scalar start, Scalar end, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None,
    bool? pin_memory=None) -> Tensor.
    """
    return _arange(ctx, start, end, 1)


@register("aten::arange.start_step")
def aten_arange_start_step(
    ctx: Context,
    start: Any,
    end: Any,
    step: Any = 1,
    *,
    dtype: str | None = None,
    layout: Any = None,
    device: Any = None,
    pin_memory: bool | None = None,
) -> Ref:
    """arange.start_step(Scalar start, Scalar end, Scalar step=1, *, ScalarType? dtype=None, Layout? layout=None,
    Device? device=None, bool? pin_memory=None) -> Tensor.
    """
    return _arange(ctx, start, end, step)


@register(
    "aten::linspace", "aten::linspace.Tensor_Tensor", "aten::linspace.Tensor_Scalar", "aten::linspace.Scalar_Tensor"
)
def aten_linspace(
    ctx: Context,
    start: Any,
    end: Any,
    steps: int,
    *,
    dtype: str | None = None,
    layout: Any = None,
    device: Any = None,
    pin_memory: bool | None = None,
) -> Ref:
    """linspace(Scalar start, Scalar end, int steps, *, ScalarType? dtype=None, Layout? layout=None, Device?
    device=None, bool? pin_memory=None) -> Tensor: a constant (the .Tensor_Tensor, .Tensor_Scalar and
    .Scalar_Tensor overloads alike, their 0-d tensors given as numbers; refused when they are tensors).
    """
    out = ctx.out
    if any(isinstance(v, (SymInt, Value)) for v in (start, end, steps)):
        raise TranslationError(f"{current_node(ctx).where()}: linspace with dynamic bounds is not supported")
    array = np.linspace(float(start), float(end), int(steps)).astype(NUMPY[out.dtype])
    label = f"linspace_{out.dtype}_{_label_value(start)}_{_label_value(end)}_{steps}"
    return ctx.g.op("copy", ctx.g.variable(array, label), out=out.name)


def _trilu(ctx: Context, x: Value, diagonal: Any, upper: bool) -> Ref:
    """The lower (upper if ``upper``) triangle of the last two axes of ``x`` from ``diagonal`` on, zeros elsewhere."""
    out = ctx.out
    g = ctx.g
    if ctx.tract:
        ctx.g.need("tract_registry tract_core")
        k = diagonal if isinstance(diagonal, int) else Ref(dim_literal(diagonal.expr))
        return g.op("tract_core_trilu", ctx.ref(x), k, upper=upper, out=out.name)
    rows, cols = x.shape[-2:]
    if not isinstance(diagonal, int) or not isinstance(rows, int) or not isinstance(cols, int):
        node = current_node(ctx)
        raise TranslationError(f"{node.where()}: {node.kind} over dynamic axes needs TractNNEF")
    ones = np.ones((rows, cols), dtype=bool)
    keep = (np.triu(ones, diagonal) if upper else np.tril(ones, diagonal)).reshape((1,) * (x.rank - 2) + (rows, cols))
    mask = g.variable(keep, f"{'triu' if upper else 'tril'}_{rows}x{cols}_{_label_value(diagonal)}_r{x.rank}")
    return g.op("select", mask, ctx.ref(x), scalar_const(ctx, 0, x.dtype, x.rank), out=out.name)


@register("aten::tril")
def aten_tril(ctx: Context, self: Value, diagonal: Any = 0) -> Ref:
    """tril(Tensor self, SymInt diagonal=0) -> Tensor (over the last two axes)."""
    return _trilu(ctx, self, diagonal, upper=False)


@register("aten::triu")
def aten_triu(ctx: Context, self: Value, diagonal: Any = 0) -> Ref:
    """triu(Tensor self, SymInt diagonal=0) -> Tensor (over the last two axes)."""
    return _trilu(ctx, self, diagonal, upper=True)


@register("aten::empty_strided")
def aten_empty_strided(
    ctx: Context,
    size: list[Any],
    stride: list[Any],
    *,
    dtype: str | None = None,
    layout: Any = None,
    device: Any = None,
    pin_memory: bool | None = None,
) -> Ref:
    """empty_strided(SymInt[] size, SymInt[] stride, *, ScalarType? dtype=None, Layout? layout=None, Device?
    device=None, bool? pin_memory=None) -> Tensor: uninitialised memory in PyTorch, zeros here (strides do not
    exist in NNEF).
    """
    return _filled(ctx, 0)


@register("aten::empty_like")
def aten_empty_like(
    ctx: Context,
    self: Value,
    *,
    dtype: str | None = None,
    layout: Any = None,
    device: Any = None,
    pin_memory: bool | None = None,
    memory_format: Any = None,
) -> Ref:
    """empty_like(Tensor self, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool?
    pin_memory=None, MemoryFormat? memory_format=None) -> Tensor: uninitialised memory in PyTorch, zeros here.
    """
    return _filled(ctx, 0)


@register("aten::diag")
def aten_diag(ctx: Context, self: Value, diagonal: int = 0) -> Ref:
    """diag(Tensor self, int diagonal=0) -> Tensor: a vector onto a diagonal of a square matrix, or a matrix's
    diagonal as a vector.
    """
    x, out = self, ctx.out
    k = int(diagonal)
    if x.rank == 2:
        return cast(Ref, aten_diagonal(ctx, x, k, 0, 1))
    (n,) = static_sizes(current_node(ctx), x, [0], "diag")
    size = n + abs(k)
    g = ctx.g
    # Pad the vector to the matrix size; row r holds x[r] at column r + k (k >= 0), column c holds x[c] at
    # row c - k (k < 0).
    y = g.op("pad", ctx.ref(x), padding=[(0, abs(k))], border="constant", value=0.0) if k else ctx.ref(x)
    y = g.op("unsqueeze", y, axes=[1 if k >= 0 else 0])
    y = g.op("tile", y, repeats=[1, size] if k >= 0 else [size, 1])
    mask = g.variable(np.eye(size, k=k, dtype=bool), f"diag_mask_{size}_{str(k).replace('-', 'minus_')}")
    return g.op("select", mask, y, scalar_const(ctx, 0, out.dtype, 2), out=out.name)


def _eye(ctx: Context) -> Ref:
    """The identity matrix of the output's shape: a constant for static sizes; with tract,
    ``range(n)[:, None] == range(m)[None, :]`` for dynamic ones.
    """
    out = ctx.out
    rows, cols = out.shape
    g = ctx.g
    if isinstance(rows, int) and isinstance(cols, int):
        array = np.eye(rows, cols, dtype=NUMPY[out.dtype])
        return g.op("copy", g.variable(array, f"eye_{out.dtype}_{rows}x{cols}"), out=out.name)
    node = current_node(ctx)
    tract_only(ctx, node, "with a dynamic size needs tract_core_range")
    i = g.op("unsqueeze", g.op("tract_core_range", 0, dim_of(node, rows), 1), axes=[1])
    j = g.op("unsqueeze", g.op("tract_core_range", 0, dim_of(node, cols), 1), axes=[0])
    return g.op("tract_core_cast", g.op("eq", i, j), to=out.dtype, out=out.name)


@register("aten::eye")
def aten_eye(
    ctx: Context,
    n: Any,
    *,
    dtype: str | None = None,
    layout: Any = None,
    device: Any = None,
    pin_memory: bool | None = None,
) -> Ref:
    """eye(SymInt n, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None)
    -> Tensor: the n-by-n identity.
    """
    return _eye(ctx)


@register("aten::eye.m")
def aten_eye_m(
    ctx: Context,
    n: Any,
    m: Any,
    *,
    dtype: str | None = None,
    layout: Any = None,
    device: Any = None,
    pin_memory: bool | None = None,
) -> Ref:
    """eye.m(SymInt n, SymInt m, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool?
    pin_memory=None) -> Tensor: the n-by-m identity.
    """
    return _eye(ctx)
