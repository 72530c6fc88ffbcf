"""The harness of the op tables: a case names the ATen operators it covers, and its check exports it,
verifies it numerically and asserts that those operators were translated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nnef
import pytest
import torch
from torch import nn

from torch_to_nnef import KhronosNNEF, TractNNEF, export_model_to_nnef
from torch_to_nnef.export import observe_exports


@dataclass(frozen=True)
class OpCase:
    """One case of an op table."""

    id: str
    """Readable and unique within its table (the test ids are ``<target>-<id>``)."""
    module: nn.Module
    inputs: tuple[torch.Tensor, ...]
    covers: tuple[str, ...]
    """The ATen operator kinds (``"aten::erf"``) this case exists to test: every export of the case
    must translate each of them."""
    khronos: bool
    """Also exported for KhronosNNEF (always for TractNNEF)."""


class Fn(nn.Module):
    """A module around a function of any number of tensors."""

    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.fn(*xs)


class Fn1(nn.Module):
    """One named input (dynamic axes need a fixed signature)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def r(*shape: int) -> torch.Tensor:
    return torch.randn(*shape)


def ints(*shape: int, low: int = -9, high: int = 10) -> torch.Tensor:
    return torch.randint(low, high, shape)


def op_params(cases: Sequence[OpCase]) -> list[Any]:
    """One pytest param ``(target, case)`` per case and target, with the id ``tract-<id>`` or ``khronos-<id>``."""
    ids = [case.id for case in cases]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    assert not repeated, f"case ids used twice in one table: {repeated}"
    return [
        pytest.param(target, case, id=f"{target}-{case.id}")
        for case in cases
        for target in (["tract", "khronos"] if case.khronos else ["tract"])
    ]


def export_checked(tmp_path: Path, target: str, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Path:
    """Exports with check_io (tract against PyTorch; for Khronos also the Khronos interpreter when
    installed) and, for Khronos, parses the result with the independent Khronos parser.
    """
    tgt = TractNNEF(check_io=True) if target == "tract" else KhronosNNEF(check_io=True)
    path = export_model_to_nnef(module.eval(), inputs, tmp_path / "m.nnef", tgt)
    if target == "khronos":
        graph = nnef.load_graph(str(path))
        assert len(graph.inputs) == len(inputs)
    return path


def export_and_check(tmp_path: Path, target: str, case: OpCase) -> Path:
    """The check of one case for one target (``"tract"`` or ``"khronos"``): :func:`export_checked`,
    then every operator of ``case.covers`` must be among the kinds that export translated.
    """
    translated: set[str] = set()

    def observe(graph: Any, exported: Any, inference_target: Any) -> None:
        translated.update(node.kind for node in graph.nodes)

    remove = observe_exports(observe)
    try:
        path = export_checked(tmp_path, target, case.module, case.inputs)
    finally:
        remove()
    missing = [kind for kind in case.covers if kind not in translated]
    assert not missing, f"{case.id}: {missing} not translated; the export translated {sorted(translated)}"
    return path
