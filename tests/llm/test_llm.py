"""export_llm_to_tract on tiny causal LMs built from configs (random weights, saved with save_pretrained),
checked against transformers' own outputs by running the exported archive in tract."""

import inspect
import json
import logging
import os
import re
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from torch_to_nnef import Q40Tensor, TractModel, check_outputs, compress_model, read_dat
from torch_to_nnef.errors import IOMismatchError
from torch_to_nnef.llm import io_names, main

HIDDEN, HEADS, KV_HEADS, LAYERS, VOCAB = 64, 4, 2, 3, 128
HEAD_DIM = HIDDEN // HEADS
MLA = dict(kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=24)
"""Multi-head latent attention sizes: keys of 16 + 8 per head, values of 24, latents of 32."""
COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=HIDDEN,
    intermediate_size=128,
    num_hidden_layers=LAYERS,
    num_attention_heads=HEADS,
    num_key_value_heads=KV_HEADS,
    max_position_embeddings=64,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)
LAYERS_OF = {"deepseek_v3_moe": 5, "gpt_oss": 5, "gemma3_by_2": 6}
"""Families of more layers than :data:`LAYERS`."""
CONFIGS = {
    "llama": lambda: transformers.LlamaConfig(**COMMON),
    "gpt2": lambda: transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=64, bos_token_id=1, eos_token_id=2
    ),
    "qwen2": lambda: transformers.Qwen2Config(**COMMON),
    "mistral": lambda: transformers.MistralConfig(**COMMON, sliding_window=None),
    "phi3": lambda: transformers.Phi3Config(**COMMON),
    "qwen3": lambda: transformers.Qwen3Config(**COMMON, head_dim=HIDDEN // HEADS),
    "gemma": lambda: transformers.GemmaConfig(**COMMON, head_dim=HIDDEN // HEADS),
    # a sliding window shorter than the prompts, so that the window's mask is exercised
    "gemma2": lambda: transformers.Gemma2Config(**COMMON, head_dim=HIDDEN // HEADS, sliding_window=4),
    "gemma3": lambda: transformers.Gemma3TextConfig(
        **COMMON,
        head_dim=HIDDEN // HEADS,
        sliding_window=4,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
    ),
    # per-layer cache shapes: the full-attention layer has heads of global_head_dim
    "gemma4": lambda: transformers.Gemma4TextConfig(
        **COMMON,
        head_dim=HEAD_DIM,
        global_head_dim=2 * HEAD_DIM,
        sliding_window=4,
        vocab_size_per_layer_input=VOCAB,
        hidden_size_per_layer_input=8,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
    ),
    # multi-head latent attention; every layer dense (mixture-of-experts layers from first_k_dense_replace on)
    "deepseek_v3": lambda: transformers.DeepseekV3Config(
        **{**COMMON, "num_key_value_heads": HEADS}, **MLA, q_lora_rank=16, first_k_dense_replace=LAYERS
    ),
    "deepseek_v2": lambda: transformers.DeepseekV2Config(
        **{**COMMON, "num_key_value_heads": HEADS}, **MLA, q_lora_rank=None, first_k_dense_replace=LAYERS
    ),
    # layers that repeat after a prefix or by periods (see test_alike_layers_are_traced_once), deeper:
    # a dense layer, then mixture-of-experts layers
    "deepseek_v3_moe": lambda: transformers.DeepseekV3Config(
        **{**COMMON, "num_hidden_layers": LAYERS_OF["deepseek_v3_moe"], "num_key_value_heads": HEADS},
        **MLA,
        q_lora_rank=16,
        first_k_dense_replace=1,
        n_routed_experts=4,
        num_experts_per_tok=2,
        n_group=1,
        topk_group=1,
        moe_intermediate_size=32,
    ),
    # sliding-window and full attention alternating, the last period partial; experts as tract_moe_ffn
    "gpt_oss": lambda: transformers.GptOssConfig(
        **{**COMMON, "num_hidden_layers": LAYERS_OF["gpt_oss"]},
        num_local_experts=4,
        num_experts_per_tok=2,
        head_dim=HEAD_DIM,
        sliding_window=8,
        layer_types=["sliding_attention", "full_attention"] * 2 + ["sliding_attention"],
    ),
    # a sliding-window layer, then a full-attention one (Gemma 3's pattern of 2)
    "gemma3_by_2": lambda: transformers.Gemma3TextConfig(
        **{**COMMON, "num_hidden_layers": LAYERS_OF["gemma3_by_2"]},
        head_dim=HEAD_DIM,
        sliding_window=4,
        sliding_window_pattern=2,
    ),
    # ALiBi: a bias linear in the key position instead of rotary embeddings; BLOOM computes its slopes as
    # powers of a float by integers, MPT slices a table of max_seq_len positions from a bound of max()
    "bloom": lambda: transformers.BloomConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, n_layer=LAYERS, n_head=HEADS, bos_token_id=1, eos_token_id=2
    ),
    "mpt": lambda: transformers.MptConfig(
        vocab_size=VOCAB, d_model=HIDDEN, n_layers=LAYERS, n_heads=HEADS, max_seq_len=64, expansion_ratio=2
    ),
    # Falcon rounds its ALiBi slopes to bf16 on purpose (exact for 4 heads: powers of 2)
    "falcon": lambda: transformers.FalconConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        alibi=True,
        new_decoder_architecture=True,
        num_kv_heads=HEADS,
        max_position_embeddings=64,
        bos_token_id=1,
        eos_token_id=2,
    ),
}
SLIDING = {"gemma2": {0, 2}, "gemma3": {0, 2}, "gemma4": {0, 1}}
"""Families whose layers attend through a sliding window, and those layers: transformers keeps only the
window in those layers' caches, where the graph's caches keep every position (the mask drops the others)."""
KV_HEADS_OF = {"gpt2": HEADS, "bloom": HEADS, "mpt": HEADS, "falcon": HEADS}
ATTENTION_WEIGHT = {
    "gpt2": "transformer.h.0.attn.c_attn",
    "phi3": "model.layers.0.self_attn.qkv_proj",
    "deepseek_v3": "model.layers.0.self_attn.q_a_proj",
    "bloom": "transformer.h.0.self_attention.query_key_value",
    "mpt": "transformer.blocks.0.attn.Wqkv",
    "falcon": "transformer.h.0.self_attention.query_key_value",
}
UNBOUNDED = {"bloom"}
"""Families whose config gives no context length (max_position_embeddings, n_positions or MPT's
max_seq_len): no ``S+P`` bound is asserted."""


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory):
    folders: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in folders:
            torch.manual_seed(0)
            model = transformers.AutoModelForCausalLM.from_config(CONFIGS[family]())
            folder = tmp_path_factory.mktemp(family)
            model.save_pretrained(folder)
            if family == "llama":
                save_word_tokenizer(folder)
            folders[family] = folder
        return folders[family]

    return get


