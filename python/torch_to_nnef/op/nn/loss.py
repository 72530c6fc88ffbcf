"""Loss functions as graph ops: MSE, L1, smooth L1/Huber, NLL, cross-entropy, binary cross-entropy, KL divergence."""

from __future__ import annotations

from typing import Any

import numpy as np

from torch_to_nnef.errors import TranslationError
from torch_to_nnef.ir import Node, Value
from torch_to_nnef.ir.dtypes import NUMPY
from torch_to_nnef.nnef.builder import Ref
from torch_to_nnef.op.common import align_rank, cast_to, current_node, scalar_const, static_sizes, tools_only
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


def _reduction(ctx: Context, reduction: Any) -> int:
    """A loss's ``reduction`` argument, checked: 0 none, 1 mean, 2 sum."""
    if reduction not in (0, 1, 2):
        raise TranslationError(f"{ctx.where()}: unknown loss reduction {reduction!r}")
    return int(reduction)


def _difference(ctx: Context, a: Value, b: Value) -> tuple[Ref, int]:
    """``a - b`` (ranks aligned) and its rank."""
    rank = max(a.rank, b.rank)
    return ctx.g.op("sub", align_rank(ctx, a, rank, a), align_rank(ctx, b, rank, b)), rank


@register("aten::mse_loss")
def aten_mse_loss(ctx: Context, self: Value, target: Value, reduction: int = 1) -> Ref:
    """mse_loss(Tensor self, Tensor target, int reduction=Mean) -> Tensor: ``(self - target)^2``, reduced."""
    diff, rank = _difference(ctx, self, target)
    return _reduced(ctx, current_node(ctx), ctx.g.op("sqr", diff), rank, _reduction(ctx, reduction))


@register("aten::l1_loss")
def aten_l1_loss(ctx: Context, self: Value, target: Value, reduction: int = 1) -> Ref:
    """l1_loss(Tensor self, Tensor target, int reduction=Mean) -> Tensor: ``|self - target|``, reduced."""
    diff, rank = _difference(ctx, self, target)
    return _reduced(ctx, current_node(ctx), ctx.g.op("abs", diff), rank, _reduction(ctx, reduction))


@register("aten::smooth_l1_loss")
def aten_smooth_l1_loss(ctx: Context, self: Value, target: Value, reduction: int = 1, beta: float = 1.0) -> Ref:
    """smooth_l1_loss(Tensor self, Tensor target, int reduction=Mean, float beta=1.) -> Tensor.

    ``0.5 d^2 / beta`` below ``beta``, else ``|d| - 0.5 beta``.
    """
    diff, rank = _difference(ctx, self, target)
    limit = float(beta)
    g = ctx.g
    d = g.op("abs", diff)
    if limit == 0.0:
        loss = d
    else:
        loss = g.op(
            "select",
            g.op("lt", d, limit),
            g.op("div", g.op("mul", g.op("sqr", d), 0.5), limit),
            g.op("sub", d, 0.5 * limit),
        )
    return _reduced(ctx, current_node(ctx), loss, rank, _reduction(ctx, reduction))


@register("aten::huber_loss")
def aten_huber_loss(ctx: Context, self: Value, target: Value, reduction: int = 1, delta: float = 1.0) -> Ref:
    """huber_loss(Tensor self, Tensor target, int reduction=Mean, float delta=1.) -> Tensor.

    ``0.5 d^2`` below ``delta``, else ``delta (|d| - 0.5 delta)``.
    """
    diff, rank = _difference(ctx, self, target)
    limit = float(delta)
    g = ctx.g
    d = g.op("abs", diff)
    loss = g.op(
        "select",
        g.op("lt", d, limit),
        g.op("mul", g.op("sqr", d), 0.5),
        g.op("mul", g.op("sub", d, 0.5 * limit), limit),
    )
    return _reduced(ctx, current_node(ctx), loss, rank, _reduction(ctx, reduction))


def _class_terms(
    ctx: Context, node: Node, logp: Any, x: Value, target: Value, weight: Value | None, ignore: int
) -> tuple[Ref, Ref, Ref]:
    """For class-index targets: ``(-w[t] * logp[t], w[t] masked, valid)`` per element (classes on axis 1 of a
    batched input, axis 0 of a single one); ignored elements give 0. Class numbers are compared as
    i64 in tract, as f32 (exact below 2^24 classes) with the Khronos tools, whose comparisons take floats.
    """
    if not ctx.tract:
        tools_only(ctx, node, "with class indices needs a cast of the indices")
    g = ctx.g
    axis = 1 if x.rank > 1 else 0
    (classes,) = static_sizes(node, x, [axis], "a loss over classes")
    shape = [1] * x.rank
    shape[axis] = classes
    idt = "i64" if ctx.tract else "f32"
    ids = g.variable(
        np.arange(classes, dtype=NUMPY[idt]).reshape(shape), f"class_ids_{idt}_{classes}_r{x.rank}_a{axis}"
    )
    t = g.op("unsqueeze", ctx.ref(target), axes=[axis])
    t = cast_to(ctx, node, t, target.dtype, idt)
    onehot = g.op("eq", t, ids)
    valid = g.op("ne", t, scalar_const(ctx, ignore, idt, x.rank))
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


