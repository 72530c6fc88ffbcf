"""Indexing: slices and selects (and the writes into them), gathers, embeddings, masked fills,
advanced indexing, scatters, sorting and top-k, and the ops whose output shape depends on the data.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from torch_to_nnef.errors import TranslationError
from torch_to_nnef.ir import Dim, Node, SymInt, Value
from torch_to_nnef.ir.dtypes import NUMPY
from torch_to_nnef.nnef.builder import Ref, dim_literal, literal
from torch_to_nnef.op.common import (
    BIG,
    align_rank,
    broadcast_shape,
    cast_to,
    current_node,
    dim_of,
    operand_ref,
    parse_size,
    scalar_const,
    slice_bound,
    static_sizes,
    tile_to,
    tools_only,
    wrap_axis,
)
from torch_to_nnef.op.registry import Context, register


def slice_ref(ctx: Context, x: Value, axis: int, start: Any, end: Any, step: int, out: str) -> Ref:
    """``x[start:end:step]`` along ``axis`` (bounds clamped to the axis, symbolic ones included)."""
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


@register("aten::slice.Tensor")
def aten_slice(ctx: Context, self: Value, dim: int = 0, start: Any = None, end: Any = None, step: int = 1) -> Ref:
    """slice.Tensor(Tensor self, int dim=0, SymInt? start=None, SymInt? end=None, SymInt step=1) -> Tensor.

    ``self[start:end:step]`` along ``dim``, the bounds clamped to the axis.
    """
    x, out = self, ctx.out
    axis = wrap_axis(dim, x.rank)
    start = start or 0
    end = BIG if end is None else end
    size = out.shape[axis]
    if step > 1 and ctx.tract and not (isinstance(size, int) and isinstance(x.shape[axis], int)) and size != 0:
        # over a dynamic axis, the end just after the last element taken: tract counts ceil((end - begin) / step)
        # elements, and proves that equal to the size torch gives only from such an end ([0:2*T:2] has T)
        begin = slice_bound(start, x.shape[axis])
        last = Ref(f"{dim_literal(str(begin))}+{step}*({dim_literal(size)}-1)+1")
        if not isinstance(begin, int):  # tract cannot pull a stride over a slice from a symbolic start: gather
            ctx.g.need("tract_registry tract_core")
            rows = ctx.g.op("tract_core_range", begin, last, step)
            return ctx.g.op("tract_core_gather", ctx.ref(x), rows, axis=axis, out=out.name)
        return ctx.g.op("slice", ctx.ref(x), axes=[axis], begin=[begin], end=[last], stride=[step], out=out.name)
    return slice_ref(ctx, x, axis, start, end, step, out.name)


def _scatter_slice(ctx: Context, x: Value, src: Any, axis: int, start: Any, end: Any) -> Ref:
    """``x`` with ``x[start:end]`` on ``axis`` replaced by ``src``: the parts of ``x`` around it, concatenated."""
    dim, out = x.shape[axis], ctx.out
    start = 0 if start is None else start
    end = BIG if end is None else end
    parts = []
    if slice_bound(start, dim) != 0:
        parts.append(slice_ref(ctx, x, axis, 0, start, 1, out.name + "_before"))
    parts.append(src)
    if slice_bound(end, dim) != slice_bound(BIG, dim):
        parts.append(slice_ref(ctx, x, axis, end, BIG, 1, out.name + "_after"))
    return ctx.g.op("concat", parts, axis=axis, out=out.name)


def _scatter_strided(ctx: Context, x: Value, src: Value, axis: int, start: Any, end: Any, step: int) -> Ref:
    """``x`` with ``x[start:end:step]`` on ``axis`` replaced by ``src`` (``step`` > 1, a static size on ``axis``).

    The bounds are normalised as torch does (negative ones counted from the end, then clamped to the axis, an
    end before the start taking nothing). The ``k`` positions written are ``start + i * step``: the first
    ``k - 1`` of them head groups of ``step`` elements of ``x``, so that window, reshaped to ``[k - 1, step]``,
    has its first column replaced by ``src[:k - 1]``; the last one takes ``src[k - 1]`` alone. The parts of
    ``x`` around them are concatenated back: exact, for any dtype, with only slice, reshape and concat.
    """
    node, out, g = current_node(ctx), ctx.out, ctx.g
    (size,) = static_sizes(node, x, [axis], "slice_scatter with a step other than 1")
    if any(isinstance(v, SymInt) for v in (start, end)):
        raise TranslationError(f"{node.where()}: slice_scatter with a step other than 1 at symbolic bounds")
    begin = slice_bound(0 if start is None else start, size)
    stop = max(begin, slice_bound(BIG if end is None else end, size))
    count = -(-(stop - begin) // step)
    if count == 0:
        return g.op("copy", ctx.ref(x), out=out.name)
    last = begin + (count - 1) * step
    parts: list[Any] = []
    if begin > 0:
        parts.append(slice_ref(ctx, x, axis, 0, begin, 1, out.name + "_before"))
    if count > 1:
        window = slice_ref(ctx, x, axis, begin, last, 1, out.name + "_window")
        window = g.op("reshape", window, shape=[count - 1, step], axis_start=axis, axis_count=1)
        rest = g.op("slice", window, axes=[axis + 1], begin=[1], end=[step], stride=[1])
        head = slice_ref(ctx, src, axis, 0, count - 1, 1, out.name + "_head")
        head = g.op("unsqueeze", head, axes=[axis + 1])
        window = g.op("concat", [head, rest], axis=axis + 1)
        parts.append(g.op("reshape", window, shape=[(count - 1) * step], axis_start=axis, axis_count=2))
    parts.append(slice_ref(ctx, src, axis, count - 1, count, 1, out.name + "_last"))
    if last + 1 < size:
        parts.append(slice_ref(ctx, x, axis, last + 1, size, 1, out.name + "_after"))
    return g.op("concat", parts, axis=axis, out=out.name)


@register("aten::slice_scatter")
def aten_slice_scatter(
    ctx: Context, self: Value, src: Value, dim: int = 0, start: Any = None, end: Any = None, step: int = 1
) -> Ref:
    """slice_scatter(Tensor self, Tensor src, int dim=0, SymInt? start=None, SymInt? end=None, SymInt step=1) -> Tensor.

    ``x[..., start:end:step] = src`` out of place (in-place writes into a slice): slices of ``self`` around
    ``src``, concatenated. With a step other than 1 (a static size on ``dim``), the strided positions are
    written through a reshape of the window they span into groups of ``step``.
    """
    axis = wrap_axis(dim, self.rank)
    if step != 1:
        if not isinstance(step, int) or step < 1:
            raise TranslationError(f"{ctx.where()}: slice_scatter with the step {step} is not supported")
        return _scatter_strided(ctx, self, src, axis, start, end, step)
    return _scatter_slice(ctx, self, ctx.ref(src), axis, start, end)


@register("aten::select_scatter")
def aten_select_scatter(ctx: Context, self: Value, src: Value, dim: int, index: Any) -> Ref:
    """select_scatter(Tensor self, Tensor src, int dim, SymInt index) -> Tensor: ``x[..., index] = src``."""
    axis = wrap_axis(dim, self.rank)
    if not isinstance(index, int):
        raise TranslationError(f"{ctx.where()}: select_scatter at a symbolic index is not supported yet")
    row = ctx.g.op("unsqueeze", ctx.ref(src), axes=[axis], out=ctx.out.name + "_row")
    end = index + 1 if index != -1 else None
    return _scatter_slice(ctx, self, row, axis, index, end)


@register("aten::select.int")
def aten_select(ctx: Context, self: Value, dim: int, index: Any) -> Ref:
    """select.int(Tensor self, int dim, SymInt index) -> Tensor: the axis is removed."""
    axis = wrap_axis(dim, self.rank)
    end = index + 1 if isinstance(index, int) and index != -1 else BIG
    y = slice_ref(ctx, self, axis, index, end, 1, ctx.out.name + "slice_ref")
    return ctx.g.op("squeeze", y, axes=[axis], out=ctx.out.name)


def _gather(ctx: Context, data: Value, indices: Value, axis: int) -> Ref:
    node, out = current_node(ctx), ctx.out
    if not ctx.tract:
        tools_only(ctx, node, "needs a gather")
        index = cast_to(ctx, node, ctx.ref(indices), indices.dtype, "i64")
        return ctx.g.op("gather", ctx.ref(data), index, axis=axis, out=out.name)
    ctx.g.need("tract_registry tract_core")
    table = ctx.ref(data)
    # tract gathers rows of Q4_0 blocks only when told the dtype to decode them to.
    attrs = {"datum_type": out.dtype} if table in ctx.g.block_quantized else {}
    return ctx.g.op("tract_core_gather", table, ctx.ref(indices), axis=axis, out=out.name, **attrs)


@register("aten::embedding")
def aten_embedding(
    ctx: Context,
    weight: Value,
    indices: Value,
    padding_idx: Any = -1,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
) -> Ref:
    """embedding(Tensor weight, Tensor indices, SymInt padding_idx=-1, bool scale_grad_by_freq=False, bool
    sparse=False) -> Tensor: ``weight[indices]`` (the other arguments concern the gradient).
    """
    return _gather(ctx, weight, indices, 0)


@register("aten::index_select")
def aten_index_select(ctx: Context, self: Value, dim: int, index: Value) -> Ref:
    """index_select(Tensor self, int dim, Tensor index) -> Tensor."""
    return _gather(ctx, self, index, wrap_axis(dim, self.rank))


@register("aten::masked_fill.Scalar", "aten::masked_fill.Tensor")
def aten_masked_fill(ctx: Context, self: Value, mask: Value, value: Any) -> Ref:
    """masked_fill.Scalar(Tensor self, Tensor mask, Scalar value) -> Tensor (and .Tensor, a 0-d tensor value):
    where(mask, value, self).
    """
    out = ctx.out
    fill = (
        align_rank(ctx, value, out.rank, out)
        if isinstance(value, Value)
        else scalar_const(ctx, value, out.dtype, out.rank)
    )
    return ctx.g.op(
        "select", align_rank(ctx, mask, out.rank, out), fill, align_rank(ctx, self, out.rank, out), out=out.name
    )


@register("aten::gather")
def aten_gather(ctx: Context, self: Value, dim: int, index: Value, *, sparse_grad: bool = False) -> Ref:
    """gather(Tensor self, int dim, Tensor index, *, bool sparse_grad=False) -> Tensor.

    For Khronos: a gather from the flattened tensor at each element's offset in it (the index
    times the axis' stride, plus the offset of its other coordinates, computed in f32: exact below
    2^24 elements).
    """
    axis = wrap_axis(dim, self.rank)
    if not ctx.tract:
        return _flat_gather(ctx, self, axis, index)
    return ctx.g.op("tract_core_gather_elements", ctx.ref(self), ctx.ref(index), axis=axis, out=ctx.out.name)


def _flat_gather(ctx: Context, x: Value, axis: int, index: Value) -> Ref:
    """``torch.gather`` for Khronos (see :func:`aten_gather`)."""
    node, out, g = current_node(ctx), ctx.out, ctx.g
    tools_only(ctx, node, "needs an elementwise gather")
    sizes = static_sizes(node, x, list(range(x.rank)), "gather for KhronosNNEF")
    shape = static_sizes(node, index, list(range(index.rank)), "gather for KhronosNNEF")
    _exact_offsets(node, math.prod(sizes))
    strides, base = _flat_offsets(sizes, shape, axis)
    base_ref = g.variable(base, f"gather_offsets_{out.name}")
    offset = g.op("mul", cast_to(ctx, node, ctx.ref(index), index.dtype, "f32"), float(strides[axis]))
    flat_index = cast_to(ctx, node, g.op("add", offset, base_ref), "f32", "i64")
    flat = g.op("reshape", ctx.ref(x), shape=[math.prod(sizes)])
    return g.op("gather", flat, flat_index, axis=0, out=out.name)


def _flat_offsets(sizes: list[int], shape: list[int], axis: int) -> tuple[list[int], np.ndarray]:
    """The strides of a contiguous tensor of ``sizes``, and for each element of an index of ``shape``
    along ``axis`` the flat offset of its other coordinates (f32, of ``shape``).
    """
    strides = [math.prod(sizes[a + 1 :]) for a in range(len(sizes))]
    coordinates = np.indices(shape, dtype=np.float64)
    base = sum((coordinates[a] * strides[a] for a in range(len(shape)) if a != axis), np.zeros(shape))
    return strides, np.asarray(base, dtype=np.float32)


def _exact_offsets(node: Node, count: int) -> None:
    """Refuses offsets computed in f32 that could be inexact (2^24 elements or more)."""
    if count >= 1 << 24:
        raise TranslationError(
            f"{node.where()}: {node.kind} for KhronosNNEF computes offsets in f32, exact below 2^24 elements, "
            f"and this tensor has {count}: TractNNEF writes it"
        )


def _wrapped_index(ctx: Context, node: Node, index: Value, size: int) -> Ref:
    """A Khronos index tensor (as f32) with negative entries counted from the end of an axis of ``size``."""
    g = ctx.g
    _exact_offsets(node, size)
    f = cast_to(ctx, node, ctx.ref(index), index.dtype, "f32")
    return g.op("select", g.op("lt", f, 0.0), g.op("add", f, float(size)), f)


def _merged_offset(ctx: Context, node: Node, chosen: list[Value], sizes: list[int], rank: int) -> Any:
    """The offset (f32, of the ``rank`` axes the index tensors ``chosen`` broadcast to) of each indexed
    element in the axes of ``sizes`` merged into one: the wrapped indices times their strides, summed.
    """
    g = ctx.g
    _exact_offsets(node, math.prod(sizes))
    offset: Any = None
    for k, (idx, size) in enumerate(zip(chosen, sizes)):
        term = _wrapped_index(ctx, node, idx, size)
        if idx.rank < rank:  # NNEF broadcasts from the leading axes: align on the trailing ones
            term = g.op("unsqueeze", term, axes=list(range(rank - idx.rank)))
        stride = math.prod(sizes[k + 1 :])
        term = g.op("mul", term, float(stride)) if stride != 1 else term
        offset = term if offset is None else g.op("add", offset, term)
    return offset


def _khronos_index(ctx: Context, x: Value, indices: list[Value | None]) -> Ref:
    """``x[idx]``, ``x[:, i, j]`` for Khronos: the indexed axes are moved to the front and merged, and
    the broadcast indices combined into one offset (in f32, exact below 2^24) to gather from them.
    """
    node, out, g = current_node(ctx), ctx.out, ctx.g
    tools_only(ctx, node, "needs a gather")
    positions = [k for k, i in enumerate(indices) if i is not None]
    chosen = [i for i in indices if i is not None]
    sizes = static_sizes(node, x, positions, "indexing for KhronosNNEF")
    batch = broadcast_shape([i.shape for i in chosen])
    flat_index = cast_to(ctx, node, _merged_offset(ctx, node, chosen, sizes, len(batch)), "f32", "i64")
    others = [a for a in range(x.rank) if a not in positions]
    perm = positions + others
    xr = g.op("transpose", ctx.ref(x), axes=perm) if perm != list(range(x.rank)) else ctx.ref(x)
    if len(positions) > 1:
        xr = g.op("reshape", xr, shape=[math.prod(sizes)], axis_start=0, axis_count=len(positions))
    adjacent = positions == list(range(positions[0], positions[0] + len(positions)))
    if len(positions) == 1:  # one index keeps the axis in place
        return g.op("gather", ctx.ref(x), flat_index, axis=positions[0], out=out.name)
    y = g.op("gather", xr, flat_index, axis=0)
    if adjacent and positions[0] > 0:
        nb, lead = len(batch), positions[0]
        back = list(range(nb, nb + lead)) + list(range(nb)) + list(range(nb + lead, out.rank))
        return g.op("transpose", y, axes=back, out=out.name)
    return g.op("copy", y, out=out.name)


def _broadcast_to(ctx: Context, v: Value, shape: list[Dim]) -> Any:
    node = current_node(ctx)
    ref = align_rank(ctx, v, len(shape), v)
    have = (1,) * (len(shape) - v.rank) + tuple(v.shape)
    repeats = [dim_of(node, w) if h == 1 and w != 1 else 1 for h, w in zip(have, shape)]
    return ctx.g.op("tile", ref, repeats=repeats) if any(r != 1 for r in repeats) else ref


@register("aten::copy")
def aten_copy(ctx: Context, self: Value, src: Value, non_blocking: bool = False) -> Ref:
    """copy(Tensor self, Tensor src, bool non_blocking=False) -> Tensor: ``src`` broadcast to the shape of
    ``self`` and cast to its dtype (out-of-place ``self.copy_(src)``).
    """
    out = ctx.out
    y = _broadcast_to(ctx, src, list(out.shape)) if tuple(src.shape) != tuple(out.shape) else ctx.ref(src)
    y = cast_to(ctx, current_node(ctx), y, src.dtype, out.dtype)
    return ctx.g.op("copy", y, out=out.name)


@register("aten::index.Tensor", "aten::_unsafe_index.Tensor")
def aten_index(ctx: Context, self: Value, indices: list[Value | None]) -> Ref:
    """index.Tensor(Tensor self, Tensor?[] indices) -> Tensor: ``x[idx]``, ``x[:, idx]``, ``x[i, j]``.

    ``_unsafe_index.Tensor`` (indices not checked) is translated alike.
    """
    x, out, node = self, ctx.out, current_node(ctx)
    indices = list(indices)
    if any(isinstance(i, Value) and i.dtype == "bool" for i in indices):
        raise TranslationError(f"{node.where()}: indexing with a boolean mask gives a data-dependent shape")
    if not ctx.tract:
        return _khronos_index(ctx, x, indices)
    ctx.g.need("tract_registry tract_core")
    g = ctx.g
    positions = [k for k, i in enumerate(indices) if i is not None]
    if len(positions) == 1:
        k = positions[0]
        return g.op("tract_core_gather", ctx.ref(x), ctx.ref(indices[k]), axis=k, out=out.name)
    # Several index tensors: their axes move to the front, the broadcast indices are stacked on a last
    # axis and gathered at once (tract_core_gather_nd does not wrap negative indices: they are wrapped here).
    others = [a for a in range(x.rank) if a not in positions]
    perm = positions + others
    xr = g.op("transpose", ctx.ref(x), axes=perm) if perm != list(range(x.rank)) else ctx.ref(x)
    chosen = [i for i in indices if i is not None]
    batch = broadcast_shape([i.shape for i in chosen])
    dtype = "i64"
    columns = []
    for k, idx in zip(positions, chosen):
        column = cast_to(ctx, node, _broadcast_to(ctx, idx, batch), idx.dtype, dtype)
        size = operand_ref(
            ctx, node, x.shape[k] if isinstance(x.shape[k], int) else SymInt(str(x.shape[k])), dtype, len(batch)
        )
        zero = scalar_const(ctx, 0, dtype, len(batch))
        wrapped = g.op("select", g.op("lt", column, zero), g.op("add", column, size), column)
        columns.append(g.op("unsqueeze", wrapped, axes=[len(batch)]))
    stacked = g.op("concat", columns, axis=len(batch))
    y = g.op("tract_core_gather_nd", xr, stacked, batch_dims=0)
    adjacent = positions == list(range(positions[0], positions[0] + len(positions)))
    if adjacent and positions[0] > 0:
        # Adjacent indexed axes keep their place: the leading untouched axes go back in front.
        nb, lead = len(batch), positions[0]
        back = list(range(nb, nb + lead)) + list(range(nb)) + list(range(nb + lead, out.rank))
        return g.op("transpose", y, axes=back, out=out.name)
    return g.op("copy", y, out=out.name)


@register("aten::masked_scatter")
def aten_masked_scatter(ctx: Context, self: Value, mask: Value, source: Value) -> Ref:
    """masked_scatter(Tensor self, Tensor mask, Tensor source) -> Tensor.

    The positions where the (broadcast) mask holds take the source's elements in row-major
    order: element ``k`` of the flat source goes to the ``k``-th true position, found by a
    cumulative sum over the flat mask and gathered. For the Khronos tools the sum is a product by a
    triangle of ones (in f32, up to :data:`_TRIANGLE_LIMIT` positions).
    """
    x, out, node = self, ctx.out, current_node(ctx)
    if not ctx.tract:
        tools_only(ctx, node, "needs a gather")
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
    source_size = math.prod(int(d) for d in source.shape)
    flat_source = g.op("reshape", ctx.ref(source), shape=[source_size])
    if ctx.tract:
        counts = g.op(
            "tract_core_cumsum", g.op("tract_core_cast", flat_mask, to="i64"), axis=0, exclusive=True, reverse=False
        )
        # Positions past the source (where the mask is false) are clamped: select drops them.
        index = g.op("min", counts, scalar_const(ctx, max(source_size - 1, 0), "i64", 1))
        gathered = g.op("tract_core_gather", flat_source, index, axis=0)
    else:
        if total > _TRIANGLE_LIMIT:
            raise TranslationError(
                f"{node.where()}: masked_scatter for KhronosNNEF counts the positions before each of {total} with a "
                f"triangle of ones, up to {_TRIANGLE_LIMIT} positions: TractNNEF writes it"
            )
        ones = g.op("reshape", g.op("select", flat_mask, 1.0, 0.0), shape=[1, total])
        before = g.variable(np.triu(np.ones((total, total), dtype=np.float32), 1), f"positions_before_{total}")
        counts = g.op("reshape", g.op("matmul", ones, before), shape=[total])
        index = g.op("min", counts, float(max(source_size - 1, 0)))
        gathered = g.op("gather", flat_source, cast_to(ctx, node, index, "f32", "i64"), axis=0)
    picked = g.op("reshape", gathered, shape=shape)
    base = cast_to(ctx, node, align_rank(ctx, x, out.rank, out), x.dtype, out.dtype)
    return g.op("select", m, picked, base, out=out.name)


_TRIANGLE_LIMIT = 2048
"""The most positions a Khronos ``masked_scatter`` counts with a ``[n, n]`` triangle of ones."""

_BAG_MODES = {0: "sum", 1: "mean", 2: "max"}


@register("aten::embedding_bag", "aten::embedding_bag.padding_idx", "aten::_embedding_bag")
def aten_embedding_bag(
    ctx: Context,
    weight: Value,
    indices: Value,
    offsets: Value,
    scale_grad_by_freq: bool = False,
    mode: int = 0,
    sparse: bool = False,
    per_sample_weights: Value | None = None,
    include_last_offset: bool = False,
    padding_idx: int | None = -1,
) -> Ref:
    """embedding_bag.padding_idx(Tensor weight, Tensor indices, Tensor offsets, bool scale_grad_by_freq, int mode,
    bool sparse, Tensor? per_sample_weights, bool include_last_offset, int? padding_idx) -> (Tensor, Tensor,
    Tensor, Tensor); embedding_bag without ``padding_idx``, _embedding_bag with ``padding_idx=-1``: output 0.

    Rows are gathered, then each bag (positions from its offset to the next, read at run time) is
    reduced by a membership mask: a product for sum and mean, a masked maximum for max; empty bags
    give zeros, and rows at ``padding_idx`` are left out, as in PyTorch.
    """
    out, node = ctx.out, current_node(ctx)
    bag_mode = _BAG_MODES[int(mode)]
    if not ctx.tract:
        tools_only(ctx, node, "needs a gather")
    if not all(isinstance(d, int) for d in (*indices.shape, *offsets.shape, *out.shape)):
        raise TranslationError(f"{node.where()}: embedding_bag over a dynamic number of indices is not supported")
    g = ctx.g
    n = math.prod(int(d) for d in indices.shape)
    bags = int(out.shape[0])
    # positions are compared as i64 in tract, as f32 (exact below 2^24) with the Khronos tools
    idt = "i64" if ctx.tract else "f32"
    if not ctx.tract:
        _exact_offsets(node, n)
    flat = g.op("reshape", ctx.ref(indices), shape=[n]) if indices.rank != 1 else ctx.ref(indices)
    if ctx.tract:
        rows = g.op("tract_core_gather", ctx.ref(weight), flat, axis=0)  # [n, d]
    else:
        rows = g.op("gather", ctx.ref(weight), cast_to(ctx, node, flat, indices.dtype, "i64"), axis=0)
    if indices.rank == 2:  # fixed-size bags: offsets are 0, L, 2L...
        length = int(indices.shape[1])
        starts: Any = g.variable(
            np.arange(0, n, length, dtype=NUMPY[idt]).reshape(bags, 1), f"bag_starts_{idt}_{n}_{length}"
        )
        ends: Any = g.variable(
            np.arange(length, n + 1, length, dtype=NUMPY[idt]).reshape(bags, 1), f"bag_ends_{idt}_{n}_{length}"
        )
    else:
        offs = g.op("unsqueeze", cast_to(ctx, node, ctx.ref(offsets), offsets.dtype, idt), axes=[1])  # [k, 1]
        starts = g.op("slice", offs, axes=[0], begin=[0], end=[bags], stride=[1])
        if include_last_offset:
            ends = g.op("slice", offs, axes=[0], begin=[1], end=[bags + 1], stride=[1])
        else:
            last = g.variable(np.full((1, 1), n, dtype=NUMPY[idt]), f"bag_total_{idt}_{n}")
            ends = g.op("concat", [g.op("slice", offs, axes=[0], begin=[1], end=[bags], stride=[1]), last], axis=0)
    positions = g.variable(np.arange(n, dtype=NUMPY[idt]).reshape(1, n), f"bag_positions_{idt}_{n}")
    member = g.op("and", g.op("ge", positions, starts), g.op("lt", positions, ends))  # [bags, n]
    if padding_idx is not None and padding_idx >= 0:
        keep = g.op("ne", cast_to(ctx, node, flat, indices.dtype, idt), scalar_const(ctx, int(padding_idx), idt, 1))
        member = g.op("and", member, g.op("unsqueeze", keep, axes=[0]))
    one, zero = scalar_const(ctx, 1.0, out.dtype, 2), scalar_const(ctx, 0.0, out.dtype, 2)
    mask = g.op("select", member, one, zero)  # [bags, n] in the output's dtype
    count = g.op("sum_reduce", mask, axes=[1])  # [bags, 1]
    if bag_mode == "max":
        lowest = scalar_const(ctx, float(np.finfo(NUMPY[out.dtype]).min), out.dtype, 3)
        masked = g.op("select", g.op("unsqueeze", member, axes=[2]), g.op("unsqueeze", rows, axes=[0]), lowest)
        top = g.op("squeeze", g.op("max_reduce", masked, axes=[1]), axes=[1])
        return g.op("select", g.op("gt", count, zero), top, zero, out=out.name)
    if per_sample_weights is not None:
        mask = g.op("mul", mask, g.op("reshape", ctx.ref(per_sample_weights), shape=[1, n]))
    total = g.op("matmul", mask, rows, transposeA=False, transposeB=False)
    if bag_mode == "sum":
        return g.op("copy", total, out=out.name)
    return g.op("div", total, g.op("max", count, one), out=out.name)


def _multi(ctx: Context, op: str, args: list[Any], outs: list[str], **attrs: Any) -> list[Ref]:
    """Emits ``(a, b) = op(args, key = value, ...)`` for an operator with several results."""
    ctx.g.require(op)
    refs = [ctx.g.fresh(o) for o in outs]
    parts = [literal(a) for a in args] + [f"{k} = {literal(v)}" for k, v in attrs.items()]
    ctx.g.lines.append(f"({', '.join(refs)}) = {op}({', '.join(parts)});")
    return refs


def _topk(ctx: Context, node: Node, x: Value, k: Any, axis: int, largest: bool, names: list[str]) -> list[Ref]:
    """``[values, indices]`` of the ``k`` largest (smallest) along ``axis``, sorted; for Khronos by
    ranking (:func:`_ranked`), the indices with the Khronos tools only.
    """
    if not ctx.tract:
        return _ranked(ctx, node, x, k, axis, largest, names)
    ctx.g.need("tract_registry tract_core")
    kref = k if isinstance(k, int) else _runtime_size(ctx, x, axis) if k == x.shape[axis] else None
    bound = _bound_by_axis(k, x.shape[axis]) if kref is None else None
    if bound is not None:  # ``min(c, axis size)``: at most c, fewer when the axis is shorter (sparse attention)
        kref = ctx.g.op("min", _runtime_size(ctx, x, axis), scalar_const(ctx, bound, "i64", 0))
    if kref is None:
        raise TranslationError(
            f"{node.where()}: topk of a symbolic k other than the axis size, or the least of it and a number, "
            "is not supported"
        )
    return _multi(ctx, "tract_core_topk", [ctx.ref(x), kref], names, axis=axis, largest=largest)


def _bound_by_axis(k: Any, size: Any) -> int | None:
    """``c`` when the symbolic ``k`` is ``min(c, size)`` for a number ``c`` (None otherwise)."""
    if not isinstance(k, SymInt) or isinstance(size, int):
        return None
    import sympy  # type: ignore[import-untyped]

    tree, axis = parse_size(k.expr), parse_size(str(size))
    if tree is None or axis is None:
        return None
    if tree.func is not sympy.Min or len(tree.args) != 2:
        return None
    numbers = [a for a in tree.args if a.is_Integer]
    others = [a for a in tree.args if not a.is_Integer]
    if len(numbers) == 1 and len(others) == 1 and sympy.simplify(others[0] - axis) == 0:
        return int(numbers[0])
    return None


def _ranked(ctx: Context, node: Node, x: Value, k: Any, axis: int, largest: bool, names: list[str]) -> list[Ref]:
    """The first ``k`` values in order with specification ops (static sizes): each element's rank is the count
    of the elements before it (smaller or larger, or equal at a lower index), and output ``j`` sums the
    elements of rank ``j``. Their indices likewise sum the positions of rank ``j``, in f32 (exact below
    2^24), cast to integers by the Khronos tools' ``cast`` (the specification's text has none).
    """
    out = names[0]
    (n,) = static_sizes(node, x, [axis], f"{node.kind} for KhronosNNEF")
    if not isinstance(k, int) or not x.dtype.startswith("f"):
        raise TranslationError(
            f"{node.where()}: {node.kind} for KhronosNNEF needs a static k and floats: use TractNNEF"
        )
    g, last = ctx.g, x.rank - 1
    perm = [a for a in range(x.rank) if a != axis] + [axis]
    y = g.op("transpose", ctx.ref(x), axes=perm) if axis != last else ctx.ref(x)
    mine, other = g.op("unsqueeze", y, axes=[last + 1]), g.op("unsqueeze", y, axes=[last])  # [.., n, 1], [.., 1, n]
    lead = (1,) * last
    earlier = g.variable(np.tril(np.ones((n, n), dtype=bool), -1).reshape((*lead, n, n)), f"sort_earlier_{n}_r{x.rank}")
    ahead = g.op("or", g.op("gt" if largest else "lt", other, mine), g.op("and", g.op("eq", other, mine), earlier))
    rank = g.op("sum_reduce", g.op("select", ahead, 1.0, 0.0), axes=[last + 1])  # [.., n, 1]
    slots = g.variable(np.arange(k, dtype=np.float32).reshape((*lead, 1, k)), f"sort_slots_{k}_r{x.rank}")
    placed = g.op("eq", rank, slots)  # [.., n, k]: element i is the j-th
    picked = g.op("select", placed, mine, 0.0)
    values = g.op("squeeze", g.op("sum_reduce", picked, axes=[last]), axes=[last])
    back = [perm.index(a) for a in range(x.rank)]
    results = [g.op("copy", values, out=out) if axis == last else g.op("transpose", values, axes=back, out=out)]
    if len(names) > 1 and ctx.khronos_tools:
        _exact_offsets(node, n)
        positions = g.variable(np.arange(n, dtype=np.float32).reshape((*lead, n, 1)), f"sort_positions_{n}_r{x.rank}")
        where = g.op("squeeze", g.op("sum_reduce", g.op("select", placed, positions, 0.0), axes=[last]), axes=[last])
        where = where if axis == last else g.op("transpose", where, axes=back)
        results.append(cast_to(ctx, node, where, "f32", "i64", out=names[1]))
    return results


def _runtime_size(ctx: Context, x: Value, axis: int) -> Ref:
    """The size of a dynamic ``axis`` of ``x`` as an i64 tensor computed when the model runs (tract's topk
    reads its ``k`` there, where a symbol would be left unresolved): a count of ones along the axis.
    """
    g = ctx.g
    others = [a for a in range(x.rank) if a != axis]
    line = ctx.ref(x)
    if others:
        line = g.op(
            "slice", line, axes=others, begin=[0] * len(others), end=[1] * len(others), stride=[1] * len(others)
        )
    ones = g.op("tract_core_cast", g.op("or", g.op("eq", line, line), g.op("ne", line, line)), to="i64")
    count = g.op("sum_reduce", ones, axes=list(range(x.rank)))
    return g.op("reshape", count, shape=[1])


def _sort(ctx: Context, x: Value, dim: int, descending: bool) -> list[Ref]:
    """Values and indices of ``x`` sorted along ``dim``: a ``tract_core_topk`` of the whole axis (stable: equal
    values keep their order); for Khronos the values only, by ranking.
    """
    axis = wrap_axis(dim, x.rank)
    values, indices = current_node(ctx).outputs
    return _topk(ctx, current_node(ctx), x, x.shape[axis], axis, bool(descending), [values.name, indices.name])


@register("aten::sort")
def aten_sort(ctx: Context, self: Value, dim: int = -1, descending: bool = False) -> list[Ref]:
    """sort(Tensor self, int dim=-1, bool descending=False) -> (Tensor values, Tensor indices): always stable."""
    return _sort(ctx, self, dim, descending)


@register("aten::sort.stable")
def aten_sort_stable(
    ctx: Context, self: Value, *, stable: bool | None = None, dim: int = -1, descending: bool = False
) -> list[Ref]:
    """sort.stable(Tensor self, *, bool? stable, int dim=-1, bool descending=False) -> (Tensor values, Tensor
    indices): stable whatever ``stable`` says (a stable order is a valid unstable one).
    """
    return _sort(ctx, self, dim, descending)


def _argsort(ctx: Context, x: Value, dim: int, descending: bool) -> Ref:
    """The indices that sort ``x`` along ``dim`` (stable), by a ``tract_core_topk`` of the whole axis."""
    node, out = current_node(ctx), ctx.out
    axis = wrap_axis(dim, x.rank)
    if not ctx.tract:
        tools_only(ctx, node, "gives indices, which need a cast")
    _, indices = _topk(ctx, node, x, x.shape[axis], axis, bool(descending), [out.name + "_values", out.name])
    return indices


@register("aten::argsort")
def aten_argsort(ctx: Context, self: Value, dim: int = -1, descending: bool = False) -> Ref:
    """argsort(Tensor self, int dim=-1, bool descending=False) -> Tensor."""
    return _argsort(ctx, self, dim, descending)


@register("aten::argsort.stable")
def aten_argsort_stable(ctx: Context, self: Value, *, stable: bool, dim: int = -1, descending: bool = False) -> Ref:
    """argsort.stable(Tensor self, *, bool stable, int dim=-1, bool descending=False) -> Tensor: stable whatever
    ``stable`` says.
    """
    return _argsort(ctx, self, dim, descending)


@register("aten::topk")
def aten_topk(ctx: Context, self: Value, k: Any, dim: int = -1, largest: bool = True, sorted: bool = True) -> list[Ref]:
    """topk(Tensor self, SymInt k, int dim=-1, bool largest=True, bool sorted=True) -> (Tensor values, Tensor
    indices).

    Always sorted (``sorted=False`` leaves the order unspecified, so sorted is a valid answer).
    """
    axis = wrap_axis(dim, self.rank)
    values, indices = current_node(ctx).outputs
    return _topk(ctx, current_node(ctx), self, k, axis, bool(largest), [values.name, indices.name])


_REDUCTIONS = {"sum": "add", "add": "add", "prod": "mul", "multiply": "mul", "amax": "max", "amin": "min"}


def _scatter_elements(
    ctx: Context, x: Any, index: Any, updates: Any, axis: int, reduction: str, out: str, index_of: Value
) -> Ref:
    """``x`` (of the output's shape) with ``updates`` written or combined at ``index`` (of the shape and
    dtype of ``index_of``) along ``axis``: tract's scatter, or for the Khronos tools a mask of the
    places each update goes to (:func:`_masked_scatter`).
    """
    if ctx.tract:
        ctx.g.need("tract_registry tract_core")
        return ctx.g.op("tract_core_scatter_elements", x, index, updates, axis=axis, reduction=reduction, out=out)
    return _masked_scatter(ctx, x, index, updates, axis, reduction, out, index_of)


_MASKED_SCATTER_LIMIT = 1 << 22
"""The largest mask (output elements times updates) a Khronos scatter is composed with."""


def _masked_scatter(
    ctx: Context,
    x: Any,
    index: Any,
    updates: Any,
    axis: int,
    reduction: str,
    out: str,
    index_of: Value,
    into: Value | None = None,
) -> Ref:
    """A scatter for the Khronos tools: the flat offset of each update (its index times the axis'
    stride plus the offset of its other coordinates, in f32) compared with every offset of the
    output gives a ``[n, m]`` mask; written places take the sum of their updates (one update for a
    plain write), the largest or smallest, or add them.
    """
    into = into or ctx.out  # what is written into: the output unless told
    node, g, dtype = current_node(ctx), ctx.g, into.dtype
    tools_only(ctx, node, "needs a scatter")
    if dtype != "f32" or reduction == "mul":
        what = "integer arithmetic" if dtype != "f32" else "a product of the updates"
        raise TranslationError(
            f"{node.where()}: {node.kind} of {dtype} needs {what}, which the Khronos tools lack: TractNNEF writes it"
        )
    sizes = static_sizes(node, into, list(range(into.rank)), "a scatter for KhronosNNEF")
    shape = static_sizes(node, index_of, list(range(index_of.rank)), "a scatter for KhronosNNEF")
    n, m = math.prod(sizes), math.prod(shape)
    _exact_offsets(node, n)
    if n * m > _MASKED_SCATTER_LIMIT:
        raise TranslationError(
            f"{node.where()}: {node.kind} for KhronosNNEF compares each of {n} places with each of {m} updates, "
            "too many here: TractNNEF writes it"
        )
    strides, base = _flat_offsets(sizes, shape, axis)
    base_ref = g.variable(base.reshape(1, m), f"scatter_offsets_{out}")
    offsets = g.op("reshape", cast_to(ctx, node, index, index_of.dtype, "f32"), shape=[1, m])
    offsets = g.op("add", g.op("mul", offsets, float(strides[axis])), base_ref)
    places = g.variable(np.arange(n, dtype=np.float32).reshape(n, 1), f"scatter_places_{n}")
    mask = g.op("eq", places, offsets)  # [n, m]: update q goes to place p
    values = g.op("reshape", updates, shape=[1, m])
    flat = g.op("reshape", x, shape=[n])
    hit = g.op("squeeze", g.op("any_reduce", mask, axes=[1]), axes=[1])
    if reduction in ("none", "add"):
        total = g.op("squeeze", g.op("sum_reduce", g.op("select", mask, values, 0.0), axes=[1]), axes=[1])
        y = g.op("add", flat, total) if reduction == "add" else g.op("select", hit, total, flat)
    else:
        lowest = float(np.finfo(np.float32).max) * (-1.0 if reduction == "max" else 1.0)
        picked = g.op("select", mask, values, lowest)
        best = g.op("squeeze", g.op(f"{reduction}_reduce", picked, axes=[1]), axes=[1])
        y = g.op("select", hit, g.op(reduction, flat, best), flat)
    return g.op("reshape", y, shape=sizes, out=out)


def _updates(ctx: Context, src: Any, index: Value, dtype: str) -> Any:
    """``src`` as updates of the shape of ``index``: a scalar filled in, a larger tensor cropped."""
    if not isinstance(src, Value):
        return _filled_like(ctx, index, src, dtype)
    node = current_node(ctx)
    ref = cast_to(ctx, node, ctx.ref(src), src.dtype, dtype)
    if tuple(src.shape) == tuple(index.shape):
        return ref
    ends = [dim_of(node, d) for d in index.shape]
    return ctx.g.op(
        "slice", ref, axes=list(range(index.rank)), begin=[0] * index.rank, end=ends, stride=[1] * index.rank
    )


def _filled_like(ctx: Context, like: Value, value: Any, dtype: str) -> Ref:
    """A tensor of ``like``'s shape filled with the scalar ``value`` of ``dtype``."""
    array = np.full((1,) * like.rank, value, dtype=NUMPY[dtype])
    label = f"constant_{dtype}_{str(value).replace('-', 'minus_').replace('.', 'p')}_r{like.rank}"
    one = ctx.g.variable(array, label)
    return ctx.g.op("tile", one, repeats=[dim_of(current_node(ctx), d) for d in like.shape])


