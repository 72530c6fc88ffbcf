"""Shape and layout ops: views and reshapes, transposes and permutations, (un)squeezing, concatenation
and splitting, tiling and broadcasting, padding, flips and rolls, pixel and channel shuffles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from torch_to_nnef.errors import TranslationError
from torch_to_nnef.ir import Dim, SymInt, Value
from torch_to_nnef.ir.dtypes import NUMPY
from torch_to_nnef.nnef.builder import Ref, dim_literal
from torch_to_nnef.op.common import (
    BIG,
    align_rank,
    current_node,
    dim_of,
    dim_ref,
    shape_attr,
    slice_bound,
    static_sizes,
    tile_to,
    tools_only,
    wrap_axis,
)
from torch_to_nnef.op.registry import Context, register


@register("aten::transpose.int")
def aten_transpose(ctx: Context, self: Value, dim0: int, dim1: int) -> Ref:
    """transpose.int(Tensor self, int dim0, int dim1) -> Tensor."""
    perm = list(range(self.rank))
    a, b = wrap_axis(dim0, self.rank), wrap_axis(dim1, self.rank)
    perm[a], perm[b] = perm[b], perm[a]
    return ctx.g.op("transpose", ctx.ref(self), axes=perm, out=ctx.out.name)


@register("aten::t")
def aten_t(ctx: Context, self: Value) -> Ref:
    """t(Tensor self) -> Tensor."""
    if self.rank < 2:
        return ctx.g.op("copy", ctx.ref(self), out=ctx.out.name)
    return ctx.g.op("transpose", ctx.ref(self), axes=[1, 0], out=ctx.out.name)


@register("aten::permute")
def aten_permute(ctx: Context, self: Value, dims: list[int]) -> Ref:
    """permute(Tensor self, int[] dims) -> Tensor."""
    return ctx.g.op("transpose", ctx.ref(self), axes=[wrap_axis(d, self.rank) for d in dims], out=ctx.out.name)


def _reshape_to(ctx: Context, x: Value, asked: Any = None) -> Ref:
    """Reshape to the node's output shape, preferring what needs no symbol arithmetic: the sizes the
    code asked for (``asked``: ints and -1), 0 for a dimension kept from the input, one -1 for the
    remaining symbolic one; only then tract's expressions of the symbols.
    """
    out = ctx.out
    if out.rank == 0 and all(d == 1 for d in x.shape):  # tract cannot read a reshape to the shape []
        if not x.rank:
            return ctx.g.op("copy", ctx.ref(x), out=out.name)
        return ctx.g.op("squeeze", ctx.ref(x), axes=list(range(x.rank)), out=out.name)
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
            raise TranslationError(f"{current_node(ctx).where()}: symbolic reshape needs TractNNEF")
        shape = [Ref(dim_literal(d)) if i in symbolic else d for i, d in enumerate(shape)]
    return ctx.g.op("reshape", ctx.ref(x), shape=shape, out=out.name)


@register("aten::view", "aten::_unsafe_view")
def aten_view(ctx: Context, self: Value, size: list[Any]) -> Ref:
    """view(Tensor self, SymInt[] size) -> Tensor (and _unsafe_view): the output shape is known from the IR."""
    return _reshape_to(ctx, self, size)


@register("aten::view.dtype")
def aten_view_dtype(ctx: Context, self: Value, dtype: str) -> Ref:
    """view.dtype(Tensor self, ScalarType dtype) -> Tensor: reinterprets the bytes, refused unless the dtype is
    the same.
    """
    if dtype != self.dtype:
        raise TranslationError(
            f"{current_node(ctx).where()}: view({dtype}) reinterprets the bytes of a {self.dtype} tensor, and NNEF "
            f"has no bit cast: convert the values with .to() instead, or keep the reinterpretation out of the "
            "exported module"
        )
    return ctx.g.op("copy", ctx.ref(self), out=ctx.out.name)


@register("aten::reshape")
def aten_reshape(ctx: Context, self: Value, shape: list[Any]) -> Ref:
    """reshape(Tensor self, SymInt[] shape) -> Tensor: the output shape is known from the IR."""
    return _reshape_to(ctx, self, shape)


@register("aten::flatten.using_ints")
def aten_flatten(ctx: Context, self: Value, start_dim: int = 0, end_dim: int = -1) -> Ref:
    """flatten.using_ints(Tensor self, int start_dim=0, int end_dim=-1) -> Tensor: a reshape to the output
    shape.
    """
    return _reshape_to(ctx, self)


@register("aten::unflatten.int")
def aten_unflatten(ctx: Context, self: Value, dim: int, sizes: list[Any]) -> Ref:
    """unflatten.int(Tensor self, int dim, SymInt[] sizes) -> Tensor: a reshape to the output shape."""
    return _reshape_to(ctx, self)


@register("aten::unsqueeze")
def aten_unsqueeze(ctx: Context, self: Value, dim: int) -> Ref:
    """unsqueeze(Tensor self, int dim) -> Tensor."""
    return ctx.g.op("unsqueeze", ctx.ref(self), axes=[wrap_axis(dim, self.rank + 1)], out=ctx.out.name)


@register("aten::squeeze", "aten::squeeze.dim", "aten::squeeze.dims")
def aten_squeeze(ctx: Context, self: Value, dim: int | Sequence[int] | None = None) -> Ref:
    """squeeze.dims(Tensor self, int[] dim) -> Tensor (.dim: int dim; the default overload: every axis); only
    axes of size 1 are removed.
    """
    dims = list(range(self.rank)) if dim is None else ([dim] if isinstance(dim, int) else list(dim))
    axes = [wrap_axis(d, self.rank) for d in dims if self.shape[wrap_axis(d, self.rank)] == 1]
    if not axes:
        return ctx.g.op("copy", ctx.ref(self), out=ctx.out.name)
    return ctx.g.op("squeeze", ctx.ref(self), axes=axes, out=ctx.out.name)


@register("aten::cat")
def aten_cat(ctx: Context, tensors: list[Value], dim: int = 0) -> Ref:
    """cat(Tensor[] tensors, int dim=0) -> Tensor (empty 1-d tensors, which torch skips, are left out)."""
    out = ctx.out
    kept = [t for t in tensors if t.shape != (0,)]
    return ctx.g.op("concat", [ctx.ref(t) for t in kept], axis=wrap_axis(dim, out.rank), out=out.name)


def _split(ctx: Context, x: Value, dim: int) -> list[Ref]:
    """``x`` sliced along ``dim`` into the node's outputs, whose sizes they hold."""
    node = current_node(ctx)
    axis = wrap_axis(dim, x.rank)
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


