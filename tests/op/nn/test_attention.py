"""Attention in all its forms, and the precision of half-float exports.

Tables of ``nn.MultiheadAttention`` options and ``scaled_dot_product_attention`` variants (grouped-query,
masks, causal, scale, dynamic lengths, tract's fused operator), each exported and checked against PyTorch;
f16 models per op at f16 tolerances; what the ``force_*_in_f32`` options change in the graph and in the
error against an f32 reference; bfloat16 models exported as f16 or f32.
"""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from harness import Fn, OpCase, export_and_check, export_checked, op_params, r
from torch_to_nnef import KhronosNNEF, TractModel, TractNNEF, export_model_to_nnef
from torch_to_nnef.capture.torch_export import CaptureError, capture
from torch_to_nnef.check.targets import check_tolerance
from torch_to_nnef.errors import InvalidArgumentError, IOMismatchError
from torch_to_nnef.io.dat import read_dat

# --- nn.MultiheadAttention ---------------------------------------------------------------------

E, HEADS, B, L, S = 8, 2, 2, 5, 6


class MHA(nn.Module):
    """``nn.MultiheadAttention(E, 2, **options)`` called on (query, key, value[, attn_mask][, key_padding_mask]).

    Returns the output, and the attention weights with ``need_weights``.
    """

    def __init__(
        self,
        *,
        need_weights: bool = False,
        average: bool = True,
        masks: tuple[str, ...] = (),
        is_causal: bool = False,
        **options: Any,
    ) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(E, HEADS, **options)
        with torch.no_grad():  # biases away from their zero initialisation, so that they count
            for p in self.mha.parameters():
                p.copy_(torch.randn_like(p) * 0.5)
        self.need_weights, self.average, self.masks, self.is_causal = need_weights, average, masks, is_causal

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *masks: torch.Tensor) -> Any:
        given = dict(zip(self.masks, masks))
        out, weights = self.mha(
            q,
            k,
            v,
            attn_mask=given.get("attn_mask"),
            key_padding_mask=given.get("key_padding_mask"),
            need_weights=self.need_weights,
            average_attn_weights=self.average,
            is_causal=self.is_causal,
        )
        return out if weights is None else (out, weights)


def _qkv(batch_first: bool = True, kdim: int = E, vdim: int = E) -> tuple[torch.Tensor, ...]:
    shapes = [(B, L, E), (B, S, kdim), (B, S, vdim)]
    return tuple(torch.randn(*(s if batch_first else (s[1], s[0], s[2]))) for s in shapes)


KP_BOOL = torch.tensor([[False] * 4 + [True] * 2, [False] * 6])
KP_FLOAT = torch.tensor([[0.0] * 6, [float("-inf")] * 2 + [0.0] * 4])
AM_BOOL = torch.rand(L, S) > 0.6
AM_BOOL[:, 0] = False  # every query keeps a key
AM_FLOAT = torch.randn(L, S)
AM3_BOOL = torch.rand(B * HEADS, L, S) > 0.6
AM3_BOOL[..., 0] = False
AM3_FLOAT = torch.randn(B * HEADS, L, S)


def mha(masks: tuple[str, ...] = (), **kw: Any) -> MHA:
    return MHA(masks=masks, batch_first=kw.pop("batch_first", True), **kw)


