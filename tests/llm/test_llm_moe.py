"""Mixture-of-experts language models: transformers' routed experts rewritten into their static form
(every expert computed, weighted by the routing) compute what transformers does; the layers whose
routing and gate tract's ``tract_moe_ffn`` computes are recognised as such; both forms export, in
f32, f16 and Q4_0, to archives that tract runs like transformers."""

from __future__ import annotations

import contextlib
import json
import logging
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers

from torch_to_nnef import Q40Tensor, TractModel, check_outputs, compress_model, read_dat, weights_on_meta
from torch_to_nnef.llm import main
from torch_to_nnef.llm.moe import FusedRouting, is_routed_experts, rewrite_experts
from torch_to_nnef.llm.streaming import NotStreamable

VOCAB = 128
COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)
CONFIGS: dict[str, Callable[[], Any]] = {
    # softmax over every expert, top-k renormalised
    "mixtral": lambda: transformers.MixtralConfig(**COMMON, num_local_experts=4, num_experts_per_tok=2),
    # a shared expert with its own sigmoid gate beside the routed ones, no renormalisation
    "qwen2_moe": lambda: transformers.Qwen2MoeConfig(
        **COMMON, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=32
    ),
    "qwen3_moe": lambda: transformers.Qwen3MoeConfig(
        **COMMON, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, norm_topk_prob=True
    ),
    "olmoe": lambda: transformers.OlmoeConfig(**COMMON, num_experts=4, num_experts_per_tok=2),
    # top-k of the logits, softmax of those
    "granitemoe": lambda: transformers.GraniteMoeConfig(**COMMON, num_local_experts=4, num_experts_per_tok=2),
    # sparse-mixer routing
    "phimoe": lambda: transformers.PhimoeConfig(**COMMON, num_local_experts=4, num_experts_per_tok=2),
    # [E, in, out] weights with biases, interleaved gate and up projections, clamped SwiGLU
    "gpt_oss": lambda: transformers.GptOssConfig(
        **COMMON,
        num_local_experts=4,
        num_experts_per_tok=2,
        head_dim=16,
        sliding_window=8,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
    ),
}


def build(family: str, seed: int = 0, on_meta: bool = False) -> torch.nn.Module:
    torch.manual_seed(seed)
    with weights_on_meta() if on_meta else contextlib.nullcontext():
        return transformers.AutoModelForCausalLM.from_config(CONFIGS[family]()).eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    folders: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in folders:
            folder = tmp_path_factory.mktemp(family)
            build(family).save_pretrained(folder)
            folders[family] = folder
        return folders[family]

    return get


