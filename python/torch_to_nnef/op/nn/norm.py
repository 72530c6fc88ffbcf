"""Normalisations: batch, layer, group, instance and RMS norms, weight norm."""

from __future__ import annotations

import numpy as np

from torch_to_nnef.errors import TranslationError
from torch_to_nnef.ir import Node, Value
from torch_to_nnef.nnef.builder import Ref
from torch_to_nnef.op.common import align_rank, batch_norm, channel_count, node_arg, shape_attr, standardize, wrap_axis
from torch_to_nnef.op.registry import Context, register


@register("aten::group_norm")
def aten_group_norm(ctx: Context, node: Node) -> Ref:
    """group_norm(Tensor input, int num_groups, Tensor? weight, Tensor? bias, float eps=1e-05)."""
    w, b = node_arg(node, 2, "weight"), node_arg(node, 3, "bias")
    return _group_norm(ctx, node, node.args[1], w, b, float(node_arg(node, 4, "eps", 1e-5)))


@register("aten::native_group_norm")
def aten_native_group_norm(ctx: Context, node: Node) -> Ref:
    """native_group_norm(Tensor input, Tensor? weight, Tensor? bias, SymInt N, SymInt C, SymInt HxW, int group,
    float eps) -> (Tensor, Tensor, Tensor): the output only (the mean and rstd are not exported).
    """
    return _group_norm(ctx, node, node.args[6], node.args[1], node.args[2], float(node.args[7]))


def _group_norm(ctx: Context, node: Node, groups: int, w: Value | None, b: Value | None, eps: float) -> Ref:
    x = node.args[0]
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
def aten_batch_norm(ctx: Context, node: Node) -> Ref:
    """_native_batch_norm_legit_no_training(input, weight, bias, running_mean, running_var, momentum, eps)."""
    x, w, b, mean, var = node.args[:5]
    return batch_norm(ctx, node, x, w, b, mean, var, float(node.args[6]))


@register("aten::layer_norm", "aten::native_layer_norm")
def aten_layer_norm(ctx: Context, node: Node) -> Ref:
    """layer_norm/native_layer_norm(Tensor input, int[] normalized_shape, Tensor? weight, Tensor? bias, float eps).

    ``native_layer_norm`` returns ``(out, mean, rstd)``: the output only is exported.
    """
    x = node.args[0]
    n = len(node.args[1])
    w, b = node_arg(node, 2, "weight"), node_arg(node, 3, "bias")
    eps = float(node_arg(node, 4, "eps", 1e-5))
    out = node.outputs[0]
    g = ctx.g
    y = standardize(ctx, ctx.ref(x), list(range(x.rank - n, x.rank)), eps)
    if w is not None:
        y = g.op("mul", y, align_rank(ctx, w, out.rank, out))
    if b is not None:
        y = g.op("add", y, align_rank(ctx, b, out.rank, out))
    return g.op("copy", y, out=out.name)


@register("aten::instance_norm")
def aten_instance_norm(ctx: Context, node: Node) -> Ref:
    """instance_norm(Tensor input, Tensor? weight, Tensor? bias, Tensor? running_mean, Tensor? running_var,
    bool use_input_stats, float momentum, float eps, bool cudnn_enabled) -> Tensor.
    """
    x = node.args[0]
    w, b, mean, var = (
        node_arg(node, i, name) for i, name in enumerate(("weight", "bias", "running_mean", "running_var"), 1)
    )
    use_input_stats = bool(node_arg(node, 5, "use_input_stats", True))
    eps = float(node_arg(node, 7, "eps", 1e-5))
    g, out = ctx.g, node.outputs[0]
    xr = ctx.ref(x)
    if use_input_stats or mean is None or var is None:
        y = standardize(ctx, xr, list(range(2, x.rank)), eps)
    else:
        centered = g.op("sub", xr, channel_count(ctx, mean, x.rank))
        y = g.op("mul", centered, g.op("rsqrt", g.op("add", channel_count(ctx, var, x.rank), eps)))
    if w is not None:
        y = g.op("mul", y, channel_count(ctx, w, x.rank))
    if b is not None:
        y = g.op("add", y, channel_count(ctx, b, x.rank))
    return g.op("copy", y, out=out.name)


