"""Reductions (``op/reductions.py``): sums, means, products, extrema and their indices, variances, norms, any/all,
cumulative sums and products, logsumexp, each checked numerically.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from harness import Fn, Fn1, OpCase, export_and_check, ints, op_params, r
from torch_to_nnef import TractModel, TractNNEF, export_model_to_nnef

aten = torch.ops.aten


def with_nans(x: torch.Tensor) -> torch.Tensor:
    """``x`` where positive, NaN elsewhere (0 / 0: NNEF has no NaN literal)."""
    positive = torch.relu(x)
    return positive / positive * x


CASES: list[OpCase] = [
    OpCase("mean", Fn(lambda x: x.mean(1)), (r(2, 3, 4),), covers=("aten::mean",), khronos=True),
    OpCase(
        "mean-keepdim", Fn(lambda x: x.mean((1, 2), keepdim=True)), (r(2, 3, 4),), covers=("aten::mean",), khronos=True
    ),
    OpCase("sum", Fn(lambda x: x.sum(-1)), (r(2, 3, 4),), covers=("aten::sum",), khronos=True),
    OpCase(
        "min-max-other",
        Fn(lambda a, b: torch.min(a, b) + torch.max(a, b) * 2),
        (r(2, 4), r(4)),
        covers=("aten::max", "aten::min"),
        khronos=True,
    ),
    OpCase(
        "min-max-other-int",
        Fn(lambda a, b: torch.min(a, torch.full_like(a, 3)) - torch.max(a, b)),
        (torch.randint(-5, 5, (3, 4)), torch.randint(-5, 5, (3, 1))),
        covers=("aten::max", "aten::min"),
        khronos=False,  # the specification's min and max take scalar tensors
    ),
    OpCase(
        "amax-amin",
        Fn(lambda x: x.amax(1) - x.amin(-1, keepdim=True).squeeze(-1)),
        (r(2, 5),),
        covers=("aten::amax", "aten::amin"),
        khronos=True,
    ),
    OpCase(
        "max-dim",
        Fn(lambda x: x.max(1).values + x.min(1)[0]),
        (r(2, 5),),
        covers=("aten::max", "aten::min"),
        khronos=True,
    ),
    OpCase(
        "max-indices", Fn(lambda x: x.max(-1, keepdim=True).indices), (r(2, 5),), covers=("aten::max",), khronos=True
    ),
    OpCase("max-all", Fn(lambda x: x.max()), (r(2, 5),), covers=("aten::max",), khronos=True),
    OpCase("argmax", Fn(lambda x: x.argmax(1)), (r(3, 7),), covers=("aten::argmax",), khronos=True),
    OpCase("argmin-flat", Fn(lambda x: x.argmin()), (r(3, 7),), covers=("aten::argmin",), khronos=True),
    OpCase("var", Fn(lambda x: x.var(1)), (r(3, 7),), covers=("aten::var",), khronos=True),
    OpCase(
        "std-keepdim-biased",
        Fn(lambda x: x.std(-1, keepdim=True, correction=0)),
        (r(3, 7),),
        covers=("aten::std",),
        khronos=True,
    ),
    # reductions with several outputs
    OpCase("var-mean", Fn(lambda x: torch.var_mean(x, 1)), (r(3, 4, 2),), covers=("aten::var_mean",), khronos=True),
    OpCase(
        "std-mean-keepdim",
        Fn(lambda x: torch.std_mean(x, (0, 2), correction=0, keepdim=True)),
        (r(3, 4, 2),),
        covers=("aten::std_mean",),
        khronos=True,
    ),
    OpCase(
        "var-unbiased-false",
        Fn(lambda x: x.var(1, unbiased=False) + x.std(unbiased=False)),
        (r(3, 4),),
        covers=("aten::std", "aten::var"),
        khronos=True,
    ),
    OpCase(
        "var-positional-keepdim",
        Fn(lambda x: torch.var(x, 0, False, True) * x),
        (r(3, 4),),
        covers=("aten::var",),
        khronos=True,
    ),
    OpCase("aminmax", Fn(lambda x: torch.aminmax(x, dim=1)), (r(3, 4),), covers=("aten::aminmax",), khronos=True),
    OpCase("aminmax-all", Fn(lambda x: torch.aminmax(x)), (r(3, 4),), covers=("aten::aminmax",), khronos=True),
    # norms of differences
    OpCase("dist", Fn(torch.dist), (r(3, 4), r(3, 4)), covers=("aten::dist",), khronos=True),
    OpCase("dist-p3", Fn(lambda a, b: torch.dist(a, b, 3)), (r(3, 4), r(1, 4)), covers=("aten::dist",), khronos=True),
    # reductions that skip values
    OpCase("nansum", Fn(lambda x: torch.nansum(with_nans(x), 1)), (r(3, 4),), covers=("aten::nansum",), khronos=True),
    OpCase(
        "nanmean-keepdim",
        Fn(lambda x: torch.nanmean(with_nans(x), 0, keepdim=True)),
        (r(3, 4),),
        covers=("aten::nanmean",),
        khronos=True,
    ),
    OpCase("nansum-all", Fn(lambda x: torch.nansum(with_nans(x))), (r(3, 4),), covers=("aten::nansum",), khronos=True),
    OpCase(
        "count-nonzero",
        Fn(lambda x: torch.count_nonzero(torch.relu(x), 1)),
        (r(3, 4),),
        covers=("aten::count_nonzero",),
        khronos=True,
    ),
    OpCase(
        "count-nonzero-all-int",
        Fn(torch.count_nonzero),
        (ints(3, 4, low=-1, high=2),),
        covers=("aten::count_nonzero",),
        khronos=True,
    ),
    # other kinds and overloads of the core ATen set
    OpCase("mean-all", Fn(lambda x: aten.mean.default(x)), (r(3, 4),), covers=("aten::mean",), khronos=True),
    OpCase(
        "var-correction",
        Fn(lambda x: aten.var.correction(x, [1], correction=0, keepdim=True)),
        (r(3, 4),),
        covers=("aten::var",),
        khronos=True,
    ),
    OpCase("any-dims", Fn(lambda x: aten.any.dims(x > 1, [0, 2])), (r(3, 4, 2),), covers=("aten::any",), khronos=True),
    # cumulative product
    OpCase("cumprod-last", Fn(lambda x: torch.cumprod(x, -1)), (r(3, 7),), covers=("aten::cumprod",), khronos=True),
    OpCase("cumprod-dim0", Fn(lambda x: torch.cumprod(x, 0)), (r(5, 2, 3),), covers=("aten::cumprod",), khronos=True),
    OpCase(
        "cumprod-zero",
        Fn(lambda x: torch.cumprod(x, 1)),
        (torch.tensor([[1.5, -2.0, 0.0, 3.0, -1.0]]),),
        covers=("aten::cumprod",),
        khronos=True,
    ),
    # a count of booleans (int64) along an axis
    OpCase("sum-of-booleans", Fn(lambda x: (x > 0).sum(1)), (r(3, 6),), covers=("aten::sum",), khronos=True),
    # reductions
    OpCase("prod-dim", Fn(lambda x: x.prod(1)), (r(2, 5, 3),), covers=("aten::prod",), khronos=True),
    OpCase("prod-all", Fn(lambda x: x.prod()), (r(2, 3) + 0.5,), covers=("aten::prod",), khronos=True),
    OpCase(
        "prod-keepdim-negative-dim",
        Fn(lambda x: x.prod(-1, keepdim=True)),
        (r(2, 3, 4),),
        covers=("aten::prod",),
        khronos=True,
    ),
    OpCase(
        "prod-with-zero",
        Fn(lambda x: x.prod(0)),
        (torch.tensor([[1.5, 0.0, -2.0], [-3.0, 4.0, -1.0]]),),
        covers=("aten::prod",),
        khronos=True,
    ),
    OpCase("prod-int", Fn(lambda x: x.prod(1)), (ints(3, 4, low=-3, high=4),), covers=("aten::prod",), khronos=False),
    OpCase("norm-2", Fn(lambda x: x.norm(dim=-1)), (r(3, 5),), covers=("aten::linalg_vector_norm",), khronos=True),
    OpCase(
        "norm-fro-all",
        Fn(lambda x: torch.norm(x, p="fro")),
        (r(3, 5),),
        covers=("aten::linalg_vector_norm",),
        khronos=True,
    ),
    OpCase(
        "norm-1-keepdim",
        Fn(lambda x: x.norm(p=1, dim=1, keepdim=True)),
        (r(3, 5, 2),),
        covers=("aten::linalg_vector_norm",),
        khronos=True,
    ),
    OpCase(
        "norm-inf",
        Fn(lambda x: torch.linalg.norm(x, ord=float("inf"), dim=-1)),
        (r(3, 5),),
        covers=("aten::linalg_norm",),
        khronos=True,
    ),
    OpCase(
        "norm-minus-inf-and-0",
        Fn(lambda x: torch.linalg.vector_norm(x, ord=-float("inf"), dim=0)),
        (r(3, 5),),
        covers=("aten::linalg_vector_norm",),
        khronos=True,
    ),
    OpCase(
        "norm-p3-two-dims",
        Fn(lambda x: torch.norm(x, p=3, dim=(0, 2))),
        (r(3, 4, 5),),
        covers=("aten::linalg_vector_norm",),
        khronos=True,
    ),
    OpCase(
        "matrix-norm",
        Fn(lambda x: torch.linalg.matrix_norm(x) + torch.linalg.matrix_norm(x, ord=1)),
        (r(2, 3, 4),),
        covers=("aten::linalg_matrix_norm",),
        khronos=True,
    ),
    OpCase(
        "matrix-norm-inf",
        Fn(lambda x: torch.linalg.norm(x, ord=float("inf")) + torch.linalg.norm(x, ord=-1)),
        (r(3, 4),),
        covers=("aten::linalg_norm",),
        khronos=True,
    ),
    OpCase(
        "any-all-dims",
        Fn(lambda x: (x > 0.5).any(1) & (x > -1.5).all(-1)),
        (r(4, 6),),
        covers=("aten::all", "aten::any"),
        khronos=True,
    ),
    OpCase(
        "any-all-global",
        Fn(lambda x: torch.stack([(x > 0).any(), (x > 2).all(), x.any()])),
        (r(3, 4),),
        covers=("aten::all", "aten::any"),
        khronos=True,
    ),
    OpCase(
        "any-keepdim-int",
        Fn(lambda x: x.any(0, keepdim=True) | x.all(dim=(0, 1), keepdim=True)),
        (ints(3, 4),),
        covers=("aten::all", "aten::any"),
        khronos=False,
    ),
    OpCase("cumsum", Fn(lambda x: x.cumsum(1)), (r(2, 5, 3),), covers=("aten::cumsum",), khronos=True),
    OpCase(
        "cumsum-last-and-vector",
        Fn(lambda x, v: x.cumsum(-1).sum(0) + v.cumsum(0)),
        (r(3, 4), r(4)),
        covers=("aten::cumsum", "aten::sum"),
        khronos=True,
    ),
    OpCase(
        "cumsum-int-and-bool",
        Fn(lambda x: x.cumsum(-1) + torch.cumsum(x > 0, 0)),
        (ints(3, 4),),
        covers=("aten::cumsum",),
        khronos=False,
    ),
    OpCase("logsumexp", Fn(lambda x: x.logsumexp(1)), (r(2, 5, 3) * 10,), covers=("aten::logsumexp",), khronos=True),
    OpCase(
        "logsumexp-keepdim-two-dims",
        Fn(lambda x: x.logsumexp((0, -1), keepdim=True)),
        (r(2, 5, 3),),
        covers=("aten::logsumexp",),
        khronos=True,
    ),
    OpCase(
        "logsumexp-minus-inf",
        Fn(lambda x: x.masked_fill(x > 0.5, float("-inf")).logsumexp(-1)),
        (torch.cat([torch.ones(1, 4), r(2, 4)]),),
        covers=("aten::logsumexp",),
        khronos=True,
    ),
]


@pytest.mark.parametrize(("target", "case"), op_params(CASES))
def test_op_table(tmp_path: Path, target: str, case: OpCase) -> None:
    """Each case exported and checked in tract (Khronos cases also by the Khronos parser and interpreter),
    translating the operators it covers."""
    export_and_check(tmp_path, target, case)


DYNAMIC_CASES: list[tuple[str, Callable[[torch.Tensor], torch.Tensor], tuple[int, ...]]] = [
    ("cumsum-logsumexp-dynamic", lambda x: x.cumsum(1) + x.logsumexp(1, keepdim=True), (2, 5)),
    ("norm-prod-dynamic", lambda x: x.norm(dim=1) + x.prod(1) + x.amax(1), (2, 5)),
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
