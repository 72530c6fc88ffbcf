"""Loss functions as graph ops: MSE, L1, smooth L1/Huber, NLL, cross-entropy, binary cross-entropy, KL divergence."""

from __future__ import annotations

from typing import Any

import numpy as np

from torch_to_nnef.errors import TranslationError
from torch_to_nnef.ir import Node, Value
from torch_to_nnef.nnef.builder import Ref
from torch_to_nnef.op.common import align_rank, cast_to, node_arg, scalar_const, static_sizes, tract_only
from torch_to_nnef.op.registry import Context, register

_REDUCTION_NAMES = ("none", "mean", "sum")


def _reduced(ctx: Context, node: Node, loss: Ref, rank: int, reduction: int) -> Ref:
    """The per-element ``loss`` (of rank ``rank``) reduced as asked: 0 none, 1 mean, 2 sum."""
    out, g = node.outputs[0], ctx.g
    if reduction == 0 or rank == 0:
        return g.op("copy", loss, out=out.name)
    op = "mean_reduce" if reduction == 1 else "sum_reduce"
    axes = list(range(rank))
    return g.op("squeeze", g.op(op, loss, axes=axes), axes=axes, out=out.name)


def _reduction(node: Node, index: int) -> int:
    value = node_arg(node, index, "reduction", 1)
    if value not in (0, 1, 2):
        raise TranslationError(f"{node.where()}: unknown loss reduction {value!r}")
    return int(value)


@register("aten::mse_loss", "aten::l1_loss")
def aten_mse_loss(ctx: Context, node: Node) -> Ref:
    """mse_loss/l1_loss(Tensor self, Tensor target, int reduction=Mean) -> Tensor."""
    a, b = node.args[0], node.args[1]
    rank = max(a.rank, b.rank)
    diff = ctx.g.op("sub", align_rank(ctx, a, rank, a), align_rank(ctx, b, rank, b))
    loss = ctx.g.op("sqr" if node.kind == "aten::mse_loss" else "abs", diff)
    return _reduced(ctx, node, loss, rank, _reduction(node, 2))


@register("aten::smooth_l1_loss", "aten::huber_loss")
def aten_smooth_l1_loss(ctx: Context, node: Node) -> Ref:
    """smooth_l1_loss(Tensor self, Tensor target, int reduction=Mean, float beta=1.0);
    huber_loss(self, target, reduction=Mean, float delta=1.0).

    smooth L1: ``0.5 d^2 / beta`` below ``beta``, else ``|d| - 0.5 beta``; Huber: ``0.5 d^2`` below ``delta``,
    else ``delta (|d| - 0.5 delta)``.
    """
    a, b = node.args[0], node.args[1]
    rank = max(a.rank, b.rank)
    limit = float(node_arg(node, 3, "beta" if node.kind == "aten::smooth_l1_loss" else "delta", 1.0))
    g = ctx.g
    d = g.op("abs", g.op("sub", align_rank(ctx, a, rank, a), align_rank(ctx, b, rank, b)))
    if node.kind == "aten::smooth_l1_loss":
        if limit == 0.0:
            loss = d
        else:
            loss = g.op(
                "select",
                g.op("lt", d, limit),
                g.op("div", g.op("mul", g.op("sqr", d), 0.5), limit),
                g.op("sub", d, 0.5 * limit),
            )
    else:
        loss = g.op(
            "select",
            g.op("lt", d, limit),
            g.op("mul", g.op("sqr", d), 0.5),
            g.op("mul", g.op("sub", d, 0.5 * limit), limit),
        )
    return _reduced(ctx, node, loss, rank, _reduction(node, 2))


def _class_terms(
    ctx: Context, node: Node, logp: Any, x: Value, target: Value, weight: Value | None, ignore: int
) -> tuple[Ref, Ref, Ref]:
    """For class-index targets: ``(-w[t] * logp[t], w[t] masked, valid)`` per element (classes on axis 1 of a
    batched input, axis 0 of a single one); ignored elements give 0.
    """
    tract_only(ctx, node, "with class indices needs integer comparisons, which the NNEF specification lacks")
    g = ctx.g
    axis = 1 if x.rank > 1 else 0
    (classes,) = static_sizes(node, x, [axis], "a loss over classes")
    shape = [1] * x.rank
    shape[axis] = classes
    ids = g.variable(np.arange(classes, dtype=np.int64).reshape(shape), f"class_ids_{classes}_r{x.rank}_a{axis}")
    t = g.op("unsqueeze", ctx.ref(target), axes=[axis])
    t = cast_to(ctx, node, t, target.dtype, "i64")
    onehot = g.op("eq", t, ids)
    valid = g.op("ne", t, scalar_const(ctx, ignore, "i64", x.rank))
    w = _class_weight(ctx, node, x, weight, axis)
    picked = g.op("select", onehot, g.op("mul", logp, w) if w is not None else logp, 0.0)
    picked_weight = g.op("select", onehot, w if w is not None else 1.0, 0.0)
    nll = g.op("neg", g.op("sum_reduce", picked, axes=[axis]))
    wt = g.op("sum_reduce", picked_weight, axes=[axis])
    valid_f = g.op("select", valid, 1.0, 0.0)
    return g.op("mul", nll, valid_f), g.op("mul", wt, valid_f), valid_f


