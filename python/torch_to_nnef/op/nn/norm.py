"""Normalisations: batch, layer, group, instance and RMS norms, weight norm."""

from __future__ import annotations

from typing import Any

import numpy as np

from torch_to_nnef.errors import TranslationError
from torch_to_nnef.ir import Node, Value
from torch_to_nnef.nnef.builder import Ref
from torch_to_nnef.op.common import (
    align_rank,
    batch_norm,
    channel_count,
    current_node,
    shape_attr,
    standardize,
    wrap_axis,
)
from torch_to_nnef.op.registry import Context, register


@register("aten::group_norm")
def aten_group_norm(
    ctx: Context,
    input: Value,
    num_groups: int,
    weight: Value | None = None,
    bias: Value | None = None,
    eps: float = 1e-05,
    cudnn_enabled: bool = True,
) -> Ref:
    """group_norm(Tensor input, int num_groups, Tensor? weight=None, Tensor? bias=None, float eps=1e-05,
    bool cudnn_enabled=True) -> Tensor.
    """
    return _group_norm(ctx, current_node(ctx), input, num_groups, weight, bias, float(eps))


@register("aten::native_group_norm")
def aten_native_group_norm(
    ctx: Context,
    input: Value,
    weight: Value | None,
    bias: Value | None,
    N: Any,
    C: Any,
    HxW: Any,
    group: int,
    eps: float,
) -> Ref:
    """native_group_norm(Tensor input, Tensor? weight, Tensor? bias, SymInt N, SymInt C, SymInt HxW, int group,
    float eps) -> (Tensor, Tensor, Tensor): the output only (the mean and rstd are not exported).
    """
    return _group_norm(ctx, current_node(ctx), input, group, weight, bias, float(eps))


def _group_norm(ctx: Context, node: Node, x: Value, groups: int, w: Value | None, b: Value | None, eps: float) -> Ref:
    if not isinstance(x.shape[0], int) or not isinstance(x.shape[1], int):
        raise TranslationError(f"{node.where()}: group_norm with dynamic batch or channels is not supported yet")
    g, out = ctx.g, node.outputs[0]
    grouped = g.op("reshape", ctx.ref(x), shape=[x.shape[0], groups, -1])
    normed = standardize(ctx, grouped, [2], eps)
    y = g.op("reshape", normed, shape=shape_attr(ctx, node, x.shape))
    channel_axes = [0, *range(2, x.rank)]
    if w is not None:
        y = g.op("mul", y, g.op("unsqueeze", ctx.ref(w), axes=channel_axes))
    if b is not None:
        y = g.op("add", y, g.op("unsqueeze", ctx.ref(b), axes=channel_axes))
    return g.op("copy", y, out=out.name)


@register("aten::_native_batch_norm_legit_no_training")
def aten_batch_norm(
    ctx: Context,
    input: Value,
    weight: Value | None,
    bias: Value | None,
    running_mean: Value,
    running_var: Value,
    momentum: float,
    eps: float,
) -> Ref:
    """_native_batch_norm_legit_no_training(Tensor input, Tensor? weight, Tensor? bias, Tensor running_mean,
    Tensor running_var, float momentum, float eps) -> (Tensor, Tensor, Tensor): the output only.
    """
    return batch_norm(ctx, current_node(ctx), input, weight, bias, running_mean, running_var, float(eps))


def _layer_norm(
    ctx: Context, x: Value, normalized_shape: list[Any], w: Value | None, b: Value | None, eps: float
) -> Ref:
    """Standardised over the last ``len(normalized_shape)`` axes, then scaled by ``w`` and shifted by ``b``."""
    n = len(normalized_shape)
    out = ctx.out
    g = ctx.g
    y = standardize(ctx, ctx.ref(x), list(range(x.rank - n, x.rank)), eps)
    if w is not None:
        y = g.op("mul", y, align_rank(ctx, w, out.rank, out))
    if b is not None:
        y = g.op("add", y, align_rank(ctx, b, out.rank, out))
    return g.op("copy", y, out=out.name)


@register("aten::layer_norm")
def aten_layer_norm(
    ctx: Context,
    input: Value,
    normalized_shape: list[Any],
    weight: Value | None = None,
    bias: Value | None = None,
    eps: float = 1e-05,
    cudnn_enable: bool = True,
) -> Ref:
    """layer_norm(Tensor input, SymInt[] normalized_shape, Tensor? weight=None, Tensor? bias=None,
    float eps=1e-05, bool cudnn_enable=True) -> Tensor.
    """
    return _layer_norm(ctx, input, normalized_shape, weight, bias, float(eps))


@register("aten::native_layer_norm")
def aten_native_layer_norm(
    ctx: Context,
    input: Value,
    normalized_shape: list[Any],
    weight: Value | None,
    bias: Value | None,
    eps: float,
) -> Ref:
    """native_layer_norm(Tensor input, SymInt[] normalized_shape, Tensor? weight, Tensor? bias, float eps)
    -> (Tensor, Tensor, Tensor).

    The output only is exported (not the mean and rstd).
    """
    return _layer_norm(ctx, input, normalized_shape, weight, bias, float(eps))


