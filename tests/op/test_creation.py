"""Creation (``op/creation.py``): arange, zeros/ones/full and their ``new_``/``_like`` forms, empty tensors filled,
linspace, eye, diag, triangles, each checked numerically, over static and dynamic sizes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from cases_common import Named

from harness import Fn, Fn1, OpCase, export_and_check, ints, op_params, r
from torch_to_nnef import TractModel, TractNNEF, export_model_to_nnef

CASES: list[OpCase] = [
    OpCase(
        "full-like",
        Fn(lambda x: torch.full_like(x, 3.5) + torch.zeros_like(x) * torch.ones_like(x)),
        (r(2, 3),),
        covers=("aten::full_like", "aten::ones_like", "aten::zeros_like"),
        khronos=True,
    ),
    # empty tensors, filled
    OpCase(
        "empty-strided-filled",
        Fn(lambda x: torch.empty_strided((2, 3), (3, 1)).fill_(1.5) + x),
        (r(2, 3),),
        covers=("aten::empty_strided", "aten::fill"),
        khronos=True,
    ),
    OpCase(
        "empty-like-copied",
        Fn(lambda x: torch.empty_like(x).copy_(x) * 2),
        (r(2, 3),),
        covers=("aten::empty_like",),
        khronos=True,
    ),
    # creation
    OpCase("diag-vector", Fn(lambda x: torch.diag(x)), (r(4),), covers=("aten::diag",), khronos=True),
    OpCase("diag-vector-above", Fn(lambda x: torch.diag(x, 2)), (r(3),), covers=("aten::diag",), khronos=True),
    OpCase("diag-vector-below", Fn(lambda x: torch.diag(x, -1)), (r(3),), covers=("aten::diag",), khronos=True),
    OpCase("diag-matrix", Fn(lambda x: torch.diag(x, 1)), (r(3, 4),), covers=("aten::diag",), khronos=True),
    OpCase("eye", Fn(lambda x: x + torch.eye(3)), (r(3, 3),), covers=("aten::eye",), khronos=True),
    OpCase("eye-rect", Fn(lambda x: x * torch.eye(3, 4)), (r(3, 4),), covers=("aten::eye",), khronos=True),
    OpCase(
        "linspace-added",
        Fn(lambda x: x + torch.linspace(-1, 2, 4)),
        (r(3, 4),),
        covers=("aten::linspace",),
        khronos=True,
    ),
    OpCase(
        "arange",
        Fn(lambda x: x * torch.arange(5, dtype=torch.float32)),
        (r(2, 5),),
        covers=("aten::arange",),
        khronos=True,
    ),
    OpCase("arange-int", Fn(lambda x: x + torch.arange(5)), (ints(2, 5),), covers=("aten::arange",), khronos=False),
    OpCase(
        "arange-start-step",
        Fn(lambda x: torch.arange(1, 14, 3) * x),
        (ints(2, 5),),
        covers=("aten::arange",),
        khronos=False,
    ),
    OpCase(
        "arange-float",
        Fn(lambda x: x + torch.arange(-1.0, 1.5, 0.5)),
        (r(2, 5),),
        covers=("aten::arange",),
        khronos=True,
    ),
    OpCase(
        "arange-negative-step",
        Fn(lambda x: x + torch.arange(4, -6, -2, dtype=torch.float32)),
        (r(2, 5),),
        covers=("aten::arange",),
        khronos=True,
    ),
    OpCase(
        "zeros-ones-full",
        Fn(lambda x: x + torch.zeros(2, 3) - torch.ones(3) * torch.full((2, 1), 2.5)),
        (r(2, 3),),
        covers=("aten::full", "aten::ones", "aten::zeros"),
        khronos=True,
    ),
    OpCase(
        "new-zeros-ones-full",
        Fn(lambda x: x.new_zeros(3) + x.new_ones(2, 1) + x.new_full((2, 3), -7.0)),
        (r(2, 3),),
        covers=("aten::new_full", "aten::new_ones", "aten::new_zeros"),
        khronos=True,
    ),
    OpCase(
        "full-int-bool",
        Fn(lambda x: x + torch.full((3,), -4, dtype=torch.int64) * torch.ones(2, 3, dtype=torch.int64)),
        (ints(2, 3),),
        covers=("aten::full", "aten::ones"),
        khronos=False,
    ),
    OpCase(
        "full-bool",
        Fn(lambda x: torch.where(torch.full((2, 3), True) & ~torch.zeros(3, dtype=torch.bool), x, 0.0)),
        (r(2, 3),),
        covers=("aten::full", "aten::zeros"),
        khronos=True,
    ),
    OpCase(
        "scalar-tensor",
        Fn(lambda x: x + torch.scalar_tensor(3.0)),
        (r(2, 3),),
        covers=("aten::scalar_tensor",),
        khronos=True,
    ),
    OpCase(
        "empty-fill-zero",
        Fn(lambda x: x + torch.empty(2, 3).fill_(1.5) + x.new_empty(3).zero_()),
        (r(2, 3),),
        covers=("aten::empty", "aten::fill", "aten::new_empty", "aten::zero"),
        khronos=True,
    ),
    OpCase(
        "linspace", Fn(lambda x: x * torch.linspace(-1, 1, 5)), (r(2, 5),), covers=("aten::linspace",), khronos=True
    ),
    # triangles
    OpCase("tril", Fn(torch.tril), (r(4, 5),), covers=("aten::tril",), khronos=True),
    OpCase(
        "triu-diagonal",
        Fn(lambda x: torch.triu(x, 1) + torch.triu(x, -2)),
        (r(2, 4, 5),),
        covers=("aten::triu",),
        khronos=True,
    ),
    OpCase(
        "tril-negative-diagonal", Fn(lambda x: torch.tril(x, -1)), (r(3, 5, 4),), covers=("aten::tril",), khronos=True
    ),
    OpCase("tril-int", Fn(lambda x: torch.tril(x, 1)), (ints(4, 4),), covers=("aten::tril",), khronos=True),
]


@pytest.mark.parametrize(("target", "case"), op_params(CASES))
def test_op_table(tmp_path: Path, target: str, case: OpCase) -> None:
    """Each case exported and checked in tract (Khronos cases also by the Khronos parser and interpreter),
    translating the operators it covers."""
    export_and_check(tmp_path, target, case)


DYNAMIC: list[tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor], tuple[torch.Tensor, torch.Tensor]]] = [
    ("eye", lambda x, y: torch.eye(x.shape[0]) @ x + y, (r(3, 4), r(3, 4))),
]


@pytest.mark.parametrize("fn,inputs", [pytest.param(f, i, id=n) for n, f, i in DYNAMIC])
def test_dynamic_batch(
    tmp_path: Path, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], inputs: tuple[torch.Tensor, torch.Tensor]
) -> None:
    """The first axis of both inputs dynamic: the graph is written with the symbol and checked by tract."""
    target = TractNNEF(check_io=True, dynamic_axes={"x": {0: "B"}, "y": {0: "B"}})
    path = export_model_to_nnef(Named(fn), inputs, tmp_path / "m.nnef", target, input_names=["x", "y"])
    assert "tract_symbol B" in (path / "graph.nnef").read_text()


DYNAMIC_CASES: list[tuple[str, Callable[[torch.Tensor], torch.Tensor], tuple[int, ...]]] = [
    ("arange-from-size", lambda x: x * torch.arange(x.size(1)).float(), (2, 5)),
    ("arange-start-step-from-size", lambda x: torch.arange(1, 2 * x.size(1) + 1, 2).float() * x, (2, 5)),
    ("arange-symbolic-start", lambda x: torch.arange(x.size(1), 2 * x.size(1)).float() * x, (2, 5)),
    ("arange-float-from-size", lambda x: x + torch.arange(x.size(1), dtype=torch.float32) * 0.5, (2, 5)),
    ("zeros-ones-symbolic", lambda x: x + torch.zeros(x.size(0), x.size(1)) + torch.ones(x.size(1)) * 2, (2, 5)),
    (
        "full-new-symbolic",
        lambda x: x.new_full((x.size(1),), 3.0) * x + x.new_zeros(x.shape) + x.new_ones(1, x.size(1)),
        (2, 5),
    ),
    ("tril-triu-dynamic", lambda x: torch.tril(x) + torch.triu(x, 2) * 3, (4, 5)),
]


@pytest.mark.parametrize(("fn", "shape"), [pytest.param(fn, shape, id=name) for name, fn, shape in DYNAMIC_CASES])
def test_dynamic_axis(tmp_path: Path, fn: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, ...]):
    """Symbolic sizes: check_io also runs the export at a second length of S."""
    path = export_model_to_nnef(
        Fn1(fn),
        torch.randn(*shape),
        tmp_path / "m.nnef",
        TractNNEF(check_io=True, dynamic_axes={"x": {1: "S"}}),
        input_names=["x"],
    )
    model = TractModel(path)
    assert model.inputs[0][2] == f"{shape[0]},S"
    x = torch.randn(shape[0], 11)
    (got,) = model.run([x])
    torch.testing.assert_close(torch.from_numpy(got), fn(x), atol=1e-4, rtol=1e-4)


def _t(*values: float, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, ...]:
    """0-d tensors (int64 for ints, float32 for floats, unless ``dtype`` says)."""
    return tuple(torch.tensor(v, dtype=dtype) for v in values)


SIZES_FROM_DATA: list[tuple[str, Callable[..., torch.Tensor], tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]] = [
    ("arange-three-tensors", lambda s, e, st: torch.arange(s, e, st), _t(2, 11, 3), _t(-4, 20, 5)),
    ("arange-negative-step", lambda s, e, st: torch.arange(s, e, st), _t(10, 1, -3), _t(7, -8, -2)),
    ("arange-float-step", lambda e: torch.arange(0.0, e, 0.5), _t(3.0), _t(4.75)),
    ("arange-float-tensors", lambda s, e, st: torch.arange(s, e, st), _t(0.5, 3.0, 0.25), _t(-1.0, 2.0, 0.1)),
    ("arange-int-bounds-float-step", lambda s, e: torch.arange(s, e, 0.5), _t(1, 4), _t(-2, 7)),
    ("arange-int32", lambda s, e: torch.arange(s, e), _t(2, 5, dtype=torch.int32), _t(-1, 9, dtype=torch.int32)),
    (
        "arange-dtype",
        lambda n: torch.arange(1, n, dtype=torch.float32) * 2 - torch.arange(1, n, dtype=torch.int32),
        _t(4),
        _t(9),
    ),
    ("arange-end-computed", lambda x: torch.arange(x.max()) * 2, (torch.tensor([3, 5]),), (torch.tensor([2, 9]),)),
    (
        "length-mask",
        lambda lengths: torch.arange(lengths.max())[None, :] < lengths[:, None],
        (torch.tensor([3, 5]),),
        (torch.tensor([2, 9]),),
    ),
]
"""Sizes from data: ``torch.arange`` of 0-d tensors (inputs, or computed), whose length comes from their values.
torch.export refuses them; the torch.jit.trace front-end keeps the bounds as tensors. Each case: the inputs of
the export, and other values that give another length."""


@pytest.mark.parametrize(("fn", "inputs", "others"), [pytest.param(f, i, o, id=n) for n, f, i, o in SIZES_FROM_DATA])
def test_sizes_from_data(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    fn: Callable[..., torch.Tensor],
    inputs: tuple[torch.Tensor, ...],
    others: tuple[torch.Tensor, ...],
):
    """Captured by torch.jit.trace after torch.export refuses them (the reason logged), checked in tract, then run
    in tract on the other values."""
    with caplog.at_level(logging.WARNING, logger="torch_to_nnef"):
        path = export_model_to_nnef(Fn(fn), inputs, tmp_path / "m.nnef", TractNNEF(check_io=True))
    assert any("capturing with torch.jit.trace instead" in rec.getMessage() for rec in caplog.records)
    (got,) = TractModel(path).run(list(others))
    expected = fn(*others)
    assert expected.shape != fn(*inputs).shape
    torch.testing.assert_close(torch.from_numpy(got), expected, atol=0, rtol=0)


def test_fill_value_from_a_tensor(tmp_path: Path):
    """``torch.full`` and ``new_full`` of a 0-d tensor value: the value is read at run time."""

    def fn(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.full((3,), v) + x.new_full((3,), v) * x

    path = export_model_to_nnef(Fn(fn), (r(3), torch.tensor(2.5)), tmp_path / "m.nnef", TractNNEF(check_io=True))
    x, v = r(3), torch.tensor(-4.0)
    (got,) = TractModel(path).run([x, v])
    torch.testing.assert_close(torch.from_numpy(got), fn(x, v))
