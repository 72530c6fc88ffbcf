"""Linear-attention, recurrent and state-space language models: their convolution and recurrent states
are graph inputs and outputs (zeros before a prompt), their recurrences one loop over the tokens, so
that tract runs a prompt of any length, at once or in pieces, like transformers."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from llm_sweep import causal_lm_types, tiny_config

from torch_to_nnef import TractModel, check_outputs
from torch_to_nnef.errors import InvalidArgumentError
from torch_to_nnef.llm import export_llm_to_tract
from torch_to_nnef.llm.cache_layout import PAST, CacheLayout, CacheTensor
from torch_to_nnef.llm.recurrence import DeltaRuleScan, StateScan, rewrite_recurrences

FAMILIES = {
    "qwen3_next": "Gated DeltaNet layers beside attention layers, experts",
    "kimi_linear": "Kimi delta attention: a decay per key channel",
    "mamba": "selective scan, states only (no positions)",
    "lfm2_moe": "short convolutions beside attention layers",
    "mamba2": "Mamba-2's scan, transformers computing it by chunks (several in the long prompt)",
}
CHUNKS = {"mamba2": 16}
"""Chunk sizes small enough that the long prompt spans several chunks."""
LONG = 70
"""A prompt longer than the 64-token chunks transformers computes delta rules by."""


def build(family: str) -> torch.nn.Module:
    config = tiny_config(family)
    if family in CHUNKS:
        config.chunk_size = CHUNKS[family]
    torch.manual_seed(0)
    return getattr(transformers, causal_lm_types()[family])(config).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[torch.nn.Module, Path]]:
    """Each family built small, saved and exported (checked in tract over a prompt and a generation)."""
    done: dict[str, tuple[torch.nn.Module, Path]] = {}

    def get(family: str) -> tuple[torch.nn.Module, Path]:
        if family not in done:
            folder = tmp_path_factory.mktemp(family)
            model = build(family)
            model.save_pretrained(folder / "source")
            export_llm_to_tract(folder / "export", local_dir=folder / "source")
            done[family] = model, folder / "export"
        return done[family]

    return get


def zero_states(spec: dict, past: int = 0) -> list[np.ndarray]:
    """The cache inputs of a prompt as ``io_spec.json`` describes them: empty keys and values, zero states."""
    return [np.zeros([past if s == PAST else s for s in i["shape"]], dtype=np.float32) for i in spec["inputs"][1:]]


@pytest.mark.parametrize("family", FAMILIES)
def test_long_prompt_at_once_or_in_pieces_gives_transformers_logits(exported, family: str):
    """A prompt longer than a chunk, run in tract at once and in two pieces (the second on the states
    and caches the first returned), gives the logits transformers computes for the whole prompt."""
    model, out = exported(family)
    spec = json.loads((out / "model" / "io_spec.json").read_text())
    vocab = model.config.get_text_config().vocab_size
    ids = torch.randint(0, vocab, (1, LONG), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(input_ids=ids).logits[:, -1:].float()
    tract = TractModel(out / "model" / "model.nnef.tgz")
    whole = tract.run([ids.numpy(), *zero_states(spec)])
    first = tract.run([ids[:, :40].numpy(), *zero_states(spec)])
    pieces = tract.run([ids[:, 40:].numpy(), *first[1:]])
    check_outputs([expected], [whole[0]], tolerance="approximate", names=["logits at once"])
    check_outputs([expected], [pieces[0]], tolerance="approximate", names=["logits in two pieces"])
    for got_whole, got_pieces, entry in zip(whole[1:], pieces[1:], spec["outputs"][1:]):
        assert got_whole.shape == got_pieces.shape, entry["name"]
        np.testing.assert_allclose(got_whole, got_pieces, rtol=1e-3, atol=1e-4, err_msg=entry["name"])


@pytest.mark.parametrize("family", FAMILIES)
def test_states_are_graph_inputs_and_outputs_named_in_io_spec(exported, family: str):
    """io_spec.json names each layer's states (fixed shapes, zeros at the prompt) beside the keys and
    values of its attention layers, in the graph's order; token-by-token recurrences are loops, one per layer."""
    _, out = exported(family)
    spec = json.loads((out / "model" / "io_spec.json").read_text())
    caches = spec["inputs"][1:]
    states = [c for c in caches if c["kind"] in ("conv", "recurrent")]
    keys = [c for c in caches if c["kind"] in ("key", "value")]
    assert states, "the states are graph inputs"
    assert all(PAST not in c["shape"] for c in states) and all(c["shape"][2] == PAST for c in keys)
    assert [(c["layer"], c["kind"]) for c in caches] == sorted(
        ((c["layer"], c["kind"]) for c in caches),
        key=lambda lk: (lk[0], ["key", "value", "conv", "recurrent"].index(lk[1])),
    )
    assert [c["name"] for c in caches] == [f"in_cache_{c['kind']}_{c['layer']}" for c in caches]
    assert [c["name"] for c in spec["outputs"][1:]] == [f"out_cache_{c['kind']}_{c['layer']}" for c in caches]
    assert [c["shape"] for c in spec["outputs"][1:] if c["kind"] in ("conv", "recurrent")] == [
        c["shape"] for c in states
    ]
    assert ("P" in spec["symbols"]) == bool(keys)
    prompt = np.load(out / "tests" / "prompt_inputs.npz")
    for c in states:
        assert not prompt[c["name"]].any(), f"{c['name']} is zeros before the prompt"
    with tarfile.open(out / "model" / "model.nnef.tgz") as archive:
        member = archive.extractfile("graph.nnef")
        assert member is not None
        graph = member.read().decode()
    loops = graph.count("tract_core_scan(")
    recurrent_layers = len({c["layer"] for c in states if c["kind"] == "recurrent"})
    assert loops == recurrent_layers, "one loop over the tokens per recurrent layer"


