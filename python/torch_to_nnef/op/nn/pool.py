"""Pooling: max and average pooling, adaptive pooling."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch_to_nnef.check.versions import POOL_PADDING_TRACT
from torch_to_nnef.errors import TranslationError
from torch_to_nnef.ir import Value
from torch_to_nnef.nnef.builder import Ref
from torch_to_nnef.op.common import adaptive_pooling, current_node, padding_pairs
from torch_to_nnef.op.registry import Context, register


def _per_axis(values: Sequence[int] | int, spatial: int) -> list[int]:
    """A pooling argument for each spatial axis (one value, or a list of one, stands for every axis)."""
    listed = [values] if isinstance(values, int) else list(values)
    return listed * (spatial // len(listed))


def _pool(
    ctx: Context,
    x: Value,
    op: str,
    border: str,
    kernel_size: Sequence[int] | int,
    stride: Sequence[int] | int,
    padding: Sequence[int] | int,
    dilation: Sequence[int] | int,
    ceil_mode: bool,
    out: str | None = None,
) -> Ref:
    """NNEF pooling ``op`` (``max_pool``, ``avg_pool`` or ``box``) of ``x`` over PyTorch's windows."""
    spatial = x.rank - 2
    kernel = _per_axis(kernel_size, spatial)
    strides = _per_axis(stride or kernel, spatial)  # stride=[]: the kernel's
    pad = _per_axis(padding, spatial)
    dilations = _per_axis(dilation, spatial) if op == "max_pool" else [1] * spatial
    pads, xr = padding_pairs(pad), ctx.ref(x)
    if ceil_mode:
        # The last windows may overhang the padded input: pad its end further, outside of any count.
        sizes, wanted = x.shape[2:], ctx.out.shape[2:]
        if not all(isinstance(d, int) for d in (*sizes, *wanted)):
            raise TranslationError(
                f"{current_node(ctx).where()}: pooling with ceil_mode=True over a dynamic axis is not supported"
            )
        overhang = [
            max(0, (n - 1) * s + d * (k - 1) + 1 - (size + 2 * p))
            for n, s, d, k, size, p in zip(wanted, strides, dilations, kernel, sizes, pad)
        ]
        if any(overhang) and border == "constant":  # counted padding: explicit zeros, then an ignored overhang
            xr = ctx.g.op("pad", xr, padding=[(0, 0), (0, 0), *pads], border="constant", value=0.0)
            pads, border = [(0, e) for e in overhang], "ignore"
        else:
            pads = [(p, p + e) for p, e in zip(pad, overhang)]
    attrs: dict[str, Any] = {"dilation": [1, 1, *dilations]} if any(d != 1 for d in dilations) else {}
    counted = op == "box" or (op == "avg_pool" and border == "constant")
    if counted and ctx.tract and not ctx.tract_at_least(POOL_PADDING_TRACT):
        # Older tract releases miscount padded windows and sum boxes differently (measured): the
        # zeros are written explicitly, and a box is an average times the window's size.
        if any(p != (0, 0) for p in pads):
            xr = ctx.g.op("pad", xr, padding=[(0, 0), (0, 0), *pads], border="constant", value=0.0)
            pads = [(0, 0)] * spatial
        if op == "box":
            mean = ctx.g.op(
                "avg_pool",
                xr,
                size=[1, 1, *kernel],
                stride=[1, 1, *strides],
                padding=[(0, 0)] * (spatial + 2),
                border="constant",
                **attrs,
            )
            return ctx.g.op("mul", mean, float(math.prod(kernel)), out=out or ctx.out.name)
    return ctx.g.op(
        op,
        xr,
        size=[1, 1, *kernel],
        stride=[1, 1, *strides],
        padding=[(0, 0), (0, 0), *pads],
        border=border,
        out=out or ctx.out.name,
        **attrs,
    )