def save_word_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel(vocab={f"w{i}": i for i in range(VOCAB)}, unk_token="w0"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="w0", bos_token="w1", eos_token="w2"
    )
    fast.save_pretrained(folder)


def reference(folder: Path, dtype: torch.dtype, compression: str | None) -> torch.nn.Module:
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(dtype).eval()
    if compression:
        compress_model(model, compression)
    return model


def dtype_np(dtype: torch.dtype) -> type:
    return np.float16 if dtype == torch.float16 else np.float32


F16_TOLERANCE = {"deepseek_v3": "very", "deepseek_v2": "very"}
"""Families whose f16 exports differ from transformers' f16 run by more than ``approximate`` allows
(a few f16 steps on the normalised latents of deeper layers): both are as far from the f32 model."""
CACHE_DIMS = {
    # transformers caches the latents: [1, 1, P, kv_lora_rank] as keys, [1, 1, P, qk_rope_head_dim] as values
    "deepseek_v3": [(1, MLA["kv_lora_rank"]), (1, MLA["qk_rope_head_dim"])] * LAYERS,
    "deepseek_v2": [(1, MLA["kv_lora_rank"]), (1, MLA["qk_rope_head_dim"])] * LAYERS,
    "gemma4": [(KV_HEADS, HEAD_DIM)] * 4 + [(KV_HEADS, 2 * HEAD_DIM)] * 2,
    "deepseek_v3_moe": [(1, MLA["kv_lora_rank"]), (1, MLA["qk_rope_head_dim"])] * LAYERS_OF["deepseek_v3_moe"],
}
"""Heads and head size of each cache tensor (layer after layer, key then value) of the families whose
caches are not all [1, KV heads, P, head size]."""


def cache_dims(family: str) -> list[tuple[int, int]]:
    """Heads and head size of each cache tensor of ``family``'s tiny model, in graph order."""
    layers = LAYERS_OF.get(family, LAYERS)
    return CACHE_DIMS.get(family, [(KV_HEADS_OF.get(family, KV_HEADS), HEAD_DIM)] * 2 * layers)


def empty_caches(family: str, dtype: np.dtype) -> list[np.ndarray]:
    return [np.zeros((1, heads, 0, dim), dtype=dtype) for heads, dim in cache_dims(family)]


def cache_of(out):
    """The cache a forward returned (``cache`` in recent transformers, ``past_key_values`` before)."""
    return out.cache if "cache" in out else out.past_key_values


def past(model: torch.nn.Module, cache) -> dict:
    """The keyword that passes a cache to ``model`` in this transformers release."""
    return {"cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values": cache}


def flat(cache) -> list[torch.Tensor]:
    return [t for layer in cache.layers for t in (layer.keys, layer.values)]


