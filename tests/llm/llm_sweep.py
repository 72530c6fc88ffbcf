"""Every causal language model type of transformers, exported as a tiny random model and checked in tract.

For each ``model_type`` of ``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES`` the sweep builds a tiny random
model from the type's default config (:func:`tiny_config`: generic shrinking rules, with per-type
:data:`OVERRIDES` where they cannot work), saves it with ``save_pretrained``, runs it in
transformers with a cache (a prompt, then a token after it) and exports it with
:func:`torch_to_nnef.llm.export_llm_to_tract` in f32, then, when f32 passes, in f16 and in f32 with
``min_max_q4_0`` weights. :func:`sweep_type` runs one type in a subprocess of its own with a
timeout, so that a crash or a hang stops nothing else.

Types that are not decoder-only text models with a key-value cache are out of scope:
:data:`OUT_OF_SCOPE` names them with a reason (encoder-decoder models, encoders used as decoders,
multimodal, speech and audio models); models whose cache holds no key and value tensors at all
(recurrent models) are found by running them.

``tools/llm_sweep.py`` runs the sweep and writes ``docs/supported_llms.json`` and
``docs/supported_llms.md`` (:func:`render`); ``tests/llm/test_llm_sweep.py`` checks that page.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RECORD = ROOT / "docs" / "supported_llms.json"
PAGE = ROOT / "docs" / "supported_llms.md"

MODES = ("f32", "f16", "q4_0")
"""The exports of each in-scope type: f32, f16, and f32 with Q4_0 weights."""
MODE_OPTIONS: dict[str, dict[str, Any]] = {
    "f32": {"dtype": "f32"},
    "f16": {"dtype": "f16"},
    "q4_0": {"dtype": "f32", "compression_method": "min_max_q4_0"},
}
CHECKED = "checked"
"""The status of an export that tract ran as PyTorch did."""
NOT_RUN = ""
"""The status of a mode that was not run (out of scope, or f32 failed)."""
IN_SCOPE = "decoder-only text"
OUT = "out of scope"
NOT_RUN_BY_TRANSFORMERS = "transformers fails"
"""The scope of a type that transformers itself cannot build small or run with a cache."""
TIMEOUT_S = 600.0
"""How long one type's subprocess (model built, run and exported in every mode) may take."""

HIDDEN, HEADS, HEAD_DIM, LAYERS, VOCAB, POSITIONS, WINDOW = 64, 4, 16, 2, 256, 128, 8

ENCODER_DECODER = "decoder of an encoder-decoder model (its cross-attention needs the encoder's states)"
ENCODER = "bidirectional encoder used as a decoder (is_decoder=True)"
MULTIMODAL = "multimodal: the causal LM takes images or other media with the text"
SPEECH = "speech or audio model"
OUT_OF_SCOPE: dict[str, str] = {
    **dict.fromkeys(
        ["bart", "bigbird_pegasus", "blenderbot", "blenderbot-small", "marian", "mbart", "mvp", "pegasus", "plbart"],
        ENCODER_DECODER,
    ),
    "prophetnet": ENCODER_DECODER,
    "trocr": "decoder of an image-to-text encoder-decoder model",
    **dict.fromkeys(
        [
            "bert",
            "bert-generation",
            "big_bird",
            "camembert",
            "data2vec-text",
            "electra",
            "ernie",
            "megatron-bert",
            "rembert",
            "roberta",
            "roberta-prelayernorm",
            "roc_bert",
            "roformer",
            "xlm-roberta",
            "xlm-roberta-xl",
            "xmod",
        ],
        ENCODER,
    ),
    "xlm": "cross-lingual encoder with a language-model head",
    "xlnet": "permutation language model with a memory, no key-value cache",
    "reformer": "reversible layers with LSH and chunked attention, no key-value cache of the usual form",
    **dict.fromkeys(["gemma3", "gemma3n", "gemma4", "gemma4_unified", "fuyu", "git", "got_ocr2"], MULTIMODAL),
    "phi4_multimodal": MULTIMODAL,
    "mllama": "text model of a multimodal model: its cross-attention layers attend to images",
    **dict.fromkeys(["moshi", "musicgen", "musicgen_melody", "moss_transcribe_diarize"], SPEECH),
    "whisper": "decoder of a speech-to-text encoder-decoder model",
    **dict.fromkeys(
        ["gemma4_assistant", "gemma4_unified_assistant"],
        "speculative-decoding assistant: runs on the target model's hidden states and caches",
    ),
}
"""The types that are not decoder-only text models, with why."""

