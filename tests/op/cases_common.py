"""What the op topic tables share: helpers of their cases, and the cases of older torch forms."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import torch_to_nnef.capture.torch_export as capture_module
from harness import OpCase, export_and_check
from torch_to_nnef.capture.torch_export import capture


def quiet(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with PyTorch's deprecation warnings silenced (the deprecated forms are what is tested)."""

    def call(*xs: torch.Tensor) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return fn(*xs)

    return call


class Named(nn.Module):
    """Two named inputs ``x`` and ``y`` (dynamic axes need a fixed signature)."""

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.fn(x, y)


@dataclass(frozen=True)
class OlderForm(OpCase):
    """A case whose captured graph is rewritten into the form another torch release leaves (same values)."""

    rewrite: Callable[[Any], None]
    """The rewrite of the captured graph."""
    form: str
    """The kind the rewrite yields."""


def retarget(old: Any, new: Any, args: Callable[[torch.fx.Node], tuple[Any, ...]]) -> Callable[[Any], None]:
    """A rewrite of a captured graph: every call of ``old`` becomes ``new`` with the arguments given."""

    def rewrite(graph: Any) -> None:
        for n in graph.nodes:
            if n.target is old:
                n.args, n.kwargs = args(n), {}
                n.target = new

    return rewrite


def check_older_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, case: OlderForm) -> None:
    """Captures ``case`` with its rewrite applied after torch's decompositions, then exports and checks it."""
    original = torch.export.ExportedProgram.run_decompositions

    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        exported = original(self, *args, **kwargs)
        case.rewrite(exported.graph)
        return exported

    monkeypatch.setattr(torch.export.ExportedProgram, "run_decompositions", run)
    monkeypatch.setattr(capture_module, "_translatable_as_is", lambda exported: False)  # decomposed, rewritten
    graph, _ = capture(case.module, case.inputs, [f"input_{i}" for i in range(len(case.inputs))])
    assert case.form in {n.kind for n in graph.nodes}
    export_and_check(tmp_path, target, case)
