"""export_llm_to_tract without loading the model: weights streamed from safetensors shards.

A streamed export is compared with the export of the same model loaded in memory: every tensor
file byte for byte, and the graph run in tract on the loaded export's test bundles against the
outputs PyTorch computed for them.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from torch_to_nnef import TractModel, check_outputs
from torch_to_nnef.errors import FormatError, InvalidArgumentError, NameClashError
from torch_to_nnef.io.checkpoint import SafetensorsCheckpoint
from torch_to_nnef.io.compress import DEFAULT_COMPRESSION, quantize_weights_min_max_q4_0
from torch_to_nnef.llm import export_llm_to_tract
from torch_to_nnef.llm.streaming import NotStreamable

SMALL = {
    "vocab_size": 512,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}

FAMILIES = {
    "llama": transformers.LlamaConfig(**SMALL, tie_word_embeddings=False),
    # tied head: one weight under two names, the checkpoint holding one of them
    "qwen2": transformers.Qwen2Config(**SMALL, tie_word_embeddings=True),
    # a normalisation weight offset by one, scaled embeddings, alternating layer kinds
    "gemma2": transformers.Gemma2Config(**SMALL, head_dim=16),
    "phi3": transformers.Phi3Config(**{**SMALL, "num_key_value_heads": 4}, pad_token_id=0),
}

STREAM_COMPRESSION = {
    **DEFAULT_COMPRESSION,
    "clipped_q4_0": functools.partial(quantize_weights_min_max_q4_0, percentile=0.9),
    "needs_values": lambda model: _scaled(model),
}
"""Compressors of the tests' own registry (``--compression-registry``)."""


def _scaled(model: torch.nn.Module) -> torch.nn.Module:
    """A compressor that reads the weights' values (as a calibration would)."""
    for p in model.parameters():
        if float(p.abs().max()) > 1e9:
            raise AssertionError("weights are finite")
    return model


REGISTRY = f"{__name__}.STREAM_COMPRESSION"


def _saved(
    folder: Path, config: transformers.PretrainedConfig, shard: str = "60KB", dtype: torch.dtype = torch.bfloat16
) -> Path:
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).to(dtype)
    model.save_pretrained(folder, max_shard_size=shard)
    return folder


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def _numel(dat: bytes) -> int:
    """The element count a ``.dat`` header gives."""
    rank = int.from_bytes(dat[8:12], "little")
    return int(np.prod([int.from_bytes(dat[12 + 4 * i : 16 + 4 * i], "little") for i in range(rank)]))


def _run_bundle(archive: Path, tests: Path, stem: str, tolerance: str) -> None:
    """Runs ``archive`` on the inputs of the bundle ``stem`` and checks its outputs."""
    inputs, outputs = np.load(tests / f"{stem}_inputs.npz"), np.load(tests / f"{stem}_outputs.npz")
    model = TractModel(archive)
    names = [name for name, _, _ in model.outputs]
    got = model.run([inputs[name] for name, _, _ in model.inputs])
    check_outputs([outputs[n] for n in names], got, names=names, tolerance=tolerance)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize(
    ("stored", "dtype", "compression"),
    [
        (torch.bfloat16, "f16", "min_max_q4_0"),  # converted in PyTorch, piece by piece
        (torch.bfloat16, "f32", None),
        (torch.float16, "f16", "min_max_q4_0"),  # as stored: read (and quantized) by the Rust core
    ],
    ids=["bf16-f16-q4_0", "bf16-f32", "f16-f16-q4_0"],
)
def test_streamed_export_is_the_loaded_export(tmp_path, family, stored, dtype, compression):
    source = _saved(tmp_path / "model", FAMILIES[family], dtype=stored)
    assert len(SafetensorsCheckpoint.of_folder(source).files) > 1
    options = {"local_dir": source, "dtype": dtype, "compression_method": compression}
    # by default, compressed exports stream and small float ones load
    streamed = export_llm_to_tract(
        tmp_path / "streamed", verify=False, stream=True if compression is None else None, **options
    )
    loaded = export_llm_to_tract(tmp_path / "loaded", verify=False, stream=False, **options)
    assert streamed.streamed and not loaded.streamed
    if compression is None:
        assert not export_llm_to_tract(tmp_path / "default", verify=False, **options).streamed
    ours, theirs = _members(streamed.archive), _members(loaded.archive)
    tensors = {n for n in ours if n.endswith(".dat")}
    assert tensors <= set(theirs)
    # the loaded capture records empty constants (the cache's initial tensors) that the meta capture drops
    assert all(_numel(theirs[n]) == 0 for n in set(theirs) - set(ours))
    assert {n: ours[n] for n in tensors} == {n: theirs[n] for n in tensors}
    assert not (streamed.export_dir / "tests").exists() or not any((streamed.export_dir / "tests").iterdir())
    assert json.loads((streamed.export_dir / "model" / "io_spec.json").read_text()) == json.loads(
        (loaded.export_dir / "model" / "io_spec.json").read_text()
    )
    tolerance = "super" if dtype == "f16" else "approximate"
    for stem in ("prompt", "prompt_with_past"):
        _run_bundle(streamed.archive, loaded.export_dir / "tests", stem, tolerance)