def test_rewritten_layers_compute_what_transformers_computes():
    """The token-by-token recurrences give the logits of transformers' chunked forms, on a prompt longer
    than a chunk and after a cached prefix."""
    rewritten_families = (
        ("qwen3_next", DeltaRuleScan),
        ("kimi_linear", DeltaRuleScan),
        ("mamba", StateScan),
        ("mamba2", StateScan),
        ("zamba", StateScan),  # a scan per head
    )
    for family, scan in rewritten_families:
        reference, rewritten = build(family), build(family)
        assert rewrite_recurrences(rewritten) > 0
        assert any(isinstance(m, scan) for m in rewritten.modules()), family
        ids = torch.randint(0, 100, (1, LONG), generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            want = reference(input_ids=ids).logits
            got = rewritten(input_ids=ids).logits
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4, msg=family)


def test_state_layout_rules():
    """States have no past axis, keys and values have one; a prompt's states are zeros; a model of states
    only knows no position."""
    conv = CacheTensor(0, "conv", (1, 8, 4))
    state = CacheTensor(0, "recurrent", (1, 8, 16), dtype=torch.float32)
    layout = CacheLayout(1, (conv, state))
    assert not layout.has_past and layout.past_length([torch.zeros(1, 8, 4), torch.zeros(1, 8, 16)]) == 0
    empty = layout.random(0, torch.float16, seed=0)
    assert [t.dtype for t in empty] == [torch.float16, torch.float32] and not any(t.any() for t in empty)
    assert all(t.any() for t in layout.random(3, torch.float16, seed=0))
    assert layout.input_names == ["input_ids", "in_cache_conv_0", "in_cache_recurrent_0"]
    assert CacheTensor(2, "conv", (1, 8, 4), state=1).name == "conv1_2"
    with pytest.raises(InvalidArgumentError, match="a state has no 'P' axis"):
        CacheTensor(0, "conv", (1, 8, PAST))
    with pytest.raises(InvalidArgumentError, match="keys and values have a 'P' axis"):
        CacheTensor(0, "key", (1, 2, 4))
    with pytest.raises(InvalidArgumentError, match="keys go with values"):
        CacheLayout(1, (CacheTensor(0, "key", (1, 2, PAST, 4)),))
