"""Products and distances (``op/linalg.py``): linear, matmul in every rank, mm/mv/dot/outer/inner, products with an
added term, einsum, trace, cdist/pdist, cosine similarity and pairwise distance, each checked numerically.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from cases_common import Named
from torch import nn

from harness import Fn, Fn1, OpCase, export_and_check, ints, op_params, r
from torch_to_nnef import KhronosNNEF, TractModel, TractNNEF, export_model_to_nnef
from torch_to_nnef.errors import TranslationError

CASES: list[OpCase] = [
    OpCase("linear-2d", nn.Linear(6, 4), (r(3, 6),), covers=("aten::linear",), khronos=True),
    OpCase("linear-3d", nn.Linear(6, 4), (r(2, 3, 6),), covers=("aten::linear",), khronos=True),
    OpCase("linear-no-bias", nn.Linear(6, 4, bias=False), (r(3, 6),), covers=("aten::linear",), khronos=True),
    OpCase("matmul", Fn(torch.matmul), (r(2, 3, 4), r(2, 4, 5)), covers=("aten::matmul",), khronos=True),
    OpCase("matmul-broadcast", Fn(torch.matmul), (r(2, 3, 4), r(4, 5)), covers=("aten::matmul",), khronos=True),
    # distances
    OpCase("cdist", Fn(torch.cdist), (r(2, 3, 4), r(2, 5, 4)), covers=("aten::cdist",), khronos=True),
    OpCase(
        "cdist-p1", Fn(lambda a, b: torch.cdist(a, b, p=1.0)), (r(3, 4), r(5, 4)), covers=("aten::cdist",), khronos=True
    ),
    OpCase(
        "cdist-pinf",
        Fn(lambda a, b: torch.cdist(a, b, p=math.inf)),
        (r(3, 4), r(5, 4)),
        covers=("aten::cdist",),
        khronos=True,
    ),
    OpCase(
        "cdist-p3", Fn(lambda a, b: torch.cdist(a, b, p=3.0)), (r(3, 4), r(5, 4)), covers=("aten::cdist",), khronos=True
    ),
    OpCase(
        "cdist-forward",
        Fn(lambda a, b: torch.ops.aten._cdist_forward(a, b, 2.0, None)),
        (r(3, 4), r(2, 4)),
        covers=("aten::_cdist_forward",),
        khronos=True,
    ),
    OpCase("pdist", Fn(F.pdist), (r(5, 3),), covers=("aten::pdist",), khronos=True),
    OpCase(
        "pdist-forward-p1",
        Fn(lambda x: torch.ops.aten._pdist_forward(x, 1.0)),
        (r(4, 3),),
        covers=("aten::_pdist_forward",),
        khronos=True,
    ),
    # similarities, norms of differences
    OpCase(
        "cosine-similarity-3d",
        Fn(F.cosine_similarity),
        (r(3, 4, 2), r(3, 4, 2)),
        covers=("aten::cosine_similarity",),
        khronos=True,
    ),
    OpCase(
        "cosine-similarity-broadcast",
        Fn(lambda a, b: F.cosine_similarity(a, b, dim=-1)),
        (r(3, 4), r(1, 4)),
        covers=("aten::cosine_similarity",),
        khronos=True,
    ),
    OpCase(
        "pairwise-distance-p2",
        Fn(F.pairwise_distance),
        (r(3, 4), r(3, 4)),
        covers=("aten::pairwise_distance",),
        khronos=True,
    ),
    OpCase(
        "pairwise-distance-p1-keepdim-broadcast",
        Fn(lambda a, b: F.pairwise_distance(a, b, 1.0, keepdim=True)),
        (r(3, 4), r(4)),
        covers=("aten::pairwise_distance",),
        khronos=True,
    ),
    # products with an added term, trace
    OpCase("addmv", Fn(torch.addmv), (r(3), r(3, 4), r(4)), covers=("aten::addmv",), khronos=True),
    OpCase(
        "addmv-scaled",
        Fn(lambda b, m, v: torch.addmv(b, m, v, beta=0.5, alpha=2.0)),
        (r(1), r(3, 4), r(4)),
        covers=("aten::addmv",),
        khronos=True,
    ),
    OpCase("addr", Fn(torch.addr), (r(3, 4), r(3), r(4)), covers=("aten::addr",), khronos=True),
    OpCase(
        "addr-beta0",
        Fn(lambda b, u, v: torch.addr(b, u, v, beta=0, alpha=3)),
        (r(3, 4), r(3), r(4)),
        covers=("aten::addr",),
        khronos=True,
    ),
    OpCase("trace", Fn(torch.trace), (r(3, 4),), covers=("aten::trace",), khronos=True),
    OpCase("trace-int", Fn(torch.trace), (ints(4, 3),), covers=("aten::trace",), khronos=False),
    # other kinds and overloads of the core ATen set
    OpCase("mm", Fn(torch.mm), (r(2, 3), r(3, 4)), covers=("aten::mm",), khronos=True),
    OpCase("vdot", Fn(torch.vdot), (r(5), r(5)), covers=("aten::vdot",), khronos=True),
    # similarity and distance
    OpCase(
        "cosine-similarity",
        Fn(F.cosine_similarity),
        (r(3, 4), r(3, 4)),
        covers=("aten::cosine_similarity",),
        khronos=True,
    ),
    OpCase(
        "cosine-similarity-dim-broadcast",
        Fn(lambda a, b: F.cosine_similarity(a, b, dim=-1)),
        (r(2, 3, 4), r(4)),
        covers=("aten::cosine_similarity",),
        khronos=True,
    ),
    OpCase(
        "pairwise-distance",
        Fn(F.pairwise_distance),
        (r(3, 4), r(3, 4)),
        covers=("aten::pairwise_distance",),
        khronos=True,
    ),
    OpCase(
        "pairwise-distance-p1-keepdim",
        Fn(lambda a, b: F.pairwise_distance(a, b, p=1, keepdim=True)),
        (r(3, 4), r(3, 4)),
        covers=("aten::pairwise_distance",),
        khronos=True,
    ),
    OpCase(
        "pairwise-distance-pinf",
        Fn(lambda a, b: F.pairwise_distance(a, b, p=float("inf"))),
        (r(2, 3, 4), r(2, 3, 4)),
        covers=("aten::pairwise_distance",),
        khronos=True,
    ),
    # batched products with an added term
    OpCase(
        "baddbmm",
        Fn(lambda s, a, b: torch.baddbmm(s, a, b, beta=0.5, alpha=2.0)),
        (r(3, 1, 5), r(3, 4, 2), r(3, 2, 5)),
        covers=("aten::baddbmm",),
        khronos=True,
    ),
    # products
    OpCase("matmul-vector-matrix", Fn(torch.matmul), (r(4), r(4, 3)), covers=("aten::matmul",), khronos=True),
    OpCase("matmul-matrix-vector", Fn(torch.matmul), (r(3, 4), r(4)), covers=("aten::matmul",), khronos=True),
    OpCase("matmul-vector-vector", Fn(torch.matmul), (r(4), r(4)), covers=("aten::matmul",), khronos=True),
    OpCase("matmul-ranks-2-and-4", Fn(torch.matmul), (r(3, 4), r(2, 2, 4, 5)), covers=("aten::matmul",), khronos=True),
    OpCase(
        "matmul-batched-vector",
        Fn(lambda a, v: a @ v + (v @ a.transpose(1, 2))),
        (r(2, 3, 3), r(3)),
        covers=("aten::matmul",),
        khronos=True,
    ),
    OpCase(
        "mv-dot-outer",
        Fn(lambda a, v: torch.mv(a, v) + torch.dot(v, v) + torch.outer(v, v).sum(0)),
        (r(3, 3), r(3)),
        covers=("aten::dot", "aten::mv", "aten::outer"),
        khronos=True,
    ),
    OpCase("inner", Fn(torch.inner), (r(2, 4), r(3, 4)), covers=("aten::inner",), khronos=True),
    OpCase(
        "einsum-bmm",
        Fn(lambda a, b: torch.einsum("bij,bjk->bik", a, b)),
        (r(2, 3, 4), r(2, 4, 5)),
        covers=("aten::einsum",),
        khronos=True,
    ),
    OpCase(
        "einsum-attention",
        Fn(lambda q, k: torch.einsum("bhqd,bhkd->bhqk", q, k)),
        (r(2, 3, 4, 8), r(2, 3, 5, 8)),
        covers=("aten::einsum",),
        khronos=True,
    ),
    OpCase(
        "einsum-transpose", Fn(lambda a: torch.einsum("ij->ji", a)), (r(3, 4),), covers=("aten::einsum",), khronos=True
    ),
    OpCase(
        "einsum-dot", Fn(lambda a, b: torch.einsum("i,i->", a, b)), (r(5), r(5)), covers=("aten::einsum",), khronos=True
    ),
    OpCase(
        "einsum-rowwise-dot",
        Fn(lambda a, b: torch.einsum("bi,bi->b", a, b)),
        (r(3, 5), r(3, 5)),
        covers=("aten::einsum",),
        khronos=True,
    ),
    OpCase(
        "einsum-outer",
        Fn(lambda a, b: torch.einsum("i,j->ij", a, b)),
        (r(3), r(4)),
        covers=("aten::einsum",),
        khronos=True,
    ),
    OpCase(
        "einsum-implicit-ellipsis",
        Fn(lambda a, b: torch.einsum("...ij,...jk", a, b)),
        (r(2, 3, 4), r(2, 4, 5)),
        covers=("aten::einsum",),
        khronos=True,
    ),
    OpCase(
        "einsum-multi-contract",
        Fn(lambda a, b: torch.einsum("bijk,bjkl->bli", a, b)),
        (r(2, 3, 4, 5), r(2, 4, 5, 6)),
        covers=("aten::einsum",),
        khronos=True,
    ),
    OpCase(
        "einsum-chain-sum",
        Fn(lambda a, b, c: torch.einsum("ij,jk,kl->i", a, b, c)),
        (r(2, 3), r(3, 4), r(4, 5)),
        covers=("aten::einsum",),
        khronos=True,
    ),
    OpCase(
        "einsum-reduce", Fn(lambda a: torch.einsum("bij->j", a)), (r(2, 3, 4),), covers=("aten::einsum",), khronos=True
    ),
    OpCase(
        "einsum-transposed-operands",
        Fn(lambda a, b: torch.einsum("ji,kj->ik", a, b)),
        (r(4, 3), r(5, 4)),
        covers=("aten::einsum",),
        khronos=True,
    ),
    OpCase(
        "einsum-weights-values",
        Fn(lambda w, v: torch.einsum("bhqk,bhkd->bhqd", w, v)),
        (r(2, 3, 4, 5), r(2, 3, 5, 8)),
        covers=("aten::einsum",),
        khronos=True,
    ),
    # an operand repeating a letter: its diagonal on those axes (integers: tract only)
    *[
        OpCase(f"einsum-{name}", Fn(lambda *xs, eq=eq: torch.einsum(eq, *xs)), inputs, ("aten::einsum",), khronos)
        for name, eq, inputs, khronos in [
            ("diagonal", "ii->i", (r(4, 4),), True),
            ("trace", "ii", (r(4, 4),), True),
            ("trace-explicit", "ii->", (r(4, 4),), True),
            ("batched-diagonal", "bii->bi", (r(2, 4, 4),), True),
            ("batched-trace", "bjii->bj", (r(2, 3, 4, 4),), True),
            ("leading-diagonal", "iij->ij", (r(3, 3, 5),), True),
            ("triple-diagonal", "iii->i", (r(3, 3, 3),), True),
            ("two-diagonals", "ijij->ji", (r(3, 4, 3, 4),), True),
            ("diagonal-times-vector", "ii,i->i", (r(4, 4), r(4)), True),
            ("batched-diagonal-outer", "bii,bj->bij", (r(2, 4, 4), r(2, 5)), True),
            ("diagonal-contracted", "bii,bi->b", (r(2, 4, 4), r(2, 4)), True),
            ("diagonal-int", "bii->bi", (ints(2, 4, 4),), False),
            ("trace-int", "ii", (ints(4, 4),), False),
        ]
    ],
]


@pytest.mark.parametrize(("target", "case"), op_params(CASES))
def test_op_table(tmp_path: Path, target: str, case: OpCase) -> None:
    """Each case exported and checked in tract (Khronos cases also by the Khronos parser and interpreter),
    translating the operators it covers."""
    export_and_check(tmp_path, target, case)


DYNAMIC: list[tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor], tuple[torch.Tensor, torch.Tensor]]] = [
    ("cosine-similarity", lambda x, y: F.cosine_similarity(x, y, dim=1), (r(3, 4), r(3, 4))),
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
    ("einsum-dynamic", lambda x: torch.einsum("bs,cs->bc", x, x) + torch.einsum("bs->s", x).sum(), (2, 5)),
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


def test_einsum_diagonal_of_dynamic_axes(tmp_path: Path) -> None:
    """The repeated letter on two axes of the same symbol: the mask of the diagonal is computed in tract
    (``range(S) == range(S)``), checked at a second size of S.
    """

    def fn(x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bii->bi", x) * torch.einsum("bii", x)[:, None]

    path = export_model_to_nnef(
        Fn1(fn),
        torch.randn(2, 4, 4),
        tmp_path / "m.nnef",
        TractNNEF(check_io=True, dynamic_axes={"x": {1: "S", 2: "S"}}),
        input_names=["x"],
    )
    assert "tract_core_range" in (path / "graph.nnef").read_text()
    x = torch.randn(2, 7, 7)
    (got,) = TractModel(path).run([x])
    torch.testing.assert_close(torch.from_numpy(got), fn(x), atol=1e-4, rtol=1e-4)


def test_einsum_integer_diagonal_needs_tract(tmp_path: Path) -> None:
    """The diagonal of an integer operand sums integers, which the NNEF specification cannot: refused for Khronos."""
    with pytest.raises(TranslationError, match="i64 needs integer arithmetic"):
        export_model_to_nnef(Fn(lambda a: torch.einsum("ii", a)), (ints(4, 4),), tmp_path / "m.nnef", KhronosNNEF())