@register("aten::_native_batch_norm_legit")
def aten_batch_norm_legit(ctx: Context, node: Node) -> Ref:
    """_native_batch_norm_legit(Tensor input, Tensor? weight, Tensor? bias, Tensor running_mean, Tensor running_var,
    bool training, float momentum, float eps) -> (Tensor, Tensor, Tensor); .no_stats (no running statistics).

    Training mode normalises with the batch's statistics (over every axis but the channels'); the running
    statistics are not updated. Only the output is exported.
    """
    x, w, b = node.args[:3]
    positional = node.args[:-1] if isinstance(node.args[-1], dict) else node.args
    stats = len(positional) >= 8  # the overload with running statistics
    mean, var = (node.args[3], node.args[4]) if stats else (None, None)
    training, eps = bool(positional[5 if stats else 3]), float(positional[7 if stats else 5])
    if not training and mean is not None and var is not None:
        return batch_norm(ctx, node, x, w, b, mean, var, eps)
    g, out = ctx.g, node.outputs[0]
    y = standardize(ctx, ctx.ref(x), [0, *range(2, x.rank)], eps)
    if w is not None:
        y = g.op("mul", y, channel_count(ctx, w, x.rank))
    if b is not None:
        y = g.op("add", y, channel_count(ctx, b, x.rank))
    return g.op("copy", y, out=out.name)


_EPS = {
    "f16": float(np.finfo(np.float16).eps),
    "f32": float(np.finfo(np.float32).eps),
    "f64": float(np.finfo(float).eps),
}


@register("aten::rms_norm")
def aten_rms_norm(ctx: Context, node: Node) -> Ref:
    """rms_norm(Tensor input, SymInt[] normalized_shape, Tensor? weight=None, float? eps=None) -> Tensor.

    ``eps=None`` is the machine epsilon of the input's dtype, as in PyTorch.
    """
    x = node.args[0]
    n = len(node.args[1])
    w = node_arg(node, 2, "weight")
    eps = node_arg(node, 3, "eps")
    eps = _EPS.get(x.dtype, _EPS["f32"]) if eps is None else float(eps)
    g, out = ctx.g, node.outputs[0]
    xr = ctx.ref(x)
    mean_square = g.op("mean_reduce", g.op("sqr", xr), axes=list(range(x.rank - n, x.rank)))
    y = g.op("mul", xr, g.op("rsqrt", g.op("add", mean_square, eps)))
    if w is None:
        return g.op("copy", y, out=out.name)
    return g.op("mul", y, align_rank(ctx, w, out.rank, out), out=out.name)


@register("aten::_weight_norm", "aten::_weight_norm_interface")
def aten_weight_norm(ctx: Context, node: Node) -> Ref:
    """_weight_norm(Tensor v, Tensor g, int dim=0) -> Tensor; _weight_norm_interface(v, g, dim) -> (Tensor, Tensor).

    ``v * g / ||v||`` (norm over every axis but ``dim``); of ``_weight_norm_interface``'s ``(w, norm)``, the weight
    only is exported.
    """
    v, gain = node.args[0], node.args[1]
    dim = node_arg(node, 2, "dim", 0)
    axes = list(range(v.rank)) if dim == -1 else [a for a in range(v.rank) if a != wrap_axis(dim, v.rank)]
    g, out = ctx.g, node.outputs[0]
    vr = ctx.ref(v)
    norm = g.op("sqrt", g.op("sum_reduce", g.op("sqr", vr), axes=axes), out=out.name + "_norm")
    return g.op("mul", vr, g.op("div", align_rank(ctx, gain, v.rank, out), norm), out=out.name)