_QWEN4_INDEXER = {
    "indexer_n_heads": 2,
    "indexer_kv_heads": 1,
    "indexer_head_dim": 16,
    "indexer_budget": 16,
    "indexer_compress_ratio": 4,
}
_DOTS3 = {"head_dim": HEAD_DIM + 8}
"""Its sliding-window layers' heads are as wide as the latent attention's queries and keys."""

OVERRIDES: dict[str, dict[str, Any]] = {
    # layer patterns whose first layers hold no attention
    "bamba": {"attn_layer_indices": [1]},
    "jamba": {"attn_layer_period": 2, "attn_layer_offset": 1, "expert_layer_period": 2, "expert_layer_offset": 1},
    "granitemoehybrid": {"layer_types": ["mamba", "attention"]},
    "recurrent_gemma": {"num_hidden_layers": 3},
    "dory": {
        "num_hidden_layers": 4,
        "layer_types": ["sliding_attention", "sliding_attention", "sliding_attention", "full_attention"],
        "n_input_layers": 1,
        "n_recurrent_layers": 2,
        "n_output_layers": 1,
    },
    # values the default configs leave unset
    "deepseek_v2": {"num_experts_per_tok": 2, "n_group": 1, "topk_group": 1},
    "dots1": {"n_routed_experts": 4, "num_experts_per_tok": 2, "n_shared_experts": 1},
    "lfm2_moe": {"layer_types": ["conv", "full_attention"], "num_dense_layers": 1},
    "dbrx": {"attn_config": {"kv_n_heads": 2, "rope_theta": 10000.0, "clip_qkv": 8.0}},
    "cohere_compass_text": {"rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 10000.0}}},
    "qwen4_exp": _QWEN4_INDEXER,
    "qwen4_exp_text": _QWEN4_INDEXER,
    "dots3_note": _DOTS3,
    "dots3_note_text": _DOTS3,
    # the last layers reuse the caches of the layers before them
    "gemma3n_text": {"num_kv_shared_layers": 2},
    # Mamba 2 heads: hidden_size * expand = heads * head size
    "mamba2": {"num_heads": 8},
    # transformers' recurrent step fails with queries and keys narrower than the values at this size
    "xlstm": {"qk_dim_factor": 1.0},
    # attention over the hidden states concatenated with the embeddings: twice the hidden size
    "zamba": {
        "attention_hidden_size": 2 * HIDDEN,
        "num_hidden_layers": 4,
        "layers_block_type": ["mamba", "hybrid"] * 2,
    },
    "zamba2": {"attention_hidden_size": 2 * HIDDEN, "attention_head_dim": 2 * HIDDEN // HEADS},
    # bytes and 4 special tokens
    "blt": {"vocab_size": 260},
}
"""Config values set after the generic shrinking rules, where those cannot work."""

# --- the generic shrinking rules: config key -> value (or a function of the default value) ---

_LAYER_KEYS = (
    "num_hidden_layers",
    "n_layer",
    "num_layers",
    "n_layers",
    "decoder_layers",
    "num_decoder_layers",
    "encoder_layers",
    "num_encoder_layers",
    "num_blocks",
)


_SIZES: dict[str, int | Callable[[int], int]] = {
    **dict.fromkeys(
        [
            "hidden_size",
            "n_embd",
            "n_embed",
            "d_model",
            "embed_dim",
            "model_dim",
            "hidden_dim",
            "dim",
            "embedding_size",
            "emb_dim",
            "embedding_dim",
            "word_embed_proj_dim",
            "attention_hidden_size",
            "lru_width",
            "backbone_hidden_size",
            "input_embedding_size",
            "output_embedding_size",
            "router_hidden_size",
            "ple_embed_dim",
        ],
        HIDDEN,
    ),
    **dict.fromkeys(
        [
            "num_attention_heads",
            "n_head",
            "n_heads",
            "num_heads",
            "attention_heads",
            "decoder_attention_heads",
            "encoder_attention_heads",
            "swa_num_attention_heads",
            "linear_num_heads",
            "linear_num_value_heads",
        ],
        HEADS,
    ),
    **dict.fromkeys(
        ["num_key_value_heads", "num_kv_heads", "n_kv_heads", "swa_num_key_value_heads", "linear_num_key_heads"],
        2,
    ),
    **dict.fromkeys(
        [
            "head_dim",
            "d_head",
            "dim_head",
            "kv_channels",
            "attention_head_dim",
            "attention_head_size",
            "swa_head_dim",
            "linear_head_dim",
            "linear_key_head_dim",
            "linear_value_head_dim",
            "index_head_dim",
            "qk_nope_head_dim",
            "v_head_dim",
            "mamba_d_head",
            "mamba_head_dim",
            "mamba_headdim",
        ],
        HEAD_DIM,
    ),
    "qk_rope_head_dim": 8,
    "qk_head_dim": HEAD_DIM + 8,
    "rotary_dim": lambda v: min(v, HEAD_DIM // 2),
    **dict.fromkeys(["q_lora_rank", "kv_lora_rank", "o_lora_rank"], 32),
    **dict.fromkeys(
        [
            "intermediate_size",
            "ffn_dim",
            "decoder_ffn_dim",
            "encoder_ffn_dim",
            "ffn_hidden_size",
            "dff",
            "d_inner",
            "dim_ff",
            "feed_forward_size",
            "intermediate_size_mlp",
            "dense_intermediate_size",
            "mamba_d_ssm",
        ],
        128,
    ),
    **dict.fromkeys(
        [
            "moe_intermediate_size",
            "shared_expert_intermediate_size",
            "shared_experts_intermediate_size",
            "moe_shared_expert_intermediate_size",
            "shared_intermediate_size",
            "expert_ffn_hidden_size",
        ],
        32,
    ),
    **dict.fromkeys(["vocab_size", "decoder_vocab_size", "unpadded_vocab_size", "vocab_size_per_layer_input"], VOCAB),
    **dict.fromkeys(
        [
            "max_position_embeddings",
            "n_positions",
            "n_ctx",
            "max_seq_len",
            "context_length",
            "max_target_positions",
            "max_source_positions",
            "model_max_length",
        ],
        POSITIONS,
    ),
    "original_max_position_embeddings": lambda v: min(v, POSITIONS // 2),
    **dict.fromkeys(
        [
            "sliding_window",
            "window_size",
            "sliding_window_size",
            "attention_window_size",
            "local_attention",
            "attention_chunk_size",
            "local_attention_window_len",
        ],
        WINDOW,
    ),
    **dict.fromkeys(
        ["num_experts", "n_routed_experts", "num_local_experts", "moe_num_experts", "zero_expert_num"],
        lambda v: min(v, 4),
    ),
    **dict.fromkeys(
        ["num_experts_per_tok", "num_experts_per_token", "moe_topk", "top_k", "moe_k"], lambda v: min(v, 2)
    ),
    **dict.fromkeys(["n_group", "num_expert_group", "topk_group", "n_shared_experts"], lambda v: min(v, 1)),
    **dict.fromkeys(["state_size", "mamba_d_state", "ssm_state_size"], lambda v: min(v, 8)),
    **dict.fromkeys(["mamba_n_heads", "n_mamba_heads", "mamba_num_heads"], 8),
    **dict.fromkeys(["n_groups", "mamba_n_groups"], 1),
    **dict.fromkeys(["chunk_size", "mamba_chunk_size"], lambda v: min(v, 16)),
    **dict.fromkeys(["time_step_rank", "mamba_dt_rank"], lambda v: min(v, 8)),
    **dict.fromkeys(["index_n_heads"], 2),
    **dict.fromkeys(["index_topk"], lambda v: min(v, 16)),
    "hidden_size_per_layer_input": lambda v: min(v, 16),
    "hidden_size_global": HIDDEN,
    "hc_lowrank": lambda v: min(v, 16),
    "ngram_vocab_size_base": lambda v: min(v, 4 * VOCAB),
}
"""Generic shrinking rules: a config key and its small value, or a function of its default."""

_UNSET = {"head_dim": HEAD_DIM, "num_key_value_heads": 2}
"""Sizes that some default configs leave unset where their model needs them."""

_TOKEN_KEY = re.compile(r".*_token_(id|ids|index)$")
_LAYER_INDEX_KEY = re.compile(r".*(layer|idxs|_ids$|indices).*")


def causal_lm_types() -> dict[str, str]:
    """The causal LM types of the installed transformers, with the class ``AutoModelForCausalLM`` builds."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return dict(sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.items()))


def _layer_count(values: Mapping[str, Any]) -> tuple[str, int] | None:
    """The key of a config's layer count, and the count."""
    for key in _LAYER_KEYS:
        value = values.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return key, value
    return None


def _pick_layers(values: Mapping[str, Any], count: int) -> list[int]:
    """The layers kept of ``count``: the first of each kind (by the per-layer lists and the layer-index lists).

    :data:`LAYERS` layers at least (the first ones added), four at most.
    """
    signatures: list[tuple[Any, ...]] = [() for _ in range(count)]
    for key, value in sorted(values.items()):
        if key == "per_layer_config" and isinstance(value, dict):
            overridden = {int(k): v for k, v in value.items()}
            signatures = [(*s, json.dumps(overridden.get(i), sort_keys=True)) for i, s in enumerate(signatures)]
        elif isinstance(value, list) and len(value) == count:
            signatures = [(*s, json.dumps(v)) for s, v in zip(signatures, value)]
        elif _is_layer_index_list(key, value, count):
            signatures = [(*s, i in value) for i, s in enumerate(signatures)]
    first: dict[tuple[Any, ...], int] = {}
    for i, signature in enumerate(signatures):
        first.setdefault(signature, i)
    wanted = min(count, max(LAYERS, min(len(first), 4)))
    picked = sorted(first.values())[:wanted]
    picked += [i for i in range(count) if i not in picked][: wanted - len(picked)]
    return sorted(picked)


def _is_layer_index_list(key: str, value: Any, count: int) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and len(value) != count
        and _LAYER_INDEX_KEY.match(key) is not None
        and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < count for i in value)
    )


def shrink(values: Mapping[str, Any]) -> dict[str, Any]:
    """The values of a config (``to_dict()``, sub-configs included) changed by the generic rules.

    Sizes become :data:`HIDDEN`, :data:`HEADS`, :data:`HEAD_DIM`...; the layers are cut to the
    first of each kind (:func:`_pick_layers`), with every per-layer list and layer-index list cut
    alike; token ids out of the small vocabulary are moved into it.
    """
    changed: dict[str, Any] = {}
    for key, value in values.items():
        if key == "per_layer_config":  # values of some layers, by index: cut with the layers below
            continue
        if isinstance(value, dict) and (key.endswith("config") or "model_type" in value):
            inner = shrink(value)
            if inner:
                changed[key] = {**value, **inner}
        elif key in _SIZES and isinstance(value, int) and not isinstance(value, bool):
            rule = _SIZES[key]
            changed[key] = rule(value) if callable(rule) else rule
        elif key in _SIZES and isinstance(value, list) and all(isinstance(v, int) for v in value):
            rule = _SIZES[key]
            changed[key] = [rule(v) if callable(rule) else rule for v in value]
        elif key in _UNSET and value is None:
            changed[key] = _UNSET[key]
    kv_heads, heads = values.get("num_key_value_heads"), values.get("num_attention_heads")
    if isinstance(kv_heads, int) and kv_heads == heads:  # multi-head attention stays so
        changed["num_key_value_heads"] = changed["num_attention_heads"]
    if isinstance(values.get("qk_rope_head_dim"), int) and isinstance(values.get("head_dim"), int):
        changed["head_dim"] = changed["qk_rope_head_dim"]  # multi-head latent attention: the rotary part's
    layers = _layer_count(values)
    if layers is not None:
        key, count = layers
        picked = _pick_layers(values, count)
        changed[key] = len(picked)
        for other in _LAYER_KEYS:
            if other != key and values.get(other) == count:
                changed[other] = len(picked)
        for name, value in values.items():
            if isinstance(value, list) and len(value) == count:
                changed[name] = [changed.get(name, value)[i] for i in picked]
            elif _is_layer_index_list(name, value, count):
                changed[name] = [new for new, old in enumerate(picked) if old in value]
        per_layer = values.get("per_layer_config")
        if isinstance(per_layer, dict) and per_layer:
            overridden = {int(k): v for k, v in per_layer.items()}
            changed["per_layer_config"] = {
                str(new): {**overridden[old], **shrink(overridden[old])}
                for new, old in enumerate(picked)
                if old in overridden
            }
    vocab = changed.get("vocab_size", values.get("vocab_size"))
    if isinstance(vocab, int):
        changed.update(_small_token_ids(values, vocab))
    return changed


def _small_token_ids(values: Mapping[str, Any], vocab: int) -> dict[str, Any]:
    """Token ids at or above ``vocab`` moved into it: pad, bos and eos to 0, 1, 2, the others from the top."""
    fixed = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "decoder_start_token_id": 1}
    moved: dict[int, int] = {}
    changed: dict[str, Any] = {}

    def small(key: str, token: int) -> int:
        if token < vocab:
            return token
        if token not in moved:
            moved[token] = fixed.get(key, vocab - 1 - len([t for t in moved.values() if t >= 3]))
        return moved[token]

    for key, value in values.items():
        if not _TOKEN_KEY.match(key):
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            changed[key] = small(key, value)
        elif isinstance(value, list) and all(isinstance(t, int) for t in value):
            changed[key] = [small(key, t) for t in value]
    return changed


def tiny_config(model_type: str, class_name: str | None = None) -> Any:
    """A small config of ``model_type`` for the class ``class_name`` (default: the type's causal LM class).

    The type's default config, shrunk by :func:`shrink`, then :data:`OVERRIDES`. A composite
    config whose causal LM class takes its text part gives that text part.
    """
    import transformers

    class_name = class_name or causal_lm_types()[model_type]
    model_class = getattr(transformers, class_name)
    default = transformers.AutoConfig.for_model(model_type)
    if not isinstance(default, model_class.config_class) and hasattr(default, "text_config"):
        default = model_class.config_class()
    values = default.to_dict()
    changed = {**shrink(values), **OVERRIDES.get(model_type, {})}
    return type(default)(**changed)


# --- one type: built, run with a cache, exported in each mode ---


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its class name when it has none), short and the same on every run.

    A first line that ends with a colon is completed: by the names of the outputs that differ, for
    a mismatch (their errors vary from run to run), else by the next line. Temporary paths and
    addresses are masked, paths are made relative to site-packages or to the repository, and the
    architecture the exporter names first is left out.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    if text.endswith(":") and len(lines) > 1:
        differ = [line.split(":")[0] for line in lines[1:] if "MISMATCH" in line]
        if differ:
            text += f" {', '.join(differ[:3])}{', …' if len(differ) > 3 else ''} differ"
        else:
            text += " " + lines[1]
    text = re.sub(rf"({re.escape(tempfile.gettempdir())}|/tmp|/var/folders)[^\s'\"),]*", "<tmp>", text)
    text = re.sub(r"0x[0-9a-f]{6,}", "0x…", text)
    text = re.sub(r"/\S*/site-packages/", "", text).replace(f"{ROOT}/", "")
    text = re.sub(r"^(cannot export|unsupported architecture) \S+ \(model_type '[^']*'\): ", "", text)
    return text if len(text) <= 240 else text[:239] + "…"