MOE = {
    # experts saved one by one (w1, w3, w2), stacked and concatenated by transformers' loading
    "mixtral": transformers.MixtralConfig(**SMALL, num_local_experts=4, num_experts_per_tok=2),
    # a shared expert beside the routed ones, saved one by one too
    "qwen2_moe": transformers.Qwen2MoeConfig(
        **SMALL, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=64, shared_expert_intermediate_size=64
    ),
}
MOE_CASES = [
    ("mixtral", "f16", "min_max_q4_0", None),  # tract_moe_ffn of Q4_0 blocks, quantized as read
    ("mixtral", "f32", None, "0.23.8"),  # the dense form: one linear layer per expert
    ("qwen2_moe", "f32", None, None),
    ("qwen2_moe", "f16", "min_max_q4_0", "0.23.8"),
]


@pytest.mark.parametrize(
    ("family", "dtype", "compression", "tract"), MOE_CASES, ids=["-".join(map(str, c)) for c in MOE_CASES]
)
def test_streamed_mixture_of_experts_is_the_loaded_export(tmp_path, caplog, family, dtype, compression, tract):
    """The checkpoint holds each expert's weights apart: the stacked weights of the model, and the
    views the export makes of them, are read from those tensors' rows."""
    source = _saved(tmp_path / "model", MOE[family])
    held = SafetensorsCheckpoint.of_folder(source).tensors
    assert any(re.search(r"experts\.0\.", name) for name in held)
    options = {"local_dir": source, "dtype": dtype, "compression_method": compression, "tract_version": tract}
    with caplog.at_level(logging.INFO, logger="torch_to_nnef"):
        streamed = export_llm_to_tract(tmp_path / "streamed", verify=False, stream=True, **options)
    fused = tract is None
    assert ("written as tract_moe_ffn" in caplog.text) == fused
    if compression is None:  # experts saved one by one stream by default: loading would stack them in a copy
        assert export_llm_to_tract(tmp_path / "default", verify=False, **options).streamed
    loaded = export_llm_to_tract(tmp_path / "loaded", verify=False, stream=False, **options)
    ours, theirs = _members(streamed.archive), _members(loaded.archive)
    tensors = {n for n in ours if n.endswith(".dat")}
    assert tensors <= set(theirs) and all(_numel(theirs[n]) == 0 for n in set(theirs) - set(ours))
    assert {n: ours[n] for n in tensors} == {n: theirs[n] for n in tensors}
    experts = [n for n in tensors if re.search(r"experts\.w[123]\.dat|_linears\.\d+\.weight\.dat", n)]
    assert len(experts) == (3 if fused else 2 * 4) * SMALL["num_hidden_layers"]
    tolerance = "super" if dtype == "f16" else "approximate"
    for stem in ("prompt", "prompt_with_past"):
        _run_bundle(streamed.archive, loaded.export_dir / "tests", stem, tolerance)