def _scatter(ctx: Context, x: Value, dim: int, index: Value, src: Any, reduce: str | None) -> Ref:
    """``x`` with ``src`` (a tensor or a scalar) written at ``index`` along ``dim``, or combined by ``reduce``
    ('add' or 'multiply').
    """
    out = ctx.out
    axis = wrap_axis(dim, x.rank)
    reduction = "none" if reduce is None else _REDUCTIONS[reduce]
    updates = _updates(ctx, src, index, out.dtype)
    return _scatter_elements(ctx, ctx.ref(x), ctx.ref(index), updates, axis, reduction, out.name, index)


@register("aten::scatter.src", "aten::scatter.reduce")
def aten_scatter(ctx: Context, self: Value, dim: int, index: Value, src: Value, *, reduce: str | None = None) -> Ref:
    """scatter.src(Tensor self, int dim, Tensor index, Tensor src) -> Tensor; scatter.reduce(..., *, str reduce):
    'add' or 'multiply'.
    """
    return _scatter(ctx, self, dim, index, src, reduce)


@register("aten::scatter.value", "aten::scatter.value_reduce")
def aten_scatter_value(
    ctx: Context, self: Value, dim: int, index: Value, value: Any, *, reduce: str | None = None
) -> Ref:
    """scatter.value(Tensor self, int dim, Tensor index, Scalar value) -> Tensor; scatter.value_reduce(..., *,
    str reduce): 'add' or 'multiply'.
    """
    return _scatter(ctx, self, dim, index, value, reduce)