def _cache_of(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return getattr(out, "past_key_values", None) if cache is None else cache


def draw_zero_matrices(model: Any) -> None:
    """Draws the matrices a family initialises to zeros (AFMoE's router) from N(0, 0.02), in place.

    A router of zeros gives every expert the same score: which experts a token gets is then a tie
    that PyTorch and tract break each their own way, which says nothing of the export.
    """
    import torch

    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2 and parameter.numel() > 1 and not parameter.any():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)


def _holds_tensors(held: Any) -> bool:
    """Whether a cache layer's attribute holds a tensor (keys), or a dict of them (states by index)."""
    import torch

    values = held.values() if isinstance(held, dict) else [held]
    return any(isinstance(v, torch.Tensor) for v in values)


def run_with_cache(model: Any, vocab: int) -> str | None:
    """Runs ``model`` on a prompt, then on a token after it with the cache it returned.

    Returns:
        None, or why the model is out of scope (its cache holds no keys, values or states).

    Raises:
        Exception: whatever transformers raises.
    """
    import torch

    ids = torch.randint(0, vocab, (1, 5), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)
        cache = _cache_of(out)
        if cache is None:
            return "no key-value cache (the model returns none)"
        layers = getattr(cache, "layers", None)
        if layers is None:
            return f"no key-value cache ({type(cache).__name__})"
        states = ("keys", "conv_states", "recurrent_states")
        if not any(_holds_tensors(getattr(layer, attr, None)) for layer in layers for attr in states):
            kinds = sorted({type(layer).__name__ for layer in layers})
            return f"no cache tensors (keys, values or states) after a run: {', '.join(kinds)}"
        kwarg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        model(input_ids=ids[:, -1:], use_cache=True, **{kwarg: cache})
    return None