# Khronos for a representative subset, to keep the suite fast.
MHA_CASES: list[OpCase] = [
    OpCase("batch-first", mha(), _qkv(), covers=("aten::scaled_dot_product_attention",), khronos=True),
    OpCase(
        "sequence-first",
        mha(batch_first=False),
        _qkv(False),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
    OpCase(
        "sequence-first-weights",
        mha(batch_first=False, need_weights=True),
        _qkv(False),
        covers=("aten::bmm", "aten::softmax"),
        khronos=True,
    ),
    OpCase("weights-averaged", mha(need_weights=True), _qkv(), covers=("aten::bmm", "aten::softmax"), khronos=True),
    OpCase(
        "weights-per-head",
        mha(need_weights=True, average=False),
        _qkv(),
        covers=("aten::bmm", "aten::softmax"),
        khronos=True,
    ),
    OpCase(
        "key-padding-bool",
        mha(("key_padding_mask",)),
        (*_qkv(), KP_BOOL),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
    OpCase(
        "key-padding-float",
        mha(("key_padding_mask",)),
        (*_qkv(), KP_FLOAT),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
    OpCase(
        "key-padding-float-weights",
        mha(("key_padding_mask",), need_weights=True),
        (*_qkv(), KP_FLOAT),
        covers=("aten::baddbmm", "aten::bmm", "aten::softmax"),
        khronos=True,
    ),
    OpCase(
        "attn-mask-bool-2d",
        mha(("attn_mask",)),
        (*_qkv(), AM_BOOL),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
    OpCase(
        "attn-mask-float-2d",
        mha(("attn_mask",)),
        (*_qkv(), AM_FLOAT),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
    OpCase(
        "attn-mask-bool-3d",
        mha(("attn_mask",)),
        (*_qkv(), AM3_BOOL),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
    OpCase(
        "attn-mask-float-3d-weights-per-head",
        mha(("attn_mask",), need_weights=True, average=False),
        (*_qkv(), AM3_FLOAT),
        covers=("aten::baddbmm", "aten::bmm", "aten::softmax"),
        khronos=True,
    ),
    OpCase(
        "both-masks-weights",
        mha(("attn_mask", "key_padding_mask"), need_weights=True),
        (*_qkv(), AM_BOOL, KP_BOOL),
        covers=("aten::baddbmm", "aten::bmm", "aten::softmax"),
        khronos=True,
    ),
    OpCase(
        "float-mask-bool-padding",
        mha(("attn_mask", "key_padding_mask")),
        (*_qkv(), AM_FLOAT, KP_BOOL),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
    OpCase(
        "kdim-vdim",
        mha(kdim=6, vdim=4),
        _qkv(kdim=6, vdim=4),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
    OpCase(
        "kdim-vdim-weights",
        mha(kdim=6, vdim=4, need_weights=True),
        _qkv(kdim=6, vdim=4),
        covers=("aten::bmm", "aten::softmax"),
        khronos=True,
    ),
    OpCase(
        "kdim-vdim-sequence-first",
        mha(kdim=6, vdim=4, batch_first=False),
        _qkv(False, 6, 4),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
    OpCase("no-bias", mha(bias=False), _qkv(), covers=("aten::scaled_dot_product_attention",), khronos=True),
    OpCase("add-bias-kv", mha(add_bias_kv=True), _qkv(), covers=("aten::scaled_dot_product_attention",), khronos=True),
    OpCase(
        "add-bias-kv-masks",
        mha(("attn_mask", "key_padding_mask"), add_bias_kv=True, need_weights=True),
        (*_qkv(), AM_BOOL, KP_BOOL),
        covers=("aten::baddbmm", "aten::bmm", "aten::softmax"),
        khronos=True,
    ),
    OpCase(
        "add-zero-attn", mha(add_zero_attn=True), _qkv(), covers=("aten::scaled_dot_product_attention",), khronos=True
    ),
    OpCase(
        "add-zero-attn-masks",
        mha(("attn_mask", "key_padding_mask"), add_zero_attn=True, need_weights=True),
        (*_qkv(), AM_FLOAT, KP_BOOL),
        covers=("aten::baddbmm", "aten::bmm", "aten::softmax"),
        khronos=True,
    ),
    OpCase(
        "bias-kv-zero-attn-float-padding",
        mha(("key_padding_mask",), add_bias_kv=True, add_zero_attn=True),
        (*_qkv(), KP_FLOAT),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
    OpCase(
        "dropout-in-eval",
        mha(dropout=0.5, need_weights=True),
        _qkv(),
        covers=("aten::bmm", "aten::softmax"),
        khronos=True,
    ),
    OpCase(
        "unbatched",
        mha(need_weights=True),
        tuple(t[0] for t in _qkv()),
        covers=("aten::bmm", "aten::softmax"),
        khronos=True,
    ),
    OpCase(
        "causal-hint",
        mha(("attn_mask",), is_causal=True),
        (*(torch.randn(B, L, E) for _ in range(3)), nn.Transformer.generate_square_subsequent_mask(L)),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
]


@pytest.mark.parametrize(("target", "case"), op_params(MHA_CASES))
def test_multihead_attention_options(tmp_path: Path, target: str, case: OpCase) -> None:
    """Every option of nn.MultiheadAttention, checked in tract (and for Khronos, by its parser and interpreter)."""
    export_and_check(tmp_path, target, case)


class SelfMHA(nn.Module):
    """Self-attention over a dynamic sequence axis, with an optional key padding mask."""

    def __init__(self, padded: bool, **options: Any) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(E, HEADS, batch_first=True, **options)
        self.padded = padded

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> Any:
        return self.mha(x, x, x, key_padding_mask=pad if self.padded else None)


@pytest.mark.parametrize(
    ("padded", "options"),
    [(False, {}), (True, {}), (True, {"add_bias_kv": True, "add_zero_attn": True}), (False, {"bias": False})],
    ids=["plain", "key-padding", "bias-kv-zero-attn", "no-bias"],
)
def test_multihead_attention_over_a_dynamic_length(tmp_path: Path, padded: bool, options: dict[str, Any]) -> None:
    """Output and averaged weights over a symbolic length S (also checked at S + 7)."""
    pad = torch.zeros(B, L, dtype=torch.bool)
    pad[0, -2:] = True
    export_model_to_nnef(
        SelfMHA(padded, **options),
        (torch.randn(B, L, E), pad),
        tmp_path / "m.nnef",
        TractNNEF(check_io=True, dynamic_axes={"x": {1: "S"}, "pad": {1: "S"}}),
        input_names=["x", "pad"],
    )


# --- scaled_dot_product_attention --------------------------------------------------------------


def sdpa(**kw: Any) -> nn.Module:
    return Fn(lambda q, k, v, *m: F.scaled_dot_product_attention(q, k, v, *m, **kw))


HQ, HKV, D = 4, 2, 8
Q, K, V = r(B, HQ, L, D), r(B, HKV, S, D), r(B, HKV, S, D)
K_FULL, V_FULL = r(B, HQ, S, D), r(B, HQ, S, D)
SD_BOOL = torch.rand(L, S) > 0.5
SD_BOOL[:, 0] = True
SD_BOOL_HEADS = torch.rand(1, HQ, L, S) > 0.5
SD_BOOL_HEADS[..., 0] = True
SD_PADDING = torch.ones(B, 1, 1, S, dtype=torch.bool)
SD_PADDING[0, ..., -2:] = False

# Khronos for a representative subset.
SDPA_CASES: list[OpCase] = [
    OpCase("plain", sdpa(), (Q, K_FULL, V_FULL), covers=("aten::scaled_dot_product_attention",), khronos=True),
    OpCase("scale", sdpa(scale=0.2), (Q, K_FULL, V_FULL), covers=("aten::scaled_dot_product_attention",), khronos=True),
    OpCase(
        "causal-equal-lengths",
        sdpa(is_causal=True),
        (Q, Q.clone(), Q.clone()),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
    OpCase(
        "causal-fewer-queries",
        sdpa(is_causal=True),
        (Q, K_FULL, V_FULL),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
    OpCase(
        "causal-more-queries",
        sdpa(is_causal=True),
        (K_FULL, Q, Q.clone()),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
    OpCase(
        "bool-mask", sdpa(), (Q, K_FULL, V_FULL, SD_BOOL), covers=("aten::scaled_dot_product_attention",), khronos=True
    ),
    OpCase(
        "float-mask-per-batch",
        sdpa(),
        (Q, K_FULL, V_FULL, r(B, 1, L, S)),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
    OpCase(
        "value-dim", sdpa(), (Q, K_FULL, r(B, HQ, S, 3)), covers=("aten::scaled_dot_product_attention",), khronos=True
    ),
    OpCase(
        "rank-3-causal",
        sdpa(is_causal=True),
        (Q[0], K_FULL[0], V_FULL[0]),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
    OpCase("gqa", sdpa(enable_gqa=True), (Q, K, V), covers=("aten::scaled_dot_product_attention",), khronos=True),
    OpCase(
        "gqa-causal-scale",
        sdpa(enable_gqa=True, is_causal=True, scale=0.3),
        (Q, K, V),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
    OpCase(
        "gqa-bool-mask",
        sdpa(enable_gqa=True),
        (Q, K, V, SD_BOOL),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
    OpCase(
        "gqa-bool-mask-per-head",
        sdpa(enable_gqa=True),
        (Q, K, V, SD_BOOL_HEADS),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
    OpCase(
        "gqa-bool-key-padding",
        sdpa(enable_gqa=True),
        (Q, K, V, SD_PADDING),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
    OpCase(
        "gqa-float-mask-per-head",
        sdpa(enable_gqa=True),
        (Q, K, V, r(B, HQ, L, S)),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
    OpCase(
        "gqa-one-kv-head",
        sdpa(enable_gqa=True),
        (Q, K[:, :1], V[:, :1]),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
    OpCase(
        "gqa-equal-heads",
        sdpa(enable_gqa=True),
        (Q, K_FULL, V_FULL),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
]


def _sdpa_params() -> list[Any]:
    params = []
    for case in SDPA_CASES:
        params.append(pytest.param("tract", False, case, id=f"tract-{case.id}"))
        params.append(pytest.param("tract", True, case, id=f"tract-reified-{case.id}"))
        if case.khronos:
            params.append(pytest.param("khronos", False, case, id=f"khronos-{case.id}"))
    return params


@pytest.mark.parametrize(("target", "reify", "case"), _sdpa_params())
def test_sdpa_variants(tmp_path: Path, target: str, reify: bool, case: OpCase) -> None:
    """SDPA expanded (tract, Khronos) or as tract_transformers_sdpa, each compared with PyTorch."""
    if target == "khronos":
        export_and_check(tmp_path, target, case)
        return
    path = export_model_to_nnef(
        case.module.eval(), case.inputs, tmp_path / "m.nnef", TractNNEF(check_io=True, reify_sdpa_operator=reify)
    )
    text = (path / "graph.nnef").read_text()
    assert ("tract_transformers_sdpa(" in text) == reify


class GQA(nn.Module):
    """Grouped-query attention with an optional mask, its inputs named for dynamic axes."""

    def __init__(self, **kw: Any) -> None:
        super().__init__()
        self.kw = kw

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        mask = None if m.dtype == torch.int64 else m  # an integer input: no mask
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True, **self.kw)


@pytest.mark.parametrize("reify", [False, True], ids=["expanded", "reified"])
@pytest.mark.parametrize(
    ("kw", "mask", "key_symbol"),
    [
        ({}, None, "S"),
        ({"is_causal": True}, None, "S"),
        ({"is_causal": True, "scale": 0.5}, None, "T"),  # queries and keys of independent lengths
        ({}, "bool", "S"),
        ({}, "float", "S"),
    ],
    ids=["plain", "causal", "causal-other-key-length", "bool-padding", "float-padding"],
)
def test_gqa_over_a_dynamic_length(
    tmp_path: Path, reify: bool, kw: dict[str, Any], mask: str | None, key_symbol: str
) -> None:
    """GQA (6 query heads over 2 key/value heads) with a symbolic sequence axis, checked at two lengths."""
    q = torch.randn(B, 6, L, D)
    k, v = torch.randn(B, 2, L + (key_symbol == "T"), D), torch.randn(B, 2, L + (key_symbol == "T"), D)
    axes: dict[str, dict[int, str]] = {"q": {2: "S"}, "k": {2: key_symbol}, "v": {2: key_symbol}}
    if mask is None:
        m = torch.zeros(1, dtype=torch.int64)
    else:
        m = torch.ones(B, 1, 1, L, dtype=torch.bool)
        m[0, ..., -2:] = False
        if mask == "float":
            m = torch.zeros(B, 1, 1, L).masked_fill(~m, -1e4)
        axes["m"] = {3: "S"}
    path = export_model_to_nnef(
        GQA(**kw),
        (q, k, v, m),
        tmp_path / "m.nnef",
        TractNNEF(check_io=True, reify_sdpa_operator=reify, dynamic_axes=axes),
        input_names=["q", "k", "v", "m"],
    )
    text = (path / "graph.nnef").read_text()
    assert "tile(k" not in text and "tile(v" not in text  # keys and values are never repeated per group
    if reify:
        assert text.count("tract_transformers_sdpa(q, k, v") == 1


# --- f16 models, op by op ----------------------------------------------------------------------


def half_case(name: str, module: nn.Module, *inputs: torch.Tensor, tolerance: str = "approximate") -> Any:
    # Attention sums many f16 products: one f16 step of an output near 1 to 4 (1e-3 to 4e-3) is
    # beyond 'approximate' for some draws of the inputs, so attention is checked at 'very'.
    if "sdpa" in name or "mha" in name:
        tolerance = "very"
    return pytest.param(module, inputs, tolerance, id=name)


F16_CASES = [
    half_case("linear", nn.Linear(16, 8), r(3, 16)),
    half_case("conv1d", nn.Conv1d(4, 6, 3, padding=1), r(2, 4, 9)),
    half_case("layer-norm", nn.LayerNorm(16), r(2, 3, 16)),
    half_case("rms-norm", nn.RMSNorm(16), r(2, 3, 16)),
    half_case("group-norm", nn.GroupNorm(2, 4), r(2, 4, 7)),
    half_case("batch-norm", nn.BatchNorm1d(4), r(2, 4, 7)),
    half_case("gelu", nn.GELU(), r(2, 16)),
    half_case("softmax", nn.Softmax(-1), r(2, 64)),
    half_case("sdpa", sdpa(), Q, K_FULL, V_FULL),
    half_case("sdpa-causal", sdpa(is_causal=True), Q, K_FULL, V_FULL),
    half_case("sdpa-gqa-bool-mask", sdpa(enable_gqa=True), Q, K, V, SD_BOOL),
    half_case("sdpa-float-mask", sdpa(), Q, K_FULL, V_FULL, r(B, 1, L, S)),
    half_case("mha", mha(), *_qkv()),
    half_case(
        "mha-weights-masks", mha(("attn_mask", "key_padding_mask"), need_weights=True), *_qkv(), AM_BOOL, KP_BOOL
    ),
]


@pytest.mark.parametrize(("module", "inputs", "tolerance"), F16_CASES)
def test_f16_model(tmp_path: Path, module: nn.Module, inputs: tuple[torch.Tensor, ...], tolerance: str) -> None:
    """``model.half()`` on f16 inputs: f16 weights, inputs and outputs, checked at tract's f16 tolerances."""
    model = copy.deepcopy(module).half().eval()
    halves = tuple(t.half() if t.is_floating_point() else t for t in inputs)
    path = export_model_to_nnef(
        model,
        halves,
        tmp_path / "m.nnef",
        TractNNEF(check_io=True, check_io_tolerance=tolerance),  # type: ignore[arg-type]
    )
    tm = TractModel(path)
    assert [dt for _, dt, _ in tm.inputs if dt not in ("Bool", "I64")] == ["F16"] * sum(
        t.is_floating_point() for t in inputs
    )
    assert all(dt == "F16" for _, dt, _ in tm.outputs)


# --- force_*_in_f32: the graph ----------------------------------------------------------------


def _dtypes(text: str) -> dict[str, tuple[str, str]]:
    """``identifier -> (operation, dtype)`` for every assignment of ``graph.nnef``, dtypes propagated from the
    inputs, variables (f16 floats in a half model) and casts.
    """
    known: dict[str, tuple[str, str]] = {}
    body = text[text.index("graph network") :]
    for name, op, kind, args in re.findall(r"^\s+(\w+) = (\w+)(<\w+>)?\((.*)\);$", body, flags=re.M):
        if op == "tract_core_external":
            dtype = re.search(r"datum_type = '(\w+)'", args).group(1)  # type: ignore[union-attr]
        elif op == "variable":
            dtype = "f16" if kind == "<scalar>" else "other"
        elif op == "tract_core_cast":
            dtype = re.search(r"to = '(\w+)'", args).group(1)  # type: ignore[union-attr]
        elif op in ("gt", "lt", "ge", "le", "eq", "ne", "and", "or", "not"):
            dtype = "bool"
        else:
            operands = [a for a in re.findall(r"\b([A-Za-z_]\w*)\b", args) if a in known]
            if op == "select":
                operands = operands[1:]
            floats = [known[a][1] for a in operands if known[a][1] in ("f16", "f32")]
            dtype = floats[0] if floats else "other"
        known[name] = (op, dtype)
    return known


class Block(nn.Module):
    """Linear -> layer norm -> attention (SDPA) -> softmax: one island for each option."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.lin(x))
        q = h.view(1, 4, 2, 4).transpose(1, 2)
        return F.scaled_dot_product_attention(q, q, q).softmax(-1)


ISLANDS = {
    # option -> which computations it moves to f32, by the module scope of their identifiers
    "force_linear_accumulation_in_f32": lambda name: name.startswith("lin_"),
    "force_norm_in_f32": lambda name: name.startswith("norm_"),
    "force_attention_inner_in_f32": lambda name: not name.startswith(("lin_", "norm_")),
}
COMPUTATIONS = {"matmul", "linear", "add", "sub", "mul", "sqr", "rsqrt", "mean_reduce", "softmax"}


@pytest.mark.parametrize("option", [None, *ISLANDS])
def test_f32_islands_in_the_graph(tmp_path: Path, option: str | None) -> None:
    """Each option computes its ops in f32, between casts from and back to f16; every other op stays f16."""
    flags = {option: True} if option else {}
    path = export_model_to_nnef(
        Block().half(),
        torch.randn(1, 4, 8).half(),
        tmp_path / "m.nnef",
        TractNNEF(check_io=True, check_io_tolerance="very", **flags),  # type: ignore[arg-type]
        input_names=["x"],
    )
    known = _dtypes((path / "graph.nnef").read_text())
    inside = ISLANDS[option] if option else (lambda name: False)
    computed = {name: dtype for name, (op, dtype) in known.items() if op in COMPUTATIONS}
    assert {op for op, _ in known.values()} >= {"matmul", "mean_reduce", "rsqrt", "softmax"}
    for name, dtype in computed.items():
        assert dtype == ("f32" if inside(name) else "f16"), name
    casts = {name: dtype for name, (op, dtype) in known.items() if op == "tract_core_cast"}
    assert all(inside(name) or name.startswith(("softmax", "scaled_dot")) for name in casts)
    assert sorted(set(casts.values())) == (["f16", "f32"] if option else [])
    assert known["output_0"][1] == "f16"


def test_reified_sdpa_in_f32(tmp_path: Path) -> None:
    """With the fused operator, force_attention_inner_in_f32 feeds it f32 and casts its output back."""
    path = export_model_to_nnef(
        Block().half(),
        torch.randn(1, 4, 8).half(),
        tmp_path / "m.nnef",
        TractNNEF(
            check_io=True, check_io_tolerance="very", reify_sdpa_operator=True, force_attention_inner_in_f32=True
        ),
    )
    text = (path / "graph.nnef").read_text()
    known = _dtypes(text)
    (sdpa_line,) = re.findall(r"(\w+) = tract_transformers_sdpa\((\w+), (\w+), (\w+),.*", text)
    assert all(known[a][1] == "f32" for a in sdpa_line[1:])
    assert "datum_type = 'f32', acc_datum_type = 'f32'" in text
    assert re.search(rf"= tract_core_cast\({sdpa_line[0]}, to = 'f16'\)", text)


# --- force_*_in_f32: the error against an f32 reference -----------------------------------------


def f16_error(model: nn.Module, x: torch.Tensor, tmp_path: Path, **flags: bool) -> float:
    """Max abs error of tract running ``model.half()`` against the f32 model of the same (f16) weights, on the
    same (f16) inputs; NaN counts as an infinite error.
    """
    half = copy.deepcopy(model).half().eval()
    reference = copy.deepcopy(half).float()
    with torch.no_grad():
        expected = reference(x.half().float()).double().numpy()
    path = export_model_to_nnef(
        half,
        x.half(),
        tmp_path / f"m{len(list(tmp_path.iterdir()))}.nnef",
        TractNNEF(**flags),
        log_level=logging.ERROR,  # type: ignore[arg-type]
    )
    (got,) = TractModel(path).run([x.half().numpy()])
    err = np.abs(got.astype(np.float64) - expected)
    err[np.isnan(err)] = np.inf
    return float(err.max())


class MHAWeights(nn.Module):
    """The averaged attention weights of a self-attention, scaled to show their error."""

    def __init__(self) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(16, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights: torch.Tensor = self.mha(x, x, x)[1]
        return weights * 100


def seeded(*shape: int, seed: int) -> torch.Tensor:
    """Normal values that do not depend on the tests run before (the cases' margins are measured on them)."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _precision_cases() -> list[Any]:
    """The cases, with weights and inputs that do not depend on the tests run before."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return [
            # (id, module, input, option, strictly better with it)
            (
                "layer-norm-offset-1e4",
                nn.LayerNorm(64),
                seeded(2, 8, 64, seed=1) * 100 + 1e4,
                "force_norm_in_f32",
                True,
            ),
            ("layer-norm-x3000", nn.LayerNorm(64), seeded(2, 8, 64, seed=2) * 3000 + 50, "force_norm_in_f32", True),
            ("rms-norm-x300", nn.RMSNorm(64), seeded(2, 8, 64, seed=3) * 300, "force_norm_in_f32", False),
            (
                "linear-k4096",
                nn.Linear(4096, 8),
                seeded(2, 4096, seed=4) * 4 + 2,
                "force_linear_accumulation_in_f32",
                False,
            ),
            (
                "sdpa-long-rows-large-scores",
                Fn(lambda x: F.scaled_dot_product_attention(x[..., :16], x[..., 16:], x[..., 16:])),
                seeded(1, 2, 1024, 32, seed=5) * 20,
                "force_attention_inner_in_f32",
                True,
            ),
            (
                "softmax-row-8192",
                Fn(lambda x: torch.softmax(x, -1) * 1000),
                seeded(2, 8192, seed=6),
                "force_attention_inner_in_f32",
                False,
            ),
            (
                "mha-weights-long-rows",
                MHAWeights(),
                seeded(1, 512, 16, seed=7) * 10,
                "force_attention_inner_in_f32",
                True,
            ),
        ]


PRECISION_CASES = _precision_cases()


@pytest.mark.parametrize(
    ("module", "x", "option", "strict"),
    [pytest.param(m, x, o, s, id=name) for name, m, x, o, s in PRECISION_CASES],
)
def test_f32_option_error_against_f32(
    tmp_path: Path, module: nn.Module, x: torch.Tensor, option: str, strict: bool
) -> None:
    """On inputs where f16 overflows or loses precision, each option's error against f32 is no larger than
    without it (strictly smaller where its island is where f16 fails); the option's error stays finite.
    """
    without = f16_error(module, x, tmp_path)
    with_option = f16_error(module, x, tmp_path, **{option: True})
    assert with_option <= without
    assert np.isfinite(with_option)
    if strict:
        assert with_option < without


# --- bfloat16 models ---------------------------------------------------------------------------


class Bf16Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(16, 16)
        self.norm = nn.LayerNorm(16)
        self.mha = nn.MultiheadAttention(16, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.lin(x))
        q = h.view(x.shape[0], x.shape[1], 4, 4).transpose(1, 2)
        s = F.scaled_dot_product_attention(q, q, q, is_causal=True).transpose(1, 2).reshape(x.shape)
        a: torch.Tensor = self.mha(h, h, h, need_weights=False)[0]
        return a + s * torch.ones_like(h, dtype=torch.bfloat16)


F32_PARTS = {"reify_sdpa_operator": True, "force_attention_inner_in_f32": True, "force_norm_in_f32": True}


@pytest.mark.parametrize(
    ("bf16_as", "flags"), [("f16", {}), ("f32", {}), ("f16", F32_PARTS)], ids=["f16", "f32", "f16-f32-parts-reified"]
)
def test_bf16_model(tmp_path: Path, bf16_as: str, flags: dict[str, bool], caplog: pytest.LogCaptureFixture) -> None:
    """A bfloat16 model runs in tract as f16 or f32, checked against the bf16 model; the warning names the loss."""
    model = Bf16Block().bfloat16()
    with caplog.at_level(logging.WARNING, logger="torch_to_nnef"):
        path = export_model_to_nnef(
            model,
            torch.randn(2, 6, 16).bfloat16(),
            tmp_path / "m.nnef",
            TractNNEF(check_io=True, bf16_as=bf16_as, dynamic_axes={"x": {1: "S"}}, **flags),  # type: ignore[arg-type]
            input_names=["x"],
        )
    warnings = [r.getMessage() for r in caplog.records if "bfloat16" in r.getMessage()]
    assert len(warnings) == 1
    assert ("65504" in warnings[0]) == (bf16_as == "f16")
    assert ("twice the space" in warnings[0]) == (bf16_as == "f32")
    tm = TractModel(path)
    assert tm.inputs[0][1] == tm.outputs[0][1] == bf16_as.upper()
    text = (path / "graph.nnef").read_text()
    assert f"datum_type = '{bf16_as}'" in text
    assert ("to = 'f32'" in text) == bool(flags)
    assert read_dat(path / "lin.weight.dat").dtype == np.dtype("float16" if bf16_as == "f16" else "float32")
    assert model.lin.weight.dtype == torch.bfloat16  # the model is left as it was


def test_bf16_range_is_lost_as_f16_and_kept_as_f32(tmp_path: Path) -> None:
    """Outputs near 3e5 (weights and inputs of a few hundred): beyond f16's 65504, within bfloat16's range."""
    model = nn.Linear(4, 4, bias=False)
    with torch.no_grad():
        model.weight.fill_(300.0)
    model = model.bfloat16()
    x = (torch.rand(2, 4) * 100 + 200).bfloat16()
    with pytest.raises(IOMismatchError):
        export_model_to_nnef(model, x, tmp_path / "a.nnef", TractNNEF(check_io=True, bf16_as="f16"))
    export_model_to_nnef(model, x, tmp_path / "b.nnef", TractNNEF(check_io=True, bf16_as="f32"))


def test_bf16_for_khronos_is_f32(tmp_path: Path) -> None:
    assert KhronosNNEF().bf16_as == "f32"
    export_checked(
        tmp_path, "khronos", nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8)).bfloat16(), (r(2, 8).bfloat16(),)
    )


def test_bf16_check_tolerance() -> None:
    assert check_tolerance(TractNNEF(), bf16_reference=True) == "very"
    assert check_tolerance(TractNNEF(), bf16_reference=False) == "approximate"
    assert check_tolerance(TractNNEF(check_io_tolerance="super"), bf16_reference=True) == "super"


def test_bf16_as_must_be_a_float_type() -> None:
    with pytest.raises(InvalidArgumentError, match="bf16_as must be 'f16' or 'f32'"):
        TractNNEF(bf16_as="bf16")  # type: ignore[arg-type]


def test_capture_without_a_bf16_choice_names_it() -> None:
    with pytest.raises(CaptureError, match="bf16_as"):
        capture(nn.Linear(2, 2).bfloat16(), [torch.randn(1, 2).bfloat16()], ["x"])


# --- op table: SDPA calls and nn.MultiheadAttention layers -------------------------------------


class Attention(nn.Module):
    """nn.MultiheadAttention called with masks and weights options; returns the output (and the weights)."""

    def __init__(self, batch_first: bool, need_weights: bool = False, average: bool = True, kdim: int = 8) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(8, 2, batch_first=batch_first, kdim=kdim, vdim=kdim)
        self.need_weights, self.average = need_weights, average

    def forward(self, q, k, v, attn_mask=None, key_padding_mask=None):
        out, weights = self.mha(
            q,
            k,
            v,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
            need_weights=self.need_weights,
            average_attn_weights=self.average,
        )
        return out if weights is None else (out, weights)


class SelfAttention(nn.Module):
    """Query, key and value are the same tensor (one packed input projection)."""

    def __init__(self) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(8, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mha(x, x, x, need_weights=False)[0]


BOOL_MASK = torch.tensor([[True, False, True, True, True, True]] * 5)
KEY_PADDING = torch.tensor([[False] * 5 + [True], [False] * 6])
QKV_BATCH_FIRST = (r(2, 5, 8), r(2, 6, 8), r(2, 6, 8))
QKV_SEQUENCE_FIRST = (r(5, 2, 8), r(6, 2, 8), r(6, 2, 8))

CASES: list[OpCase] = [
    OpCase(
        "sdpa",
        Fn(nn.functional.scaled_dot_product_attention),
        (r(2, 4, 5, 8), r(2, 4, 6, 8), r(2, 4, 6, 8)),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
    OpCase(
        "sdpa-causal-scale",
        Fn(lambda q, k, v: nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3)),
        (r(1, 2, 5, 8), r(1, 2, 5, 8), r(1, 2, 5, 8)),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
    OpCase(
        "sdpa-bool-mask",
        Fn(lambda q, k, v, m: nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m)),
        (r(1, 2, 4, 8), r(1, 2, 6, 8), r(1, 2, 6, 8), torch.arange(24).reshape(4, 6) % 3 != 0),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
    OpCase(
        "sdpa-float-mask",
        Fn(lambda q, k, v, m: nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m)),
        (r(1, 2, 4, 8), r(1, 2, 6, 8), r(1, 2, 6, 8), r(1, 1, 4, 6)),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
    # attention
    OpCase(
        "mha-batch-first",
        Attention(True),
        QKV_BATCH_FIRST,
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
    OpCase(
        "mha-sequence-first-weights",
        Attention(False, need_weights=True),
        QKV_SEQUENCE_FIRST,
        covers=("aten::bmm", "aten::softmax"),
        khronos=True,
    ),
    OpCase(
        "mha-weights-per-head",
        Attention(False, need_weights=True, average=False),
        QKV_SEQUENCE_FIRST,
        covers=("aten::bmm", "aten::softmax"),
        khronos=True,
    ),
    OpCase(
        "mha-masks",
        Attention(True),
        (*QKV_BATCH_FIRST, BOOL_MASK, KEY_PADDING),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
    OpCase(
        "mha-masks-weights",
        Attention(True, need_weights=True),
        (*QKV_BATCH_FIRST, BOOL_MASK, KEY_PADDING),
        covers=("aten::baddbmm", "aten::bmm", "aten::softmax"),
        khronos=True,
    ),
    OpCase(
        "mha-float-mask",
        Attention(True),
        (*QKV_BATCH_FIRST, r(5, 6)),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
    OpCase(
        "mha-kdim",
        Attention(True, kdim=6),
        (r(2, 5, 8), r(2, 6, 6), r(2, 6, 6)),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
    OpCase(
        "mha-self",
        SelfAttention(),
        (r(2, 5, 8),),
        covers=("aten::scaled_dot_product_attention",),
        khronos=True,
    ),
]


@pytest.mark.parametrize(("target", "case"), op_params(CASES))
def test_op_table(tmp_path: Path, target: str, case: OpCase) -> None:
    """Each case exported and checked in tract (Khronos cases also by the Khronos parser and interpreter),
    translating the operators it covers."""
    export_and_check(tmp_path, target, case)
