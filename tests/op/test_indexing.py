"""Indexing (``op/indexing.py``): slices and selects, gathers and index, scatters and index_put, masked fills,
embeddings and bags, sorting and top-k, and the data-dependent forms refused, each checked numerically.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from cases_common import Named, quiet
from torch import nn

from harness import Fn, Fn1, OpCase, export_and_check, op_params, r
from torch_to_nnef import KhronosNNEF, TractModel, TractNNEF, export_model_to_nnef
from torch_to_nnef.errors import TranslationError

aten = torch.ops.aten


class Bag(nn.Module):
    """nn.EmbeddingBag called with offsets (and per-sample weights) or on 2-D indices."""

    def __init__(self, mode: str, include_last_offset: bool = False, padding_idx: int | None = None) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(10, 4, mode=mode, include_last_offset=include_last_offset, padding_idx=padding_idx)

    def forward(self, indices: torch.Tensor, offsets: torch.Tensor | None = None, weights: torch.Tensor | None = None):
        return self.bag(indices, offsets, per_sample_weights=weights)


BAG_INDICES = torch.tensor([1, 2, 4, 5, 4, 3, 2, 9])
BAG_OFFSETS = torch.tensor([0, 2, 5])


def distinct(*shape: int) -> torch.Tensor:
    """Values without ties (sorting is then unambiguous)."""
    n = 1
    for d in shape:
        n *= d
    return (torch.randperm(n).float() - n / 2).reshape(shape) / 3.0


INDEX = torch.tensor([[0, 1, 4, 0], [3, 2, 0, 3]])
ROWS = torch.tensor([2, 0])


class Put(nn.Module):
    """``x[index] = v`` (or ``+=``) on a copy, with the index a constant of the module."""

    def __init__(self, index: tuple[object, ...], accumulate: bool = False) -> None:
        super().__init__()
        self.index = index
        self.accumulate = accumulate

    def forward(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        if self.accumulate:
            y[self.index] += v
        else:
            y[self.index] = v
        return y


CASES: list[OpCase] = [
    OpCase("slice", Fn(lambda x: x[:, 1:3]), (r(2, 5),), covers=("aten::slice",), khronos=True),
    OpCase(
        "slice-step-negative",
        Fn(lambda x: x[..., ::2] + x[..., -3:]),
        (r(2, 3, 6),),
        covers=("aten::slice",),
        khronos=True,
    ),
    OpCase("select", Fn(lambda x: x[:, 1] * x[-1]), (r(3, 3),), covers=("aten::select",), khronos=True),
    OpCase(
        "embedding",
        nn.Embedding(10, 4),
        (torch.tensor([[1, 2, 9], [0, 0, 3]]),),
        covers=("aten::embedding",),
        khronos=True,
    ),
    OpCase(
        "index-select",
        Fn(lambda x, i: torch.index_select(x, 1, i)),
        (r(3, 5), torch.tensor([4, 0, 2])),
        covers=("aten::index_select",),
        khronos=True,
    ),
    OpCase(
        "masked-fill-inf",
        Fn(lambda x: x.masked_fill(x > 0.5, float("-inf")).softmax(-1) + x.masked_fill(x < 0, 2.0)),
        (r(3, 7),),
        covers=("aten::masked_fill",),
        khronos=True,
    ),
    # masked scatter
    OpCase(
        "masked-scatter",
        Fn(lambda x, s: x.masked_scatter(x > 0, s)),
        (r(3, 4), r(4, 4)),
        covers=("aten::masked_scatter",),
        khronos=True,
    ),
    OpCase(
        "masked-scatter-broadcast",
        Fn(lambda x, s: x.masked_scatter(torch.tensor([True, False, True, True]), s)),
        (r(3, 4), r(12)),
        covers=("aten::masked_scatter",),
        khronos=True,
    ),
    # other kinds and overloads of the core ATen set
    OpCase(
        "unsafe-index",
        Fn(lambda x: aten._unsafe_index(x, [torch.tensor([2, 0, 3])])),
        (r(4, 3),),
        covers=("aten::_unsafe_index",),
        khronos=True,
    ),
    # bags of embeddings (offsets read at run time)
    OpCase("embedding-bag-sum", Bag("sum"), (BAG_INDICES, BAG_OFFSETS), covers=("aten::embedding_bag",), khronos=True),
    OpCase(
        "embedding-bag-mean-empty-bag",
        Bag("mean"),
        (BAG_INDICES, torch.tensor([0, 3, 3])),
        covers=("aten::embedding_bag",),
        khronos=True,
    ),
    OpCase("embedding-bag-max", Bag("max"), (BAG_INDICES, BAG_OFFSETS), covers=("aten::embedding_bag",), khronos=True),
    OpCase(
        "embedding-bag-last-offset-padding",
        Bag("mean", True, 4),
        (BAG_INDICES, torch.tensor([0, 5, 8])),
        covers=("aten::embedding_bag",),
        khronos=True,
    ),
    OpCase(
        "embedding-bag-per-sample-weights",
        Bag("sum"),
        (BAG_INDICES, BAG_OFFSETS, r(8)),
        covers=("aten::embedding_bag",),
        khronos=True,
    ),
    OpCase(
        "embedding-bag-2d", Bag("mean"), (BAG_INDICES.reshape(2, 4),), covers=("aten::embedding_bag",), khronos=True
    ),
    # sorting
    OpCase("sort-last", Fn(lambda x: torch.sort(x)), (distinct(3, 5),), covers=("aten::sort",), khronos=True),
    OpCase(
        "sort-dim0-descending",
        Fn(lambda x: torch.sort(x, dim=0, descending=True)),
        (distinct(4, 3),),
        covers=("aten::sort",),
        khronos=True,
    ),
    OpCase(
        "sort-stable-ties",
        Fn(lambda x: torch.sort(x, dim=1, stable=True)),
        (torch.tensor([[2.0, 1.0, 2.0, 1.0]]),),
        covers=("aten::sort",),
        khronos=True,
    ),
    OpCase(
        "argsort", Fn(lambda x: torch.argsort(x, dim=-1)), (distinct(3, 5),), covers=("aten::argsort",), khronos=True
    ),
    OpCase(
        "argsort-descending-dim1",
        Fn(lambda x: torch.argsort(x, dim=1, descending=True)),
        (distinct(2, 4, 3),),
        covers=("aten::argsort",),
        khronos=True,
    ),
    OpCase("topk-largest", Fn(lambda x: torch.topk(x, 2)), (distinct(3, 5),), covers=("aten::topk",), khronos=True),
    OpCase(
        "topk-smallest-dim0",
        Fn(lambda x: torch.topk(x, 3, dim=0, largest=False)),
        (distinct(4, 3),),
        covers=("aten::topk",),
        khronos=True,
    ),
    OpCase(
        "topk-values-only",
        Fn(lambda x: x.topk(1, dim=1).values * 2),
        (distinct(2, 5, 3),),
        covers=("aten::topk",),
        khronos=True,
    ),
    OpCase(
        "topk-smallest-values-last",
        Fn(lambda x: x.topk(3, largest=False).values),
        (distinct(2, 5),),
        covers=("aten::topk",),
        khronos=True,
    ),
    OpCase(
        "sort-values",
        Fn(lambda x: torch.sort(x, dim=0, descending=True).values),
        (distinct(4, 3),),
        covers=("aten::sort",),
        khronos=True,
    ),
    OpCase(
        "sort-values-ties",
        Fn(lambda x: torch.sort(x).values),
        (torch.tensor([[2.0, -1.0, 2.0, 0.5, -1.0]]),),
        covers=("aten::sort",),
        khronos=True,
    ),
    # scatters
    OpCase(
        "scatter-src",
        Fn(lambda x, s: x.scatter(1, INDEX[:, :3], s)),
        (r(2, 5), r(2, 3)),
        covers=("aten::scatter", "aten::slice"),
        khronos=True,
    ),
    OpCase(
        "scatter-src-larger",
        Fn(lambda x, s: x.scatter(1, INDEX[:, :3], s)),
        (r(2, 5), r(3, 4)),
        covers=("aten::scatter", "aten::slice"),
        khronos=True,
    ),
    OpCase(
        "scatter-value",
        Fn(lambda x: x.scatter(1, INDEX[:, :3], 2.5)),
        (r(2, 5),),
        covers=("aten::scatter", "aten::slice"),
        khronos=True,
    ),
    OpCase(
        "scatter-dim0",
        Fn(lambda x, s: x.scatter(0, torch.tensor([[1, 0, 1]]), s)),
        (r(2, 3), r(1, 3)),
        covers=("aten::scatter",),
        khronos=True,
    ),
    OpCase(
        "scatter-add",
        Fn(lambda x, s: x.scatter_add(1, INDEX, s)),
        (r(2, 5), r(2, 4)),
        covers=("aten::scatter_add",),
        khronos=True,
    ),
    OpCase(
        "scatter-reduce-multiply",
        Fn(quiet(lambda x, s: x.scatter(1, INDEX, s, reduce="multiply"))),
        (r(2, 5), r(2, 4)),
        covers=("aten::scatter",),
        khronos=False,
    ),
    *[
        OpCase(
            f"scatter-reduce-{reduce}",
            Fn(
                lambda x, s, red=reduce: (
                    x.scatter_reduce(1, INDEX, s, red, include_self=True),
                    x.scatter_reduce(1, INDEX, s, red, include_self=False),
                )
            ),
            (r(2, 5), r(2, 4)),
            covers=("aten::scatter_reduce",),
            khronos=reduce != "prod",  # the Khronos tools have no product of several updates
        )
        for reduce in ("sum", "prod", "amax", "amin", "mean")
    ],
    OpCase(
        "scatter-add-int",
        Fn(lambda x, s: x.scatter_add(1, INDEX, s)),
        (torch.randint(-5, 5, (2, 5)), torch.randint(-5, 5, (2, 4))),
        covers=("aten::scatter_add",),
        khronos=False,
    ),
    OpCase("index-put-rows", Put((ROWS,)), (r(3, 4), r(2, 4)), covers=("aten::index_put",), khronos=True),
    OpCase("index-put-rows-broadcast", Put((ROWS,)), (r(3, 4), r(4)), covers=("aten::index_put",), khronos=True),
    OpCase(
        "index-put-columns",
        Put((slice(None), torch.tensor([0, 3]))),
        (r(3, 4), r(3, 2)),
        covers=("aten::index_put",),
        khronos=True,
    ),
    OpCase(
        "index-put-pairs",
        Put((torch.tensor([0, 2, 1]), torch.tensor([1, -1, 0]))),
        (r(3, 4), r(3)),
        covers=("aten::index_put",),
        khronos=True,
    ),
    OpCase(
        "index-put-middle",
        Put((slice(None), torch.tensor([2, 0]))),
        (r(2, 3, 4), r(2, 2, 4)),
        covers=("aten::index_put",),
        khronos=True,
    ),
    OpCase(
        "index-put-accumulate",
        Fn(lambda x, v: x.index_put((torch.tensor([0, 2, 0]),), v, accumulate=True)),
        (r(3, 4), r(3, 4)),
        covers=("aten::index_put",),
        khronos=True,
    ),
    OpCase(
        "index-put-mask-scalar",
        Fn(lambda x: x.masked_fill(x > 0, 0.0).index_put((x < -0.5,), torch.tensor(7.0))),
        (r(3, 4),),
        covers=("aten::index_put", "aten::masked_fill"),
        khronos=True,
    ),
    OpCase(
        "index-copy",
        Fn(lambda x, s: x.index_copy(0, ROWS, s)),
        (r(3, 4), r(2, 4)),
        covers=("aten::index_copy",),
        khronos=True,
    ),
    OpCase(
        "index-copy-dim1",
        Fn(lambda x, s: x.index_copy(1, torch.tensor([3, 1]), s)),
        (r(2, 4, 3), r(2, 2, 3)),
        covers=("aten::index_copy",),
        khronos=True,
    ),
    OpCase(
        "index-add",
        Fn(lambda x, s: x.index_add(0, torch.tensor([2, 0, 2]), s)),
        (r(3, 4), r(3, 4)),
        covers=("aten::index_add",),
        khronos=True,
    ),
    OpCase(
        "index-add-alpha",
        Fn(lambda x, s: x.index_add(1, torch.tensor([0, 2]), s, alpha=-0.5)),
        (r(3, 4), r(3, 2)),
        covers=("aten::index_add",),
        khronos=True,
    ),
    # narrow (slices)
    OpCase(
        "narrow",
        Fn(lambda x: x.narrow(1, 1, 3) * x.narrow(-2, 0, 3)),
        (r(2, 5, 3),),
        covers=("aten::slice",),
        khronos=True,
    ),
    OpCase("narrow-last", Fn(lambda x: x.narrow(-1, 2, 1)), (r(2, 5, 3),), covers=("aten::slice",), khronos=True),
    # gathers and indexing
    OpCase(
        "gather",
        Fn(lambda x, i: x.gather(1, i)),
        (r(3, 4), torch.tensor([[0, 3], [2, 2], [1, 0]])),
        covers=("aten::gather",),
        khronos=True,
    ),
    OpCase(
        "gather-dim0",
        Fn(lambda x, i: torch.gather(x, 0, i)),
        (r(3, 4), torch.tensor([[2, 0, 1, 1]])),
        covers=("aten::gather",),
        khronos=True,
    ),
    OpCase(
        "index", Fn(lambda x, i: x[i]), (r(4, 3), torch.tensor([3, 0, 0, 2])), covers=("aten::index",), khronos=True
    ),
    OpCase(
        "index-negative",
        Fn(lambda x, i: x[i]),
        (r(4, 3), torch.tensor([-1, 0, -4])),
        covers=("aten::index",),
        khronos=True,
    ),
    OpCase(
        "index-axis1",
        Fn(lambda x, i: x[:, i]),
        (r(2, 4, 3), torch.tensor([1, 3])),
        covers=("aten::index",),
        khronos=True,
    ),
    OpCase(
        "index-2d-indices",
        Fn(lambda x, i: x[..., i]),
        (r(2, 4), torch.tensor([[0, 3], [1, 1]])),
        covers=("aten::index",),
        khronos=True,
    ),
    OpCase(
        "index-pair",
        Fn(lambda x, i, j: x[i, j]),
        (r(3, 4), torch.tensor([0, 2, -1]), torch.tensor([3, 1, -2])),
        covers=("aten::index",),
        khronos=True,
    ),
    OpCase(
        "index-pair-adjacent",
        Fn(lambda x, i, j: x[:, i, j]),
        (r(2, 3, 4), torch.tensor([0, 2]), torch.tensor([1, 3])),
        covers=("aten::index",),
        khronos=True,
    ),
    OpCase(
        "index-pair-separated",
        Fn(lambda x, i, j: x[i, :, j]),
        (r(2, 3, 4), torch.tensor([1, 0]), torch.tensor([3, 1])),
        covers=("aten::index",),
        khronos=True,
    ),
    OpCase(
        "index-broadcast",
        Fn(lambda x, i, j: x[i[:, None], j]),
        (r(3, 4), torch.tensor([0, 2]), torch.tensor([1, 3, 0])),
        covers=("aten::index",),
        khronos=True,
    ),
]


@pytest.mark.parametrize(("target", "case"), op_params(CASES))
def test_op_table(tmp_path: Path, target: str, case: OpCase) -> None:
    """Each case exported and checked in tract (Khronos cases also by the Khronos parser and interpreter),
    translating the operators it covers."""
    export_and_check(tmp_path, target, case)


def test_topk_dynamic_axis(tmp_path: Path) -> None:
    """Sorting along a dynamic axis: k is the symbol."""

    class Sort(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.sort(x, dim=1, descending=True)

    target = TractNNEF(check_io=True, dynamic_axes={"x": {1: "S"}})
    path = export_model_to_nnef(Sort(), (distinct(2, 6),), tmp_path / "m.nnef", target, input_names=["x"])
    assert "tract_core_topk" in (path / "graph.nnef").read_text()


def test_argsort_for_the_specification_text_is_refused(tmp_path: Path) -> None:
    """Indices need the tools' cast: refused by the strict mode, which names the target that writes them."""
    with pytest.raises(TranslationError, match=r"aten::argsort gives indices, which need a cast.*KhronosNNEF\(\)"):
        export_model_to_nnef(
            Fn(lambda x: torch.argsort(x)), (r(3, 4),), tmp_path / "m.nnef", KhronosNNEF(strict_spec=True)
        )


