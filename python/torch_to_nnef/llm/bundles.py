"""Test bundles of an export: PyTorch's inputs and outputs saved as ``.npz``, and the ``io_spec.json`` of the graph.

The bundles hold a prompt step (empty caches), a step with a past, and a greedy generation run
in PyTorch (:func:`torch_generation`); the same steps are what the verification compares tract
with.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torch_to_nnef.check.targets import TractNNEF
from torch_to_nnef.llm.cache_layout import PAST, CacheLayout, CacheTensor
from torch_to_nnef.llm.staging import ARCHIVE_NAME, Layout
from torch_to_nnef.llm.wrapper import CausalLMGraph

DTYPE_NAMES = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}
"""The names ``io_spec.json`` gives float types."""

__all__ = [
    "Step",
    "random_caches",
    "random_token_ids",
    "run_torch",
    "torch_generation",
    "write_bundles",
    "write_io_spec",
]


def random_caches(layout: CacheLayout, past: int, dtype: torch.dtype, seed: int) -> list[torch.Tensor]:
    """Random cache tensors of ``layout`` holding ``past`` tokens, seeded by ``seed`` (``past = 0``: empty caches)."""
    return layout.random(past, dtype, seed)


def random_token_ids(vocab: int, length: int, seed: int) -> torch.Tensor:
    """Random ``[1, length]`` token ids below ``vocab``, seeded by ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (1, length), generator=generator, dtype=torch.int64)


def run_torch(wrapper: CausalLMGraph, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """PyTorch's outputs of ``wrapper`` for the graph's ``inputs``."""
    wrapper.eval()
    with torch.no_grad():
        return list(wrapper(*inputs))


@dataclass
class Step:
    """One comparison of the verification: PyTorch's outputs for the graph's inputs.

    The inputs are given whole (``inputs``), or as new tokens run on the caches tract returned at
    the step before (``ids``).
    """

    label: str
    expected: list[torch.Tensor]
    inputs: Sequence[torch.Tensor] = ()
    ids: torch.Tensor | None = None


def torch_generation(
    wrapper: CausalLMGraph, prompt: torch.Tensor, empty: list[torch.Tensor], new_tokens: int
) -> tuple[list[Step], list[int]]:
    """PyTorch's prompt step (``P = 0``) and greedy generation of ``new_tokens`` tokens.

    Each step is run on the caches of the one before.

    Returns:
        The steps (for the test bundles, and for the verification, which runs them on tract's own
        caches), and the generated tokens: PyTorch's greedy choices drive both runs, so that a near
        tie between two logits cannot send them down different paths.
    """
    steps: list[Step] = []
    ids, caches = prompt, list(empty)
    generated: list[int] = []
    for step in range(new_tokens + 1):
        expected = run_torch(wrapper, [ids, *caches])
        if step == 0:
            steps.append(Step("prompt", expected, inputs=[prompt, *empty]))
        else:
            steps.append(Step(f"generation step {step}", expected, ids=ids))
        token = int(expected[0][0, -1].float().argmax())
        generated.append(token)
        ids = torch.tensor([[token]], dtype=torch.int64)
        caches = expected[1:]
    return steps, generated


def _npz(path: Path, names: Sequence[str], tensors: Sequence[torch.Tensor]) -> None:
    """Saves ``tensors`` in the ``.npz`` file ``path``, each under its name of ``names``."""
    arrays: dict[str, Any] = {n: t.detach().cpu().numpy() for n, t in zip(names, tensors)}
    np.savez(path, **arrays)


def write_bundles(
    tests: Path, steps: Sequence[Step], generated: list[int], input_names: list[str], output_names: list[str]
) -> None:
    """Writes the test bundles into the folder ``tests``.

    They are the prompt step's and the first generation step's inputs and outputs, and the whole
    greedy generation (``generation.npz``: the prompt, the generated tokens, and each step's last
    logits).
    """
    prompt, first = steps[0], steps[1]
    _npz(tests / "prompt_inputs.npz", input_names, prompt.inputs)
    _npz(tests / "prompt_outputs.npz", output_names, prompt.expected)
    assert first.ids is not None
    _npz(tests / "prompt_with_past_inputs.npz", input_names, [first.ids, *prompt.expected[1:]])
    _npz(tests / "prompt_with_past_outputs.npz", output_names, first.expected)
    np.savez(
        tests / "generation.npz",
        prompt_ids=prompt.inputs[0].numpy(),
        generated_ids=np.array([generated], dtype=np.int64),
        logits=torch.cat([s.expected[0][:, -1].float() for s in steps]).numpy(),
    )


def write_io_spec(
    path: Path,
    layout: Layout,
    caches: CacheLayout,
    float_type: str,
    cache_type: str,
    vocab: int,
    num_logits_to_keep: int,
    target: TractNNEF,
) -> None:
    """Writes ``io_spec.json``: the graph's inputs and outputs, and where the archive and the bundles are.

    Each cache input and output gives its shape (``P`` on the axis of the cached tokens, ``P+S`` in
    the outputs; a state's shape is fixed), its float type, its layer and its kind (``key``,
    ``value``, ``conv`` or ``recurrent``; a state also gives its index among the layer's states of
    that kind).
    """
    kept: int | str = num_logits_to_keep if num_logits_to_keep else "S"

    def cache_entry(tensor: CacheTensor, name: str, past: str) -> dict[str, Any]:
        dtype = cache_type if tensor.dtype is None else DTYPE_NAMES[tensor.dtype]
        entry = {"name": name, "dtype": dtype, "shape": tensor.spec(past), "layer": tensor.layer, "kind": tensor.kind}
        if tensor.is_state:
            entry["state"] = tensor.state
        return entry

    symbols = {"S": "tokens given at this step"}
    if caches.has_past:
        symbols["P"] = "tokens already in the caches (0 for a prompt)"

    tests = {
        step: [(layout.tests / f"{step}_{kind}.npz").as_posix() for kind in ("inputs", "outputs")]
        for step in ("prompt", "prompt_with_past")
    }
    document = {
        "layout": layout.struct,
        "paths": "relative to the export folder",
        "archive": (layout.model / ARCHIVE_NAME).as_posix(),
        "tract_version": target.version,
        "symbols": symbols,
        "inputs": [{"name": "input_ids", "dtype": "i64", "shape": [1, "S"]}]
        + [cache_entry(t, t.input_name, PAST) for t in caches.tensors],
        "outputs": [{"name": "logits", "dtype": float_type, "shape": [1, kept, vocab]}]
        + [cache_entry(t, t.output_name, f"{PAST}+S") for t in caches.tensors],
        "tests": tests,
        "generation": (layout.tests / "generation.npz").as_posix(),
    }
    if any(t.is_state for t in caches.tensors):
        document["states"] = "conv and recurrent states are zeros before a prompt; each step returns them for the next"
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
