"""KhronosNNEF's two modes: what the Khronos tools read (the default) and the NNEF 1.0.5 text alone
(``strict_spec=True``), checked against the tools themselves and against the README's lists.
"""

from __future__ import annotations

import re
from pathlib import Path

import nnef
import pytest
import torch
from nnef_tools.interpreter.pytorch.nnef_operators import Operators
from torch import nn

from torch_to_nnef import KhronosNNEF, export_model_to_nnef
from torch_to_nnef.errors import TranslationError
from torch_to_nnef.nnef.builder import SPEC_OPERATORS, TOOLS_OPERATORS

README = Path(__file__).resolve().parents[1] / "README.md"


def _listed_after(text: str, marker: str) -> set[str]:
    start = text.index(marker)
    end = text.find("\n- ", start)
    return set(re.findall(r"`([a-z0-9_]+)`", text[start:end]))


def test_the_readme_lists_what_each_mode_writes() -> None:
    text = README.read_text()
    assert _listed_after(text, "`KhronosNNEF(strict_spec=True)`") - {"torch_to_nnef"} == set(SPEC_OPERATORS)
    assert _listed_after(text, "- `KhronosNNEF()` writes those") == set(TOOLS_OPERATORS)


def test_the_operator_sets_are_the_khronos_tools() -> None:
    """Every operator either mode writes is one the Khronos parser defines; the ones the tools
    added are also run by their interpreter."""
    assert not SPEC_OPERATORS & TOOLS_OPERATORS
    assert (SPEC_OPERATORS | TOOLS_OPERATORS) <= set(nnef.StandardOperations)
    assert TOOLS_OPERATORS <= set(Operators)


def _operators(path: Path) -> set[str]:
    return {op.name for op in nnef.load_graph(str(path)).operations}


class Mixed(nn.Module):
    """Booleans reduced, a float comparison, a GELU and a residual: the strict text can write all
    of it, with other operators than the tools'."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.gelu(self.linear(x))
        keep = (y > 0).any(dim=1, keepdim=True) & (x > -3).all(dim=1, keepdim=True)
        return torch.where(keep, y + x, x).round()


def test_strict_spec_writes_only_the_specification_text(tmp_path: Path) -> None:
    x = torch.randn(4, 6)
    tools = export_model_to_nnef(Mixed(), x, tmp_path / "tools.nnef", KhronosNNEF(check_io=True))
    strict = export_model_to_nnef(Mixed(), x, tmp_path / "strict.nnef", KhronosNNEF(strict_spec=True, check_io=True))
    assert {"any_reduce", "all_reduce"} <= _operators(tools)
    assert _operators(strict) <= SPEC_OPERATORS


class Embedded(nn.Module):
    """Four operations the 1.0.5 text cannot write (a gather, two casts, a tangent) and one more
    (integer bit shifts) that neither Khronos mode writes."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(10, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        scaled = torch.tan(self.embedding(ids)) * ids.float()[..., None]
        return scaled + (ids << 1).float()[..., None]


def test_every_refused_operation_is_named_at_once(tmp_path: Path) -> None:
    ids = torch.tensor([[1, 7, 3]])
    with pytest.raises(TranslationError) as err:
        export_model_to_nnef(Embedded(), ids, tmp_path / "m.nnef", KhronosNNEF(strict_spec=True))
    message = str(err.value)
    assert message.startswith("5 operations cannot be written for KhronosNNEF:"), message
    for kind in ("aten::embedding", "aten::tan", "aten::_to_copy", "aten::__lshift__"):
        assert kind in message, (kind, message)
    assert message.count("test_khronos.py:") == 5  # each with the line of the model's source
    assert "KhronosNNEF() writes it" in message and "TractNNEF writes it" in message
    assert not (tmp_path / "m.nnef").exists()
    with pytest.raises(TranslationError, match=r"^<top> .*aten::__lshift__ needs bit shifts.*TractNNEF writes it"):
        export_model_to_nnef(Embedded(), ids, tmp_path / "m.nnef", KhronosNNEF())


@pytest.mark.parametrize(
    ("dtype", "values"),
    [
        (torch.int64, torch.tensor([-2.7, -0.5, 0.0, 0.5, 2.7, 1e6])),
        (torch.int32, torch.tensor([-2.7, -0.5, 0.0, 0.5, 2.7, 1e6])),
        (torch.bool, torch.tensor([-2.7, 0.0, 0.5, 0.0, 2.7, -0.0])),
        (torch.bool, torch.tensor([-3, 0, 1, 0, 2, 7])),
    ],
    ids=["i64", "i32", "bool", "int-to-bool"],
)
def test_casts_for_the_khronos_tools_truncate_as_pytorch(tmp_path: Path, dtype: torch.dtype, values) -> None:
    class Cast(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            y = x.to(dtype)
            return y, y.to(torch.float32) * 2

    path = export_model_to_nnef(Cast(), values, tmp_path / "m.nnef", KhronosNNEF(check_io=True))
    assert "cast" in _operators(path) or (dtype == torch.bool and values.dtype.is_floating_point)


class Fn(nn.Module):
    def __init__(self, fn) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.fn = fn

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.fn(*xs)


INDEX = torch.tensor([[0, 3, 1, 3], [4, 4, 2, 0]])


@pytest.mark.parametrize(
    ("fn", "inputs", "said"),
    [
        (
            lambda x, s: x.scatter_reduce(1, INDEX, s, "prod"),
            (torch.randn(2, 5), torch.randn(2, 4)),
            "aten::scatter_reduce of f32 needs a product of the updates",
        ),
        (
            lambda x, s: x.scatter_add(1, INDEX, s),
            (torch.randint(-5, 5, (2, 5)), torch.randint(-5, 5, (2, 4))),
            "aten::scatter_add of i64 needs integer arithmetic",
        ),
    ],
    ids=["product", "integers"],
)
def test_scatters_the_tools_cannot_compose_are_refused(tmp_path: Path, fn, inputs, said: str) -> None:
    with pytest.raises(
        TranslationError, match=rf"{re.escape(said)}, which the Khronos tools lack: TractNNEF writes it"
    ):
        export_model_to_nnef(Fn(fn), inputs, tmp_path / "m.nnef", KhronosNNEF())
    assert not (tmp_path / "m.nnef").exists()


def test_the_specification_text_has_no_scatter(tmp_path: Path) -> None:
    module = Fn(lambda x, s: x.scatter_add(1, INDEX, s))
    inputs = (torch.randn(2, 5), torch.randn(2, 4))
    with pytest.raises(TranslationError, match=r"aten::scatter_add needs a scatter, which the NNEF 1\.0\.5 text lacks"):
        export_model_to_nnef(module, inputs, tmp_path / "m.nnef", KhronosNNEF(strict_spec=True))
    path = export_model_to_nnef(module, inputs, tmp_path / "m.nnef", KhronosNNEF(check_io=True))
    assert "gather" not in _operators(path) and "any_reduce" in _operators(path)  # composed from a mask