class MaskedSelect(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.masked_select(x, x > 0)


class NonZero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nonzero(x)


class MaskIndex(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[x > 0]


@pytest.mark.parametrize(
    "module,what",
    [(MaskedSelect(), "masked_select"), (NonZero(), "nonzero"), (MaskIndex(), "boolean mask")],
    ids=["masked_select", "nonzero", "boolean-mask-index"],
)
def test_data_dependent_refused(tmp_path: Path, module: nn.Module, what: str) -> None:
    """The error names the user's own line and says why."""
    with pytest.raises(TranslationError, match=rf"test_indexing\.py:\d+ in forward: .*{what}.*data"):
        export_model_to_nnef(module, (r(3, 4),), tmp_path / "m.nnef", TractNNEF())


def test_boolean_mask_assignment_of_many_values_refused(tmp_path: Path) -> None:
    class Assign(nn.Module):
        def forward(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return x.index_put((x > 0,), v)

    with pytest.raises(TranslationError, match=r"torch\.where\(mask, v, x\)"):
        export_model_to_nnef(Assign(), (r(2, 2).abs() + 0.1, r(4)), tmp_path / "m.nnef", TractNNEF())


def test_a_large_masked_scatter_for_khronos_is_refused(tmp_path: Path) -> None:
    """The Khronos form counts positions with an [n, n] triangle: past its limit, TractNNEF is named."""
    module = Fn(lambda x, s: x.masked_scatter(x > 0, s))
    with pytest.raises(TranslationError, match=r"counts the positions before each of 2050 .*TractNNEF writes it"):
        export_model_to_nnef(module, (r(2, 1025), r(2050)), tmp_path / "m.nnef", KhronosNNEF())
    assert not (tmp_path / "m.nnef").exists()


@pytest.mark.parametrize(
    ("name", "module", "inputs"),
    [
        ("gather", Fn(lambda x, i: x.gather(1, i)), (r(3, 4), torch.tensor([[0, 3], [2, 2], [1, 0]]))),
        ("index", Fn(lambda x, i: x[i]), (r(4, 3), torch.tensor([3, 0]))),
    ],
)
def test_the_specification_text_refuses_gathers(
    tmp_path: Path, name: str, module: nn.Module, inputs: tuple[torch.Tensor, ...]
):
    """The 1.0.5 text has no gather: refused by name, pointing at the targets that write it."""
    with pytest.raises(TranslationError, match=r"gather, which the NNEF 1\.0\.5 text lacks") as err:
        export_model_to_nnef(module, inputs, tmp_path / "m.nnef", KhronosNNEF(strict_spec=True))
    assert f"): aten::{name} needs" in str(err.value) and "KhronosNNEF() writes it" in str(err.value)
    assert not (tmp_path / "m.nnef").exists()


DYNAMIC: list[tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor], tuple[torch.Tensor, torch.Tensor]]] = [
    ("scatter-add", lambda x, s: x.scatter_add(1, torch.zeros_like(s, dtype=torch.long), s), (r(3, 5), r(3, 4))),
    ("index-copy", lambda x, s: x.index_copy(1, torch.tensor([3, 0]), s), (r(3, 5), r(3, 2))),
    ("topk", lambda x, y: torch.topk(x + y, 2, dim=1).values, (distinct(3, 5), r(3, 5))),
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
    (
        "index-pair-dynamic",
        lambda x: x[torch.tensor([1, 0, 1]), torch.tensor([-1, 2, 0])] + x[:, torch.tensor([0, -1])].sum(),
        (2, 5),
    ),
    ("gather-dynamic", lambda x: x.gather(1, torch.tensor([[0, 1], [1, 0]])) + x.unbind(0)[1].sum(), (2, 5)),
    # starts of Python's max over a size (sympy's Max, as MPT slices its ALiBi table), one of them
    # never positive and written with a leading minus (-2*S - 1): the whole axis
    (
        "slice-max-bounds",
        lambda x: x[:, max(0, x.size(1) - 3) :].sum(1) + x[:, max(0, -2 * x.size(1) - 1) :].mean(1),
        (2, 5),
    ),
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
