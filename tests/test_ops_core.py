"""Core ATen ops of ``op/aten_core.py`` (and kinds no other table meets), each checked numerically."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torch_to_nnef.capture.torch_export as capture_module
from optable import Case, Fn, export_and_check, op_params, r
from torch_to_nnef import KhronosNNEF, TractNNEF, export_model_to_nnef
from torch_to_nnef.capture.torch_export import capture
from torch_to_nnef.errors import TranslationError

aten = torch.ops.aten


def ints(*shape: int, low: int = -9, high: int = 10) -> torch.Tensor:
    return torch.randint(low, high, shape)


def within(low: float, high: float, *shape: int) -> torch.Tensor:
    return torch.rand(*shape) * (high - low) + low


def with_nans(x: torch.Tensor) -> torch.Tensor:
    """``x`` where positive, NaN elsewhere (0 / 0: NNEF has no NaN literal)."""
    positive = torch.relu(x)
    return positive / positive * x


# Values across magnitudes: tiny ones show whether expm1/log1p keep their precision near zero.
SPREAD = torch.tensor([[0.0, 1e-7, -3e-6, 2e-4, -0.004, 0.3], [-0.5, 0.75, 2.0, -5.0, 9.0, -0.09]])
SIGNED_ZEROS = torch.tensor([[0.0, -0.0, 1.5, -2.0], [-0.25, 3.0, -0.0, 0.0]])


# (id, module, inputs, also for Khronos)
class Bag(nn.Module):
    """nn.EmbeddingBag called with offsets (and per-sample weights) or on 2-D indices."""

    def __init__(self, mode: str, include_last_offset: bool = False, padding_idx: int | None = None) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(10, 4, mode=mode, include_last_offset=include_last_offset, padding_idx=padding_idx)

    def forward(self, indices: torch.Tensor, offsets: torch.Tensor | None = None, weights: torch.Tensor | None = None):
        return self.bag(indices, offsets, per_sample_weights=weights)


BAG_INDICES = torch.tensor([1, 2, 4, 5, 4, 3, 2, 9])
BAG_OFFSETS = torch.tensor([0, 2, 5])

CASES: list[Case] = [
    # inverse hyperbolics, erf
    ("asinh", Fn(torch.asinh), (r(3, 4) * 3,), True),
    ("acosh", Fn(torch.acosh), (within(1.0, 6.0, 3, 4),), True),
    ("atanh", Fn(torch.atanh), (within(-0.95, 0.95, 3, 4),), True),
    ("erf", Fn(torch.erf), (r(3, 5) * 2,), True),
    ("erfc", Fn(torch.erfc), (r(3, 5) * 2,), True),
    ("erf-int", Fn(torch.erf), (ints(2, 3, low=-2, high=3),), False),
    # exponentials and logarithms
    ("expm1", Fn(torch.expm1), (SPREAD,), True),
    ("log1p", Fn(torch.log1p), (SPREAD.clamp(min=-0.9),), True),
    ("log2", Fn(torch.log2), (within(0.01, 50.0, 3, 4),), True),
    ("log10", Fn(torch.log10), (within(0.01, 50.0, 3, 4),), True),
    ("exp2", Fn(torch.exp2), (r(3, 4) * 3,), True),
    ("logit", Fn(torch.logit), (within(0.02, 0.98, 3, 4),), True),
    ("logit-eps", Fn(lambda x: torch.logit(x, eps=0.1)), (within(0.0, 1.0, 3, 4),), True),
    ("log-sigmoid", Fn(F.logsigmoid), (r(3, 4) * 30,), True),
    ("xlogy", Fn(torch.xlogy), (torch.tensor([[0.0, 1.5, -2.0], [0.0, 3.0, 0.5]]), within(0.1, 4.0, 2, 3)), True),
    ("xlogy-scalar", Fn(lambda y: torch.xlogy(2.0, y)), (within(0.1, 4.0, 2, 3),), True),
    ("logaddexp", Fn(torch.logaddexp), (r(3, 4) * 40, r(3, 4) * 40), True),
    ("logaddexp2", Fn(torch.logaddexp2), (r(3, 4) * 40, r(1, 4)), True),
    # rounding, signs, units
    ("trunc", Fn(torch.trunc), (r(3, 5) * 4,), True),
    ("fix", Fn(torch.fix), (r(3, 5) * 4,), True),
    ("trunc-int", Fn(lambda x: torch.trunc(x) + 1), (ints(3, 4),), False),
    ("sgn", Fn(torch.sgn), (SIGNED_ZEROS,), True),
    ("signbit", Fn(torch.signbit), (SIGNED_ZEROS,), True),
    ("signbit-int", Fn(torch.signbit), (ints(3, 4),), False),
    ("copysign", Fn(torch.copysign), (r(2, 4), SIGNED_ZEROS), True),
    ("copysign-scalar", Fn(lambda x: torch.copysign(x, -1.0)), (r(2, 4),), True),
    ("heaviside", Fn(lambda x: torch.heaviside(x, torch.tensor([0.5]))), (SIGNED_ZEROS,), True),
    ("rad2deg", Fn(torch.rad2deg), (r(3, 4),), True),
    ("deg2rad", Fn(torch.deg2rad), (r(3, 4) * 180,), True),
    ("sinc", Fn(torch.sinc), (torch.tensor([[0.0, 0.5, -1.5], [2.25, -0.0, 1e-3]]),), True),
    ("square", Fn(torch.square), (r(3, 4),), True),
    ("true-divide", Fn(torch.true_divide), (r(3, 4), within(0.5, 2.0, 3, 4)), True),
    ("true-divide-int", Fn(lambda a: torch.true_divide(a, 4)), (ints(3, 4),), False),
    # activations
    ("relu6", Fn(F.relu6), (r(3, 4) * 8,), True),
    ("threshold", Fn(lambda x: F.threshold(x, 0.1, -2.0)), (r(3, 4),), True),
    ("rrelu-eval", Fn(lambda x: F.rrelu(x, 0.1, 0.3, training=False)), (r(3, 4),), True),
    ("fmin", Fn(torch.fmin), (r(3, 4), r(3, 4)), True),
    ("fmax", Fn(torch.fmax), (r(3, 4), r(1, 4)), True),
    # one-sided clamps
    ("clamp-min", Fn(lambda x: torch.clamp_min(x, 0.1)), (r(3, 4),), True),
    ("clamp-max", Fn(lambda x: torch.clamp_max(x, -0.2)), (r(3, 4),), True),
    ("clamp-min-tensor", Fn(lambda x, lo: torch.clamp_min(x, lo)), (r(3, 4), r(4)), True),
    ("clip", Fn(lambda x: torch.clip(x, -0.5, 0.25)), (r(3, 4),), True),
    ("clamp-min-int", Fn(lambda x: torch.clamp_min(x, 2)), (ints(3, 4),), False),
    ("normalize", Fn(lambda x: F.normalize(x, dim=-1)), (r(3, 4),), True),
    # shifts
    ("lshift-scalar", Fn(lambda x: x << 2), (ints(3, 4),), False),
    ("rshift-scalar-negative", Fn(lambda x: x >> 1), (ints(3, 4, low=-40, high=40),), False),
    ("shift-tensor", Fn(torch.bitwise_left_shift), (ints(3, 4), ints(3, 4, low=0, high=5)), False),
    (
        "rshift-tensor-i32",
        Fn(torch.bitwise_right_shift),
        (ints(3, 4).int() * 16, ints(1, 4, low=0, high=4).int()),
        False,
    ),
    # creation, scatter
    ("empty-strided-filled", Fn(lambda x: torch.empty_strided((2, 3), (3, 1)).fill_(1.5) + x), (r(2, 3),), True),
    ("empty-like-copied", Fn(lambda x: torch.empty_like(x).copy_(x) * 2), (r(2, 3),), True),
    ("masked-scatter", Fn(lambda x, s: x.masked_scatter(x > 0, s)), (r(3, 4), r(4, 4)), False),
    (
        "masked-scatter-broadcast",
        Fn(lambda x, s: x.masked_scatter(torch.tensor([True, False, True, True]), s)),
        (r(3, 4), r(12)),
        False,
    ),
    # distances
    ("cdist", Fn(torch.cdist), (r(2, 3, 4), r(2, 5, 4)), True),
    ("cdist-p1", Fn(lambda a, b: torch.cdist(a, b, p=1.0)), (r(3, 4), r(5, 4)), True),
    ("cdist-pinf", Fn(lambda a, b: torch.cdist(a, b, p=math.inf)), (r(3, 4), r(5, 4)), True),
    ("cdist-p3", Fn(lambda a, b: torch.cdist(a, b, p=3.0)), (r(3, 4), r(5, 4)), True),
    ("cdist-forward", Fn(lambda a, b: torch.ops.aten._cdist_forward(a, b, 2.0, None)), (r(3, 4), r(2, 4)), True),
    ("pdist", Fn(F.pdist), (r(5, 3),), True),
    ("pdist-forward-p1", Fn(lambda x: torch.ops.aten._pdist_forward(x, 1.0)), (r(4, 3),), True),
    # reductions with several outputs
    ("var-mean", Fn(lambda x: torch.var_mean(x, 1)), (r(3, 4, 2),), True),
    ("std-mean-keepdim", Fn(lambda x: torch.std_mean(x, (0, 2), correction=0, keepdim=True)), (r(3, 4, 2),), True),
    ("var-unbiased-false", Fn(lambda x: x.var(1, unbiased=False) + x.std(unbiased=False)), (r(3, 4),), True),
    ("var-positional-keepdim", Fn(lambda x: torch.var(x, 0, False, True) * x), (r(3, 4),), True),
    ("aminmax", Fn(lambda x: torch.aminmax(x, dim=1)), (r(3, 4),), True),
    ("aminmax-all", Fn(lambda x: torch.aminmax(x)), (r(3, 4),), True),
    # similarities, norms of differences
    ("cosine-similarity", Fn(F.cosine_similarity), (r(3, 4, 2), r(3, 4, 2)), True),
    ("cosine-similarity-broadcast", Fn(lambda a, b: F.cosine_similarity(a, b, dim=-1)), (r(3, 4), r(1, 4)), True),
    ("pairwise-distance", Fn(F.pairwise_distance), (r(3, 4), r(3, 4)), True),
    (
        "pairwise-distance-p1-keepdim",
        Fn(lambda a, b: F.pairwise_distance(a, b, 1.0, keepdim=True)),
        (r(3, 4), r(4)),
        True,
    ),
    ("dist", Fn(torch.dist), (r(3, 4), r(3, 4)), True),
    ("dist-p3", Fn(lambda a, b: torch.dist(a, b, 3)), (r(3, 4), r(1, 4)), True),
    # reductions that skip values
    ("nansum", Fn(lambda x: torch.nansum(with_nans(x), 1)), (r(3, 4),), True),
    (
        "nanmean-keepdim",
        Fn(lambda x: torch.nanmean(with_nans(x), 0, keepdim=True)),
        (r(3, 4),),
        True,
    ),
    ("nansum-all", Fn(lambda x: torch.nansum(with_nans(x))), (r(3, 4),), True),
    ("count-nonzero", Fn(lambda x: torch.count_nonzero(torch.relu(x), 1)), (r(3, 4),), False),
    ("count-nonzero-all-int", Fn(torch.count_nonzero), (ints(3, 4, low=-1, high=2),), False),
    # products with an added term, trace
    ("addmv", Fn(torch.addmv), (r(3), r(3, 4), r(4)), True),
    ("addmv-scaled", Fn(lambda b, m, v: torch.addmv(b, m, v, beta=0.5, alpha=2.0)), (r(1), r(3, 4), r(4)), True),
    ("addr", Fn(torch.addr), (r(3, 4), r(3), r(4)), True),
    ("addr-beta0", Fn(lambda b, u, v: torch.addr(b, u, v, beta=0, alpha=3)), (r(3, 4), r(3), r(4)), True),
    ("trace", Fn(torch.trace), (r(3, 4),), True),
    ("trace-int", Fn(torch.trace), (ints(4, 3),), False),
    # tests of values
    ("isfinite", Fn(lambda x: torch.isfinite(x / torch.relu(x))), (r(3, 4),), True),
    ("isposinf-isneginf", Fn(lambda x: torch.isposinf(1 / x) | torch.isneginf(1 / x)), (SIGNED_ZEROS,), True),
    ("isfinite-int", Fn(lambda x: torch.isfinite(x)), (ints(3, 4),), True),
    # kinds of the other modules that no other table meets
    ("aten-log-softmax", Fn(lambda x: aten._log_softmax(x, 1, False)), (r(2, 5),), True),
    ("aten-softmax", Fn(lambda x: aten._softmax(x, 0, False)), (r(2, 5),), True),
    ("unsafe-index", Fn(lambda x: aten._unsafe_index(x, [torch.tensor([2, 0, 3])])), (r(4, 3),), False),
    ("nearest-exact-1d", Fn(lambda x: F.interpolate(x, scale_factor=2, mode="nearest-exact")), (r(1, 2, 4),), True),
    ("adaptive-avg-pool-3d", Fn(lambda x: F.adaptive_avg_pool3d(x, 1)), (r(1, 2, 4, 4, 4),), True),
    ("alias", Fn(lambda x: aten.alias(x) + 1), (r(2, 3),), True),
    ("detach", Fn(lambda x: x.detach() * 2), (r(2, 3),), True),
    ("constant-pad-nd", Fn(lambda x: aten.constant_pad_nd(x, [1, 2], 0.5)), (r(2, 3),), True),
    ("ge", Fn(torch.ge), (r(2, 3), r(2, 3)), True),
    (
        "logical",
        Fn(lambda a, b: torch.logical_not(torch.logical_or(torch.logical_and(a > 0, b > 0), a > 1))),
        (r(2, 3), r(2, 3)),
        True,
    ),
    ("max-pool-1d-indices", Fn(lambda x: F.max_pool1d(x, 2, return_indices=True)[0]), (r(1, 2, 6),), True),
    ("mm", Fn(torch.mm), (r(2, 3), r(3, 4)), True),
    ("vdot", Fn(torch.vdot), (r(5), r(5)), True),
    # core overloads that other tables do not meet
    ("add-scalar", Fn(lambda x: aten.add.Scalar(x, 1.5, alpha=2)), (r(2, 3),), True),
    (
        "sub-mul-div-scalar",
        Fn(lambda x: aten.div.Scalar(aten.mul.Scalar(aten.sub.Scalar(x, 0.5), 3), 4)),
        (r(2, 3),),
        True,
    ),
    ("div-scalar-mode", Fn(lambda x: aten.div.Scalar_mode(x, 0.75, rounding_mode="floor")), (r(2, 3) * 3,), True),
    (
        "compare-tensors",
        Fn(lambda a, b: aten.eq.Tensor(a, b) | aten.ne.Tensor(a, a) | aten.lt.Tensor(a, b) & aten.le.Tensor(b, a)),
        (ints(3, 4, low=0, high=3).float(), ints(3, 4, low=0, high=3).float()),
        True,
    ),
    ("ge-scalar", Fn(lambda x: aten.ge.Scalar(x, 0.25)), (r(2, 3),), True),
    ("pow-tensors", Fn(lambda a, b: aten.pow.Tensor_Tensor(a, b)), (within(0.5, 2.0, 2, 3), r(2, 3)), True),
    # a product of one integer wire by itself: tract's square operator has no integer kernels
    ("square-int", Fn(lambda a, b: (a * a, b.pow(2), b * b + b)), (ints(3, 4), ints(3, 4).int()), False),
    (
        "bitwise-overloads",
        Fn(lambda a, b: aten.bitwise_xor.Scalar(aten.bitwise_or.Tensor(aten.bitwise_and.Tensor(a, b), b), 5)),
        (ints(3, 4, high=64), ints(3, 4, high=64)),
        False,
    ),
    ("clamp-tensors", Fn(lambda x, lo, hi: aten.clamp.Tensor(x, lo, hi)), (r(3, 4), r(4) - 1, r(3, 1) + 1), True),
    ("mean-all", Fn(lambda x: aten.mean.default(x)), (r(3, 4),), True),
    ("var-correction", Fn(lambda x: aten.var.correction(x, [1], correction=0, keepdim=True)), (r(3, 4),), True),
    ("any-dims", Fn(lambda x: aten.any.dims(x > 1, [0, 2])), (r(3, 4, 2),), False),
    # strided views (read from the contiguous input) and bags of embeddings (offsets read at run time)
    ("as-strided", Fn(lambda x: torch.as_strided(x, (3, 2), (1, 3), 1) * 2), (r(4, 3),), False),
    ("as-strided-overlapping", Fn(lambda x: torch.as_strided(x, (4, 3), (2, 1))), (r(12),), False),
    ("embedding-bag-sum", Bag("sum"), (BAG_INDICES, BAG_OFFSETS), False),
    ("embedding-bag-mean-empty-bag", Bag("mean"), (BAG_INDICES, torch.tensor([0, 3, 3])), False),
    ("embedding-bag-max", Bag("max"), (BAG_INDICES, BAG_OFFSETS), False),
    ("embedding-bag-last-offset-padding", Bag("mean", True, 4), (BAG_INDICES, torch.tensor([0, 5, 8])), False),
    ("embedding-bag-per-sample-weights", Bag("sum"), (BAG_INDICES, BAG_OFFSETS, r(8)), False),
    ("embedding-bag-2d", Bag("mean"), (BAG_INDICES.reshape(2, 4),), False),
]


@pytest.mark.parametrize(("target", "module", "inputs"), op_params(CASES))
def test_core_op_table(tmp_path: Path, target: str, module: nn.Module, inputs: tuple[torch.Tensor, ...]):
    export_and_check(tmp_path, target, module, inputs)


def _retarget(old: Any, new: Any, args: Callable[[torch.fx.Node], tuple[Any, ...]]) -> Callable[[Any], None]:
    """A rewrite of a captured graph: every call of ``old`` becomes ``new`` with the arguments given."""

    def rewrite(graph: Any) -> None:
        for n in graph.nodes:
            if n.target is old:
                n.args, n.kwargs = args(n), {}
                n.target = new

    return rewrite


# Kinds that other torch releases leave in the graph and the pinned one turns into others (views,
# copies): the captured graph is rewritten back to them (same values), then exported and checked.
# (id, module, inputs, also for Khronos, rewrite, the kind it yields)
OLDER_FORMS = [
    (
        "reshape",
        Fn(lambda x: x.reshape(3, 2) * 2),
        (r(2, 3),),
        True,
        _retarget(aten.view.default, aten.reshape.default, lambda n: n.args),
        "aten::reshape",
    ),
    (
        "flatten",
        Fn(lambda x: x.flatten(1)),
        (r(2, 3, 4),),
        True,
        _retarget(aten.view.default, aten.flatten.using_ints, lambda n: (n.args[0], 1, -1)),
        "aten::flatten",
    ),
    (
        "unflatten",
        Fn(lambda x: x.unflatten(1, (2, 2))),
        (r(3, 4),),
        True,
        _retarget(aten.view.default, aten.unflatten.int, lambda n: (n.args[0], 1, [2, 2])),
        "aten::unflatten",
    ),
    (
        "contiguous",
        Fn(lambda x: x.t().contiguous() * 2),
        (r(2, 3),),
        True,
        _retarget(aten.clone.default, aten.contiguous.default, lambda n: n.args[:1]),
        "aten::contiguous",
    ),
    (
        "dropout",
        Fn(lambda x: F.dropout(x, 0.5, training=False) * 2),
        (r(2, 3),),
        True,
        _retarget(aten.clone.default, aten.dropout.default, lambda n: (n.args[0], 0.5, False)),
        "aten::dropout",
    ),
    (
        "to",
        Fn(lambda x: (x * 3).to(torch.int32)),
        (r(2, 3),),
        False,
        _retarget(aten._to_copy.default, aten.to.dtype, lambda n: (n.args[0], torch.int32)),
        "aten::to",
    ),
]


@pytest.mark.parametrize(
    ("target", "module", "inputs", "rewrite", "kind"),
    [
        pytest.param(target, module, inputs, rewrite, kind, id=f"{target}-{name}")
        for name, module, inputs, khronos, rewrite, kind in OLDER_FORMS
        for target in (["tract", "khronos"] if khronos else ["tract"])
    ],
)
def test_older_torch_forms(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    target: str,
    module: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    rewrite: Callable[[Any], None],
    kind: str,
):
    original = torch.export.ExportedProgram.run_decompositions

    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        exported = original(self, *args, **kwargs)
        rewrite(exported.graph)
        return exported

    monkeypatch.setattr(torch.export.ExportedProgram, "run_decompositions", run)
    monkeypatch.setattr(capture_module, "_translatable_as_is", lambda exported: False)  # decomposed, rewritten
    graph, _ = capture(module, inputs, [f"input_{i}" for i in range(len(inputs))])
    assert kind in {n.kind for n in graph.nodes}
    export_and_check(tmp_path, target, module, inputs)


@pytest.mark.parametrize(
    ("name", "module", "inputs", "match"),
    [
        ("shift", Fn(lambda x: x << 1), (ints(2, 3),), "bit shifts"),
        ("masked-scatter", Fn(lambda x, s: x.masked_scatter(x > 0, s)), (r(2, 3), r(6)), "cumulative sum"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_khronos_refuses_tract_only_core_ops(
    tmp_path: Path, name: str, module: nn.Module, inputs: tuple[torch.Tensor, ...], match: str
):
    with pytest.raises(TranslationError, match=match):
        export_model_to_nnef(module, inputs, tmp_path / "m.nnef", KhronosNNEF())


def test_integer_square_is_refused(tmp_path: Path):
    with pytest.raises(TranslationError, match="square of i64"):
        export_model_to_nnef(Fn(torch.square), (ints(2, 3),), tmp_path / "m.nnef", TractNNEF())


def test_rrelu_in_training_mode_is_refused(tmp_path: Path):
    module = Fn(lambda x: torch.ops.aten.rrelu(x, 0.1, 0.3, True))
    with pytest.raises(TranslationError, match="eval mode"):
        export_model_to_nnef(module, (r(2, 3),), tmp_path / "m.nnef", TractNNEF())