def _class_weight(ctx: Context, node: Node, x: Value, weight: Value | None, axis: int) -> Ref | None:
    if weight is None:
        return None
    axes = [a for a in range(x.rank) if a != axis]
    return ctx.g.op("unsqueeze", ctx.ref(weight), axes=axes) if axes else ctx.ref(weight)


def _squeeze_class(ctx: Context, y: Ref, x: Value) -> Ref:
    axis = 1 if x.rank > 1 else 0
    return ctx.g.op("squeeze", y, axes=[axis])


def _class_loss(ctx: Context, node: Node, logp: Any, label_smoothing: float) -> Ref:
    """nll_loss / cross_entropy over log-probabilities ``logp`` (the class axis of ``node``'s input)."""
    x, target = node.args[0], node.args[1]
    weight = node_arg(node, 2, "weight")
    reduction = _reduction(node, 3)
    ignore = int(node_arg(node, 4, "ignore_index", -100))
    g, out = ctx.g, node.outputs[0]
    nll, wt, valid = _class_terms(ctx, node, logp, x, target, weight, ignore)
    nll, wt, valid = (_squeeze_class(ctx, v, x) for v in (nll, wt, valid))
    rank = target.rank
    axes = list(range(rank))

    def total(v: Ref) -> Ref:
        return g.op("sum_reduce", v, axes=axes) if axes else v

    def scalar(v: Ref) -> Ref:
        return g.op("squeeze", v, axes=axes) if axes else v

    loss: Ref = nll
    if reduction == 1:
        loss = g.op("div", total(nll), total(wt))
    elif reduction == 2:
        loss = total(nll)
    if label_smoothing > 0.0:
        axis = 1 if x.rank > 1 else 0
        classes = x.shape[axis]
        w = _class_weight(ctx, node, x, weight, axis)
        smooth = g.op("neg", g.op("sum_reduce", g.op("mul", logp, w) if w is not None else logp, axes=[axis]))
        smooth = g.op("mul", _squeeze_class(ctx, smooth, x), valid)
        if reduction == 1:
            smooth = (
                g.op("div", total(smooth), total(wt))
                if weight is not None
                else (g.op("mean_reduce", smooth, axes=axes) if axes else smooth)
            )
        elif reduction == 2:
            smooth = total(smooth)
        loss = g.op(
            "add", g.op("mul", loss, 1.0 - label_smoothing), g.op("mul", smooth, label_smoothing / float(classes))
        )
    return g.op("copy", scalar(loss) if reduction else loss, out=out.name)


def _log_softmax(ctx: Context, x: Value) -> Ref:
    axis = 1 if x.rank > 1 else 0
    g, xr = ctx.g, ctx.ref(x)
    shifted = g.op("sub", xr, g.op("max_reduce", xr, axes=[axis]))
    return g.op("sub", shifted, g.op("log", g.op("sum_reduce", g.op("exp", shifted), axes=[axis])))


@register("aten::nll_loss_nd")
def aten_nll_loss(ctx: Context, node: Node) -> Ref:
    """nll_loss_nd(Tensor self, Tensor target, Tensor? weight=None, int reduction=Mean, SymInt ignore_index=-100).

    ``-w[t] * self[t]`` per element; the mean divides by the sum of the weights of the counted elements.
    """
    return _class_loss(ctx, node, ctx.ref(node.args[0]), 0.0)


@register("aten::cross_entropy_loss")
def aten_cross_entropy_loss(ctx: Context, node: Node) -> Ref:
    """cross_entropy_loss(Tensor self, Tensor target, Tensor? weight=None, int reduction=Mean,
    SymInt ignore_index=-100, float label_smoothing=0.0) -> Tensor.

    Class indices (integer target, TractNNEF) or class probabilities (float target, both targets).
    """
    x, target = node.args[0], node.args[1]
    smoothing = float(node_arg(node, 5, "label_smoothing", 0.0))
    logp = _log_softmax(ctx, x)
    if target.dtype.startswith("f"):
        return _probability_loss(ctx, node, logp, smoothing)
    return _class_loss(ctx, node, logp, smoothing)