@register("aten::scatter_add")
def aten_scatter_add(ctx: Context, self: Value, dim: int, index: Value, src: Value) -> Ref:
    """scatter_add(Tensor self, int dim, Tensor index, Tensor src) -> Tensor."""
    return _scatter(ctx, self, dim, index, src, "add")


@register("aten::scatter_reduce.two")
def aten_scatter_reduce(
    ctx: Context, self: Value, dim: int, index: Value, src: Value, reduce: str, *, include_self: bool = True
) -> Ref:
    """scatter_reduce.two(Tensor self, int dim, Tensor index, Tensor src, str reduce, *, bool include_self=True)
    -> Tensor.

    'sum', 'prod', 'amax', 'amin' as the matching tract reduction; 'mean' (floats) as a sum over a count.
    Without ``include_self`` the scattered places are first reset to the reduction's identity.
    """
    x, out, node = self, ctx.out, current_node(ctx)
    axis = wrap_axis(dim, x.rank)
    include_self = bool(include_self)
    updates = _updates(ctx, src, index, out.dtype)
    g, xr, ir = ctx.g, ctx.ref(x), ctx.ref(index)
    if reduce == "mean":
        if not out.dtype.startswith("f"):
            raise TranslationError(f"{node.where()}: scatter_reduce 'mean' of {out.dtype} is not supported (floats)")
        base = (
            xr
            if include_self
            else _scatter_elements(
                ctx, xr, ir, _filled_like(ctx, index, 0.0, out.dtype), axis, "none", out.name + "_reset", index
            )
        )
        total = _scatter_elements(ctx, base, ir, updates, axis, "add", out.name + "_sum", index)
        ones = _filled_like(ctx, index, 1.0, out.dtype)
        start = _filled_like(ctx, x, 1.0 if include_self else 0.0, out.dtype)
        count = _scatter_elements(ctx, start, ir, ones, axis, "add", out.name + "_count", index)
        mean = g.op("div", total, g.op("max", count, 1.0))
        return g.op("select", g.op("gt", count, 0.0), mean, xr, out=out.name)
    if reduce not in _REDUCTIONS:
        raise TranslationError(f"{node.where()}: scatter_reduce {reduce!r} is not supported")
    reduction = _REDUCTIONS[reduce]
    if not include_self:
        if out.dtype.startswith("f"):
            info: Any = np.finfo(NUMPY[out.dtype])
        else:
            info = np.iinfo(NUMPY[out.dtype])
        identity = {"add": 0, "mul": 1, "max": info.min, "min": info.max}[reduction]
        reset = _filled_like(ctx, index, identity, out.dtype)
        xr = _scatter_elements(ctx, xr, ir, reset, axis, "none", out.name + "_reset", index)
    return _scatter_elements(ctx, xr, ir, updates, axis, reduction, out.name, index)