def _worker(jobs: Mapping[str, list[str]], result: Path) -> None:
    """Builds each type of ``jobs`` small, runs it and exports it in its modes, one type after the other.

    Appends a JSON line to ``result`` after each step: the type's scope, then each mode's status.
    """
    import logging

    logging.disable(logging.WARNING)  # the exporter's and transformers' warnings
    for model_type, modes in jobs.items():
        _sweep_in_process(model_type, modes, functools.partial(_write_step, result, model_type))


def _write_step(result: Path, model_type: str, **step: Any) -> None:
    with result.open("a") as out:
        out.write(json.dumps({"type": model_type, **step}) + "\n")


def _sweep_in_process(model_type: str, modes: list[str], write: Callable[..., None]) -> None:
    """One type of :func:`_worker`: its steps are given to ``write``; the folders are deleted after."""
    import torch
    import transformers

    from torch_to_nnef.llm import export_llm_to_tract

    with tempfile.TemporaryDirectory(prefix=f"llm_sweep_{model_type}_") as tmp:
        try:
            config = tiny_config(model_type)
            torch.manual_seed(0)
            model = getattr(transformers, causal_lm_types()[model_type])(config).eval()
            draw_zero_matrices(model)
            reason = run_with_cache(model, config.get_text_config().vocab_size)
            model.save_pretrained(Path(tmp) / "model")
        except Exception as exc:  # transformers' own failure: recorded as such
            write(scope=NOT_RUN_BY_TRANSFORMERS, reason=first_line(exc), trace=traceback.format_exc())
            return
        del model
        if reason is not None:
            write(scope=OUT, reason=reason)
            return
        write(scope=IN_SCOPE)
        for mode in modes:
            started = time.monotonic()
            try:
                export_llm_to_tract(Path(tmp) / mode, local_dir=Path(tmp) / "model", **MODE_OPTIONS[mode])
            except Exception as exc:
                seconds = time.monotonic() - started
                write(mode=mode, status=first_line(exc), seconds=seconds, trace=traceback.format_exc())
                if mode == "f32":
                    return
            else:
                write(mode=mode, status=CHECKED, seconds=time.monotonic() - started)