@register("aten::instance_norm")
def aten_instance_norm(
    ctx: Context,
    input: Value,
    weight: Value | None,
    bias: Value | None,
    running_mean: Value | None,
    running_var: Value | None,
    use_input_stats: bool,
    momentum: float,
    eps: float,
    cudnn_enabled: bool,
) -> Ref:
    """instance_norm(Tensor input, Tensor? weight, Tensor? bias, Tensor? running_mean, Tensor? running_var,
    bool use_input_stats, float momentum, float eps, bool cudnn_enabled) -> Tensor.
    """
    x, w, b, mean, var = input, weight, bias, running_mean, running_var
    g, out = ctx.g, ctx.out
    xr = ctx.ref(x)
    if use_input_stats or mean is None or var is None:
        y = standardize(ctx, xr, list(range(2, x.rank)), float(eps))
    else:
        centered = g.op("sub", xr, channel_count(ctx, mean, x.rank))
        y = g.op("mul", centered, g.op("rsqrt", g.op("add", channel_count(ctx, var, x.rank), float(eps))))
    if w is not None:
        y = g.op("mul", y, channel_count(ctx, w, x.rank))
    if b is not None:
        y = g.op("add", y, channel_count(ctx, b, x.rank))
    return g.op("copy", y, out=out.name)


def _batch_norm_legit(
    ctx: Context,
    x: Value,
    w: Value | None,
    b: Value | None,
    mean: Value | None,
    var: Value | None,
    training: bool,
    eps: float,
) -> Ref:
    """The batch norm with the running statistics, or in training mode (or without running statistics) with
    the batch's statistics (over every axis but the channels'); the running statistics are not updated.
    """
    if not training and mean is not None and var is not None:
        return batch_norm(ctx, current_node(ctx), x, w, b, mean, var, eps)
    g, out = ctx.g, ctx.out
    y = standardize(ctx, ctx.ref(x), [0, *range(2, x.rank)], eps)
    if w is not None:
        y = g.op("mul", y, channel_count(ctx, w, x.rank))
    if b is not None:
        y = g.op("add", y, channel_count(ctx, b, x.rank))
    return g.op("copy", y, out=out.name)


@register("aten::_native_batch_norm_legit")
def aten_batch_norm_legit(
    ctx: Context,
    input: Value,
    weight: Value | None,
    bias: Value | None,
    running_mean: Value | None,
    running_var: Value | None,
    training: bool,
    momentum: float,
    eps: float,
) -> Ref:
    """_native_batch_norm_legit(Tensor input, Tensor? weight, Tensor? bias, Tensor(a!) running_mean,
    Tensor(b!) running_var, bool training, float momentum, float eps) -> (Tensor, Tensor, Tensor).

    The output only is exported. The torch.jit.trace front-end gives a batch norm without running statistics
    as this overload with ``running_mean`` and ``running_var`` None.
    """
    return _batch_norm_legit(ctx, input, weight, bias, running_mean, running_var, bool(training), float(eps))


@register("aten::_native_batch_norm_legit.no_stats")
def aten_batch_norm_legit_no_stats(
    ctx: Context,
    input: Value,
    weight: Value | None,
    bias: Value | None,
    training: bool,
    momentum: float,
    eps: float,
) -> Ref:
    """_native_batch_norm_legit.no_stats(Tensor input, Tensor? weight, Tensor? bias, bool training,
    float momentum, float eps) -> (Tensor, Tensor, Tensor): normalised with the batch's statistics.

    The output only is exported.
    """
    return _batch_norm_legit(ctx, input, weight, bias, None, None, bool(training), float(eps))


_EPS = {
    "f16": float(np.finfo(np.float16).eps),
    "f32": float(np.finfo(np.float32).eps),
    "f64": float(np.finfo(float).eps),
}


@register("aten::rms_norm")
def aten_rms_norm(
    ctx: Context,
    input: Value,
    normalized_shape: list[Any],
    weight: Value | None = None,
    eps: float | None = None,
) -> Ref:
    """rms_norm(Tensor input, SymInt[] normalized_shape, Tensor? weight=None, float? eps=None) -> Tensor.

    ``eps=None`` is the machine epsilon of the input's dtype, as in PyTorch.
    """
    x = input
    n = len(normalized_shape)
    epsilon = _EPS.get(x.dtype, _EPS["f32"]) if eps is None else float(eps)
    g, out = ctx.g, ctx.out
    xr = ctx.ref(x)
    mean_square = g.op("mean_reduce", g.op("sqr", xr), axes=list(range(x.rank - n, x.rank)))
    y = g.op("mul", xr, g.op("rsqrt", g.op("add", mean_square, epsilon)))
    if weight is None:
        return g.op("copy", y, out=out.name)
    return g.op("mul", y, align_rank(ctx, weight, out.rank, out), out=out.name)


@register("aten::_weight_norm", "aten::_weight_norm_interface")
def aten_weight_norm(ctx: Context, v: Value, g: Value, dim: int = 0) -> Ref:
    """_weight_norm(Tensor v, Tensor g, int dim=0) -> Tensor; _weight_norm_interface(Tensor v, Tensor g,
    int dim=0) -> (Tensor, Tensor).

    ``v * g / ||v||`` (norm over every axis but ``dim``); of ``_weight_norm_interface``'s ``(w, norm)``, the weight
    only is exported.
    """
    axes = list(range(v.rank)) if dim == -1 else [a for a in range(v.rank) if a != wrap_axis(dim, v.rank)]
    builder, out = ctx.g, ctx.out
    vr = ctx.ref(v)
    norm = builder.op("sqrt", builder.op("sum_reduce", builder.op("sqr", vr), axes=axes), out=out.name + "_norm")
    return builder.op("mul", vr, builder.op("div", align_rank(ctx, g, v.rank, out), norm), out=out.name)