def _probability_loss(ctx: Context, node: Node, logp: Ref, smoothing: float) -> Ref:
    x, target, out = node.args[0], node.args[1], node.outputs[0]
    weight = node_arg(node, 2, "weight")
    reduction = _reduction(node, 3)
    axis = 1 if x.rank > 1 else 0
    classes = x.shape[axis]
    g = ctx.g
    t = ctx.ref(target)
    if smoothing > 0.0:
        t = g.op("add", g.op("mul", t, 1.0 - smoothing), smoothing / float(classes))
    w = _class_weight(ctx, node, x, weight, axis)
    terms = g.op("mul", logp, t)
    if w is not None:
        terms = g.op("mul", terms, w)
    loss = _squeeze_class(ctx, g.op("neg", g.op("sum_reduce", terms, axes=[axis])), x)
    return _reduced(ctx, node, loss, x.rank - 1, reduction) if reduction else g.op("copy", loss, out=out.name)


@register("aten::binary_cross_entropy")
def aten_binary_cross_entropy(ctx: Context, node: Node) -> Ref:
    """binary_cross_entropy(Tensor self, Tensor target, Tensor? weight=None, int reduction=Mean) -> Tensor.

    ``-(t log p + (1 - t) log(1 - p))`` with each log clamped at -100, as PyTorch.
    """
    p, t = node.args[0], node.args[1]
    weight = node_arg(node, 2, "weight")
    rank = max(p.rank, t.rank)
    g = ctx.g
    pr, tr = align_rank(ctx, p, rank, p), align_rank(ctx, t, rank, t)
    log_p = g.op("max", g.op("log", pr), -100.0)
    log_q = g.op("max", g.op("log", g.op("sub", 1.0, pr)), -100.0)
    loss = g.op("neg", g.op("add", g.op("mul", tr, log_p), g.op("mul", g.op("sub", 1.0, tr), log_q)))
    if weight is not None:
        loss = g.op("mul", loss, align_rank(ctx, weight, rank, weight))
    return _reduced(ctx, node, loss, rank, _reduction(node, 3))


@register("aten::binary_cross_entropy_with_logits")
def aten_binary_cross_entropy_with_logits(ctx: Context, node: Node) -> Ref:
    """binary_cross_entropy_with_logits(Tensor self, Tensor target, Tensor? weight=None, Tensor? pos_weight=None,
    int reduction=Mean) -> Tensor.

    Stable form: ``(1 - t) x + l (log(1 + exp(-|x|)) + max(-x, 0))`` with ``l = 1 + (pos_weight - 1) t``.
    """
    x, t = node.args[0], node.args[1]
    weight, pos_weight = node_arg(node, 2, "weight"), node_arg(node, 3, "pos_weight")
    rank = max(x.rank, t.rank)
    g = ctx.g
    xr, tr = align_rank(ctx, x, rank, x), align_rank(ctx, t, rank, t)
    softplus = g.op(
        "add",
        g.op("log", g.op("add", g.op("exp", g.op("neg", g.op("abs", xr))), 1.0)),
        g.op("max", g.op("neg", xr), 0.0),
    )
    if pos_weight is not None:
        pw = align_rank(ctx, pos_weight, rank, pos_weight)
        softplus = g.op("mul", softplus, g.op("add", g.op("mul", g.op("sub", pw, 1.0), tr), 1.0))
    loss = g.op("add", g.op("mul", g.op("sub", 1.0, tr), xr), softplus)
    if weight is not None:
        loss = g.op("mul", loss, align_rank(ctx, weight, rank, weight))
    return _reduced(ctx, node, loss, rank, _reduction(node, 4))


@register("aten::kl_div")
def aten_kl_div(ctx: Context, node: Node) -> Ref:
    """kl_div(Tensor self, Tensor target, int reduction=Mean, *, bool log_target=False) -> Tensor.

    ``t (log t - x)`` (0 where t is 0), or ``exp(t) (t - x)`` for a log target; 'batchmean' is this sum over
    the batch size, divided after the op.
    """
    x, t = node.args[0], node.args[1]
    rank = max(x.rank, t.rank)
    g = ctx.g
    xr, tr = align_rank(ctx, x, rank, x), align_rank(ctx, t, rank, t)
    if bool(node_arg(node, 3, "log_target", False)):
        loss = g.op("mul", g.op("exp", tr), g.op("sub", tr, xr))
    else:
        positive = g.op("mul", tr, g.op("sub", g.op("log", tr), xr))
        loss = g.op("select", g.op("gt", tr, 0.0), positive, g.op("mul", g.op("neg", tr), xr))
    return _reduced(ctx, node, loss, rank, _reduction(node, 2))
