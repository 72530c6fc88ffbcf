"""The harness shared by the op tables: a module around a function, and the check of one case."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nnef
import pytest
import torch
from torch import nn

from torch_to_nnef import KhronosNNEF, TractNNEF, export_model_to_nnef

Case = tuple[str, nn.Module, tuple[torch.Tensor, ...], bool]
"""(id, module, inputs, also for Khronos)."""


class Fn(nn.Module):
    """A module around a function of any number of tensors."""

    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.fn(*xs)


def r(*shape: int) -> torch.Tensor:
    return torch.randn(*shape)


def op_params(cases: Sequence[Case]) -> list[Any]:
    """One pytest param per case and target (``tract-<id>``, ``khronos-<id>``)."""
    return [
        pytest.param(target, module, inputs, id=f"{target}-{name}")
        for name, module, inputs, khronos in cases
        for target in (["tract", "khronos"] if khronos else ["tract"])
    ]


def export_and_check(tmp_path: Path, target: str, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Path:
    """Exports with check_io (tract against PyTorch; for Khronos also the Khronos interpreter when
    installed) and, for Khronos, parses the result with the independent Khronos parser.
    """
    tgt = TractNNEF(check_io=True) if target == "tract" else KhronosNNEF(check_io=True)
    path = export_model_to_nnef(module.eval(), inputs, tmp_path / "m.nnef", tgt)
    if target == "khronos":
        graph = nnef.load_graph(str(path))
        assert len(graph.inputs) == len(inputs)
    return path