@register("aten::split.Tensor", "aten::split.sizes")
def aten_split(ctx: Context, self: Value, split_size: Any, dim: int = 0) -> list[Ref]:
    """split.Tensor(Tensor self, SymInt split_size, int dim=0) -> Tensor[] (.sizes: SymInt[] split_size): the
    parts' sizes are those of the outputs.
    """
    return _split(ctx, self, dim)


@register("aten::split_with_sizes")
def aten_split_with_sizes(ctx: Context, self: Value, split_sizes: list[Any], dim: int = 0) -> list[Ref]:
    """split_with_sizes(Tensor self, SymInt[] split_sizes, int dim=0) -> Tensor[]."""
    return _split(ctx, self, dim)


@register("aten::stack")
def aten_stack(ctx: Context, tensors: list[Value], dim: int = 0) -> Ref:
    """stack(Tensor[] tensors, int dim=0) -> Tensor."""
    out = ctx.out
    return ctx.g.op("stack", [ctx.ref(t) for t in tensors], axis=wrap_axis(dim, out.rank), out=out.name)


@register("aten::expand")
def aten_expand(ctx: Context, self: Value, size: list[Any], *, implicit: bool = False) -> Ref:
    """expand(Tensor self, SymInt[] size, *, bool implicit=False) -> Tensor: a tile to the output shape."""
    x, out = self, ctx.out
    xr = align_rank(ctx, x, out.rank, out)
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
            raise TranslationError(f"{current_node(ctx).where()}: cannot tile {list(src)} to {list(out.shape)}")
    return ctx.g.op("tile", xr, repeats=repeats, out=out.name)