def test_experts_stored_transposed_are_loaded(tmp_path, caplog):
    config = transformers.GptOssConfig(**SMALL, num_local_experts=4, num_experts_per_tok=2, head_dim=16)
    source = _saved(tmp_path / "model", config)
    with pytest.raises(NotStreamable, match=r"GptOssExperts stores its experts' weights \[E, in, out\]"):
        export_llm_to_tract(tmp_path / "a", local_dir=source, verify=False, stream=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_streamed_compression_of_a_registry_with_clipping(tmp_path):
    source = _saved(tmp_path / "model", FAMILIES["llama"])
    options = {"local_dir": source, "dtype": "f16", "compression_method": "clipped_q4_0"}
    options["compression_registry"] = REGISTRY
    streamed = export_llm_to_tract(tmp_path / "streamed", verify=False, stream=True, **options)
    loaded = export_llm_to_tract(tmp_path / "loaded", verify=False, stream=False, **options)
    ours, theirs = _members(streamed.archive), _members(loaded.archive)
    assert {n: b for n, b in ours.items() if n.endswith(".dat")} == {n: theirs[n] for n in ours if n.endswith(".dat")}


def test_what_cannot_stream_is_said_and_loaded(tmp_path, caplog):
    source = _saved(tmp_path / "model", FAMILIES["llama"])
    options = {"local_dir": source, "compression_method": "needs_values", "compression_registry": REGISTRY}
    with pytest.raises(NotStreamable, match="compressor 'needs_values' needs the weights' values"):
        export_llm_to_tract(tmp_path / "a", verify=False, stream=True, **options)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    with caplog.at_level(logging.INFO, logger="torch_to_nnef.llm"):
        result = export_llm_to_tract(tmp_path / "b", verify=False, **options)
    assert not result.streamed
    assert "loading the model in memory: compressor 'needs_values'" in caplog.text

    torch_saved = tmp_path / "bin"
    torch_saved.mkdir()
    (torch_saved / "config.json").write_text((source / "config.json").read_text())
    torch.save(
        transformers.AutoModelForCausalLM.from_config(FAMILIES["llama"]).state_dict(), torch_saved / "pytorch_model.bin"
    )
    with pytest.raises(NotStreamable, match="holds no .safetensors files"):
        export_llm_to_tract(tmp_path / "c", local_dir=torch_saved, verify=False, stream=True)
    with pytest.raises(InvalidArgumentError, match="with the check on"):
        export_llm_to_tract(tmp_path / "d", local_dir=source, verify=False, check_layers=2)
    with pytest.raises(InvalidArgumentError, match="check_layers 4 is not below the model's 4 layers"):
        export_llm_to_tract(tmp_path / "d", local_dir=source, check_layers=4)
    with pytest.raises(InvalidArgumentError, match="pass local_dir"):
        export_llm_to_tract(tmp_path / "e", model_slug="some/model", verify=False, stream=True)


def test_a_checkpoint_that_is_not_the_model_is_refused(tmp_path):
    source = _saved(tmp_path / "model", FAMILIES["llama"])
    config = json.loads((source / "config.json").read_text())
    (source / "config.json").write_text(json.dumps({**config, "intermediate_size": 96}))
    with pytest.raises(NotStreamable, match="differ in shape"):
        export_llm_to_tract(tmp_path / "a", local_dir=source, verify=False, stream=True)
    (source / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 5}))
    with pytest.raises(NotStreamable, match=r"holds no tensor for 9 weight\(s\).*layers\.4"):
        export_llm_to_tract(tmp_path / "a", local_dir=source, verify=False, stream=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_checkpoint_pieces_are_whole_rows_of_the_tensor(tmp_path):
    from safetensors.torch import save_file

    tensors = {
        "w": torch.randn(37, 5, 3, dtype=torch.bfloat16),
        "i": torch.arange(11, dtype=torch.int64),
        "s": torch.tensor(2.5),
        "e": torch.zeros(0, 4),
        "b": torch.rand(6, 2) > 0.5,
    }
    save_file(tensors, tmp_path / "a.safetensors")
    checkpoint = SafetensorsCheckpoint([tmp_path / "a.safetensors"])
    assert checkpoint.nbytes == sum(t.numel() * t.element_size() for t in tensors.values())
    for name, tensor in tensors.items():
        for piece_bytes in (1, 30, 64, 1 << 20):
            pieces = [p.clone() for p in checkpoint.pieces(name, piece_bytes)]
            row = tensor.shape[-1] if tensor.dim() else 1
            assert all(p.numel() % row == 0 for p in pieces) if row else len(pieces) == 1
            assert torch.equal(torch.cat(pieces).reshape(tensor.shape), tensor)
        assert torch.equal(checkpoint.read(name), tensor)
    rows = tensors["w"].reshape(-1, 3)
    for first, count in ((0, 185), (7, 1), (100, 85), (184, 1), (3, 0)):
        got = torch.cat([p.clone() for p in checkpoint.pieces("w", 30, rows=(first, count))])
        assert torch.equal(got, rows[first : first + count].reshape(-1))
    with pytest.raises(ValueError, match="outside tensor 'w'"):
        next(checkpoint.pieces("w", rows=(180, 6)))


def test_hostile_or_broken_checkpoints_are_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(4)}, tmp_path / "a.safetensors")
    save_file({"a": torch.ones(4)}, tmp_path / "b.safetensors")
    with pytest.raises(NameClashError, match="'a' is in both"):
        SafetensorsCheckpoint([tmp_path / "a.safetensors", tmp_path / "b.safetensors"])
    (tmp_path / "c.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(FormatError, match="not a valid .safetensors file"):
        SafetensorsCheckpoint([tmp_path / "c.safetensors"])
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "../a.safetensors"}}))
    with pytest.raises(FormatError, match="not a file of"):
        SafetensorsCheckpoint.of_folder(folder)
    (folder / "model.safetensors.index.json").write_text("[]")
    with pytest.raises(FormatError, match="not a safetensors index"):
        SafetensorsCheckpoint.of_folder(folder)


