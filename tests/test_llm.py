"""export_llm_to_tract on tiny causal LMs built from configs (random weights, saved with save_pretrained),
checked against transformers' own outputs by running the exported archive in tract."""

import inspect
import json
import logging
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from torch_to_nnef import Q40Tensor, TractModel, check_outputs, compress_model, read_dat
from torch_to_nnef.llm import io_names, main

HIDDEN, HEADS, KV_HEADS, LAYERS, VOCAB = 64, 4, 2, 2, 128
HEAD_DIM = HIDDEN // HEADS
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
}
KV_HEADS_OF = {"gpt2": HEADS}
ATTENTION_WEIGHT = {"gpt2": "transformer.h.0.attn.c_attn", "phi3": "model.layers.0.self_attn.qkv_proj"}


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


def empty_caches(family: str, dtype: np.dtype) -> list[np.ndarray]:
    heads = KV_HEADS_OF.get(family, KV_HEADS)
    return [np.zeros((1, heads, 0, HEAD_DIM), dtype=dtype) for _ in range(2 * LAYERS)]


def cache_of(out):
    """The cache a forward returned (``cache`` in recent transformers, ``past_key_values`` before)."""
    return out.cache if "cache" in out else out.past_key_values


def past(model: torch.nn.Module, cache) -> dict:
    """The keyword that passes a cache to ``model`` in this transformers release."""
    return {"cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values": cache}


def flat(cache) -> list[torch.Tensor]:
    return [t for layer in cache.layers for t in (layer.keys, layer.values)]


CASES = [
    ("llama", "f32", []),
    ("llama", "f16", ["-f16"]),
    ("llama", "f32-q4_0", ["-c", "min_max_q4_0"]),
    (
        "llama",
        "bf16-f32-parts-sdpa",
        ["-dt", "bf16", "-f32-attn", "-f32-lin-acc", "-f32-norm", "--reify-sdpa-operator"],
    ),
    ("gpt2", "f32", []),
    ("gpt2", "f16", ["-dt", "f16", "--tract-specific-version", "0.21.13"]),
    ("qwen2", "f16-q4_0", ["-f16", "-c", "min_max_q4_0"]),
    ("qwen3", "f32", ["--attn-implementation", "eager"]),
    ("mistral", "f32", []),
    ("phi3", "f32", []),
    ("gemma", "f16", ["-f16"]),
]


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
    assert archive.is_file() and (out / "config.json").is_file()
    if "--reify-sdpa-operator" in flags:
        with tarfile.open(archive) as tar:
            graph = tar.extractfile("graph.nnef").read().decode()  # type: ignore[union-attr]
        assert graph.count("tract_transformers_sdpa(") == LAYERS

    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    graph = (tmp_path / "unpacked" / "graph.nnef").read_text()
    for bound in ("S>=1", "P>=0", "S+P<=64"):  # max_position_embeddings / n_positions of the configs
        assert f"extension tract_assert {bound};" in graph
    weight = read_dat(
        tmp_path / "unpacked" / f"model.{ATTENTION_WEIGHT.get(family, 'model.layers.0.self_attn.q_proj')}.weight.dat"
    )
    assert isinstance(weight, Q40Tensor) == ("-c" in flags)

    f16 = label.startswith(("f16", "bf16"))
    dtype = torch.float16 if f16 else torch.float32
    # tiny models: f16 and Q4_0 exports match transformers (same dtype, same quantized weights) this closely
    tolerance = "approximate"
    compression = flags[flags.index("-c") + 1] if "-c" in flags else None
    model = reference(folder, dtype, compression)
    tract = TractModel(archive)
    inputs, outputs = io_names(LAYERS)
    assert tract.input_names == inputs and tract.output_names == outputs

    # prompt step: empty caches (P = 0)
    ids = torch.randint(0, VOCAB, (1, 6), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ref = model(input_ids=ids, use_cache=True)
    got = tract.run([ids.numpy(), *empty_caches(family, np.float16 if f16 else np.float32)])
    assert got[0].shape == (1, 1, VOCAB)
    assert got[1].shape == (1, KV_HEADS_OF.get(family, KV_HEADS), 6, HEAD_DIM)
    check_outputs([ref.logits[:, -1:], *flat(cache_of(ref))], got, tolerance=tolerance, names=outputs)

    # a step with a past: the next token after the caches tract returned
    token = ref.logits[:, -1:].float().argmax(-1)
    with torch.no_grad():
        ref2 = model(input_ids=token, **past(model, cache_of(ref)), use_cache=True)
    got2 = tract.run([token.numpy(), *got[1:]])
    assert got2[1].shape[2] == 7
    check_outputs([ref2.logits[:, -1:], *flat(cache_of(ref2))], got2, tolerance=tolerance, names=outputs)

    # a second short prompt with past
    more = torch.randint(0, VOCAB, (1, 3), generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        ref3 = model(input_ids=more, **past(model, cache_of(ref2)), use_cache=True)
    got3 = tract.run([more.numpy(), *got2[1:]])
    check_outputs([ref3.logits[:, -1:], *flat(cache_of(ref3))], got3, tolerance=tolerance, names=outputs)


def test_bundles_io_spec_and_all_logits(saved, tmp_path: Path):
    out = tmp_path / "export"
    assert main(["-d", str(saved("llama")), "-e", str(out), "--num-logits-to-keep", "0", "-n", "numeric"]) == 0
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert tokenizer("w5 w7").input_ids == [5, 7]
    assert transformers.AutoConfig.from_pretrained(out).num_hidden_layers == LAYERS
    spec = json.loads((out / "model" / "io_spec.json").read_text())
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


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
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


@pytest.mark.parametrize("registry", ["no_such_package.REGISTRY", "torch_to_nnef.compress.NO_SUCH", "plain"])
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