def _index_along(ctx: Context, index: Value, axis: int, like: Value) -> Ref:
    """A 1-D ``index`` of positions along ``axis`` as an elementwise index of ``like``'s shape."""
    y = (
        ctx.g.op("unsqueeze", ctx.ref(index), axes=[a for a in range(like.rank) if a != axis])
        if like.rank > 1
        else ctx.ref(index)
    )
    repeats = [1 if a == axis else dim_of(current_node(ctx), d) for a, d in enumerate(like.shape)]
    return ctx.g.op("tile", y, repeats=repeats) if any(r != 1 for r in repeats) else y


def _index_write(ctx: Context, x: Value, dim: int, index: Value, source: Value, alpha: Any, reduction: str) -> Ref:
    """``x`` with the rows of ``alpha * source`` written (reduction "none") or added ("add") at ``index`` along
    ``dim``.
    """
    out, node = ctx.out, current_node(ctx)
    axis = wrap_axis(dim, x.rank)
    updates = cast_to(ctx, node, ctx.ref(source), source.dtype, out.dtype)
    if alpha != 1:
        updates = ctx.g.op("mul", updates, scalar_const(ctx, alpha, out.dtype, out.rank))
    if source.rank == 0:
        updates = ctx.g.op("unsqueeze", updates, axes=[0])
    like = source if source.rank else Value(source.name, source.dtype, (1,))
    positions = _index_along(ctx, index, axis, like)
    along = Value(index.name + "_along", index.dtype, like.shape)
    return _scatter_elements(ctx, ctx.ref(x), positions, updates, axis, reduction, out.name, along)