def sweep_type(
    model_type: str, modes: Iterable[str] = MODES, timeout: float = TIMEOUT_S, threads: int | None = None
) -> dict[str, Any]:
    """Sweeps one type in a subprocess of its own (out-of-scope ones are not run); see :func:`sweep_types`."""
    return sweep_types({model_type: modes}, timeout, threads)[model_type]


def sweep_types(
    jobs: Mapping[str, Iterable[str]], timeout: float = TIMEOUT_S, threads: int | None = None
) -> dict[str, dict[str, Any]]:
    """Sweeps the types of ``jobs`` (each with its modes; f16 and Q4_0 run only when f32 passes) in one subprocess.

    Args:
        jobs: the types and their modes, run in this order.
        timeout: seconds the subprocess may run; it is killed after (a crash or a timeout is the
            status of the mode it stopped, or the scope of a type it stopped before its first mode).
        threads: the threads of the subprocess (torch and tract); None: their default.

    Returns:
        Each type's record entry: ``model_class``, ``scope``, ``reason`` and the status of each mode
        (``"checked"``, the error's first line, or ``""`` when not run), plus ``seconds`` (each mode's
        time) and ``traces`` (each error's traceback), which the record does not keep.
    """
    types = causal_lm_types()
    entries: dict[str, dict[str, Any]] = {}
    run: dict[str, list[str]] = {}
    for model_type, modes in jobs.items():
        entry: dict[str, Any] = {"model_class": types[model_type], "scope": IN_SCOPE, "reason": ""}
        entry.update(dict.fromkeys(MODES, NOT_RUN), seconds={}, traces={})
        entries[model_type] = entry
        if model_type in OUT_OF_SCOPE:
            entry.update(scope=OUT, reason=OUT_OF_SCOPE[model_type])
        else:
            run[model_type] = [m for m in MODES if m in set(modes)]
    if not run:
        return entries
    steps, failure = _run_worker(run, timeout, threads)
    done: dict[str, set[str]] = {t: set() for t in run}
    for step in steps:
        entry = entries[step["type"]]
        if "scope" in step:
            entry.update(scope=step["scope"], reason=step.get("reason", ""))
            if "trace" in step:
                entry["traces"]["build"] = step["trace"]
            done[step["type"]].add("scope")
        else:
            entry[step["mode"]] = step["status"]
            entry["seconds"][step["mode"]] = step["seconds"]
            if "trace" in step:
                entry["traces"][step["mode"]] = step["trace"]
            done[step["type"]].add(step["mode"])
    stopped = next((t for t in run if not _finished(entries[t], run[t], done[t])), None)
    if failure is not None and stopped is not None:
        entry = entries[stopped]
        if "scope" not in done[stopped]:
            entry.update(scope=NOT_RUN_BY_TRANSFORMERS, reason=failure)
        else:
            entry[next(m for m in run[stopped] if m not in done[stopped])] = failure
        for later in list(run)[list(run).index(stopped) + 1 :]:
            entries[later].update(scope=NOT_RUN_BY_TRANSFORMERS, reason=f"not run: {stopped} stopped the process")
    return entries