def same_as_transformers(family: str, ref, got: list[np.ndarray], names: list[str], tolerance: str) -> None:
    """Compares tract's last logits and caches with transformers' (for a sliding-window family, the
    caches of its full-attention layers only; its logits show that the windowed caches were right too).
    """
    expected = [ref.logits[:, -1:], *flat(cache_of(ref))]
    sliding = SLIDING.get(family, set())
    keep = [0, *(1 + i for i in range(len(names) - 1) if i // 2 not in sliding)]
    check_outputs(
        [expected[i] for i in keep], [got[i] for i in keep], tolerance=tolerance, names=[names[i] for i in keep]
    )


CASES = [
    ("llama", "f32", []),
    ("llama", "f16", ["-f16"]),
    ("llama", "f32-q4_0", ["-c", "min_max_q4_0"]),
    (
        "llama",
        "bf16-f32-parts-sdpa",
        ["-dt", "bf16", "-f32-attn", "-f32-lin-acc", "-f32-norm", "--reify-sdpa-operator"],
    ),
    ("llama", "f32-f16-caches", ["-idt", "f16"]),
    ("gpt2", "f32", []),
    ("gpt2", "f16", ["-dt", "f16", "--tract-specific-version", "0.21.13"]),
    ("qwen2", "f16-q4_0", ["-f16", "-c", "min_max_q4_0"]),
    ("qwen3", "f32", ["--attn-implementation", "eager"]),
    ("mistral", "f32", []),
    ("phi3", "f32", []),
    ("gemma", "f16", ["-f16"]),
    ("gemma2", "f32", ["-dwtac"]),
    ("gemma2", "f16", ["-f16"]),
    ("gemma3", "f32", ["-dwtac"]),
    ("gemma4", "f32", []),
    ("deepseek_v3", "f32", []),
    ("deepseek_v3", "f16", ["-f16"]),
    ("deepseek_v2", "f32", []),
    ("deepseek_v2", "f16", ["-f16"]),
    ("bloom", "f32", []),
    ("bloom", "f16", ["-f16"]),
    ("mpt", "f32", []),
    ("mpt", "f16", ["-f16"]),
    ("falcon", "f32", []),
]


def test_transformers_release_under_test():
    """``make test`` runs the family exports again with the release before the pinned one laid
    over it (T2N_EXPECT_TRANSFORMERS names it): that release must be the one imported."""
    expected = os.environ.get("T2N_EXPECT_TRANSFORMERS")
    pinned = next(
        line.split("==")[1].strip()
        for line in (Path(__file__).parent.parent.parent / "requirements-dev.txt").read_text().splitlines()
        if line.startswith("transformers==")
    )
    assert transformers.__version__ == (expected or pinned)


@pytest.mark.parametrize(("family", "label", "flags"), CASES, ids=[f"{f}-{lab}" for f, lab, _ in CASES])
def test_export_runs_like_transformers(
    saved, tmp_path: Path, capsys, caplog, family: str, label: str, flags: list[str]
):
    folder = saved(family)
    out = tmp_path / "export"
    with caplog.at_level(logging.WARNING, logger="torch_to_nnef.llm"):
        assert main(["-d", str(folder), "-e", str(out), *flags]) == 0
    assert "checked in tract at tolerance" in capsys.readouterr().out
    assert ("bf16 is exported as f16" in caplog.text) == ("bf16" in flags)
    archive = out / "model" / "model.nnef.tgz"
    assert archive.is_file()
    # the config only with -dwtac; these models were saved without a tokenizer
    assert (out / "model" / "config.json").is_file() == ("-dwtac" in flags)
    assert sorted(p.name for p in out.iterdir()) == ["model", "tests"]
    if "--reify-sdpa-operator" in flags:
        with tarfile.open(archive) as tar:
            graph = tar.extractfile("graph.nnef").read().decode()  # type: ignore[union-attr]
        assert graph.count("tract_transformers_sdpa(") == LAYERS

    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    graph = (tmp_path / "unpacked" / "graph.nnef").read_text()
    for bound in ("S>=1", "P>=0", "S+P<=64"):  # max_position_embeddings / n_positions of the configs
        assert (f"extension tract_assert {bound};" in graph) == (family not in UNBOUNDED or "+" not in bound)
    weight = read_dat(
        tmp_path / "unpacked" / f"model.{ATTENTION_WEIGHT.get(family, 'model.layers.0.self_attn.q_proj')}.weight.dat"
    )
    assert isinstance(weight, Q40Tensor) == ("-c" in flags)

    f16 = label.startswith(("f16", "bf16"))
    dtype = torch.float16 if f16 else torch.float32
    # tiny models: f16 and Q4_0 exports match transformers (same dtype, same quantized weights) this closely
    tolerance = F16_TOLERANCE.get(family, "approximate") if f16 else "approximate"
    compression = flags[flags.index("-c") + 1] if "-c" in flags else None
    model = reference(folder, dtype, compression)
    tract = TractModel(archive)
    inputs, outputs = io_names(LAYERS)
    assert tract.input_names == inputs and tract.output_names == outputs

    # prompt step: empty caches (P = 0)
    ids = torch.randint(0, VOCAB, (1, 6), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ref = model(input_ids=ids, use_cache=True)
    f16_caches = f16 or flags[-2:] == ["-idt", "f16"]
    got = tract.run([ids.numpy(), *empty_caches(family, np.float16 if f16_caches else np.float32)])
    assert got[1].dtype == (np.float16 if f16_caches else np.float32) and got[0].dtype == dtype_np(dtype)
    assert got[0].shape == (1, 1, VOCAB)
    assert [g.shape for g in got[1:]] == [(1, heads, 6, dim) for heads, dim in cache_dims(family)]
    same_as_transformers(family, ref, got, outputs, tolerance)

    # a step with a past: the next token after the caches tract returned
    token = ref.logits[:, -1:].float().argmax(-1)
    with torch.no_grad():
        ref2 = model(input_ids=token, **past(model, cache_of(ref)), use_cache=True)
    got2 = tract.run([token.numpy(), *got[1:]])
    assert got2[1].shape[2] == 7
    same_as_transformers(family, ref2, got2, outputs, tolerance)

    # a second short prompt with past
    more = torch.randint(0, VOCAB, (1, 3), generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        ref3 = model(input_ids=more, **past(model, cache_of(ref2)), use_cache=True)
    got3 = tract.run([more.numpy(), *got2[1:]])
    same_as_transformers(family, ref3, got3, outputs, tolerance)


@pytest.mark.parametrize("family", ["deepseek_v3", "gemma4"])
def test_io_spec_gives_each_cache_its_shape(saved, tmp_path: Path, family: str):
    """io_spec.json, the test bundles and the export's result give each cache tensor its own shape and
    layer: DeepSeek's latents (keys of kv_lora_rank, values of qk_rope_head_dim), Gemma 4's wider heads
    in its full-attention layer."""
    from torch_to_nnef.llm import export_llm_to_tract

    out = tmp_path / "export"
    result = export_llm_to_tract(out, local_dir=saved(family), verify=False, stream=False)
    spec = json.loads((out / "model" / "io_spec.json").read_text())
    dims = cache_dims(family)
    inputs, outputs = io_names(LAYERS)
    assert [i["name"] for i in spec["inputs"]] == inputs and [o["name"] for o in spec["outputs"]] == outputs
    assert [i["shape"] for i in spec["inputs"][1:]] == [[1, heads, "P", dim] for heads, dim in dims]
    assert [o["shape"] for o in spec["outputs"][1:]] == [[1, heads, "P+S", dim] for heads, dim in dims]
    each = [(layer, kind) for layer in range(LAYERS) for kind in ("key", "value")]
    assert [(i["layer"], i["kind"]) for i in spec["inputs"][1:]] == each
    assert [(o["layer"], o["kind"]) for o in spec["outputs"][1:]] == each
    assert all(i["dtype"] == "f32" for i in spec["inputs"][1:])
    for step, past in (("prompt", 0), ("prompt_with_past", 5)):
        given = np.load(out / "tests" / f"{step}_inputs.npz")
        assert [given[n].shape for n in inputs[1:]] == [(1, heads, past, dim) for heads, dim in dims]
    assert (result.num_layers, result.kv_heads, result.head_dim) == (LAYERS, *dims[0])
    assert [t.sizes(7) for t in result.cache_layout.tensors] == [(1, heads, 7, dim) for heads, dim in dims]
    assert result.cache_layout.alike() == (family != "gemma4")
    tract = TractModel(result.archive)
    got = tract.run([np.array([[5, 9]]), *empty_caches(family, np.float32)])
    assert [g.shape for g in got[1:]] == [(1, heads, 2, dim) for heads, dim in dims]


def test_dump_with_tokenizer_and_conf_bundles_io_spec_and_all_logits(saved, tmp_path: Path):
    out = tmp_path / "export"
    argv = ["-d", str(saved("llama")), "-e", str(out), "--num-logits-to-keep", "0", "-n", "numeric", "-dwtac"]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["model", "tests", "tokenizer"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(out / "tokenizer")
    assert tokenizer("w5 w7").input_ids == [5, 7]
    assert transformers.AutoConfig.from_pretrained(out / "model").num_hidden_layers == LAYERS
    spec = json.loads((out / "model" / "io_spec.json").read_text())
    assert spec["layout"] == "deep" and (out / spec["archive"]).is_file()
    assert spec["tests"]["prompt"] == ["tests/prompt_inputs.npz", "tests/prompt_outputs.npz"]
    inputs, outputs = io_names(LAYERS)
    assert [i["name"] for i in spec["inputs"]] == inputs
    assert [o["name"] for o in spec["outputs"]] == outputs
    assert spec["inputs"][1]["shape"] == [1, KV_HEADS, "P", HEAD_DIM]
    assert spec["outputs"][0]["shape"] == [1, "S", VOCAB]
    tract = TractModel(out / "model" / "model.nnef.tgz")
    assert tract.properties["llm_num_layers"] == str(LAYERS)
    for step in ("prompt", "prompt_with_past"):
        given = np.load(out / "tests" / f"{step}_inputs.npz")
        wanted = np.load(out / "tests" / f"{step}_outputs.npz")
        assert list(given.keys()) == inputs and list(wanted.keys()) == outputs
        got = tract.run([given[n] for n in inputs])
        check_outputs([wanted[n] for n in outputs], got, names=outputs)
    # the greedy generation: the prompt then each token on the caches tract returned
    generation = np.load(out / spec["generation"])
    tokens = generation["generated_ids"]
    assert tokens.shape == (1, 4) and generation["logits"].shape == (4, VOCAB)
    ids, caches = generation["prompt_ids"], empty_caches("llama", np.float32)
    for k in range(4):
        got = tract.run([ids, *caches])
        check_outputs([generation["logits"][k : k + 1]], [got[0][:, -1]], names=[f"logits of step {k}"])
        assert int(generation["logits"][k].argmax()) == tokens[0, k]
        ids, caches = tokens[:, k : k + 1], got[1:]
    prompt = np.load(out / "tests" / "prompt_inputs.npz")
    assert prompt["in_cache_key_0"].shape[2] == 0
    # every position's logits, equal to transformers' own
    model = reference(saved("llama"), torch.float32, None)
    ids = torch.from_numpy(prompt["input_ids"])
    with torch.no_grad():
        ref = model(input_ids=ids, use_cache=True)
    got = tract.run([ids.numpy(), *empty_caches("llama", np.float32)])
    assert got[0].shape == (1, ids.shape[1], VOCAB)
    check_outputs([ref.logits], got[:1], names=["logits"])


def test_flat_layout_and_one_tract_load(saved, tmp_path: Path, monkeypatch):
    import torch_to_nnef.check.export_check
    import torch_to_nnef.llm.verify

    loads: list[Path] = []

    class CountingTractModel(TractModel):
        def __init__(self, source, **kwargs) -> None:
            loads.append(Path(source))
            super().__init__(source, **kwargs)

    monkeypatch.setattr(torch_to_nnef.llm.verify, "TractModel", CountingTractModel)
    monkeypatch.setattr(torch_to_nnef.check.export_check, "TractModel", CountingTractModel)
    out = tmp_path / "export"
    assert main(["-d", str(saved("llama")), "-e", str(out), "-dwtac", "--export-dir-struct", "flat"]) == 0
    assert len(loads) == 1  # the whole verification runs on one loaded model
    names = sorted(p.name for p in out.iterdir())
    assert all((out / n).is_file() for n in names)
    assert {"model.nnef.tgz", "io_spec.json", "config.json", "tokenizer.json", "prompt_inputs.npz"} <= set(names)
    assert transformers.AutoTokenizer.from_pretrained(out)("w3 w9").input_ids == [3, 9]
    assert transformers.AutoConfig.from_pretrained(out).num_hidden_layers == LAYERS
    spec = json.loads((out / "io_spec.json").read_text())
    assert spec["layout"] == "flat" and spec["archive"] == "model.nnef.tgz"
    inputs, outputs = io_names(LAYERS)
    tract = TractModel(out / spec["archive"])
    for given_file, wanted_file in spec["tests"].values():
        given, wanted = np.load(out / given_file), np.load(out / wanted_file)
        check_outputs([wanted[n] for n in outputs], tract.run([given[n] for n in inputs]), names=outputs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no temporary folder left


def save_lora(base: Path, folder: Path, targets: list[str], fan_in_fan_out: bool = False) -> None:
    import peft

    model = transformers.AutoModelForCausalLM.from_pretrained(base)
    torch.manual_seed(1)
    # init_lora_weights=False: random A and B, so that the adapter changes the outputs
    adapted = peft.get_peft_model(
        model, peft.LoraConfig(r=4, target_modules=targets, init_lora_weights=False, fan_in_fan_out=fan_in_fan_out)
    )
    adapted.save_pretrained(folder)


PEFT_WARNING = "ignore:.*is_gradient_checkpointing.*:FutureWarning"
"""peft 0.21 calls an API that transformers 5.24 deprecates."""


@pytest.mark.filterwarnings(PEFT_WARNING)
def test_merge_peft(saved, tmp_path: Path):
    import peft

    base = saved("llama")
    adapter = tmp_path / "adapter"
    save_lora(base, adapter, ["q_proj", "v_proj", "down_proj"])
    out = tmp_path / "export"
    assert main(["-d", str(base), "-e", str(out), "-mp", str(adapter)]) == 0
    tract = TractModel(out / "model" / "model.nnef.tgz")
    assert tract.properties["llm_peft_merged"] == "yes"
    merged = peft.PeftModel.from_pretrained(reference(base, torch.float32, None), adapter).merge_and_unload()
    ids = torch.randint(0, VOCAB, (1, 6), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        want = merged(input_ids=ids).logits[:, -1:]
        plain = reference(base, torch.float32, None)(input_ids=ids).logits[:, -1:]
    got = tract.run([ids.numpy(), *empty_caches("llama", np.float32)])
    check_outputs([want], got[:1], names=["logits"])
    assert not torch.allclose(want, plain, atol=1e-3)  # the adapter did change the model


@pytest.mark.filterwarnings(PEFT_WARNING)
def test_merge_peft_errors(saved, tmp_path: Path, capsys, monkeypatch):
    base, out = saved("llama"), tmp_path / "out"
    assert main(["-d", str(base), "-e", str(out), "-mp", str(tmp_path)]) == 1
    assert "not a PEFT adapter folder" in error_line(capsys)
    adapter = tmp_path / "gpt2-adapter"
    save_lora(saved("gpt2"), adapter, ["c_attn"], fan_in_fan_out=True)  # GPT-2's Conv1D
    assert main(["-d", str(base), "-e", str(out), "-mp", str(adapter)]) == 1
    err = error_line(capsys)
    assert "does not match the model (LlamaForCausalLM)" in err and "c_attn" in err
    monkeypatch.setitem(sys.modules, "peft", None)  # as if peft were not installed
    assert main(["-d", str(base), "-e", str(out), "-mp", str(adapter)]) == 1
    assert "pip install peft" in error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpt2-adapter"]


def test_progress_lines(saved, tmp_path: Path, caplog, monkeypatch):
    import torch_to_nnef.llm.progress

    monkeypatch.setattr(torch_to_nnef.llm.progress, "PROGRESS_INTERVAL_S", 0.0)  # a line for every step
    with caplog.at_level(logging.INFO, logger="torch_to_nnef.llm"):
        assert main(["-d", str(saved("llama")), "-e", str(tmp_path / "out"), "-nv", "--no-stream"]) == 0
    text = caplog.text
    assert "loading " in text and "loaded LlamaForCausalLM: " in text
    assert "tracing LlamaForCausalLM with torch.export (S = 3, P = 2)" in text
    assert re.search(r"traced \d+ operations in", text)
    packed = [int(n) for n in re.findall(r"packed (\d+)/\d+ tensors \(", text)]
    wanted = int(re.search(r"packed \d+/(\d+) tensors", text).group(1))
    assert packed == list(range(1, wanted + 1)) and wanted > 2 * LAYERS
    assert re.search(r"wrote model\.nnef\.tgz \([\d.]+ kB\) in", text)

    # while the archive is streamed to disk, the size of its temporary file is reported
    partial = tmp_path / ".model.nnef.tgz.1-0.partial"
    partial.write_bytes(b"\0" * 1500)
    monkeypatch.setattr(torch_to_nnef.llm.progress, "PROGRESS_INTERVAL_S", 0.01)
    stop = threading.Event()
    watcher = threading.Thread(
        target=torch_to_nnef.llm.progress.report_writing, args=(tmp_path / "model.nnef.tgz", 3000, stop)
    )
    with caplog.at_level(logging.INFO, logger="torch_to_nnef.llm"):
        watcher.start()
        time.sleep(0.2)
        stop.set()
        watcher.join()
    assert "writing model.nnef.tgz: 1.5 kB of about 3.0 kB in" in caplog.text


def test_failed_export_leaves_no_folder(saved, tmp_path: Path, capsys, monkeypatch):
    import torch_to_nnef.llm.verify

    def mismatch(*args, **kwargs):
        raise IOMismatchError("outputs differ (made to fail)")

    # fails after the archive and the bundles are written, at the verification
    monkeypatch.setattr(torch_to_nnef.llm.verify, "check_outputs", mismatch)
    out = tmp_path / "out"
    assert main(["-d", str(saved("llama")), "-e", str(out), "-dwtac"]) == 1
    assert "made to fail" in error_line(capsys)
    assert list(tmp_path.iterdir()) == []
    # an existing folder written into with --ignore-already-exist-dir is left as it was
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["-d", str(saved("llama")), "-e", str(out), "--ignore-already-exist-dir"]) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and [p.name for p in out.iterdir()] == ["keep.txt"]


def test_ignore_already_exist_dir(saved, tmp_path: Path):
    out = tmp_path / "out"
    (out / "model").mkdir(parents=True)
    (out / "keep.txt").write_text("mine")
    (out / "model" / "model.nnef.tgz").write_text("an older export")
    assert main(["-d", str(saved("gpt2")), "-e", str(out), "-iaed", "-nv"]) == 0
    assert (out / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt", "model", "tests"]
    assert TractModel(out / "model" / "model.nnef.tgz").output_names == io_names(LAYERS)[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_unsupported_architectures(tmp_path: Path, capsys):
    vit = tmp_path / "vit"
    config = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=8, patch_size=4
    )
    transformers.ViTModel(config).save_pretrained(vit)
    assert main(["-d", str(vit), "-e", str(tmp_path / "out")]) == 1
    err = error_line(capsys)
    assert "unsupported architecture ViTModel (model_type 'vit')" in err and "Llama" in err
    gpt = tmp_path / "openai-gpt"
    config = transformers.OpenAIGPTConfig(vocab_size=VOCAB, n_embd=32, n_layer=1, n_head=2, n_positions=16)
    transformers.OpenAIGPTLMHeadModel(config).save_pretrained(gpt)
    assert main(["-d", str(gpt), "-e", str(tmp_path / "out")]) == 1
    err = error_line(capsys)
    assert "unsupported architecture OpenAIGPTLMHeadModel (model_type 'openai-gpt')" in err and "no cache" in err
    assert not (tmp_path / "out").exists()


def test_missing_op_names_architecture_and_op(saved, tmp_path: Path, capsys, monkeypatch):
    import torch_to_nnef.nnef.translate

    real = torch_to_nnef.nnef.translate.resolve
    monkeypatch.setattr(
        torch_to_nnef.nnef.translate,
        "resolve",
        lambda kind, overload="": None if kind == "aten::rsqrt" else real(kind, overload),
    )
    assert main(["-d", str(saved("llama")), "-e", str(tmp_path / "out")]) == 1
    err = error_line(capsys)
    assert "cannot export LlamaForCausalLM (model_type 'llama')" in err and "aten::rsqrt" in err
    assert list(tmp_path.iterdir()) == []


TRANSFORMERS_LINES = ("Loading weights", "Writing model shards", "[transformers]")
"""What transformers writes to stderr itself (progress bars, notices)."""


def error_line(capsys) -> str:
    lines = [
        line
        for line in capsys.readouterr().err.strip().splitlines()
        if line.strip() and not line.startswith(TRANSFORMERS_LINES)
    ]
    err = "\n".join(lines)
    assert len(lines) == 1, err
    assert err.startswith("export_llm_to_tract: error: ")
    return err


def test_cli_needs_a_source(tmp_path: Path, capsys):
    assert main(["-e", str(tmp_path / "out")]) == 2
    assert "-d/--local-dir" in error_line(capsys)
    assert main(["-e", str(tmp_path / "out"), "-s", "a/b", "-d", str(tmp_path)]) == 2
    assert "both given" in error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_cli_slug_offline(tmp_path: Path, capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert main(["-s", "nobody/no-such-model", "-e", str(tmp_path / "out")]) == 1
    assert "-d/--local-dir" in error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_cli_local_dir_without_model(tmp_path: Path, capsys):
    assert main(["-d", str(tmp_path), "-e", str(tmp_path / "out")]) == 1
    assert "save_pretrained" in error_line(capsys)


def test_cli_refuses_non_empty_export_dir(saved, tmp_path: Path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["-d", str(saved("llama")), "-e", str(out)]) == 1
    assert "--ignore-already-exist-dir" in error_line(capsys)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_cli_unknown_compression(saved, tmp_path: Path, capsys):
    assert main(["-d", str(saved("llama")), "-e", str(tmp_path / "out"), "-c", "gptq_q4_0"]) == 1
    err = error_line(capsys)
    assert "gptq_q4_0" in err and "min_max_q4_0" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("registry", ["no_such_package.REGISTRY", "torch_to_nnef.io.compress.NO_SUCH", "plain"])
def test_cli_bad_registry(saved, tmp_path: Path, capsys, registry: str):
    argv = ["-d", str(saved("llama")), "-e", str(tmp_path / "out"), "--compression-registry", registry, "-c", "x"]
    assert main(argv) == 1
    assert registry in error_line(capsys)


def test_cli_help_has_an_example(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "export_llm_to_tract -d ./my-llama -e ./llama_f16_q4_0 -f16 -c min_max_q4_0" in text
    assert "in_cache_key_{i}" in text
    for documented in ("--export-dir-struct {deep,flat}", "deep (default)", "flat ", "-dwtac", "-mp ADAPTER_DIR"):
        assert documented in text


@pytest.mark.parametrize(
    ("family", "traced", "extra"),
    [
        ("llama", 2, []),
        ("llama", 2, ["-idt", "f16"]),
        ("gpt2", 2, []),
        ("deepseek_v3", 2, []),
        ("deepseek_v3_moe", 3, []),
        ("gpt_oss", 4, []),
        ("gemma3_by_2", 4, []),
        ("gemma2", None, []),
        ("gemma4", None, []),
    ],
    ids=[
        "llama",
        "llama-f16-caches",
        "gpt2",
        "deepseek_v3",
        "deepseek_v3-dense-then-moe",
        "gpt_oss-by-periods",
        "gemma3-by-periods",
        "gemma2",
        "gemma4",
    ],
)
def test_alike_layers_are_traced_once(
    saved, tmp_path: Path, capsys, caplog, family: str, traced: int | None, extra: list[str]
):
    """Layers that repeat, traced and the others repeated, compute exactly what a trace of every layer
    computes, and pass the check against transformers: alike layers, two traced (with f16 caches, each
    layer's cache casts outside the layers are repeated too; DeepSeek's latent caches of two sizes are
    repeated alike); a dense DeepSeek layer before mixture-of-experts ones, traced with two of these;
    gpt-oss' and Gemma 3's sliding-window and full attention layers alternating, traced by two periods
    (gpt-oss' last period is partial, its experts are tract_moe_ffn operators of each layer). Gemma 2's
    and Gemma 4's three layers (sliding, full, sliding; Gemma 4's full-attention layer also caches
    wider heads) leave no layer to repeat: they are all traced."""
    folder = saved(family)
    layers = LAYERS_OF.get(family, LAYERS)
    archives = {}
    for label, flags in (("repeated", extra), ("all", ["-nv", "--trace-all-layers", *extra])):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="torch_to_nnef.llm"):
            assert main(["-d", str(folder), "-e", str(tmp_path / label), *flags]) == 0
        assert (f" of its {layers} layers" in caplog.text) == (traced is not None and label == "repeated")
        if traced is not None and label == "repeated":
            assert f"with {traced} of its {layers} layers" in caplog.text
            assert "checked in tract at tolerance" in capsys.readouterr().out
        assert "differ" not in caplog.text
        archives[label] = tmp_path / label / "model" / "model.nnef.tgz"
    names = {}
    for label, archive in archives.items():
        with tarfile.open(archive) as tar:
            # the weights (each layer's empty cache is one constant in the repeated graph)
            names[label] = sorted(n for n in tar.getnames() if n.endswith(".dat") and "lifted_tensor" not in n)
    assert names["repeated"] == names["all"]
    assert sum(f".layers.{layers - 1}." in n or f".h.{layers - 1}." in n for n in names["all"]) > 3
    ids = torch.randint(0, VOCAB, (1, 5), generator=torch.Generator().manual_seed(3)).numpy()
    rng = np.random.default_rng(4)
    caches = [
        rng.standard_normal((1, heads, 2, dim), dtype=np.float32).astype(np.float16 if extra else np.float32)
        for heads, dim in cache_dims(family)
    ]
    repeated, full = (TractModel(archives[k]).run([ids, *caches]) for k in ("repeated", "all"))
    for name, a, b in zip(io_names(layers)[1], repeated, full):
        assert np.array_equal(a, b), name


def test_layers_caching_different_shapes_are_not_repeated(saved, caplog):
    """Alike layers whose caches do not repeat as they do are all traced: each repeated layer would take
    the cache shapes of the layer it repeats."""
    from torch_to_nnef.check.targets import TractNNEF
    from torch_to_nnef.llm import CacheLayout, CacheTensor, wrap_causal_lm
    from torch_to_nnef.llm.tracing import _capture_stacked

    wrapper, layout = wrap_causal_lm(reference(saved("llama"), torch.float32, None))
    assert layout == CacheLayout.key_value(LAYERS, KV_HEADS, HEAD_DIM) and layout.alike()
    shape = f"[1, {KV_HEADS}, 'P', {HEAD_DIM}]"
    assert layout.describe() == f"{LAYERS} layers of key {shape}, value {shape}"
    wider = CacheTensor(2, "value", (1, KV_HEADS, "P", 2 * HEAD_DIM))
    wrapper.layout = CacheLayout(LAYERS, (*layout.tensors[:-1], wider))
    assert not wrapper.layout.alike()
    with caplog.at_level(logging.INFO, logger="torch_to_nnef.llm"):
        assert _capture_stacked(wrapper, [], TractNNEF(), "", {}) is None
    assert "the caches of the layers of LlamaForCausalLM do not repeat as their layers do" in caplog.text
    assert f"layers 2: key [1, {KV_HEADS}, 'P', {HEAD_DIM}], value [1, {KV_HEADS}, 'P', {2 * HEAD_DIM}]" in caplog.text


def test_cache_layout_checks_its_tensors():
    from torch_to_nnef.errors import InvalidArgumentError
    from torch_to_nnef.llm import CacheLayout, CacheTensor

    key, value = CacheTensor(0, "key", (1, 1, "P", 32)), CacheTensor(0, "value", (1, 1, "P", 8))
    layout = CacheLayout(1, (key, value))
    assert (key.input_name, value.output_name, value.past_axis) == ("in_cache_key_0", "out_cache_value_0", 2)
    assert layout.dynamic_axes() == {"input_ids": {1: "S"}, "in_cache_key_0": {2: "P"}, "in_cache_value_0": {2: "P"}}
    assert [t.shape for t in layout.random(3, torch.float16, seed=0)] == [(1, 1, 3, 32), (1, 1, 3, 8)]
    for bad in (
        lambda: CacheLayout(1, (value, key)),  # value before key
        lambda: CacheLayout(1, (key, key)),
        lambda: CacheLayout(1, (CacheTensor(1, "key", (1, 1, "P", 32)),)),  # no layer 1
        lambda: CacheLayout(1, (CacheTensor(0, "key", (1, 1, 4, 32)),)),  # no P axis anywhere
        lambda: CacheTensor(0, "key", (1, "P", "P", 32)),
        lambda: CacheTensor(0, "conv", (1, 4, "P")),  # a state has a fixed shape
        lambda: CacheTensor(0, "key", (1, 1, "P", 32), state=1),  # only states have an index
    ):
        with pytest.raises(InvalidArgumentError):
            bad()