def _class_loss(
    ctx: Context,
    x: Value,
    target: Value,
    weight: Value | None,
    reduction: int,
    ignore: int,
    logp: Any,
    label_smoothing: float,
) -> Ref:
    """nll_loss / cross_entropy of class indices ``target`` over log-probabilities ``logp`` (the class axis of
    the input ``x``).
    """
    node = current_node(ctx)
    g, out = ctx.g, ctx.out
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
def aten_nll_loss(
    ctx: Context,
    self: Value,
    target: Value,
    weight: Value | None = None,
    reduction: int = 1,
    ignore_index: int = -100,
) -> Ref:
    """nll_loss_nd(Tensor self, Tensor target, Tensor? weight=None, int reduction=Mean, SymInt ignore_index=-100)
    -> Tensor.

    ``-w[t] * self[t]`` per element; the mean divides by the sum of the weights of the counted elements.
    """
    checked = _reduction(ctx, reduction)
    return _class_loss(ctx, self, target, weight, checked, int(ignore_index), ctx.ref(self), 0.0)


@register("aten::cross_entropy_loss")
def aten_cross_entropy_loss(
    ctx: Context,
    self: Value,
    target: Value,
    weight: Value | None = None,
    reduction: int = 1,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
) -> Ref:
    """cross_entropy_loss(Tensor self, Tensor target, Tensor? weight=None, int reduction=Mean,
    SymInt ignore_index=-100, float label_smoothing=0.) -> Tensor.

    Class indices (integer target, TractNNEF) or class probabilities (float target, both targets).
    """
    smoothing, checked = float(label_smoothing), _reduction(ctx, reduction)
    logp = _log_softmax(ctx, self)
    if target.dtype.startswith("f"):
        return _probability_loss(ctx, self, target, weight, checked, logp, smoothing)
    return _class_loss(ctx, self, target, weight, checked, int(ignore_index), logp, smoothing)


def _probability_loss(
    ctx: Context, x: Value, target: Value, weight: Value | None, reduction: int, logp: Ref, smoothing: float
) -> Ref:
    """cross_entropy of class probabilities ``target`` over log-probabilities ``logp`` of the input ``x``."""
    node, out = current_node(ctx), ctx.out
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
def aten_binary_cross_entropy(
    ctx: Context, self: Value, target: Value, weight: Value | None = None, reduction: int = 1
) -> Ref:
    """binary_cross_entropy(Tensor self, Tensor target, Tensor? weight=None, int reduction=Mean) -> Tensor.

    ``-(t log p + (1 - t) log(1 - p))`` with each log clamped at -100, as PyTorch.
    """
    p, t = self, target
    rank = max(p.rank, t.rank)
    g = ctx.g
    pr, tr = align_rank(ctx, p, rank, p), align_rank(ctx, t, rank, t)
    log_p = g.op("max", g.op("log", pr), -100.0)
    log_q = g.op("max", g.op("log", g.op("sub", 1.0, pr)), -100.0)
    loss = g.op("neg", g.op("add", g.op("mul", tr, log_p), g.op("mul", g.op("sub", 1.0, tr), log_q)))
    if weight is not None:
        loss = g.op("mul", loss, align_rank(ctx, weight, rank, weight))
    return _reduced(ctx, current_node(ctx), loss, rank, _reduction(ctx, reduction))


@register("aten::binary_cross_entropy_with_logits")
def aten_binary_cross_entropy_with_logits(
    ctx: Context,
    self: Value,
    target: Value,
    weight: Value | None = None,
    pos_weight: Value | None = None,
    reduction: int = 1,
) -> Ref:
    """binary_cross_entropy_with_logits(Tensor self, Tensor target, Tensor? weight=None, Tensor? pos_weight=None,
    int reduction=Mean) -> Tensor.

    Stable form: ``(1 - t) x + l (log(1 + exp(-|x|)) + max(-x, 0))`` with ``l = 1 + (pos_weight - 1) t``.
    """
    x, t = self, target
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
    return _reduced(ctx, current_node(ctx), loss, rank, _reduction(ctx, reduction))


@register("aten::kl_div")
def aten_kl_div(ctx: Context, self: Value, target: Value, reduction: int = 1, *, log_target: bool = False) -> Ref:
    """kl_div(Tensor self, Tensor target, int reduction=Mean, *, bool log_target=False) -> Tensor.

    ``t (log t - x)`` (0 where t is 0), or ``exp(t) (t - x)`` for a log target; 'batchmean' is this sum over
    the batch size, divided after the op.
    """
    x, t = self, target
    rank = max(x.rank, t.rank)
    g = ctx.g
    xr, tr = align_rank(ctx, x, rank, x), align_rank(ctx, t, rank, t)
    if bool(log_target):
        loss = g.op("mul", g.op("exp", tr), g.op("sub", tr, xr))
    else:
        positive = g.op("mul", tr, g.op("sub", g.op("log", tr), xr))
        loss = g.op("select", g.op("gt", tr, 0.0), positive, g.op("mul", g.op("neg", tr), xr))
    return _reduced(ctx, current_node(ctx), loss, rank, _reduction(ctx, reduction))