def _finished(entry: Mapping[str, Any], modes: list[str], done: set[str]) -> bool:
    """Whether a type's subprocess steps are all written (f32 failing ends them)."""
    if "scope" not in done:
        return False
    if entry["scope"] != IN_SCOPE or not modes:
        return True
    return all(m in done for m in modes) or ("f32" in done and entry["f32"] != CHECKED)


def _run_worker(jobs: Mapping[str, list[str]], timeout: float, threads: int | None) -> tuple[list[Any], str | None]:
    """Runs :func:`_worker` in a subprocess; returns the steps it wrote and why it stopped early (None: it did not)."""
    with tempfile.TemporaryDirectory(prefix="llm_sweep_") as tmp:
        result = Path(tmp) / "result.jsonl"
        env = dict(os.environ)
        if threads is not None:
            env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), RAYON_NUM_THREADS=str(threads))
        command = [sys.executable, __file__, str(result), json.dumps(jobs)]
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            _, stderr = process.communicate(timeout=timeout)
            failure = None if process.returncode == 0 else _crash(process.returncode, stderr)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            failure = f"timeout: more than {timeout:.0f} s"
        steps = [json.loads(line) for line in result.read_text().splitlines()] if result.exists() else []
    return steps, failure


def _crash(returncode: int, stderr: str) -> str:
    """What a subprocess that died said: its last non-empty line of error output, and its exit status."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    how = f"signal {-returncode}" if returncode < 0 else f"exit status {returncode}"
    return f"crashed ({how}): {lines[-1][:200]}" if lines else f"crashed ({how})"


# --- the record and the page ---

RECORDED = ("model_class", "scope", "reason", *MODES)
"""The keys of each type's entry in the record."""


