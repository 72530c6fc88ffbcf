"""Convolutions: ``conv1d``/``2d``/``3d``, transposed convolutions, ``convolution``, ``im2col``/``col2im``."""

from __future__ import annotations

from typing import Any

import numpy as np

from torch_to_nnef.ir import Dim, Node, Value
from torch_to_nnef.nnef.builder import Ref
from torch_to_nnef.op.common import NP_FLOAT, conv, conv_transpose, node_arg, static_sizes
from torch_to_nnef.op.registry import Context, register


@register("aten::conv1d", "aten::conv2d", "aten::conv3d")
def aten_conv(ctx: Context, node: Node) -> Ref:
    """conv2d(Tensor input, Tensor weight, Tensor? bias, int[] stride, int[]|str padding, int[] dilation,
    int groups).
    """
    spatial = node.args[0].rank - 2
    stride = list(node_arg(node, 3, "stride", [1] * spatial))
    padding = node_arg(node, 4, "padding", [0] * spatial)
    dilation = list(node_arg(node, 5, "dilation", [1] * spatial))
    return conv(ctx, node, stride, padding, dilation, int(node_arg(node, 6, "groups", 1)))


def _ints(value: Any, n: int) -> list[int]:
    """An int or an int list of one or ``n`` entries, as ``n`` ints."""
    values = [value] if isinstance(value, int) else list(value)
    return values * n if len(values) == 1 else values


@register("aten::conv_transpose1d", "aten::conv_transpose2d", "aten::conv_transpose3d")
def aten_conv_transpose(ctx: Context, node: Node) -> Ref:
    """conv_transpose2d.input(Tensor input, Tensor weight, Tensor? bias=None, SymInt[2] stride=1, SymInt[2] padding=0,
    SymInt[2] output_padding=0, SymInt groups=1, SymInt[2] dilation=1) -> Tensor.

    NNEF ``deconv``; ``output_padding`` shortens the end crop, or pads the end with the bias where it exceeds it.
    """
    spatial = node.args[0].rank - 2
    stride = _ints(node_arg(node, 3, "stride", 1), spatial)
    padding = _ints(node_arg(node, 4, "padding", 0), spatial)
    output_padding = _ints(node_arg(node, 5, "output_padding", 0), spatial)
    groups = int(node_arg(node, 6, "groups", 1))
    dilation = _ints(node_arg(node, 7, "dilation", 1), spatial)
    return conv_transpose(ctx, node, stride, padding, output_padding, groups, dilation)


@register("aten::convolution")
def aten_convolution(ctx: Context, node: Node) -> Ref:
    """convolution(Tensor input, Tensor weight, Tensor? bias, SymInt[] stride, SymInt[] padding, SymInt[] dilation,
    bool transposed, SymInt[] output_padding, SymInt groups) -> Tensor: a convolution or a transposed one.
    """
    spatial = node.args[0].rank - 2
    stride, padding, dilation = (_ints(node.args[i], spatial) for i in (3, 4, 5))
    groups = int(node.args[8])
    if not node.args[6]:
        return conv(ctx, node, stride, padding, dilation, groups)
    return conv_transpose(ctx, node, stride, padding, _ints(node.args[7], spatial), groups, dilation)


def _alias(ctx: Context, name: str, ref: Ref, shape: tuple[Dim, ...] = ()) -> Value:
    """A stand-in IR value whose NNEF expression is ``ref`` (to reuse translations that take values)."""
    value = Value(name=f"__{name}", dtype="f32", shape=shape)
    ctx.refs[value.name] = ref
    return value


def _patch_filter(ctx: Context, channels: int, kernel: list[int], dtype: str) -> Value:
    """``[C * kh * kw, 1, kh, kw]``: output channel ``c * K + k`` picks kernel position ``k`` of channel ``c``."""
    count = kernel[0] * kernel[1]
    eye = np.eye(count, dtype=NP_FLOAT.get(dtype, "float32")).reshape(count, 1, *kernel)
    weights = np.tile(eye, (channels, 1, 1, 1))
    ref = ctx.g.variable(weights, f"patches_{channels}x{kernel[0]}x{kernel[1]}_{dtype}")
    return _alias(ctx, str(ref), ref, weights.shape)


@register("aten::im2col")
def aten_im2col(ctx: Context, node: Node) -> Ref:
    """im2col(Tensor self, int[2] kernel_size, int[2] dilation, int[2] padding, int[2] stride) -> Tensor (F.unfold).

    A depthwise convolution with a one-hot filter (exact: one tap per output), the spatial axes merged.
    """
    x, out = node.args[0], node.outputs[0]
    kernel, dilation, padding, stride = (list(node.args[i]) for i in (1, 2, 3, 4))
    batched = x.rank == 4
    (channels,) = static_sizes(node, x, [1 if batched else 0], "F.unfold")
    g = ctx.g
    src = x if batched else _alias(ctx, x.name + "_batched", g.op("unsqueeze", ctx.ref(x), axes=[0]), (1, *x.shape))
    fake = Node(
        node.kind,
        (src, _patch_filter(ctx, channels, kernel, x.dtype), None),
        (Value(out.name + "_patches", out.dtype, ()),),
        source=node.source,
    )
    y = conv(ctx, fake, stride, padding, dilation, channels)
    y = g.op("reshape", y, shape=[-1], axis_start=2, axis_count=2)
    if not batched:
        return g.op("squeeze", y, axes=[0], out=out.name)
    return g.op("copy", y, out=out.name)


@register("aten::col2im")
def aten_col2im(ctx: Context, node: Node) -> Ref:
    """col2im(Tensor self, SymInt[2] output_size, int[2] kernel_size, int[2] dilation, int[2] padding, int[2] stride)
    -> Tensor (F.fold): a transposed depthwise convolution with the one-hot filter of :func:`aten_im2col`
    (overlapping patches add up).
    """
    x, out = node.args[0], node.outputs[0]
    size, kernel, dilation, padding, stride = (list(node.args[i]) for i in (1, 2, 3, 4, 5))
    batched = x.rank == 3
    g = ctx.g
    (rows,) = static_sizes(node, x, [1 if batched else 0], "F.fold")
    channels = rows // (kernel[0] * kernel[1])
    blocks = [
        (s + 2 * p - d * (k - 1) - 1) // st + 1 for s, p, d, k, st in zip(size, padding, dilation, kernel, stride)
    ]
    y = ctx.ref(x) if batched else g.op("unsqueeze", ctx.ref(x), axes=[0])
    y = g.op("reshape", y, shape=blocks, axis_start=2, axis_count=1)
    natural = [
        (b - 1) * st - 2 * p + d * (k - 1) + 1 for b, st, p, d, k in zip(blocks, stride, padding, dilation, kernel)
    ]
    extra = [s - n for s, n in zip(size, natural)]
    src = _alias(ctx, out.name + "_blocks", y, (x.shape[0] if batched else 1, rows, *blocks))
    filt = _patch_filter(ctx, channels, kernel, x.dtype)
    target = Value(out.name if batched else out.name + "_batched", out.dtype, ())
    fake = Node(node.kind, (src, filt, None), (target,), source=node.source)
    y = conv_transpose(ctx, fake, stride, padding, extra, channels, dilation)
    if not batched:
        return g.op("squeeze", y, axes=[0], out=out.name)
    return y