@pytest.mark.parametrize("family", sorted(CONFIGS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["f32", "f16"])
def test_rewritten_experts_compute_what_transformers_does(family: str, dtype: torch.dtype):
    model = build(family).to(dtype)
    experts = [m for m in model.modules() if is_routed_experts(m)]
    stacked = {id(m): m.down_proj for m in experts}
    before = sum(p.numel() for p in model.parameters())
    ids = torch.randint(0, VOCAB, (1, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        assert rewrite_experts(model) == len(experts) == COMMON["num_hidden_layers"]
        got = model(input_ids=ids).logits
    assert sum(p.numel() for p in model.parameters()) == before
    assert not any(is_routed_experts(m) for m in model.modules())
    for module in experts:
        assert len(module.down_linears) == len(module.gate_up_linears) == stacked[id(module)].shape[0]
        if not module.is_transposed:  # per-expert weights are views of the stacked ones: no copy
            down = stacked[id(module)]
            assert module.down_linears[1].weight.data_ptr() == down[1].data_ptr()
    atol = 2e-3 if dtype == torch.float16 else 1e-5
    torch.testing.assert_close(got, expected, atol=atol, rtol=atol)


def empty_inputs(spec: dict[str, Any], ids: np.ndarray) -> list[np.ndarray]:
    """The graph's inputs for a prompt: ``ids``, and each cache of ``io_spec.json`` empty (``P = 0``)."""
    dtypes = {"f32": np.float32, "f16": np.float16}
    inputs = [ids]
    for entry in spec["inputs"][1:]:
        shape = [0 if axis == "P" else axis for axis in entry["shape"]]
        inputs.append(np.zeros(shape, dtype=dtypes[entry["dtype"]]))
    return inputs


FUSED = {
    "mixtral": ("softmax_topk", False, None),
    "qwen2_moe": ("softmax_all", False, None),  # norm_topk_prob=False
    "qwen3_moe": ("softmax_topk", False, None),  # norm_topk_prob=True
    "olmoe": ("softmax_all", False, None),
    "granitemoe": ("softmax_topk", False, None),
    "gpt_oss": ("softmax_topk", True, (1.702, 7.0)),  # router bias, interleaved rows, clamped SwiGLU
    "phimoe": None,  # sparse-mixer routing: no gate mode of tract's
}


@pytest.mark.parametrize("on_meta", [False, True], ids=["loaded", "meta"])
@pytest.mark.parametrize("family", sorted(FUSED))
def test_fusable_routing_is_recognised(family: str, on_meta: bool):
    """Each block is probed alone on random values: the same with the weights or without them."""
    model = build(family, on_meta=on_meta)
    if on_meta and family == "gpt_oss":  # [E, in, out] experts: their linear weights are transposed copies
        with pytest.raises(NotStreamable, match=r"GptOssExperts stores its experts' weights \[E, in, out\]"):
            rewrite_experts(model, fused=True)
        return
    rewrite_experts(model, fused=True)
    routings = [m.__dict__.get("_t2n_fused_routing") for m in model.modules() if hasattr(m, "down_linears")]
    assert len(routings) == COMMON["num_hidden_layers"]
    expected = FUSED[family]
    if expected is None:
        assert routings == [None] * len(routings)
        return
    gate, interleaved, clamp = expected
    for routing in routings:
        assert isinstance(routing, FusedRouting)
        assert (routing.gate, routing.interleaved, routing.k, routing.activation) == (gate, interleaved, 2, "silu")
        assert routing.clamp == (pytest.approx(clamp) if clamp else None)
        assert (routing.router_bias is not None) == (family == "gpt_oss")


OLDER = ["--tract-specific-version", "0.23.8"]  # before tract_moe_ffn: the dense form
CASES = [
    ("mixtral", []),
    ("mixtral", OLDER),
    ("qwen2_moe", ["-f16"]),
    ("qwen2_moe", ["-c", "min_max_q4_0"]),
    ("gpt_oss", ["-f16", "-c", "min_max_q4_0"]),
    ("phimoe", ["-f16"]),
    ("olmoe", [*OLDER, "-c", "min_max_q4_0"]),
]


@pytest.mark.parametrize(("family", "flags"), CASES, ids=[f"{f}-{'_'.join(x) or 'f32'}" for f, x in CASES])
def test_moe_export_runs_like_transformers(saved, tmp_path: Path, caplog, family: str, flags: list[str]):
    folder = saved(family)
    out = tmp_path / "export"
    with caplog.at_level(logging.INFO, logger="torch_to_nnef"):
        assert main(["-d", str(folder), "-e", str(out), *flags]) == 0
    fused = FUSED[family] is not None and flags[:2] != OLDER
    assert ("written as tract_moe_ffn" in caplog.text) == fused
    assert ("computed densely, weighted by their routing" in caplog.text) == (not fused)
    if family != "gpt_oss":  # its three layers alternate sliding and full attention: none to repeat
        assert "with 2 of its 3 layers" in caplog.text

    archive = out / "model" / "model.nnef.tgz"
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    graph = (tmp_path / "unpacked" / "graph.nnef").read_text()
    assert graph.count("tract_moe_ffn(") == (3 if fused else 0)
    pattern = "*experts.w[123].dat" if fused else "*experts.*_linears.*.weight.dat"
    expert_weights = sorted((tmp_path / "unpacked").rglob(pattern))
    assert len(expert_weights) == (3 * 3 if fused else 3 * 2 * 4)
    assert all(isinstance(read_dat(p), Q40Tensor) == ("-c" in flags) for p in expert_weights)

    # tract against transformers' own eager experts (not the rewritten ones the export checked); Q4_0
    # packs the experts' linear layers, which the stacked weights become only once rewritten
    f16 = "-f16" in flags
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    model = model.to(torch.float16 if f16 else torch.float32)
    if "-c" in flags:
        rewrite_experts(model)
        compress_model(model, "min_max_q4_0")
    spec = json.loads((out / "model" / "io_spec.json").read_text())
    ids = torch.randint(0, VOCAB, (1, 6), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ref = model(input_ids=ids, use_cache=True)
    got = TractModel(archive).run(empty_inputs(spec, ids.numpy()))
    tolerance = "super" if f16 else "approximate"
    check_outputs([ref.logits[:, -1:]], [got[0]], tolerance=tolerance, names=["logits"])


def test_a_router_that_only_looks_like_tracts_is_not_fused():
    """AFMoE normalises sigmoid scores picked with a selection bias: freshly initialised, its router
    gives every expert the same score, which every gate mode of tract reproduces; the routers are
    probed with random weights and biases, so the layer keeps the dense form."""
    config = transformers.AutoConfig.for_model("afmoe", **{**COMMON, "num_hidden_layers": 2})
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    router = next(m for m in model.modules() if hasattr(m, "route_scale"))
    before = router.gate.weight.detach().clone()
    assert rewrite_experts(model, fused=True) >= 1
    experts = [m for m in model.modules() if hasattr(m, "down_linears")]
    assert experts and all(m.__dict__.get("_t2n_fused_routing") is None for m in experts)
    assert torch.equal(router.gate.weight, before)  # the probe's random values are put back


@pytest.mark.parametrize("family", ["dbrx", "longcat_flash"])
def test_experts_with_their_own_loop_get_their_dense_form(tmp_path: Path, family: str):
    """DBRX's and LongCat-Flash's experts loop over the picked experts in their own class: rewritten into
    their dense form they give transformers' logits (LongCat's zero experts included), and export."""
    from llm_sweep import causal_lm_types, tiny_config

    from torch_to_nnef.llm import export_llm_to_tract

    def build_it() -> torch.nn.Module:
        torch.manual_seed(0)
        return getattr(transformers, causal_lm_types()[family])(tiny_config(family)).eval()

    reference, rewritten = build_it(), build_it()
    assert rewrite_experts(rewritten) > 0
    ids = torch.randint(0, 100, (1, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(rewritten(input_ids=ids).logits, reference(input_ids=ids).logits)
    reference.save_pretrained(tmp_path / "source")
    result = export_llm_to_tract(tmp_path / "export", local_dir=tmp_path / "source")
    assert result.tolerance == "approximate" and result.generated_tokens
