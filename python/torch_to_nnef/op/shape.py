"""Shape and layout ops: views and reshapes, transposes and permutations, (un)squeezing, concatenation
and splitting, tiling and broadcasting, padding, flips and rolls, pixel and channel shuffles.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, cast

import numpy as np

from torch_to_nnef.errors import TranslationError
from torch_to_nnef.ir import Dim, Node, SymInt, Value
from torch_to_nnef.nnef.builder import Ref, dim_literal
from torch_to_nnef.op.common import (
    BIG,
    NP_DTYPES,
    align_rank,
    dim_of,
    dim_ref,
    node_arg,
    shape_attr,
    slice_bound,
    static_sizes,
    tile_to,
    tract_only,
    wrap_axis,
)
from torch_to_nnef.op.registry import Context, register


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


@register("aten::cat")
def aten_cat(ctx: Context, node: Node) -> Ref:
    """cat(Tensor[] tensors, int dim=0) -> Tensor."""
    tensors = [t for t in node.args[0] if t.shape != (0,)]
    out = node.outputs[0]
    return ctx.g.op(
        "concat", [ctx.ref(t) for t in tensors], axis=wrap_axis(node_arg(node, 1, "dim", 0), out.rank), out=out.name
    )


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
def aten_roll(ctx: Context, node: Node) -> Ref:
    """roll(Tensor self, SymInt[1] shifts, int[1] dims=[]) -> Tensor (flattened when dims is empty)."""
    x, out = node.args[0], node.outputs[0]
    shifts = list(node.args[1]) if isinstance(node.args[1], (list, tuple)) else [node.args[1]]
    dims = node_arg(node, 2, "dims", [])
    dims = [dims] if isinstance(dims, int) else list(dims or [])
    if any(not isinstance(s, int) for s in shifts):
        raise TranslationError(f"{node.where()}: roll by a dynamic shift is not supported")
    g = ctx.g
    if not dims:
        flat = g.op("reshape", ctx.ref(x), shape=[-1])
        rolled = roll_axis(ctx, flat, product_of(list(x.shape)), 0, shifts[0])
        return g.op("reshape", rolled, shape=shape_attr(ctx, node, x.shape), out=out.name)
    y = ctx.ref(x)
    for shift, d in zip(shifts, dims):
        axis = wrap_axis(d, x.rank)
        y = roll_axis(ctx, y, x.shape[axis], axis, shift)
    return g.op("copy", y, out=out.name)


@register("aten::fliplr", "aten::flipud")
def aten_fliplr(ctx: Context, node: Node) -> Ref:
    """fliplr/flipud(Tensor self) -> Tensor: flip of axis 1 / axis 0 (torch.jit.trace keeps them whole)."""
    axis = 1 if node.kind == "aten::fliplr" else 0
    return cast(Ref, aten_flip(ctx, dataclasses.replace(node, kind="aten::flip", args=(node.args[0], [axis]))))


@register("aten::hstack", "aten::vstack")
def aten_hstack(ctx: Context, node: Node) -> Ref:
    """hstack/vstack(Tensor[] tensors) -> Tensor: concatenation along axis 1 (axis 0 for vectors) / along
    axis 0 with vectors as rows (torch.jit.trace keeps them whole).
    """
    tensors, out = node.args[0], node.outputs[0]
    if any(t.rank == 0 for t in tensors):
        raise TranslationError(f"{node.where()}: {node.kind.split('::')[1]} of scalars (rank 0) is not supported")
    g = ctx.g
    if node.kind == "aten::hstack":
        return g.op("concat", [ctx.ref(t) for t in tensors], axis=0 if out.rank == 1 else 1, out=out.name)
    rows = [g.op("unsqueeze", ctx.ref(t), axes=[0]) if t.rank == 1 else ctx.ref(t) for t in tensors]
    return g.op("concat", rows, axis=0, out=out.name)


@register("aten::flip")
def aten_flip(ctx: Context, node: Node) -> Ref:
    """flip(Tensor self, int[] dims) -> Tensor."""
    x, out = node.args[0], node.outputs[0]
    axes = sorted({wrap_axis(d, x.rank) for d in node.args[1]})
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


@register("aten::unbind")
def aten_unbind(ctx: Context, node: Node) -> list[Ref]:
    """unbind.int(Tensor self, int dim=0) -> Tensor[]."""
    x = node.args[0]
    axis = wrap_axis(node_arg(node, 1, "dim", 0), x.rank)
    g = ctx.g
    refs = []
    for i, out in enumerate(node.outputs):
        part = _slice_ref(ctx, ctx.ref(x), x.shape[axis], axis, i, i + 1, out=out.name + "slice_ref")
        refs.append(g.op("squeeze", part, axes=[axis], out=out.name))
    return refs


@register("aten::repeat_interleave")
def aten_repeat_interleave(ctx: Context, node: Node) -> Ref:
    """repeat_interleave.self_int(Tensor self, SymInt repeats, int? dim=None, *, SymInt? output_size=None)."""
    x, out = node.args[0], node.outputs[0]
    repeats = node_arg(node, 1, "repeats")  # repeat_interleave.Tensor(Tensor repeats) has no int
    if not isinstance(repeats, int):
        raise TranslationError(
            f"{node.where()}: repeat_interleave with per-item repeats gives a data-dependent shape: use an int"
        )
    dim = node_arg(node, 2, "dim")
    g = ctx.g
    y = ctx.ref(x)
    if dim is None:
        y, rank, axis = g.op("reshape", y, shape=[-1]), 1, 0
    else:
        rank, axis = x.rank, wrap_axis(dim, x.rank)
    y = g.op("unsqueeze", y, axes=[axis + 1])
    y = g.op("tile", y, repeats=[repeats if a == axis + 1 else 1 for a in range(rank + 1)])
    return g.op("reshape", y, shape=[-1], axis_start=axis, axis_count=2, out=out.name)


@register("aten::diagonal")
def aten_diagonal(ctx: Context, node: Node) -> Ref:
    """diagonal(Tensor(a) self, int offset=0, int dim1=0, int dim2=1) -> Tensor(a): the diagonal as a last axis.

    ``dim1`` and ``dim2`` move to the end and merge; from the first diagonal element on, rows of ``dim2 + 1``
    elements start with one (static sizes; tract cannot take the strided slice of a reshape).
    """
    x, out = node.args[0], node.outputs[0]
    offset = int(node_arg(node, 1, "offset", 0))
    a, b = wrap_axis(node_arg(node, 2, "dim1", 0), x.rank), wrap_axis(node_arg(node, 3, "dim2", 1), x.rank)
    n, m, count = x.shape[a], x.shape[b], out.shape[-1]
    if not all(isinstance(d, int) for d in (n, m, count)) or not count:
        raise TranslationError(f"{node.where()}: the diagonal of a dynamic or empty axis is not supported yet")
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


@register("aten::pixel_shuffle")
def aten_pixel_shuffle(ctx: Context, node: Node) -> Ref:
    """pixel_shuffle(Tensor self, int upscale_factor) -> Tensor: ``[..., C*r*r, H, W] -> [..., C, H*r, W*r]``."""
    x, r = node.args[0], int(node.args[1])
    g, b = ctx.g, x.rank - 3
    y = g.op("reshape", ctx.ref(x), shape=[-1, r, r], axis_start=b, axis_count=1)
    y = g.op("transpose", y, axes=[*range(b), b, b + 3, b + 1, b + 4, b + 2])
    y = g.op("reshape", y, shape=[-1], axis_start=b + 1, axis_count=2)
    return g.op("reshape", y, shape=[-1], axis_start=b + 2, axis_count=2, out=node.outputs[0].name)


@register("aten::pixel_unshuffle")
def aten_pixel_unshuffle(ctx: Context, node: Node) -> Ref:
    """pixel_unshuffle(Tensor self, int downscale_factor) -> Tensor: ``[..., C, H*r, W*r] -> [..., C*r*r, H, W]``."""
    x, r = node.args[0], int(node.args[1])
    g, b = ctx.g, x.rank - 3
    y = g.op("reshape", ctx.ref(x), shape=[-1, r], axis_start=b + 1, axis_count=1)
    y = g.op("reshape", y, shape=[-1, r], axis_start=b + 3, axis_count=1)
    y = g.op("transpose", y, axes=[*range(b), b, b + 2, b + 4, b + 1, b + 3])
    return g.op("reshape", y, shape=[-1], axis_start=b, axis_count=3, out=node.outputs[0].name)


@register("aten::channel_shuffle", "aten::native_channel_shuffle")
def aten_channel_shuffle(ctx: Context, node: Node) -> Ref:
    """channel_shuffle(Tensor self, SymInt groups) -> Tensor: ``[N, g*k, ...] -> [N, k*g, ...]`` (transposed groups)."""
    x, groups = node.args[0], int(node.args[1])
    g = ctx.g
    y = g.op("reshape", ctx.ref(x), shape=[groups, -1], axis_start=1, axis_count=1)
    y = g.op("transpose", y, axes=[0, 2, 1, *range(3, x.rank + 1)])
    return g.op("reshape", y, shape=[-1], axis_start=1, axis_count=2, out=node.outputs[0].name)


@register("aten::unfold")
def aten_unfold(ctx: Context, node: Node) -> Ref:
    """unfold(Tensor self, int dimension, int size, int step) -> Tensor: windows along ``dimension`` as a new
    last axis (one strided slice per window position, stacked).
    """
    x, out = node.args[0], node.outputs[0]
    size, step = int(node.args[2]), int(node.args[3])
    g = ctx.g
    if x.rank == 0:
        return g.op("unsqueeze", ctx.ref(x), axes=[0], out=out.name)
    axis = wrap_axis(node.args[1], x.rank)
    windows = out.shape[axis]
    if not isinstance(windows, int) and not ctx.tract:
        static_sizes(node, out, [axis], "Tensor.unfold (without TractNNEF)")

    def end(k: int) -> Any:  # just after the last element: tract then proves every slice has ``windows`` rows
        if isinstance(windows, int):
            return k + (windows - 1) * step + 1
        return Ref(f"{k}+{step}*({dim_literal(windows)}-1)+1")

    parts = [g.op("slice", ctx.ref(x), axes=[axis], begin=[k], end=[end(k)], stride=[step]) for k in range(size)]
    return g.op("stack", parts, axis=x.rank, out=out.name)


@register("aten::meshgrid")
def aten_meshgrid(ctx: Context, node: Node) -> list[Ref]:
    """meshgrid(Tensor[] tensors) / meshgrid.indexing(Tensor[] tensors, *, str indexing) -> Tensor[]."""
    tensors = list(node.args[0])
    indexing = node_arg(node, 1, "indexing", "ij")
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
def aten_broadcast_tensors(ctx: Context, node: Node) -> list[Ref]:
    """broadcast_tensors(Tensor[] tensors) -> Tensor[]: each tensor tiled to the common shape."""
    refs = []
    for t, out in zip(node.args[0], node.outputs):
        y = tile_to(ctx, node, ctx.ref(t), t.shape, list(out.shape))
        refs.append(ctx.g.op("copy", y, out=out.name))
    return refs
