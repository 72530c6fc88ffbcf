"""Attention: ``scaled_dot_product_attention`` as tract's fused operator or written out."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from torch_to_nnef.check.targets import SDPA_TRACT
from torch_to_nnef.errors import TranslationError
from torch_to_nnef.ir import Node, Value
from torch_to_nnef.ir.dtypes import NUMPY
from torch_to_nnef.nnef.builder import Ref
from torch_to_nnef.op.common import align_rank, current_node, dim_ref, scalar_const
from torch_to_nnef.op.registry import Context, register


@register("aten::scaled_dot_product_attention")
def aten_sdpa(
    ctx: Context,
    query: Value,
    key: Value,
    value: Value,
    attn_mask: Value | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    *,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Ref:
    """scaled_dot_product_attention(Tensor query, Tensor key, Tensor value, Tensor? attn_mask=None,
    float dropout_p=0.0, bool is_causal=False, *, float? scale=None, bool enable_gqa=False) -> Tensor.

    Expanded as matmul, scale, mask, softmax, matmul (dropout is off at inference), or written as tract's fused
    operator with ``reify_sdpa_operator``. With ``enable_gqa``, each run of ``Hq / Hk`` query heads attends one
    key/value head (grouped-query attention), without repeating the keys and values.
    """
    return sdpa(ctx, current_node(ctx), query, key, value, attn_mask, bool(is_causal), scale)


@register("aten::_scaled_dot_product_flash_attention_for_cpu")
def aten_sdpa_flash_cpu(
    ctx: Context,
    query: Value,
    key: Value,
    value: Value,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    *,
    attn_mask: Value | None = None,
    scale: float | None = None,
) -> Ref:
    """_scaled_dot_product_flash_attention_for_cpu(Tensor query, Tensor key, Tensor value, float dropout_p=0.0,
    bool is_causal=False, *, Tensor? attn_mask=None, float? scale=None) -> (Tensor output, Tensor logsumexp).

    The attention output only (the log-sum-exp is not exported).
    """
    return sdpa(ctx, current_node(ctx), query, key, value, attn_mask, bool(is_causal), scale)


def _query_groups(node: Node, q: Value, k: Value, v: Value) -> int:
    """How many query heads share one key/value head: 1, or ``Hq / Hk`` under grouped-query attention."""
    if q.rank < 3 or k.rank < 3 or q.shape[-3] == k.shape[-3]:
        return 1
    hq, hk, hv = q.shape[-3], k.shape[-3], v.shape[-3]
    if not all(isinstance(h, int) for h in (hq, hk, hv)):
        raise TranslationError(
            f"{node.where()}: grouped-query attention needs static head counts, got query {list(q.shape)}, "
            f"key {list(k.shape)}, value {list(v.shape)}"
        )
    if hk != hv or int(hq) % int(hk):
        raise TranslationError(
            f"{node.where()}: grouped-query attention needs as many key as value heads, dividing the query "
            f"heads; got {hq} query, {hk} key and {hv} value heads"
        )
    return int(hq) // int(hk)


def sdpa(
    ctx: Context,
    node: Node,
    q: Value,
    k: Value,
    v: Value,
    mask: Value | None,
    causal: bool,
    scale: float | None,
) -> Ref:
    """Attention of the query ``q``, keys ``k`` and values ``v`` into ``node``'s first output.

    ``causal`` masks as PyTorch does: query ``i`` attends the keys ``j <= i`` (the upper-left triangle, whatever
    the two lengths). Under grouped-query attention the query heads are split as ``[Hk, Hq / Hk]`` and the keys
    and values broadcast over the groups.
    """
    head = q.shape[-1]
    if scale is None:
        if not isinstance(head, int):
            raise TranslationError(f"{node.where()}: attention with a dynamic head size needs an explicit scale")
        scale = 1.0 / math.sqrt(head)
    groups = _query_groups(node, q, k, v)
    g, out = ctx.g, node.outputs[0]
    rank = max(q.rank, k.rank, v.rank)
    qr, kr, vr = (align_rank(ctx, t, rank, out) for t in (q, k, v))
    if (
        ctx.flag("reify_sdpa_operator")
        and ctx.tract_at_least(SDPA_TRACT)
        and q.rank == k.rank == v.rank
        and (q.rank == 4 or (q.rank == 3 and groups == 1))
    ):
        return _reified_sdpa(ctx, node, qr, kr, vr, mask, causal, float(scale), rank, q.shape[-2], k.shape[-2])
    m = None if mask is None else align_rank(ctx, mask, rank, out)
    if groups > 1:
        axis = rank - 3
        qr = g.op("reshape", qr, shape=[k.shape[-3], groups], axis_start=axis, axis_count=1, out=q.name + "_groups")
        kr = g.op("unsqueeze", kr, axes=[axis + 1], out=k.name + "_groups")
        vr = g.op("unsqueeze", vr, axes=[axis + 1], out=v.name + "_groups")
        if m is not None and mask is not None:
            heads = mask.shape[-3] if mask.rank >= 3 else 1
            if heads == 1:
                m = g.op("unsqueeze", m, axes=[axis + 1], out=mask.name + "_groups")
            else:
                m = g.op("reshape", m, shape=[k.shape[-3], groups], axis_start=axis, axis_count=1)
        rank += 1
    lowest = _lowest(ctx, out.dtype, rank)
    scores = g.op("mul", g.op("matmul", qr, kr, transposeA=False, transposeB=True), float(scale))
    if causal:
        scores = g.op("select", _causal_keep(ctx, node, q.shape[-2], k.shape[-2], rank), scores, lowest)
    if m is not None and mask is not None:
        scores = g.op("select", m, scores, lowest) if mask.dtype == "bool" else g.op("add", scores, m)
    weights = g.op("softmax", scores, axes=[rank - 1])
    if groups == 1:
        return g.op("matmul", weights, vr, transposeA=False, transposeB=False, out=out.name)
    y = g.op("matmul", weights, vr, transposeA=False, transposeB=False, out=out.name + "_groups")
    return g.op("reshape", y, shape=[q.shape[-3]], axis_start=rank - 4, axis_count=2, out=out.name)


def _causal_keep(ctx: Context, node: Node, lq: Any, lk: Any, rank: int) -> Ref:
    """A boolean ``[.., Lq, Lk]`` mask, true where query ``i`` may attend key ``j`` (``j <= i``, as PyTorch).

    Static lengths give a constant; dynamic ones (tract) the lower triangle of a tiled ones tensor.
    """
    g = ctx.g
    if isinstance(lq, int) and isinstance(lk, int):
        keep = np.tril(np.ones((lq, lk), dtype=bool))
        return g.variable(
            np.broadcast_to(keep, (1,) * (rank - 2) + keep.shape).copy(), f"sdpa_causal_{lq}x{lk}_r{rank}"
        )
    if not ctx.tract:
        raise TranslationError(f"{node.where()}: causal attention over a dynamic length needs TractNNEF")
    g.need("tract_registry tract_core")
    one = g.variable(np.ones((1,) * rank, dtype=np.float32), f"constant_f32_1_r{rank}")
    ones = g.op("tile", one, repeats=[1] * (rank - 2) + [dim_ref(lq), dim_ref(lk)])
    lower = g.op("tract_core_trilu", ones, 0, upper=False)
    return g.op("gt", lower, 0.5)


def _lowest(ctx: Context, dtype: str, rank: int) -> Any:
    """The lowest finite value of ``dtype``, of rank ``rank``: masked scores vanish in the softmax."""
    return scalar_const(ctx, float(np.finfo(NUMPY[dtype]).min), dtype, rank)


def _reified_sdpa(
    ctx: Context,
    node: Node,
    q: Ref,
    k: Ref,
    v: Ref,
    mask: Value | None,
    causal: bool,
    scale: float,
    rank: int,
    lq: Any,
    lk: Any,
) -> Ref:
    """tract_transformers_sdpa (tract >= 0.22.0): one fused operator, the mask as an additive float tensor.

    tract splits the query heads into groups of ``Hq / Hk`` itself (grouped-query attention). Its causal mask
    is aligned on the last key, PyTorch's on the first: when the lengths may differ, the causal mask is given
    as an explicit mask instead. A mask broadcast over the queries or keys is repeated to their lengths
    (``lq`` and ``lk``).
    """
    g, out = ctx.g, node.outputs[0]
    g.need("tract_registry tract_transformers")
    inputs = [q, k, v]
    if mask is not None:
        m = align_rank(ctx, mask, rank, out)
        if mask.dtype == "bool":
            m = g.op("select", m, scalar_const(ctx, 0.0, out.dtype, rank), _lowest(ctx, out.dtype, rank))
        # tract reads the mask over every query and key: broadcast axes of one are repeated
        rows = mask.shape[-2] if mask.rank >= 2 else 1
        spread = [dim_ref(n) if size == 1 and n != 1 else 1 for size, n in ((rows, lq), (mask.shape[-1], lk))]
        if spread != [1, 1]:
            m = g.op("tile", m, repeats=[1] * (rank - 2) + spread, out=mask.name + "_full")
        inputs.append(m)
    elif causal and lq != lk:
        keep = _causal_keep(ctx, node, lq, lk, rank)
        inputs.append(g.op("select", keep, scalar_const(ctx, 0.0, out.dtype, rank), _lowest(ctx, out.dtype, rank)))
        causal = False
    accumulate = "f32" if ctx.flag("force_attention_inner_in_f32") else out.dtype
    return g.op(
        "tract_transformers_sdpa",
        *inputs,
        scale=scale,
        datum_type=out.dtype,
        acc_datum_type=accumulate,
        is_causal=causal,
        out=out.name,
    )
