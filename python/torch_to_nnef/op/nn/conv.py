"""Convolutions: ``conv1d``/``2d``/``3d``, transposed convolutions, ``convolution``, ``im2col``/``col2im``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from torch_to_nnef.ir import Dim, Value
from torch_to_nnef.ir.dtypes import float_numpy
from torch_to_nnef.nnef.builder import Ref
from torch_to_nnef.op.common import convolve, convolve_transposed, current_node, static_sizes
from torch_to_nnef.op.registry import Context, register


@register(
    "aten::conv1d",
    "aten::conv1d.padding",
    "aten::conv2d",
    "aten::conv2d.padding",
    "aten::conv3d",
    "aten::conv3d.padding",
)
def aten_conv(
    ctx: Context,
    input: Value,
    weight: Value,
    bias: Value | None = None,
    stride: Sequence[int] = (1,),
    padding: Sequence[int] | str = (0,),
    dilation: Sequence[int] = (1,),
    groups: int = 1,
) -> Ref:
    """conv2d(Tensor input, Tensor weight, Tensor? bias=None, SymInt[2] stride=[1, 1], SymInt[2] padding=[0, 0],
    SymInt[2] dilation=[1, 1], SymInt groups=1) -> Tensor; 1-D and 3-D alike; ``.padding``: 'valid' or 'same'.

    NNEF ``conv`` (a one-entry list stands for every spatial axis).
    """
    pads = padding if isinstance(padding, str) else list(padding)
    return convolve(ctx, input, weight, bias, list(stride), pads, list(dilation), int(groups), ctx.out.name)


def _ints(value: Any, n: int) -> list[int]:
    """An int or an int list of one or ``n`` entries, as ``n`` ints."""
    values = [value] if isinstance(value, int) else list(value)
    return values * n if len(values) == 1 else values


@register("aten::conv_transpose1d", "aten::conv_transpose2d.input", "aten::conv_transpose3d.input")
def aten_conv_transpose(
    ctx: Context,
    input: Value,
    weight: Value,
    bias: Value | None = None,
    stride: Sequence[int] | int = 1,
    padding: Sequence[int] | int = 0,
    output_padding: Sequence[int] | int = 0,
    groups: int = 1,
    dilation: Sequence[int] | int = 1,
) -> Ref:
    """conv_transpose2d.input(Tensor input, Tensor weight, Tensor? bias=None, SymInt[2] stride=[1, 1],
    SymInt[2] padding=[0, 0], SymInt[2] output_padding=[0, 0], SymInt groups=1, SymInt[2] dilation=[1, 1])
    -> Tensor; 1-D and 3-D alike.

    NNEF ``deconv``; ``output_padding`` shortens the end crop, or pads the end with the bias where it exceeds it.
    """
    spatial = input.rank - 2
    return convolve_transposed(
        ctx,
        current_node(ctx),
        input,
        weight,
        bias,
        _ints(stride, spatial),
        _ints(padding, spatial),
        _ints(output_padding, spatial),
        int(groups),
        _ints(dilation, spatial),
        ctx.out.name,
    )


@register("aten::convolution")
def aten_convolution(
    ctx: Context,
    input: Value,
    weight: Value,
    bias: Value | None,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    transposed: bool,
    output_padding: Sequence[int],
    groups: int,
) -> Ref:
    """convolution(Tensor input, Tensor weight, Tensor? bias, SymInt[] stride, SymInt[] padding, SymInt[] dilation,
    bool transposed, SymInt[] output_padding, SymInt groups) -> Tensor: a convolution or a transposed one.
    """
    spatial = input.rank - 2
    strides, pads, dilations = (_ints(v, spatial) for v in (stride, padding, dilation))
    if not transposed:
        return convolve(ctx, input, weight, bias, strides, pads, dilations, int(groups), ctx.out.name)
    return convolve_transposed(
        ctx,
        current_node(ctx),
        input,
        weight,
        bias,
        strides,
        pads,
        _ints(output_padding, spatial),
        int(groups),
        dilations,
        ctx.out.name,
    )


def _alias(ctx: Context, name: str, ref: Ref, shape: tuple[Dim, ...] = ()) -> Value:
    """A stand-in IR value whose NNEF expression is ``ref`` (to reuse translations that take values)."""
    value = Value(name=f"__{name}", dtype="f32", shape=shape)
    ctx.refs[value.name] = ref
    return value


def _patch_filter(ctx: Context, channels: int, kernel: list[int], dtype: str) -> Value:
    """``[C * kh * kw, 1, kh, kw]``: output channel ``c * K + k`` picks kernel position ``k`` of channel ``c``."""
    count = kernel[0] * kernel[1]
    eye = np.eye(count, dtype=float_numpy(dtype)).reshape(count, 1, *kernel)
    weights = np.tile(eye, (channels, 1, 1, 1))
    ref = ctx.g.variable(weights, f"patches_{channels}x{kernel[0]}x{kernel[1]}_{dtype}")
    return _alias(ctx, str(ref), ref, weights.shape)


@register("aten::im2col")
def aten_im2col(
    ctx: Context,
    self: Value,
    kernel_size: Sequence[int],
    dilation: Sequence[int],
    padding: Sequence[int],
    stride: Sequence[int],
) -> Ref:
    """im2col(Tensor self, int[2] kernel_size, int[2] dilation, int[2] padding, int[2] stride) -> Tensor (F.unfold).

    A depthwise convolution with a one-hot filter (exact: one tap per output), the spatial axes merged.
    """
    x, out = self, ctx.out
    batched = x.rank == 4
    (channels,) = static_sizes(current_node(ctx), x, [1 if batched else 0], "F.unfold")
    g = ctx.g
    src = x if batched else _alias(ctx, x.name + "_batched", g.op("unsqueeze", ctx.ref(x), axes=[0]), (1, *x.shape))
    filt = _patch_filter(ctx, channels, list(kernel_size), x.dtype)
    y = convolve(ctx, src, filt, None, list(stride), list(padding), list(dilation), channels, out.name + "_patches")
    y = g.op("reshape", y, shape=[-1], axis_start=2, axis_count=2)
    if not batched:
        return g.op("squeeze", y, axes=[0], out=out.name)
    return g.op("copy", y, out=out.name)


@register("aten::col2im")
def aten_col2im(
    ctx: Context,
    self: Value,
    output_size: Sequence[int],
    kernel_size: Sequence[int],
    dilation: Sequence[int],
    padding: Sequence[int],
    stride: Sequence[int],
) -> Ref:
    """col2im(Tensor self, SymInt[2] output_size, int[2] kernel_size, int[2] dilation, int[2] padding, int[2] stride)
    -> Tensor (F.fold).

    A transposed depthwise convolution with the one-hot filter of :func:`aten_im2col` (overlapping patches add up).
    """
    x, out, node = self, ctx.out, current_node(ctx)
    size, kernel, dilations, pads, strides = (list(v) for v in (output_size, kernel_size, dilation, padding, stride))
    batched = x.rank == 3
    g = ctx.g
    (rows,) = static_sizes(node, x, [1 if batched else 0], "F.fold")
    channels = rows // (kernel[0] * kernel[1])
    blocks = [(s + 2 * p - d * (k - 1) - 1) // st + 1 for s, p, d, k, st in zip(size, pads, dilations, kernel, strides)]
    y = ctx.ref(x) if batched else g.op("unsqueeze", ctx.ref(x), axes=[0])
    y = g.op("reshape", y, shape=blocks, axis_start=2, axis_count=1)
    natural = [
        (b - 1) * st - 2 * p + d * (k - 1) + 1 for b, st, p, d, k in zip(blocks, strides, pads, dilations, kernel)
    ]
    extra = [s - n for s, n in zip(size, natural)]
    src = _alias(ctx, out.name + "_blocks", y, (x.shape[0] if batched else 1, rows, *blocks))
    filt = _patch_filter(ctx, channels, kernel, x.dtype)
    target = out.name if batched else out.name + "_batched"
    y = convolve_transposed(ctx, node, src, filt, None, strides, pads, extra, channels, dilations, target)
    if not batched:
        return g.op("squeeze", y, axes=[0], out=out.name)
    return y