def load_record(path: Path = RECORD) -> dict[str, Any]:
    """The record at ``path`` (an empty one when there is none)."""
    if not path.exists():
        return {"transformers": "", "types": {}}
    record: dict[str, Any] = json.loads(path.read_text())
    return record


def record_entry(entry: Mapping[str, Any]) -> dict[str, str]:
    """The part of a :func:`sweep_type` result that the record keeps."""
    return {key: entry[key] for key in RECORDED}


def dump_record(record: Mapping[str, Any]) -> str:
    """The record as JSON text: one type a line, sorted, so that a regeneration changes only what changed."""
    lines = [f"    {json.dumps(t)}: {json.dumps(record['types'][t])}" for t in sorted(record["types"])]
    head = f'{{\n  "transformers": {json.dumps(record["transformers"])},\n  "types": {{\n'
    return head + ",\n".join(lines) + "\n  }\n}\n"


def _cell(status: str) -> str:
    text = "✓ checked" if status == CHECKED else status or "-"
    return text.replace("|", "\\|").replace("\n", " ")


def _types(names: Iterable[str]) -> str:
    return ", ".join(f"`{t}`" for t in sorted(names))


def render(record: Mapping[str, Any]) -> str:
    """``docs/supported_llms.md``: how it is made, the totals, the failures by cause, a row per type."""
    types: dict[str, dict[str, str]] = record["types"]
    in_scope = [t for t, e in types.items() if e["scope"] == IN_SCOPE]
    passed = {mode: [t for t in in_scope if types[t][mode] == CHECKED] for mode in MODES}
    out = [t for t, e in types.items() if e["scope"] == OUT]
    not_run = [t for t, e in types.items() if e["scope"] == NOT_RUN_BY_TRANSFORMERS]
    share = 100 * len(passed["f32"]) / len(in_scope) if in_scope else 0.0
    lines = [
        "# Supported language models",
        "",
        "<!-- generated by `make llm-sweep` (tools/llm_sweep.py) from docs/supported_llms.json: do not edit -->",
        "",
        f"Every causal language model type of transformers {record['transformers']} "
        "(`MODEL_FOR_CAUSAL_LM_MAPPING_NAMES`), built as a tiny random model from the type's default config "
        "(hidden size 64, two to four layers, a vocabulary of 256, few experts; `tests/llm/llm_sweep.py`), "
        "saved with `save_pretrained`, exported with `export_llm_to_tract` and checked in tract against "
        "PyTorch: in f32, then, for the types that pass in f32, in f16 and in f32 with Q4_0 weights "
        "(`-c min_max_q4_0`). A cell gives the first line of the error otherwise. `make llm-sweep` "
        "regenerates this page and its record, `docs/supported_llms.json`; "
        "`python tools/llm_sweep.py --types a,b` runs some types again and updates their rows. "
        "A tiny model checks the architecture's code, not a checkpoint's size or its numerics.",
        "",
        f"**{len(passed['f32'])} of {len(in_scope)} decoder-only text types export and check in f32 "
        f"({share:.0f}%)**; {len(passed['f16'])} of them in f16 too, {len(passed['q4_0'])} with Q4_0 weights. "
        f"{len(out)} of the {len(types)} types are out of scope (encoder-decoder models, encoders used as "
        "decoders, multimodal, speech and audio models, models without a key-value cache)",
    ]
    lines[-1] += (
        f"; transformers itself cannot build small or run with a cache {len(not_run)} more: {_types(not_run)}."
        if not_run
        else "."
    )
    causes: dict[str, list[str]] = {}
    for model_type in in_scope:
        for mode in MODES:
            status = types[model_type][mode]
            if status not in (CHECKED, NOT_RUN):
                causes.setdefault(f"{mode}: {status}" if mode != "f32" else status, []).append(model_type)
    if causes:
        lines += ["", "## Failures by cause", ""]
        lines += [
            f"- {_cell(cause)} ({len(names)}): {_types(names)}"
            for cause, names in sorted(causes.items(), key=lambda item: (-len(item[1]), item[0]))
        ]
    lines += ["", "## Every type", "", "| type | model class | scope | f32 | f16 | Q4_0 |", "|---|---|---|---|---|---|"]
    for model_type in sorted(types):
        entry = types[model_type]
        scope = entry["scope"] if not entry["reason"] else f"{entry['scope']}: {entry['reason']}"
        cells = [f"`{model_type}`", f"`{entry['model_class']}`", _cell(scope), *(_cell(entry[m]) for m in MODES)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # the subprocess of sweep_types
    _worker(json.loads(sys.argv[2]), Path(sys.argv[1]))