def test_streamed_export_logs_its_progress_and_totals(tmp_path, caplog, monkeypatch, capsys):
    import torch_to_nnef.llm.progress
    from torch_to_nnef.llm import main

    source = _saved(tmp_path / "model", FAMILIES["llama"])
    monkeypatch.setattr(torch_to_nnef.llm.progress, "PROGRESS_INTERVAL_S", 0.0)  # a line for every tensor
    with caplog.at_level(logging.INFO, logger="torch_to_nnef.llm"):
        assert main(["-d", str(source), "-e", str(tmp_path / "out"), "-nv", "-f16", "-c", "min_max_q4_0"]) == 0
    text = caplog.text
    assert "weights streamed from the checkpoint" in capsys.readouterr().out
    assert re.search(r"streaming the weights of model \(39 tensors, [\d.]+ kB in \d+ file\(s\)\)", text)
    assert "compression 'min_max_q4_0' runs streamed: 29 weights are quantized as they are read" in text
    lines = re.findall(r"wrote (\d+)/(\d+) tensors, ([\d.]+) kB of ([\d.]+) kB \(", text)
    assert [int(done) for done, *_ in lines] == list(range(1, int(lines[0][1]) + 1))
    assert lines[-1][2] == lines[-1][3]  # the size written is the size announced
    assert re.search(r"about \d+ s left", text)
    assert re.search(r"read [\d.]+ kB of weights from the checkpoint, wrote [\d.]+ kB of tensors", text)
    assert re.search(
        r"exported .* in [\d.]+ s \(read [\d.]+ kB, wrote [\d.]+ kB\), peak memory [\d.]+ [MG]B anonymous", text
    )


@pytest.mark.parametrize("family", ["llama", "gemma2", "mixtral"])
def test_checked_streamed_export_checks_its_first_layers(tmp_path, caplog, family):
    """A checked streamed export is checked on a copy cut to its first layers (Gemma 2's layer kinds
    cut alike; Mixtral's experts read from their one-by-one tensors), then the whole archive runs
    the prompt in tract."""
    config = {**FAMILIES, **MOE}[family]
    source = _saved(tmp_path / "model", config)
    with caplog.at_level(logging.INFO, logger="torch_to_nnef.llm"):
        result = export_llm_to_tract(tmp_path / "out", local_dir=source, dtype="f16", check_layers=2)
    assert result.streamed and result.checked_layers == 2 and result.tolerance == "super"
    assert len(result.generated_tokens) == 4
    text = caplog.text
    assert "checking the export on its first 2 layers and the head" in text
    assert "(its first 2 layers)" in text
    assert re.search(r"tracing \w+ with torch.export \(S = 3, P = 2\)", text)
    assert "tract matches PyTorch at tolerance 'super'" in text
    assert "the whole archive loads and runs the prompt in tract (finite logits)" in text
    assert sorted(p.name for p in result.export_dir.iterdir()) == ["model", "tests"]
    assert sorted(p.name for p in (result.export_dir / "model").iterdir()) == ["io_spec.json", "model.nnef.tgz"]
    with tarfile.open(result.archive) as tar:  # the archive holds every layer
        layers = {int(m) for m in re.findall(r"layers\.(\d+)\.", " ".join(tar.getnames()))}
    assert layers == set(range(config.num_hidden_layers))


def test_checked_export_streams_when_the_model_does_not_fit(tmp_path, caplog, monkeypatch):
    import torch_to_nnef.llm.export as export_module

    source = _saved(tmp_path / "model", FAMILIES["llama"])
    monkeypatch.setattr(export_module, "available_memory", lambda: 100_000)  # bytes: less than the weights
    with caplog.at_level(logging.INFO, logger="torch_to_nnef.llm"):
        result = export_llm_to_tract(tmp_path / "out", local_dir=source)
    assert result.streamed and result.checked_layers == 2 and result.tolerance == "approximate"
    assert re.search(r"do not fit in the memory available \(100\.0 kB\): they are streamed", caplog.text)
    assert "the whole archive (" in caplog.text and "is not run in tract: it does not fit" in caplog.text
    monkeypatch.setattr(export_module, "available_memory", lambda: 1 << 40)
    loaded = export_llm_to_tract(tmp_path / "out2", local_dir=source)
    assert not loaded.streamed and loaded.checked_layers is None