@register("aten::repeat")
def aten_repeat(ctx: Context, self: Value, repeats: list[Any]) -> Ref:
    """repeat(Tensor self, SymInt[] repeats) -> Tensor: a tile by the counts as given (a dynamic axis repeated
    has no ratio to find).
    """
    out = ctx.out
    xr = align_rank(ctx, self, out.rank, out)
    counts = [c.expr if isinstance(c, SymInt) else c for c in repeats]
    return ctx.g.op("tile", xr, repeats=[dim_ref(c) for c in counts], out=out.name)


@register("aten::constant_pad_nd")
def aten_constant_pad_nd(ctx: Context, self: Value, pad: list[Any], value: Any = 0) -> Ref:
    """constant_pad_nd(Tensor self, SymInt[] pad, Scalar value=0) -> Tensor: pad pairs from the last axis;
    negative amounts crop.
    """
    return pad_nd(ctx, self, list(pad), "constant", value)


@register("aten::pad")
def aten_pad(ctx: Context, self: Value, pad: list[Any], mode: str = "constant", value: float | None = None) -> Ref:
    """pad(Tensor self, SymInt[] pad, str mode="constant", float? value=None) -> Tensor.

    Pad pairs run from the last axis; modes constant, reflect, replicate and circular; negative
    amounts crop.
    """
    return pad_nd(ctx, self, list(pad), mode, value)


@register(*(f"aten::reflection_pad{n}d" for n in (1, 2, 3)))
def aten_reflection_pad(ctx: Context, self: Value, padding: list[Any]) -> Ref:
    """reflection_pad2d(Tensor self, SymInt[4] padding) -> Tensor (1d and 3d alike): pad pairs from the last
    axis, as ``pad`` in the mode 'reflect'.
    """
    return pad_nd(ctx, self, list(padding), "reflect", None)


@register(*(f"aten::replication_pad{n}d" for n in (1, 2, 3)))
def aten_replication_pad(ctx: Context, self: Value, padding: list[Any]) -> Ref:
    """replication_pad2d(Tensor self, SymInt[4] padding) -> Tensor (1d and 3d alike): pad pairs from the last
    axis, as ``pad`` in the mode 'replicate'.
    """
    return pad_nd(ctx, self, list(padding), "replicate", None)