@register("aten::index_copy")
def aten_index_copy(ctx: Context, self: Value, dim: int, index: Value, source: Value) -> Ref:
    """index_copy(Tensor self, int dim, Tensor index, Tensor source) -> Tensor: rows of ``source`` written at
    ``index`` along ``dim``.
    """
    return _index_write(ctx, self, dim, index, source, 1, "none")


@register("aten::index_add")
def aten_index_add(ctx: Context, self: Value, dim: int, index: Value, source: Value, *, alpha: Any = 1) -> Ref:
    """index_add(Tensor self, int dim, Tensor index, Tensor source, *, Scalar alpha=1) -> Tensor: rows of
    ``alpha * source`` added at ``index`` along ``dim``.
    """
    return _index_write(ctx, self, dim, index, source, alpha, "add")


@register("aten::index_put")
def aten_index_put(
    ctx: Context, self: Value, indices: list[Value | None], values: Value, accumulate: bool = False
) -> Ref:
    """index_put(Tensor self, Tensor?[] indices, Tensor values, bool accumulate=False) -> Tensor.

    ``x[i, j] = v`` out of place: a ``tract_core_scatter_nd`` over the indexed axes moved to the front. A
    boolean mask with a single value (``x[mask] = 0``) is a ``select`` on both targets.
    """
    x, out, node = self, ctx.out, current_node(ctx)
    indices = list(indices)
    accumulate = bool(accumulate)
    g = ctx.g
    masks = [i for i in indices if isinstance(i, Value) and i.dtype == "bool"]
    if masks:
        return _masked_put(ctx, x, indices, values, accumulate)
    positions = [k for k, i in enumerate(indices) if i is not None]
    chosen = [i for i in indices if i is not None]
    others = [a for a in range(x.rank) if a not in positions]
    perm = positions + others
    xr = g.op("transpose", ctx.ref(x), axes=perm) if perm != list(range(x.rank)) else ctx.ref(x)
    batch = broadcast_shape([i.shape for i in chosen])
    # The values broadcast against x[indices]: [lead..., batch..., trail...] when the indexed axes are
    # adjacent and not first, else [batch..., others...]; the scatter wants [batch..., others...].
    adjacent = positions == list(range(positions[0], positions[0] + len(positions)))
    lead = positions[0] if adjacent else 0
    rest = [x.shape[a] for a in others]
    result = rest[:lead] + batch + rest[lead:]
    vr = cast_to(ctx, node, ctx.ref(values), values.dtype, out.dtype)
    vr = tile_to(ctx, node, vr, values.shape, result)
    nb = len(batch)
    if lead:
        vr = g.op(
            "transpose", vr, axes=list(range(lead, lead + nb)) + list(range(lead)) + list(range(lead + nb, len(result)))
        )
    if ctx.tract:
        ctx.g.need("tract_registry tract_core")
        y = g.op(
            "tract_core_scatter_nd",
            xr,
            _stacked_indices(ctx, x, positions, chosen, batch),
            vr,
            reduction="add" if accumulate else "none",
        )
    else:
        y = _khronos_put(ctx, x, xr, positions, chosen, batch, vr, accumulate)
    if perm == list(range(x.rank)):
        return g.op("copy", y, out=out.name)
    return g.op("transpose", y, axes=[perm.index(a) for a in range(x.rank)], out=out.name)