@register("aten::max_pool1d", "aten::max_pool2d", "aten::max_pool3d")
def aten_max_pool(
    ctx: Context,
    self: Value,
    kernel_size: Sequence[int],
    stride: Sequence[int] = (),
    padding: Sequence[int] | int = 0,
    dilation: Sequence[int] | int = 1,
    ceil_mode: bool = False,
) -> Ref:
    """max_pool2d(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, int[2] dilation=1,
    bool ceil_mode=False) -> Tensor (max_pool1d and max_pool3d alike).
    """
    return _pool(ctx, self, "max_pool", "ignore", kernel_size, stride, padding, dilation, bool(ceil_mode))


@register("aten::max_pool1d_with_indices", "aten::max_pool2d_with_indices", "aten::max_pool3d_with_indices")
def aten_max_pool_with_indices(
    ctx: Context,
    self: Value,
    kernel_size: Sequence[int],
    stride: Sequence[int] = (),
    padding: Sequence[int] | int = 0,
    dilation: Sequence[int] | int = 1,
    ceil_mode: bool = False,
) -> list[Ref]:
    """max_pool2d_with_indices(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0,
    int[2] dilation=1, bool ceil_mode=False) -> (Tensor, Tensor): the values (the indices are not exported).
    """
    return [_pool(ctx, self, "max_pool", "ignore", kernel_size, stride, padding, dilation, bool(ceil_mode))]


def _avg_pool(
    ctx: Context,
    x: Value,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int] | int,
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: int | None,
) -> Ref:
    if divisor_override:  # the window sums ('box'), over the given divisor
        out = ctx.out.name
        total = _pool(ctx, x, "box", "constant", kernel_size, stride, padding, 1, ceil_mode, out=out + "_sum")
        return ctx.g.op("div", total, float(divisor_override), out=out)
    border = "constant" if count_include_pad else "ignore"
    return _pool(ctx, x, "avg_pool", border, kernel_size, stride, padding, 1, ceil_mode)


@register("aten::avg_pool1d")
def aten_avg_pool1d(
    ctx: Context,
    self: Value,
    kernel_size: Sequence[int],
    stride: Sequence[int] = (),
    padding: Sequence[int] | int = (0,),
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Ref:
    """avg_pool1d(Tensor self, int[1] kernel_size, int[1] stride=[], int[1] padding=[0], bool ceil_mode=False,
    bool count_include_pad=True) -> Tensor.
    """
    return _avg_pool(ctx, self, kernel_size, stride, padding, bool(ceil_mode), bool(count_include_pad), None)


@register("aten::avg_pool2d", "aten::avg_pool3d")
def aten_avg_pool(
    ctx: Context,
    self: Value,
    kernel_size: Sequence[int],
    stride: Sequence[int] = (),
    padding: Sequence[int] | int = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Ref:
    """avg_pool2d(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, bool ceil_mode=False,
    bool count_include_pad=True, int? divisor_override=None) -> Tensor (avg_pool3d alike).
    """
    return _avg_pool(
        ctx, self, kernel_size, stride, padding, bool(ceil_mode), bool(count_include_pad), divisor_override
    )


@register(
    "aten::adaptive_avg_pool1d",
    "aten::adaptive_avg_pool2d",
    "aten::adaptive_avg_pool3d",
    "aten::_adaptive_avg_pool2d",
    "aten::_adaptive_avg_pool3d",
)
def aten_adaptive_avg_pool(ctx: Context, self: Value, output_size: Sequence[Any]) -> Ref:
    """adaptive_avg_pool2d(Tensor self, SymInt[2] output_size) -> Tensor (the 1d, 3d and ``_`` forms alike):
    global pooling, strided pooling or exact windows.
    """
    if any(s != 1 for s in output_size):
        return adaptive_pooling(ctx, current_node(ctx), self, "mean_reduce")
    return ctx.g.op("mean_reduce", ctx.ref(self), axes=list(range(2, self.rank)), out=ctx.out.name)


@register("aten::adaptive_max_pool1d", "aten::adaptive_max_pool2d")
def aten_adaptive_max_pool(ctx: Context, self: Value, output_size: Sequence[int]) -> list[Ref]:
    """adaptive_max_pool2d(Tensor self, int[2] output_size) -> (Tensor, Tensor) (adaptive_max_pool1d alike): the
    values (indices are not exported: a model that uses them fails with an unknown tensor).
    """
    return [adaptive_pooling(ctx, current_node(ctx), self, "max_reduce")]
