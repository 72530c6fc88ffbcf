"""Sampling, sorting, scattering, patches, elementwise extras and losses, each checked numerically in tract."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from optable import Case, Fn, export_and_check, op_params, r
from torch_to_nnef import KhronosNNEF, TractNNEF, export_model_to_nnef
from torch_to_nnef.errors import TranslationError
from torch_to_nnef.op import supported_kinds


def distinct(*shape: int) -> torch.Tensor:
    """Values without ties (sorting is then unambiguous)."""
    n = 1
    for d in shape:
        n *= d
    return (torch.randperm(n).float() - n / 2).reshape(shape) / 3.0


def grid(*shape: int) -> torch.Tensor:
    """Sampling coordinates, some outside [-1, 1]."""
    return torch.rand(*shape) * 2.4 - 1.2


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


def quiet(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with PyTorch's deprecation warnings silenced (the deprecated forms are what is tested)."""

    def call(*xs: torch.Tensor) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return fn(*xs)

    return call


def loss_cases(
    name: str, fn: Callable[..., torch.Tensor], inputs: tuple[torch.Tensor, ...], khronos: bool
) -> list[Case]:
    """One case whose module returns the loss under the three reductions (none, mean, sum)."""

    def all_reductions(*xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(fn(*xs, reduction=reduction) for reduction in ("none", "mean", "sum"))

    return [(name, Fn(quiet(all_reductions)), inputs, khronos)]  # type: ignore[arg-type]


LABELS = torch.tensor([0, 3, 1, 2, 3])
LABELS_2D = torch.tensor([[[0, 2], [1, 3]], [[3, 3], [0, 1]]])

# (id, module, inputs, also for Khronos)
CASES: list[Case] = [
    # grid sampling
    *[
        (
            f"grid-sample-{mode}-{padding}-align{int(align)}",
            Fn(lambda x, g, m=mode, p=padding, a=align: F.grid_sample(x, g, mode=m, padding_mode=p, align_corners=a)),
            (r(2, 3, 4, 5), grid(2, 3, 6, 2)),
            True,
        )
        for mode in ("bilinear", "nearest")
        for padding in ("zeros", "border")
        for align in (False, True)
    ],
    (
        "grid-sample-reflection",
        Fn(lambda x, g: F.grid_sample(x, g, padding_mode="reflection", align_corners=False)),
        (r(1, 2, 4, 5), grid(1, 3, 3, 2)),
        False,
    ),
    (
        "grid-sample-bicubic",
        Fn(lambda x, g: F.grid_sample(x, g, mode="bicubic", align_corners=True)),
        (r(1, 2, 4, 5), grid(1, 3, 3, 2)),
        False,
    ),
    (
        "grid-sample-3d",
        Fn(lambda x, g: F.grid_sample(x, g, padding_mode="border", align_corners=True)),
        (r(1, 2, 3, 4, 5), grid(1, 2, 3, 2, 3)),
        False,
    ),
    # bicubic and area resizing
    ("bicubic-x2", Fn(lambda x: F.interpolate(x, scale_factor=2, mode="bicubic")), (r(1, 2, 4, 5),), True),
    (
        "bicubic-size-align",
        Fn(lambda x: F.interpolate(x, size=(7, 3), mode="bicubic", align_corners=True)),
        (r(1, 2, 4, 5),),
        True,
    ),
    ("bicubic-down", Fn(lambda x: F.interpolate(x, size=(3, 2), mode="bicubic")), (r(2, 1, 6, 5),), True),
    (
        "bicubic-antialias-down",
        Fn(lambda x: F.interpolate(x, size=(3, 2), mode="bicubic", antialias=True)),
        (r(1, 2, 7, 5),),
        True,
    ),
    (
        "bicubic-antialias-up",
        Fn(lambda x: F.interpolate(x, scale_factor=2, mode="bicubic", antialias=True)),
        (r(1, 2, 3, 4),),
        True,
    ),
    (
        "bicubic-antialias-align",
        Fn(lambda x: F.interpolate(x, size=(4, 3), mode="bicubic", antialias=True, align_corners=True)),
        (r(1, 1, 7, 6),),
        True,
    ),
    ("area-down", Fn(lambda x: F.interpolate(x, size=(2, 3), mode="area")), (r(1, 2, 4, 6),), True),
    ("area-uneven", Fn(lambda x: F.interpolate(x, size=(3, 4), mode="area")), (r(1, 2, 5, 7),), True),
    # sorting
    ("sort-last", Fn(lambda x: torch.sort(x)), (distinct(3, 5),), False),
    ("sort-dim0-descending", Fn(lambda x: torch.sort(x, dim=0, descending=True)), (distinct(4, 3),), False),
    (
        "sort-stable-ties",
        Fn(lambda x: torch.sort(x, dim=1, stable=True)),
        (torch.tensor([[2.0, 1.0, 2.0, 1.0]]),),
        False,
    ),
    ("argsort", Fn(lambda x: torch.argsort(x, dim=-1)), (distinct(3, 5),), False),
    ("argsort-descending-dim1", Fn(lambda x: torch.argsort(x, dim=1, descending=True)), (distinct(2, 4, 3),), False),
    ("topk-largest", Fn(lambda x: torch.topk(x, 2)), (distinct(3, 5),), False),
    ("topk-smallest-dim0", Fn(lambda x: torch.topk(x, 3, dim=0, largest=False)), (distinct(4, 3),), False),
    ("topk-values-only", Fn(lambda x: x.topk(1, dim=1).values * 2), (distinct(2, 5, 3),), True),
    ("topk-smallest-values-last", Fn(lambda x: x.topk(3, largest=False).values), (distinct(2, 5),), True),
    ("sort-values", Fn(lambda x: torch.sort(x, dim=0, descending=True).values), (distinct(4, 3),), True),
    ("sort-values-ties", Fn(lambda x: torch.sort(x).values), (torch.tensor([[2.0, -1.0, 2.0, 0.5, -1.0]]),), True),
    # scatters
    ("scatter-src", Fn(lambda x, s: x.scatter(1, INDEX[:, :3], s)), (r(2, 5), r(2, 3)), False),
    ("scatter-src-larger", Fn(lambda x, s: x.scatter(1, INDEX[:, :3], s)), (r(2, 5), r(3, 4)), False),
    ("scatter-value", Fn(lambda x: x.scatter(1, INDEX[:, :3], 2.5)), (r(2, 5),), False),
    ("scatter-dim0", Fn(lambda x, s: x.scatter(0, torch.tensor([[1, 0, 1]]), s)), (r(2, 3), r(1, 3)), False),
    ("scatter-add", Fn(lambda x, s: x.scatter_add(1, INDEX, s)), (r(2, 5), r(2, 4)), False),
    (
        "scatter-reduce-multiply",
        Fn(quiet(lambda x, s: x.scatter(1, INDEX, s, reduce="multiply"))),
        (r(2, 5), r(2, 4)),
        False,
    ),
    *[
        (
            f"scatter-reduce-{reduce}",
            Fn(
                lambda x, s, red=reduce: (
                    x.scatter_reduce(1, INDEX, s, red, include_self=True),
                    x.scatter_reduce(1, INDEX, s, red, include_self=False),
                )
            ),
            (r(2, 5), r(2, 4)),
            False,
        )
        for reduce in ("sum", "prod", "amax", "amin", "mean")
    ],
    (
        "scatter-add-int",
        Fn(lambda x, s: x.scatter_add(1, INDEX, s)),
        (torch.randint(-5, 5, (2, 5)), torch.randint(-5, 5, (2, 4))),
        False,
    ),
    ("index-put-rows", Put((ROWS,)), (r(3, 4), r(2, 4)), False),
    ("index-put-rows-broadcast", Put((ROWS,)), (r(3, 4), r(4)), False),
    ("index-put-columns", Put((slice(None), torch.tensor([0, 3]))), (r(3, 4), r(3, 2)), False),
    ("index-put-pairs", Put((torch.tensor([0, 2, 1]), torch.tensor([1, -1, 0]))), (r(3, 4), r(3)), False),
    ("index-put-middle", Put((slice(None), torch.tensor([2, 0]))), (r(2, 3, 4), r(2, 2, 4)), False),
    (
        "index-put-accumulate",
        Fn(lambda x, v: x.index_put((torch.tensor([0, 2, 0]),), v, accumulate=True)),
        (r(3, 4), r(3, 4)),
        False,
    ),
    (
        "index-put-mask-scalar",
        Fn(lambda x: x.masked_fill(x > 0, 0.0).index_put((x < -0.5,), torch.tensor(7.0))),
        (r(3, 4),),
        True,
    ),
    ("index-copy", Fn(lambda x, s: x.index_copy(0, ROWS, s)), (r(3, 4), r(2, 4)), False),
    ("index-copy-dim1", Fn(lambda x, s: x.index_copy(1, torch.tensor([3, 1]), s)), (r(2, 4, 3), r(2, 2, 3)), False),
    ("index-add", Fn(lambda x, s: x.index_add(0, torch.tensor([2, 0, 2]), s)), (r(3, 4), r(3, 4)), False),
    (
        "index-add-alpha",
        Fn(lambda x, s: x.index_add(1, torch.tensor([0, 2]), s, alpha=-0.5)),
        (r(3, 4), r(3, 2)),
        False,
    ),
    # cumulative product
    ("cumprod-last", Fn(lambda x: torch.cumprod(x, -1)), (r(3, 7),), True),
    ("cumprod-dim0", Fn(lambda x: torch.cumprod(x, 0)), (r(5, 2, 3),), True),
    ("cumprod-zero", Fn(lambda x: torch.cumprod(x, 1)), (torch.tensor([[1.5, -2.0, 0.0, 3.0, -1.0]]),), True),
    # patches
    ("unfold-F", Fn(lambda x: F.unfold(x, 2, padding=1, stride=2)), (r(1, 2, 4, 5),), True),
    ("unfold-F-dilated", Fn(lambda x: F.unfold(x, (2, 3), dilation=(2, 1))), (r(2, 3, 5, 6),), True),
    ("unfold-F-unbatched", Fn(lambda x: F.unfold(x, 3)), (r(2, 4, 4),), True),
    ("fold-F", Fn(lambda x: F.fold(x, (4, 5), 2, padding=1, stride=2)), (r(1, 8, 9),), True),
    ("fold-F-overlap", Fn(lambda x: F.fold(x, (4, 4), 3, padding=1)), (r(2, 18, 16),), True),
    ("fold-F-uneven", Fn(lambda x: F.fold(x, (5, 6), 2, stride=2)), (r(1, 12, 6),), True),
    (
        "fold-unfold-round-trip",
        Fn(lambda x: F.fold(F.unfold(x, 2, stride=2), (4, 6), 2, stride=2)),
        (r(1, 3, 4, 6),),
        True,
    ),
    ("tensor-unfold", Fn(lambda x: x.unfold(1, 3, 2)), (r(2, 7),), True),
    ("tensor-unfold-dim0", Fn(lambda x: x.unfold(0, 2, 1)), (r(5, 3),), True),
    # creation
    ("meshgrid-ij", Fn(lambda a, b: torch.meshgrid(a, b, indexing="ij")), (r(3), r(4)), True),
    ("meshgrid-xy", Fn(lambda a, b: torch.meshgrid(a, b, indexing="xy")), (r(3), r(4)), True),
    ("meshgrid-3", Fn(lambda a, b, c: torch.meshgrid(a, b, c, indexing="xy")), (r(3), r(4), r(2)), True),
    ("diag-vector", Fn(lambda x: torch.diag(x)), (r(4),), True),
    ("diag-vector-above", Fn(lambda x: torch.diag(x, 2)), (r(3),), True),
    ("diag-vector-below", Fn(lambda x: torch.diag(x, -1)), (r(3),), True),
    ("diag-matrix", Fn(lambda x: torch.diag(x, 1)), (r(3, 4),), True),
    ("eye", Fn(lambda x: x + torch.eye(3)), (r(3, 3),), True),
    ("eye-rect", Fn(lambda x: x * torch.eye(3, 4)), (r(3, 4),), True),
    ("linspace", Fn(lambda x: x + torch.linspace(-1, 2, 4)), (r(3, 4),), True),
    # elementwise
    ("atan2", Fn(torch.atan2), (r(4, 5), r(4, 5)), True),
    (
        "atan2-axes",
        Fn(torch.atan2),
        (torch.tensor([0.0, 1.0, -1.0, 0.0, 2.0, -2.0]), torch.tensor([1.0, 0.0, 0.0, -1.0, -3.0, -3.0])),
        True,
    ),
    ("hypot", Fn(torch.hypot), (r(3, 4), r(4)), True),
    ("lerp-scalar", Fn(lambda a, b: torch.lerp(a, b, 0.3)), (r(3, 4), r(3, 4)), True),
    ("lerp-scalar-high", Fn(lambda a, b: torch.lerp(a, b, 0.8)), (r(3, 4), r(3, 4)), True),
    ("lerp-tensor", Fn(torch.lerp), (r(3, 4), r(3, 4), torch.rand(3, 4)), True),
    ("addcmul", Fn(lambda a, b, c: torch.addcmul(a, b, c, value=0.5)), (r(3, 4), r(3, 4), r(4)), True),
    ("addcdiv", Fn(lambda a, b, c: torch.addcdiv(a, b, c, value=-2)), (r(3, 4), r(3, 4), r(3, 4).abs() + 0.5), True),
    (
        "addcmul-int",
        Fn(lambda a, b, c: torch.addcmul(a, b, c, value=3)),
        tuple(torch.randint(-4, 5, (3, 4)) for _ in range(3)),
        False,
    ),
    (
        "isnan-isinf",
        Fn(lambda x: torch.isnan(x) | torch.isinf(x)),
        (torch.tensor([1.0, float("nan"), float("inf"), -float("inf"), -2.0]),),
        True,
    ),
    (
        "isposinf-isneginf",
        Fn(lambda x: torch.isposinf(x) & ~torch.isneginf(x)),
        (torch.tensor([1.0, float("inf"), -float("inf"), 3.4e38]),),
        True,
    ),
    ("isfinite", Fn(torch.isfinite), (torch.tensor([1.0, float("nan"), float("inf"), -float("inf"), -3.4e38]),), True),
    ("nan-to-num", Fn(torch.nan_to_num), (torch.tensor([1.0, float("nan"), float("inf"), -float("inf"), -2.0]),), True),
    (
        "nan-to-num-values",
        Fn(lambda x: torch.nan_to_num(x, nan=-1.0, posinf=9.0, neginf=-9.0)),
        (torch.tensor([[1.0, float("nan")], [float("inf"), -float("inf")]]),),
        True,
    ),
    ("frac", Fn(torch.frac), (r(3, 4) * 4,), True),
    # similarity and distance
    ("cosine-similarity", Fn(F.cosine_similarity), (r(3, 4), r(3, 4)), True),
    ("cosine-similarity-dim-broadcast", Fn(lambda a, b: F.cosine_similarity(a, b, dim=-1)), (r(2, 3, 4), r(4)), True),
    ("pairwise-distance", Fn(F.pairwise_distance), (r(3, 4), r(3, 4)), True),
    (
        "pairwise-distance-p1-keepdim",
        Fn(lambda a, b: F.pairwise_distance(a, b, p=1, keepdim=True)),
        (r(3, 4), r(3, 4)),
        True,
    ),
    (
        "pairwise-distance-pinf",
        Fn(lambda a, b: F.pairwise_distance(a, b, p=float("inf"))),
        (r(2, 3, 4), r(2, 3, 4)),
        True,
    ),
    # torch.where with scalars
    ("where-scalars", Fn(lambda x: torch.where(x > 0, 1.0, -1.0)), (r(3, 4),), True),
    ("where-scalar-other", Fn(lambda x: torch.where(x > 0, x, 0.5)), (r(3, 4),), True),
    ("where-scalar-self", Fn(lambda x: torch.where(x > 0, 2.0, x)), (r(3, 4),), True),
    # losses
    *loss_cases("mse", F.mse_loss, (r(3, 4), r(3, 4)), True),
    *loss_cases("l1", F.l1_loss, (r(3, 4), r(3, 4)), True),
    *loss_cases(
        "smooth-l1",
        lambda a, b, reduction: F.smooth_l1_loss(a, b, reduction=reduction, beta=0.5),
        (r(3, 4), r(3, 4)),
        True,
    ),
    *loss_cases(
        "huber", lambda a, b, reduction: F.huber_loss(a, b, reduction=reduction, delta=0.7), (r(3, 4), r(3, 4)), True
    ),
    *loss_cases("cross-entropy", F.cross_entropy, (r(5, 4), LABELS), False),
    *loss_cases(
        "cross-entropy-smoothing",
        lambda a, t, reduction: F.cross_entropy(a, t, reduction=reduction, label_smoothing=0.2),
        (r(5, 4), LABELS),
        False,
    ),
    *loss_cases(
        "cross-entropy-weight-ignore",
        lambda a, t, w, reduction: F.cross_entropy(
            a, t, weight=w, ignore_index=3, reduction=reduction, label_smoothing=0.1
        ),
        (r(5, 4), LABELS, torch.rand(4) + 0.5),
        False,
    ),
    *loss_cases("cross-entropy-2d", F.cross_entropy, (r(2, 4, 2, 2), LABELS_2D), False),
    *loss_cases("cross-entropy-probabilities", F.cross_entropy, (r(5, 4), torch.softmax(r(5, 4), -1)), True),
    *loss_cases(
        "cross-entropy-probabilities-smoothing",
        lambda a, t, w, reduction: F.cross_entropy(a, t, weight=w, reduction=reduction, label_smoothing=0.3),
        (r(5, 4), torch.softmax(r(5, 4), -1), torch.rand(4) + 0.5),
        True,
    ),
    *loss_cases("nll", F.nll_loss, (torch.log_softmax(r(5, 4), -1), LABELS), False),
    *loss_cases(
        "nll-2d-weight",
        lambda x, t, w, reduction: F.nll_loss(x, t, weight=w, reduction=reduction),
        (torch.log_softmax(r(2, 4, 2, 2), 1), LABELS_2D, torch.rand(4) + 0.5),
        False,
    ),
    ("nll-unbatched", Fn(lambda x, t: F.nll_loss(x, t)), (torch.log_softmax(r(4), -1), torch.tensor(2)), False),
    *loss_cases("bce", F.binary_cross_entropy, (torch.rand(3, 4) * 0.9 + 0.05, torch.rand(3, 4)), True),
    *loss_cases(
        "bce-weight",
        lambda p, t, w, reduction: F.binary_cross_entropy(p, t, weight=w, reduction=reduction),
        (torch.rand(3, 4) * 0.9 + 0.05, torch.rand(3, 4), torch.rand(4)),
        True,
    ),
    *loss_cases("bce-with-logits", F.binary_cross_entropy_with_logits, (r(3, 4) * 3, torch.rand(3, 4)), True),
    *loss_cases(
        "bce-with-logits-pos-weight",
        lambda x, t, pw, reduction: F.binary_cross_entropy_with_logits(x, t, pos_weight=pw, reduction=reduction),
        (r(3, 4) * 3, torch.rand(3, 4), torch.rand(4) * 3),
        True,
    ),
    *loss_cases("kl-div", F.kl_div, (torch.log_softmax(r(3, 4), -1), torch.softmax(r(3, 4), -1)), True),
    (
        "kl-div-batchmean",
        Fn(lambda x, t: F.kl_div(x, t, reduction="batchmean")),
        (torch.log_softmax(r(3, 4), -1), torch.softmax(r(3, 4), -1)),
        True,
    ),
    (
        "kl-div-zero-target",
        Fn(lambda x, t: F.kl_div(x, t, reduction="sum")),
        (torch.log_softmax(r(2, 3), -1), torch.tensor([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])),
        True,
    ),
    (
        "kl-div-log-target",
        Fn(lambda x, t: F.kl_div(x, t, reduction="none", log_target=True)),
        (torch.log_softmax(r(3, 4), -1), torch.log_softmax(r(3, 4), -1)),
        True,
    ),
]


@pytest.mark.parametrize("target,module,inputs", op_params(CASES))
def test_op(tmp_path: Path, target: str, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
    export_and_check(tmp_path, target, module, inputs)


@pytest.mark.parametrize("target", ["tract", "khronos"])
@pytest.mark.parametrize("p,dim", [(2.0, -1), (1.0, 0)], ids=["p2-last", "p1-first"])
def test_normalize(tmp_path: Path, target: str, p: float, dim: int) -> None:
    """F.normalize runs as linalg_vector_norm, clamp_min and div; clamp_min belongs to the core ATen table."""
    if "aten::clamp_min" not in supported_kinds():
        pytest.skip("aten::clamp_min is not registered in this build")
    export_and_check(tmp_path, target, Fn(lambda x: F.normalize(x, p=p, dim=dim)), (r(3, 4),))


def test_grid_sample_native_and_composed_agree(tmp_path: Path) -> None:
    """tract_core_grid_sample for recent tract, the composition of plain operators for older releases."""
    module = Fn(lambda x, g: F.grid_sample(x, g, align_corners=False))
    inputs = (r(1, 2, 4, 5), grid(1, 3, 3, 2))
    native = export_model_to_nnef(module, inputs, tmp_path / "native.nnef", TractNNEF(check_io=True))
    composed = export_model_to_nnef(
        module, inputs, tmp_path / "composed.nnef", TractNNEF(version="0.23.0", check_io=True)
    )
    assert "tract_core_grid_sample" in (native / "graph.nnef").read_text()
    assert "tract_core_grid_sample" not in (composed / "graph.nnef").read_text()


def test_grid_sample_reflection_needs_recent_tract(tmp_path: Path) -> None:
    module = Fn(lambda x, g: F.grid_sample(x, g, padding_mode="reflection", align_corners=False))
    with pytest.raises(TranslationError, match="tract_core_grid_sample"):
        export_model_to_nnef(module, (r(1, 2, 4, 5), grid(1, 3, 3, 2)), tmp_path / "m.nnef", KhronosNNEF())


def test_topk_dynamic_axis(tmp_path: Path) -> None:
    """Sorting along a dynamic axis: k is the symbol."""

    class Sort(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.sort(x, dim=1, descending=True)

    target = TractNNEF(check_io=True, dynamic_axes={"x": {1: "S"}})
    path = export_model_to_nnef(Sort(), (distinct(2, 6),), tmp_path / "m.nnef", target, input_names=["x"])
    assert "tract_core_topk" in (path / "graph.nnef").read_text()


def test_argsort_needs_tract(tmp_path: Path) -> None:
    with pytest.raises(TranslationError, match="argsort gives indices.*TractNNEF"):
        export_model_to_nnef(Fn(lambda x: torch.argsort(x)), (r(3, 4),), tmp_path / "m.nnef", KhronosNNEF())


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
    with pytest.raises(TranslationError, match=rf"test_ops_extra\.py:\d+ in forward: .*{what}.*data"):
        export_model_to_nnef(module, (r(3, 4),), tmp_path / "m.nnef", TractNNEF())


def test_boolean_mask_assignment_of_many_values_refused(tmp_path: Path) -> None:
    class Assign(nn.Module):
        def forward(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return x.index_put((x > 0,), v)

    with pytest.raises(TranslationError, match=r"torch\.where\(mask, v, x\)"):
        export_model_to_nnef(Assign(), (r(2, 2).abs() + 0.1, r(4)), tmp_path / "m.nnef", TractNNEF())


def test_where_integer_scalars(tmp_path: Path) -> None:
    export_and_check(tmp_path, "tract", Fn(lambda x: torch.where(x > 0, 3, -2)), (r(3, 4),))


def test_where_scalar_in_a_half_model(tmp_path: Path) -> None:
    """The scalar becomes an f16 constant (a bare literal is f32 to tract, which refuses the mix)."""
    module = Fn(lambda x: torch.where(x > 0, x, -65504.0) + torch.where(x < 1, 0.5, x))
    export_and_check(tmp_path, "tract", module, (r(3, 4).half(),))


class Named(nn.Module):
    """Two named inputs ``x`` and ``y`` (dynamic axes need a fixed signature)."""

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.fn(x, y)


DYNAMIC: list[tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor], tuple[torch.Tensor, torch.Tensor]]] = [
    ("grid-sample", lambda x, g: F.grid_sample(x, g, align_corners=False), (r(2, 2, 4, 5), grid(2, 3, 6, 2))),
    ("scatter-add", lambda x, s: x.scatter_add(1, torch.zeros_like(s, dtype=torch.long), s), (r(3, 5), r(3, 4))),
    ("index-copy", lambda x, s: x.index_copy(1, torch.tensor([3, 0]), s), (r(3, 5), r(3, 2))),
    ("topk", lambda x, y: torch.topk(x + y, 2, dim=1).values, (distinct(3, 5), r(3, 5))),
    ("cosine-similarity", lambda x, y: F.cosine_similarity(x, y, dim=1), (r(3, 4), r(3, 4))),
    ("mse-mean", lambda x, y: F.mse_loss(x, y), (r(3, 4), r(3, 4))),
    (
        "bce-with-logits-sum",
        lambda x, y: F.binary_cross_entropy_with_logits(x, y, reduction="sum"),
        (r(3, 4), torch.rand(3, 4)),
    ),
    ("eye", lambda x, y: torch.eye(x.shape[0]) @ x + y, (r(3, 4), r(3, 4))),
    ("meshgrid", lambda x, y: torch.stack(torch.meshgrid(x[:, 0], y[0], indexing="xy")), (r(3, 4), r(3, 4))),
    ("isinf-lerp", lambda x, y: torch.lerp(x, y, 0.25) * torch.isinf(x), (r(3, 4), r(3, 4))),
]


@pytest.mark.parametrize("fn,inputs", [pytest.param(f, i, id=n) for n, f, i in DYNAMIC])
def test_dynamic_batch(
    tmp_path: Path, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], inputs: tuple[torch.Tensor, torch.Tensor]
) -> None:
    """The first axis of both inputs dynamic: the graph is written with the symbol and checked by tract."""
    target = TractNNEF(check_io=True, dynamic_axes={"x": {0: "B"}, "y": {0: "B"}})
    path = export_model_to_nnef(Named(fn), inputs, tmp_path / "m.nnef", target, input_names=["x", "y"])
    assert "tract_symbol B" in (path / "graph.nnef").read_text()


@pytest.mark.parametrize(
    ("inputs"),
    [
        (r(3, 5).log_softmax(1), torch.tensor([1, 0, 4])),
        (r(2, 3, 4, 4).log_softmax(1), torch.tensor([[[0, 1, 2, 1]] * 4, [[2, 2, 0, 1]] * 4])),
    ],
    ids=["nll-loss", "nll-loss2d"],
)
def test_nll_loss_through_the_jit_front_end(tmp_path: Path, inputs: tuple[torch.Tensor, ...]) -> None:
    """The jit front-end feeds the same nll_loss_nd translation as torch.export."""
    path = export_model_to_nnef(
        Fn(lambda x, t: F.nll_loss(x, t)), inputs, tmp_path / "m.nnef", TractNNEF(check_io=True), frontend="jit"
    )
    assert path.exists()