def pad_nd(ctx: Context, x: Value, pad: list[Any], mode: str, value: Any) -> Ref:
    """Pads ``x`` by ``pad`` (pairs from the last axis) in ``mode`` into the output of the node translated;
    negative amounts crop.
    """
    node = current_node(ctx)
    if mode not in ("constant", "reflect", "replicate", "circular"):
        raise TranslationError(f"{node.where()}: padding mode {mode!r} is not supported yet")
    if any(not isinstance(p, int) for p in pad):
        if mode != "constant" or not ctx.tract:
            raise TranslationError(
                f"{node.where()}: padding by a symbolic amount is supported in the constant mode with TractNNEF only"
            )
        return _pad_symbolic(ctx, x, pad, value)
    pairs = [(0, 0)] * x.rank
    for i in range(len(pad) // 2):
        pairs[x.rank - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    g, out = ctx.g, ctx.out
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
            size = shape[axis]
            if isinstance(size, int):
                shape[axis] = size - max(-before, 0) - max(-after, 0)
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


def _pad_symbolic(ctx: Context, x: Value, pad: list[Any], value: Any) -> Ref:
    """Constant padding by amounts computed from a dynamic size (``F.pad(x, (0, (4 - S % 4) % 4))``, to a
    multiple of 4): blocks of the value tiled to each amount, concatenated around the input (the
    amounts are taken as non-negative).
    """
    out = ctx.out
    g = ctx.g
    fill = g.variable(
        np.full((1,) * x.rank, float(value or 0.0), dtype=NUMPY[x.dtype]),
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


def product_of(dims: list[Dim]) -> Dim:
    """The product of dimensions: an int when all are static, else tract's expression."""
    if all(isinstance(d, int) for d in dims):
        return math.prod(int(d) for d in dims)
    return "*".join(str(d) if isinstance(d, int) else f"({dim_literal(d)})" for d in dims)


def _slice_ref(ctx: Context, x: Any, dim: Dim, axis: int, start: Any, end: Any, out: str | None = None) -> Ref:
    return ctx.g.op(
        "slice", x, axes=[axis], begin=[slice_bound(start, dim)], end=[slice_bound(end, dim)], stride=[1], out=out
    )


def roll_axis(ctx: Context, x: Any, dim: Dim, axis: int, shift: int) -> Any:
    """``x`` rolled by ``shift`` along ``axis`` (of size ``dim``): the last ``shift`` items come first."""
    split = (-shift) % dim if isinstance(dim, int) else -shift
    if split == 0 or shift == 0:
        return x
    tail = _slice_ref(ctx, x, dim, axis, split, BIG)
    head = _slice_ref(ctx, x, dim, axis, 0, split)
    return ctx.g.op("concat", [tail, head], axis=axis)


@register("aten::roll")
def aten_roll(ctx: Context, self: Value, shifts: Sequence[Any] | Any, dims: Sequence[int] | int = ()) -> Ref:
    """roll(Tensor self, SymInt[1] shifts, int[1] dims=[]) -> Tensor (flattened when dims is empty)."""
    x, out = self, ctx.out
    node = current_node(ctx)
    shift_list: list[Any] = list(shifts) if isinstance(shifts, (list, tuple)) else [shifts]
    dim_list = [dims] if isinstance(dims, int) else list(dims or [])
    if any(not isinstance(s, int) for s in shift_list):
        raise TranslationError(f"{node.where()}: roll by a dynamic shift is not supported")
    g = ctx.g
    if not dim_list:
        flat = g.op("reshape", ctx.ref(x), shape=[-1])
        rolled = roll_axis(ctx, flat, product_of(list(x.shape)), 0, shift_list[0])
        return g.op("reshape", rolled, shape=shape_attr(ctx, node, x.shape), out=out.name)
    y = ctx.ref(x)
    for shift, d in zip(shift_list, dim_list):
        axis = wrap_axis(d, x.rank)
        y = roll_axis(ctx, y, x.shape[axis], axis, shift)
    return g.op("copy", y, out=out.name)


@register("aten::fliplr")
def aten_fliplr(ctx: Context, self: Value) -> Ref:
    """fliplr(Tensor self) -> Tensor: flip of axis 1 (torch.jit.trace keeps it whole)."""
    return _flip(ctx, self, [1])


@register("aten::flipud")
def aten_flipud(ctx: Context, self: Value) -> Ref:
    """flipud(Tensor self) -> Tensor: flip of axis 0 (torch.jit.trace keeps it whole)."""
    return _flip(ctx, self, [0])


def _no_scalars(ctx: Context, tensors: list[Value], what: str) -> None:
    if any(t.rank == 0 for t in tensors):
        raise TranslationError(f"{current_node(ctx).where()}: {what} of scalars (rank 0) is not supported")


@register("aten::hstack")
def aten_hstack(ctx: Context, tensors: list[Value]) -> Ref:
    """hstack(Tensor[] tensors) -> Tensor: concatenation along axis 1 (axis 0 for vectors; torch.jit.trace keeps
    it whole).
    """
    _no_scalars(ctx, tensors, "hstack")
    out = ctx.out
    return ctx.g.op("concat", [ctx.ref(t) for t in tensors], axis=0 if out.rank == 1 else 1, out=out.name)


@register("aten::vstack")
def aten_vstack(ctx: Context, tensors: list[Value]) -> Ref:
    """vstack(Tensor[] tensors) -> Tensor: concatenation along axis 0 with vectors as rows (torch.jit.trace keeps
    it whole).
    """
    _no_scalars(ctx, tensors, "vstack")
    g = ctx.g
    rows = [g.op("unsqueeze", ctx.ref(t), axes=[0]) if t.rank == 1 else ctx.ref(t) for t in tensors]
    return g.op("concat", rows, axis=0, out=ctx.out.name)


@register("aten::flip")
def aten_flip(ctx: Context, self: Value, dims: list[int]) -> Ref:
    """flip(Tensor self, int[] dims) -> Tensor."""
    return _flip(ctx, self, dims)


def _flip(ctx: Context, x: Value, dims: Sequence[int]) -> Ref:
    """``x`` reversed along ``dims`` into the output of the node translated."""
    node, out = current_node(ctx), ctx.out
    axes = sorted({wrap_axis(d, x.rank) for d in dims})
    g = ctx.g
    if not axes:
        return g.op("copy", ctx.ref(x), out=out.name)
    if ctx.tract:
        # tract slices [begin, end) then walks it backwards for a negative stride.
        ends = [dim_of(node, x.shape[a]) for a in axes]
        return g.op(
            "slice", ctx.ref(x), axes=axes, begin=[0] * len(axes), end=ends, stride=[-1] * len(axes), out=out.name
        )
    y = ctx.ref(x)
    for a in axes:
        n = x.shape[a]
        if not isinstance(n, int):
            raise TranslationError(f"{node.where()}: flip of a dynamic axis needs TractNNEF")
        if n > 1:
            y = g.op("concat", [_slice_ref(ctx, y, n, a, i, i + 1) for i in reversed(range(n))], axis=a)
    return g.op("copy", y, out=out.name)


@register("aten::unbind.int")
def aten_unbind(ctx: Context, self: Value, dim: int = 0) -> list[Ref]:
    """unbind.int(Tensor self, int dim=0) -> Tensor[]."""
    axis = wrap_axis(dim, self.rank)
    g = ctx.g
    refs = []
    for i, out in enumerate(current_node(ctx).outputs):
        part = _slice_ref(ctx, ctx.ref(self), self.shape[axis], axis, i, i + 1, out=out.name + "slice_ref")
        refs.append(g.op("squeeze", part, axes=[axis], out=out.name))
    return refs


def _per_item_repeats(ctx: Context) -> TranslationError:
    return TranslationError(
        f"{current_node(ctx).where()}: repeat_interleave with per-item repeats gives a data-dependent shape: use an int"
    )


@register("aten::repeat_interleave.self_int", "aten::repeat_interleave.self_Tensor")
def aten_repeat_interleave(
    ctx: Context, self: Value, repeats: Any, dim: int | None = None, *, output_size: Any = None
) -> Ref:
    """repeat_interleave.self_int(Tensor self, SymInt repeats, int? dim=None, *, SymInt? output_size=None) ->
    Tensor; .self_Tensor (Tensor repeats): refused, its shape depends on the data.
    """
    if not isinstance(repeats, int):
        raise _per_item_repeats(ctx)
    g = ctx.g
    y = ctx.ref(self)
    if dim is None:
        y, rank, axis = g.op("reshape", y, shape=[-1]), 1, 0
    else:
        rank, axis = self.rank, wrap_axis(dim, self.rank)
    y = g.op("unsqueeze", y, axes=[axis + 1])
    y = g.op("tile", y, repeats=[repeats if a == axis + 1 else 1 for a in range(rank + 1)])
    return g.op("reshape", y, shape=[-1], axis_start=axis, axis_count=2, out=ctx.out.name)


@register("aten::repeat_interleave.Tensor")
def aten_repeat_interleave_tensor(ctx: Context, repeats: Any, *, output_size: Any = None) -> Ref:
    """repeat_interleave.Tensor(Tensor repeats, *, SymInt? output_size=None) -> Tensor: refused, its shape
    depends on the data.
    """
    raise _per_item_repeats(ctx)


@register("aten::diagonal")
def aten_diagonal(ctx: Context, self: Value, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Ref:
    """diagonal(Tensor(a) self, int offset=0, int dim1=0, int dim2=1) -> Tensor(a): the diagonal as a last axis.

    ``dim1`` and ``dim2`` move to the end and merge; from the first diagonal element on, rows of ``dim2 + 1``
    elements start with one (static sizes; tract cannot take the strided slice of a reshape).
    """
    x, out = self, ctx.out
    offset = int(offset)
    a, b = wrap_axis(dim1, x.rank), wrap_axis(dim2, x.rank)
    n, m, count = x.shape[a], x.shape[b], out.shape[-1]
    if not all(isinstance(d, int) for d in (n, m, count)) or not count:
        raise TranslationError(
            f"{current_node(ctx).where()}: the diagonal of a dynamic or empty axis is not supported yet"
        )
    n, m, count = int(n), int(m), int(count)
    g, last = ctx.g, x.rank - 2
    perm = [d for d in range(x.rank) if d not in (a, b)] + [a, b]
    y = g.op("transpose", ctx.ref(x), axes=perm) if perm != list(range(x.rank)) else ctx.ref(x)
    y = g.op("reshape", y, shape=[n * m], axis_start=last, axis_count=2)
    begin = offset if offset >= 0 else -offset * m
    end = min(begin + count * (m + 1), n * m)
    y = g.op("slice", y, axes=[last], begin=[begin], end=[end], stride=[1])
    if begin + count * (m + 1) > end:
        rest = begin + count * (m + 1) - end
        y = g.op("pad", y, padding=[(0, rest) if d == last else (0, 0) for d in range(last + 1)], value=0.0)
    y = g.op("reshape", y, shape=[count, m + 1], axis_start=last, axis_count=1)
    y = g.op("slice", y, axes=[last + 1], begin=[0], end=[1], stride=[1])
    return g.op("squeeze", y, axes=[last + 1], out=out.name)


@register("aten::as_strided")
def aten_as_strided(ctx: Context, self: Value, size: list[Any], stride: list[Any], storage_offset: Any = None) -> Ref:
    """as_strided(Tensor self, SymInt[] size, SymInt[] stride, SymInt? storage_offset=None) -> Tensor.

    The input is read as the contiguous tensor a functionalised graph holds: element ``i`` of the
    result is element ``offset + sum(i_k * stride_k)`` of its flattened values, gathered (tract's
    gather, the Khronos tools' ``gather``).
    """
    x, out = self, ctx.out
    node = current_node(ctx)
    size, stride = list(size), list(stride)
    offset = storage_offset or 0
    if ctx.tract:
        ctx.g.need("tract_registry tract_core")
    else:
        tools_only(ctx, node, "needs a gather")
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
    return g.op("tract_core_gather" if ctx.tract else "gather", flat, g.variable(index, label), axis=0, out=out.name)


@register("aten::pixel_shuffle")
def aten_pixel_shuffle(ctx: Context, self: Value, upscale_factor: int) -> Ref:
    """pixel_shuffle(Tensor self, int upscale_factor) -> Tensor: ``[..., C*r*r, H, W] -> [..., C, H*r, W*r]``."""
    r = int(upscale_factor)
    g, b = ctx.g, self.rank - 3
    y = g.op("reshape", ctx.ref(self), shape=[-1, r, r], axis_start=b, axis_count=1)
    y = g.op("transpose", y, axes=[*range(b), b, b + 3, b + 1, b + 4, b + 2])
    y = g.op("reshape", y, shape=[-1], axis_start=b + 1, axis_count=2)
    return g.op("reshape", y, shape=[-1], axis_start=b + 2, axis_count=2, out=ctx.out.name)


@register("aten::pixel_unshuffle")
def aten_pixel_unshuffle(ctx: Context, self: Value, downscale_factor: int) -> Ref:
    """pixel_unshuffle(Tensor self, int downscale_factor) -> Tensor: ``[..., C, H*r, W*r] -> [..., C*r*r, H, W]``."""
    r = int(downscale_factor)
    g, b = ctx.g, self.rank - 3
    y = g.op("reshape", ctx.ref(self), shape=[-1, r], axis_start=b + 1, axis_count=1)
    y = g.op("reshape", y, shape=[-1, r], axis_start=b + 3, axis_count=1)
    y = g.op("transpose", y, axes=[*range(b), b, b + 2, b + 4, b + 1, b + 3])
    return g.op("reshape", y, shape=[-1], axis_start=b, axis_count=3, out=ctx.out.name)


@register("aten::channel_shuffle", "aten::native_channel_shuffle")
def aten_channel_shuffle(ctx: Context, self: Value, groups: int) -> Ref:
    """channel_shuffle(Tensor self, SymInt groups) -> Tensor (and native_channel_shuffle): ``[N, g*k, ...] ->
    [N, k*g, ...]`` (transposed groups).
    """
    g = ctx.g
    y = g.op("reshape", ctx.ref(self), shape=[int(groups), -1], axis_start=1, axis_count=1)
    y = g.op("transpose", y, axes=[0, 2, 1, *range(3, self.rank + 1)])
    return g.op("reshape", y, shape=[-1], axis_start=1, axis_count=2, out=ctx.out.name)


@register("aten::unfold")
def aten_unfold(ctx: Context, self: Value, dimension: int, size: int, step: int) -> Ref:
    """unfold(Tensor self, int dimension, int size, int step) -> Tensor: windows along ``dimension`` as a new
    last axis (one strided slice per window position, stacked).
    """
    x, out = self, ctx.out
    size, step = int(size), int(step)
    g = ctx.g
    if x.rank == 0:
        return g.op("unsqueeze", ctx.ref(x), axes=[0], out=out.name)
    axis = wrap_axis(dimension, x.rank)
    windows = out.shape[axis]
    if not isinstance(windows, int) and not ctx.tract:
        static_sizes(current_node(ctx), out, [axis], "Tensor.unfold (without TractNNEF)")

    def end(k: int) -> Any:  # just after the last element: tract then proves every slice has ``windows`` rows
        if isinstance(windows, int):
            return k + (windows - 1) * step + 1
        return Ref(f"{k}+{step}*({dim_literal(windows)}-1)+1")

    parts = [g.op("slice", ctx.ref(x), axes=[axis], begin=[k], end=[end(k)], stride=[step]) for k in range(size)]
    return g.op("stack", parts, axis=x.rank, out=out.name)


@register("aten::meshgrid", "aten::meshgrid.indexing")
def aten_meshgrid(ctx: Context, tensors: list[Value], *, indexing: str = "ij") -> list[Ref]:
    """meshgrid.indexing(Tensor[] tensors, *, str indexing) -> Tensor[] (the default overload: 'ij')."""
    node = current_node(ctx)
    g, refs = ctx.g, []
    for i, (t, out) in enumerate(zip(tensors, node.outputs)):
        axis = i
        if indexing == "xy" and len(tensors) >= 2 and i < 2:
            axis = 1 - i
        y = ctx.ref(t) if t.rank == 1 else g.op("reshape", ctx.ref(t), shape=[1])
        if out.rank > 1:
            y = g.op("unsqueeze", y, axes=[a for a in range(out.rank) if a != axis])
        repeats = [1 if a == axis else dim_of(node, d) for a, d in enumerate(out.shape)]
        refs.append(
            g.op("tile", y, repeats=repeats, out=out.name)
            if any(r != 1 for r in repeats)
            else g.op("copy", y, out=out.name)
        )
    return refs


@register("aten::broadcast_tensors")
def aten_broadcast_tensors(ctx: Context, tensors: list[Value]) -> list[Ref]:
    """broadcast_tensors(Tensor[] tensors) -> Tensor[]: each tensor tiled to the common shape."""
    node = current_node(ctx)
    refs = []
    for t, out in zip(tensors, node.outputs):
        y = tile_to(ctx, node, ctx.ref(t), t.shape, list(out.shape))
        refs.append(ctx.g.op("copy", y, out=out.name))
    return refs