def _stacked_indices(ctx: Context, x: Value, positions: list[int], chosen: list[Value], batch: list[Dim]) -> Ref:
    """The indices of tract's ``scatter_nd``: the broadcast index tensors, wrapped, stacked on a last axis."""
    node, g = current_node(ctx), ctx.g
    columns = []
    for k, idx in zip(positions, chosen):
        ref = cast_to(ctx, node, tile_to(ctx, node, ctx.ref(idx), idx.shape, batch), idx.dtype, "i64")
        size = operand_ref(
            ctx, node, x.shape[k] if isinstance(x.shape[k], int) else SymInt(str(x.shape[k])), "i64", len(batch)
        )
        wrapped = g.op("select", g.op("lt", ref, scalar_const(ctx, 0, "i64", len(batch))), g.op("add", ref, size), ref)
        columns.append(g.op("unsqueeze", wrapped, axes=[len(batch)]))
    return g.op("concat", columns, axis=len(batch)) if len(columns) > 1 else columns[0]


def _khronos_put(
    ctx: Context,
    x: Value,
    xr: Any,
    positions: list[int],
    chosen: list[Value],
    batch: list[Dim],
    vr: Any,
    accumulate: bool,
) -> Ref:
    """``x[i, j] = v`` for the Khronos tools, on ``xr`` (the indexed axes first) and ``vr`` (values as
    ``[batch..., others...]``): the indexed axes merged into one, the indices into one offset along it
    (in f32), then the masked scatter of :func:`_masked_scatter` along that axis.
    """
    node, g = current_node(ctx), ctx.g
    sizes = static_sizes(node, x, list(range(x.rank)), "index_put for KhronosNNEF")
    if not all(isinstance(d, int) for d in batch):
        raise TranslationError(f"{node.where()}: index_put for KhronosNNEF over dynamic indices is not supported")
    merged = [sizes[k] for k in positions]
    rest = [sizes[a] for a in range(x.rank) if a not in positions]
    width, count = math.prod(merged), math.prod(int(d) for d in batch)
    offset = _merged_offset(ctx, node, chosen, merged, len(batch))  # of the shape of the batch
    offset = g.op("reshape", offset, shape=[count] + [1] * len(rest))
    offset = g.op("tile", offset, repeats=[1, *rest]) if rest else offset
    flat_x = g.op("reshape", xr, shape=[width, *rest])
    flat_v = g.op("reshape", vr, shape=[count, *rest])
    shape = Value(ctx.out.name + "_merged", ctx.out.dtype, (width, *rest))
    along = Value(ctx.out.name + "_offsets", "f32", (count, *rest))
    y = _masked_scatter(
        ctx, flat_x, offset, flat_v, 0, "add" if accumulate else "none", ctx.out.name + "_put", along, shape
    )
    return g.op("reshape", y, shape=[*merged, *rest])


