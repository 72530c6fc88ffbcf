"""Pooling: max and average pooling, adaptive pooling."""

from __future__ import annotations

import math
from typing import Any

from torch_to_nnef.check.versions import POOL_PADDING_TRACT
from torch_to_nnef.errors import TranslationError
from torch_to_nnef.ir import Node
from torch_to_nnef.nnef.builder import Ref
from torch_to_nnef.op.common import adaptive_pool, node_arg, padding_pairs
from torch_to_nnef.op.registry import Context, register


def _pool(ctx: Context, node: Node, op: str, border: str, out: str | None = None) -> Ref:
    x = node.args[0]
    spatial = x.rank - 2
    kernel = list(node.args[1])
    kernel = kernel * (spatial // len(kernel))
    stride = list(node_arg(node, 2, "stride", []) or kernel)
    stride = stride * (spatial // len(stride))
    padding = list(node_arg(node, 3, "padding", [0]))
    padding = padding * (spatial // len(padding))
    dilation = list(node_arg(node, 4, "dilation", [1])) if op == "max_pool" else [1]
    dilation = dilation * (spatial // len(dilation))
    pads, xr = padding_pairs(padding), ctx.ref(x)
    if node_arg(node, 5 if op == "max_pool" else 4, "ceil_mode", False):
        # The last windows may overhang the padded input: pad its end further, outside of any count.
        sizes, wanted = x.shape[2:], node.outputs[0].shape[2:]
        if not all(isinstance(d, int) for d in (*sizes, *wanted)):
            raise TranslationError(f"{node.where()}: pooling with ceil_mode=True over a dynamic axis is not supported")
        overhang = [
            max(0, (n - 1) * s + d * (k - 1) + 1 - (size + 2 * p))
            for n, s, d, k, size, p in zip(wanted, stride, dilation, kernel, sizes, padding)
        ]
        if any(overhang) and border == "constant":  # counted padding: explicit zeros, then an ignored overhang
            xr = ctx.g.op("pad", xr, padding=[(0, 0), (0, 0), *pads], border="constant", value=0.0)
            pads, border = [(0, e) for e in overhang], "ignore"
        else:
            pads = [(p, p + e) for p, e in zip(padding, overhang)]
    attrs: dict[str, Any] = {"dilation": [1, 1, *dilation]} if any(d != 1 for d in dilation) else {}
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
                stride=[1, 1, *stride],
                padding=[(0, 0)] * (spatial + 2),
                border="constant",
                **attrs,
            )
            return ctx.g.op("mul", mean, float(math.prod(kernel)), out=out or node.outputs[0].name)
    return ctx.g.op(
        op,
        xr,
        size=[1, 1, *kernel],
        stride=[1, 1, *stride],
        padding=[(0, 0), (0, 0), *pads],
        border=border,
        out=out or node.outputs[0].name,
        **attrs,
    )


@register("aten::max_pool1d", "aten::max_pool2d", "aten::max_pool3d")
def aten_max_pool(ctx: Context, node: Node) -> Ref:
    """max_pool2d(Tensor self, int[] kernel_size, int[] stride, int[] padding, int[] dilation, bool ceil_mode)."""
    return _pool(ctx, node, "max_pool", "ignore")


@register("aten::max_pool1d_with_indices", "aten::max_pool2d_with_indices", "aten::max_pool3d_with_indices")
def aten_max_pool_with_indices(ctx: Context, node: Node) -> list[Ref]:
    """max_pool2d_with_indices(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0,
    int[2] dilation=1, bool ceil_mode=False) -> (Tensor, Tensor): the values (the indices are not exported).
    """
    return [_pool(ctx, node, "max_pool", "ignore")]


@register("aten::avg_pool1d", "aten::avg_pool2d", "aten::avg_pool3d")
def aten_avg_pool(ctx: Context, node: Node) -> Ref:
    """avg_pool2d(Tensor self, int[] kernel_size, int[] stride, int[] padding, bool ceil_mode,
    bool count_include_pad, int? divisor_override).
    """
    include_pad = node_arg(node, 5, "count_include_pad", True)
    divisor = node_arg(node, 6, "divisor_override")
    if divisor:  # the window sums ('box'), over the given divisor
        out = node.outputs[0].name
        return ctx.g.op("div", _pool(ctx, node, "box", "constant", out=out + "_sum"), float(divisor), out=out)
    return _pool(ctx, node, "avg_pool", "constant" if include_pad else "ignore")


@register(
    "aten::adaptive_avg_pool1d",
    "aten::adaptive_avg_pool2d",
    "aten::adaptive_avg_pool3d",
    "aten::_adaptive_avg_pool2d",
    "aten::_adaptive_avg_pool3d",
)
def aten_adaptive_avg_pool(ctx: Context, node: Node) -> Ref:
    """adaptive_avg_pool2d(Tensor self, SymInt[] output_size): global pooling, strided pooling or exact windows."""
    x = node.args[0]
    if any(s != 1 for s in node.args[1]):
        return adaptive_pool(ctx, node, "mean_reduce")
    return ctx.g.op("mean_reduce", ctx.ref(x), axes=list(range(2, x.rank)), out=node.outputs[0].name)


@register("aten::adaptive_max_pool1d", "aten::adaptive_max_pool2d")
def aten_adaptive_max_pool(ctx: Context, node: Node) -> list[Ref]:
    """adaptive_max_pool2d(Tensor self, int[2] output_size) -> (Tensor, Tensor): the values (indices are not
    exported: a model that uses them fails with an unknown tensor).
    """
    return [adaptive_pool(ctx, node, "max_reduce")]