def _masked_put(ctx: Context, x: Value, indices: list[Any], values: Value, accumulate: bool) -> Ref:
    node, out = current_node(ctx), ctx.out
    lead = next(k for k, i in enumerate(indices) if i is not None)
    mask = indices[lead]
    if len([i for i in indices if i is not None]) != 1 or any(d != 1 for d in values.shape):
        raise TranslationError(
            f"{node.where()}: assigning through a boolean mask (x[mask] = v) is only supported with a single value: "
            "the number of selected elements depends on the data. Write torch.where(mask, v, x) instead"
        )
    g = ctx.g
    m = ctx.ref(mask)
    if lead:
        m = g.op("unsqueeze", m, axes=list(range(lead)))
    if lead + mask.rank < x.rank:
        m = g.op("unsqueeze", m, axes=list(range(lead + mask.rank, x.rank)))
    v = operand_ref(ctx, node, values, out.dtype, out.rank)
    if accumulate:
        v = g.op("add", ctx.ref(x), v)
    return g.op("select", m, v, ctx.ref(x), out=out.name)


def _data_dependent(ctx: Context, what: str) -> TranslationError:
    """The refusal of an op whose output size is the number of true (non-zero) elements, known only when the model
    runs: neither NNEF nor tract can express such a shape.
    """
    return TranslationError(
        f"{current_node(ctx).where()}: {what} gives a tensor whose size depends on the data (the number of selected "
        "elements), which NNEF cannot express. Keep the full shape instead: torch.where(mask, x, 0) or a "
        "multiplication by the mask, then reduce."
    )


@register("aten::masked_select")
def aten_masked_select(ctx: Context, self: Value, mask: Value) -> Ref:
    """masked_select(Tensor self, Tensor mask) -> Tensor: refused (its size depends on the data)."""
    raise _data_dependent(ctx, "masked_select")


@register("aten::nonzero")
def aten_nonzero(ctx: Context, self: Value) -> Ref:
    """nonzero(Tensor self) -> Tensor: refused (its size depends on the data)."""
    raise _data_dependent(ctx, "nonzero")
