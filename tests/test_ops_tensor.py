"""Integer arithmetic, reductions, creation, indexing and product ops, each checked numerically in tract."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from optable import Case, Fn, export_and_check, op_params, r
from torch_to_nnef import KhronosNNEF, TractModel, TractNNEF, export_model_to_nnef
from torch_to_nnef.errors import ShapeError, TranslationError


class Fn1(nn.Module):
    """One named input (dynamic axes need a fixed signature)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def ints(*shape: int, low: int = -9, high: int = 10) -> torch.Tensor:
    return torch.randint(low, high, shape)


def nonzero_ints(*shape: int) -> torch.Tensor:
    x = ints(*shape, low=1, high=5)
    return torch.where(torch.rand(*shape) > 0.5, x, -x)


# Divisors kept away from zero, with both signs.
DIVISOR = torch.tensor([[1.5, -2.0, 0.7, -0.9], [3.0, -1.25, 2.5, -4.0]])
DIVIDEND = torch.tensor([[7.3, -7.3, 5.0, -5.5], [-0.4, 2.6, -9.1, 8.8]])

# (id, module, inputs, also for Khronos)
CASES: list[Case] = [
    # a count of booleans (int64) along an axis
    ("sum-of-booleans", Fn(lambda x: (x > 0).sum(1)), (r(3, 6),), False),
    # remainder, fmod, rounding division
    ("remainder-tensor", Fn(torch.remainder), (DIVIDEND, DIVISOR), True),
    ("remainder-scalar-negative", Fn(lambda a: torch.remainder(a, -1.5)), (DIVIDEND,), True),
    ("remainder-scalar-self", Fn(lambda b: torch.remainder(3.0, b)), (DIVISOR,), True),
    ("fmod-tensor", Fn(torch.fmod), (DIVIDEND, DIVISOR), True),
    ("fmod-scalar-negative", Fn(lambda a: torch.fmod(a, -2)), (DIVIDEND,), True),
    ("remainder-int", Fn(lambda a, b: a % b), (ints(3, 5), nonzero_ints(3, 5)), False),
    ("fmod-int-scalar", Fn(lambda a: torch.fmod(a, -4)), (ints(3, 5),), False),
    ("div-trunc", Fn(lambda a, b: torch.div(a, b, rounding_mode="trunc")), (DIVIDEND, DIVISOR), True),
    ("div-floor", Fn(lambda a, b: torch.div(a, b, rounding_mode="floor")), (DIVIDEND, DIVISOR), True),
    ("floordiv-scalar-negative", Fn(lambda a: a // -2.5), (DIVIDEND,), True),
    ("div-floor-int", Fn(lambda a, b: torch.div(a, b, rounding_mode="floor")), (ints(3, 5), nonzero_ints(3, 5)), False),
    ("div-trunc-int", Fn(lambda a, b: torch.div(a, b, rounding_mode="trunc")), (ints(3, 5), nonzero_ints(3, 5)), False),
    ("floordiv-int-scalar", Fn(lambda a: a // -3 + a // 4), (ints(3, 5),), False),
    ("int-arith-scalars", Fn(lambda a: (a * 3 - 2) + torch.sub(a, a, alpha=2)), (ints(3, 5),), False),
    # bitwise and logical
    ("bitwise-int", Fn(lambda a, b: (a & b) | (a ^ b) | ~a), (ints(3, 4, high=64), ints(3, 4, high=64)), False),
    (
        "bitwise-int-scalar",
        Fn(lambda a: torch.bitwise_and(a, 6) + torch.bitwise_or(a, 3) + (a ^ 5)),
        (ints(3, 4),),
        False,
    ),
    ("bitwise-int32", Fn(lambda a, b: torch.bitwise_xor(a, b) & ~b), (ints(2, 4).int(), ints(2, 4).int()), False),
    ("xor-bool", Fn(lambda a, b: (a > 0) ^ (b > 0)), (r(3, 4), r(3, 4)), True),
    ("logical-xor-float", Fn(torch.logical_xor), (r(3, 4).relu(), r(3, 4).relu()), True),
    ("logical-xor-int", Fn(torch.logical_xor), (ints(3, 4, low=0, high=2), ints(3, 4, low=0, high=2)), False),
    # reductions
    ("prod-dim", Fn(lambda x: x.prod(1)), (r(2, 5, 3),), True),
    ("prod-all", Fn(lambda x: x.prod()), (r(2, 3) + 0.5,), True),
    ("prod-keepdim-negative-dim", Fn(lambda x: x.prod(-1, keepdim=True)), (r(2, 3, 4),), True),
    ("prod-with-zero", Fn(lambda x: x.prod(0)), (torch.tensor([[1.5, 0.0, -2.0], [-3.0, 4.0, -1.0]]),), True),
    ("prod-int", Fn(lambda x: x.prod(1)), (ints(3, 4, low=-3, high=4),), False),
    ("norm-2", Fn(lambda x: x.norm(dim=-1)), (r(3, 5),), True),
    ("norm-fro-all", Fn(lambda x: torch.norm(x, p="fro")), (r(3, 5),), True),
    ("norm-1-keepdim", Fn(lambda x: x.norm(p=1, dim=1, keepdim=True)), (r(3, 5, 2),), True),
    ("norm-inf", Fn(lambda x: torch.linalg.norm(x, ord=float("inf"), dim=-1)), (r(3, 5),), True),
    ("norm-minus-inf-and-0", Fn(lambda x: torch.linalg.vector_norm(x, ord=-float("inf"), dim=0)), (r(3, 5),), True),
    ("norm-p3-two-dims", Fn(lambda x: torch.norm(x, p=3, dim=(0, 2))), (r(3, 4, 5),), True),
    (
        "matrix-norm",
        Fn(lambda x: torch.linalg.matrix_norm(x) + torch.linalg.matrix_norm(x, ord=1)),
        (r(2, 3, 4),),
        True,
    ),
    (
        "matrix-norm-inf",
        Fn(lambda x: torch.linalg.norm(x, ord=float("inf")) + torch.linalg.norm(x, ord=-1)),
        (r(3, 4),),
        True,
    ),
    ("any-all-dims", Fn(lambda x: (x > 0.5).any(1) & (x > -1.5).all(-1)), (r(4, 6),), True),
    ("any-all-global", Fn(lambda x: torch.stack([(x > 0).any(), (x > 2).all(), x.any()])), (r(3, 4),), True),
    ("any-keepdim-int", Fn(lambda x: x.any(0, keepdim=True) | x.all(dim=(0, 1), keepdim=True)), (ints(3, 4),), False),
    ("cumsum", Fn(lambda x: x.cumsum(1)), (r(2, 5, 3),), True),
    ("cumsum-last-and-vector", Fn(lambda x, v: x.cumsum(-1).sum(0) + v.cumsum(0)), (r(3, 4), r(4)), True),
    ("cumsum-int-and-bool", Fn(lambda x: x.cumsum(-1) + torch.cumsum(x > 0, 0)), (ints(3, 4),), False),
    ("logsumexp", Fn(lambda x: x.logsumexp(1)), (r(2, 5, 3) * 10,), True),
    ("logsumexp-keepdim-two-dims", Fn(lambda x: x.logsumexp((0, -1), keepdim=True)), (r(2, 5, 3),), True),
    (
        "logsumexp-minus-inf",
        Fn(lambda x: x.masked_fill(x > 0.5, float("-inf")).logsumexp(-1)),
        (torch.cat([torch.ones(1, 4), r(2, 4)]),),
        True,
    ),
    # creation
    ("arange", Fn(lambda x: x * torch.arange(5, dtype=torch.float32)), (r(2, 5),), True),
    ("arange-int", Fn(lambda x: x + torch.arange(5)), (ints(2, 5),), False),
    ("arange-start-step", Fn(lambda x: torch.arange(1, 14, 3) * x), (ints(2, 5),), False),
    ("arange-float", Fn(lambda x: x + torch.arange(-1.0, 1.5, 0.5)), (r(2, 5),), True),
    ("arange-negative-step", Fn(lambda x: x + torch.arange(4, -6, -2, dtype=torch.float32)), (r(2, 5),), True),
    (
        "zeros-ones-full",
        Fn(lambda x: x + torch.zeros(2, 3) - torch.ones(3) * torch.full((2, 1), 2.5)),
        (r(2, 3),),
        True,
    ),
    (
        "new-zeros-ones-full",
        Fn(lambda x: x.new_zeros(3) + x.new_ones(2, 1) + x.new_full((2, 3), -7.0)),
        (r(2, 3),),
        True,
    ),
    (
        "full-int-bool",
        Fn(lambda x: x + torch.full((3,), -4, dtype=torch.int64) * torch.ones(2, 3, dtype=torch.int64)),
        (ints(2, 3),),
        False,
    ),
    (
        "full-bool",
        Fn(lambda x: torch.where(torch.full((2, 3), True) & ~torch.zeros(3, dtype=torch.bool), x, 0.0)),
        (r(2, 3),),
        True,
    ),
    ("scalar-tensor", Fn(lambda x: x + torch.scalar_tensor(3.0)), (r(2, 3),), True),
    ("empty-fill-zero", Fn(lambda x: x + torch.empty(2, 3).fill_(1.5) + x.new_empty(3).zero_()), (r(2, 3),), True),
    ("linspace", Fn(lambda x: x * torch.linspace(-1, 1, 5)), (r(2, 5),), True),
    # triangles, rolls, flips, slicing
    ("tril", Fn(torch.tril), (r(4, 5),), True),
    ("triu-diagonal", Fn(lambda x: torch.triu(x, 1) + torch.triu(x, -2)), (r(2, 4, 5),), True),
    ("tril-negative-diagonal", Fn(lambda x: torch.tril(x, -1)), (r(3, 5, 4),), True),
    ("tril-int", Fn(lambda x: torch.tril(x, 1)), (ints(4, 4),), False),
    ("roll", Fn(lambda x: torch.roll(x, 2, 1)), (r(3, 5),), True),
    ("roll-negative-multi", Fn(lambda x: torch.roll(x, (-1, 3), (0, -1))), (r(3, 4),), True),
    ("roll-flat", Fn(lambda x: torch.roll(x, -5)), (r(3, 4),), True),
    ("roll-larger-than-axis", Fn(lambda x: torch.roll(x, 7, 1)), (r(2, 5),), True),
    ("flip", Fn(lambda x: torch.flip(x, (0, -1))), (r(3, 4, 2),), True),
    ("flip-int", Fn(lambda x: x.flip(1)), (ints(3, 4),), False),
    ("narrow", Fn(lambda x: x.narrow(1, 1, 3) * x.narrow(-2, 0, 3)), (r(2, 5, 3),), True),
    ("narrow-last", Fn(lambda x: x.narrow(-1, 2, 1)), (r(2, 5, 3),), True),
    ("unbind", Fn(lambda x: sum(t * (i + 1) for i, t in enumerate(x.unbind(1)))), (r(2, 3, 4),), True),
    ("unbind-negative", Fn(lambda x: x.unbind(-1)[2] - x.unbind(-1)[0]), (r(2, 3),), True),
    ("repeat-interleave", Fn(lambda x: x.repeat_interleave(2, dim=1)), (r(2, 3, 4),), True),
    ("repeat-interleave-flat", Fn(lambda x: x.repeat_interleave(3)), (r(2, 3),), True),
    ("repeat-interleave-negative-dim", Fn(lambda x: x.repeat_interleave(2, dim=-1)), (ints(2, 3),), True),
    # gathers and indexing
    ("gather", Fn(lambda x, i: x.gather(1, i)), (r(3, 4), torch.tensor([[0, 3], [2, 2], [1, 0]])), False),
    ("gather-dim0", Fn(lambda x, i: torch.gather(x, 0, i)), (r(3, 4), torch.tensor([[2, 0, 1, 1]])), False),
    ("index", Fn(lambda x, i: x[i]), (r(4, 3), torch.tensor([3, 0, 0, 2])), False),
    ("index-negative", Fn(lambda x, i: x[i]), (r(4, 3), torch.tensor([-1, 0, -4])), False),
    ("index-axis1", Fn(lambda x, i: x[:, i]), (r(2, 4, 3), torch.tensor([1, 3])), False),
    ("index-2d-indices", Fn(lambda x, i: x[..., i]), (r(2, 4), torch.tensor([[0, 3], [1, 1]])), False),
    ("index-pair", Fn(lambda x, i, j: x[i, j]), (r(3, 4), torch.tensor([0, 2, -1]), torch.tensor([3, 1, -2])), False),
    (
        "index-pair-adjacent",
        Fn(lambda x, i, j: x[:, i, j]),
        (r(2, 3, 4), torch.tensor([0, 2]), torch.tensor([1, 3])),
        False,
    ),
    (
        "index-pair-separated",
        Fn(lambda x, i, j: x[i, :, j]),
        (r(2, 3, 4), torch.tensor([1, 0]), torch.tensor([3, 1])),
        False,
    ),
    (
        "index-broadcast",
        Fn(lambda x, i, j: x[i[:, None], j]),
        (r(3, 4), torch.tensor([0, 2]), torch.tensor([1, 3, 0])),
        False,
    ),
    # products
    ("matmul-vector-matrix", Fn(torch.matmul), (r(4), r(4, 3)), True),
    ("matmul-matrix-vector", Fn(torch.matmul), (r(3, 4), r(4)), True),
    ("matmul-vector-vector", Fn(torch.matmul), (r(4), r(4)), True),
    ("matmul-ranks-2-and-4", Fn(torch.matmul), (r(3, 4), r(2, 2, 4, 5)), True),
    (
        "sub-alpha-int",
        Fn(lambda a, b: torch.sub(a, b, alpha=3) + torch.add(a, 2, alpha=-2)),
        (ints(2, 3), ints(2, 3)),
        False,
    ),
    ("matmul-batched-vector", Fn(lambda a, v: a @ v + (v @ a.transpose(1, 2))), (r(2, 3, 3), r(3)), True),
    (
        "mv-dot-outer",
        Fn(lambda a, v: torch.mv(a, v) + torch.dot(v, v) + torch.outer(v, v).sum(0)),
        (r(3, 3), r(3)),
        True,
    ),
    ("inner", Fn(torch.inner), (r(2, 4), r(3, 4)), True),
    ("einsum-bmm", Fn(lambda a, b: torch.einsum("bij,bjk->bik", a, b)), (r(2, 3, 4), r(2, 4, 5)), True),
    ("einsum-attention", Fn(lambda q, k: torch.einsum("bhqd,bhkd->bhqk", q, k)), (r(2, 3, 4, 8), r(2, 3, 5, 8)), True),
    ("einsum-transpose", Fn(lambda a: torch.einsum("ij->ji", a)), (r(3, 4),), True),
    ("einsum-dot", Fn(lambda a, b: torch.einsum("i,i->", a, b)), (r(5), r(5)), True),
    ("einsum-rowwise-dot", Fn(lambda a, b: torch.einsum("bi,bi->b", a, b)), (r(3, 5), r(3, 5)), True),
    ("einsum-outer", Fn(lambda a, b: torch.einsum("i,j->ij", a, b)), (r(3), r(4)), True),
    ("einsum-implicit-ellipsis", Fn(lambda a, b: torch.einsum("...ij,...jk", a, b)), (r(2, 3, 4), r(2, 4, 5)), True),
    (
        "einsum-multi-contract",
        Fn(lambda a, b: torch.einsum("bijk,bjkl->bli", a, b)),
        (r(2, 3, 4, 5), r(2, 4, 5, 6)),
        True,
    ),
    ("einsum-chain-sum", Fn(lambda a, b, c: torch.einsum("ij,jk,kl->i", a, b, c)), (r(2, 3), r(3, 4), r(4, 5)), True),
    ("einsum-reduce", Fn(lambda a: torch.einsum("bij->j", a)), (r(2, 3, 4),), True),
    ("einsum-transposed-operands", Fn(lambda a, b: torch.einsum("ji,kj->ik", a, b)), (r(4, 3), r(5, 4)), True),
    (
        "einsum-weights-values",
        Fn(lambda w, v: torch.einsum("bhqk,bhkd->bhqd", w, v)),
        (r(2, 3, 4, 5), r(2, 3, 5, 8)),
        True,
    ),
]


OP_PARAMS = op_params(CASES)


@pytest.mark.parametrize(("target", "module", "inputs"), OP_PARAMS)
def test_tensor_op_table(tmp_path: Path, target: str, module: nn.Module, inputs: tuple[torch.Tensor, ...]):
    """Each case is exported and verified in tract; Khronos cases also by the Khronos parser."""
    export_and_check(tmp_path, target, module, inputs)


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
    ("roll-dynamic", lambda x: torch.roll(x, 2, 1) + torch.roll(x, -1, 1) * 10, (2, 5)),
    ("roll-flat-dynamic", lambda x: torch.roll(x, 3), (2, 5)),
    ("flip-dynamic", lambda x: torch.flip(x, (0, 1)), (2, 5)),
    ("cumsum-logsumexp-dynamic", lambda x: x.cumsum(1) + x.logsumexp(1, keepdim=True), (2, 5)),
    ("norm-prod-dynamic", lambda x: x.norm(dim=1) + x.prod(1) + x.amax(1), (2, 5)),
    ("repeat-interleave-dynamic", lambda x: x.repeat_interleave(2, dim=1) * 2, (2, 5)),
    (
        "index-pair-dynamic",
        lambda x: x[torch.tensor([1, 0, 1]), torch.tensor([-1, 2, 0])] + x[:, torch.tensor([0, -1])].sum(),
        (2, 5),
    ),
    ("gather-dynamic", lambda x: x.gather(1, torch.tensor([[0, 1], [1, 0]])) + x.unbind(0)[1].sum(), (2, 5)),
    ("numel-dynamic", lambda x: x / x.numel() + x.size(1), (2, 5)),
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


def _heads(x: torch.Tensor) -> torch.Tensor:
    """Attention's split into heads and back, over a dynamic sequence."""
    b, s, _ = x.shape
    heads = x.reshape(b, s, 2, -1).transpose(1, 2)
    return (heads * heads.sum(2, keepdim=True)).transpose(1, 2).reshape(b, s, -1)


SHAPE_ARITHMETIC_CASES: list[tuple[str, Callable[[torch.Tensor], torch.Tensor], tuple[int, ...], int, str]] = [
    # (id, function, example shape, dynamic axis 'S', that axis as the export takes it)
    ("view-fixed-parts", lambda x: x.view(2, -1, 2) * 2, (6, 6), 0, "2*S_2"),  # 6*S / 4 rows: S even
    ("view-trailing-pair", lambda x: x.view(-1, 2).sum(1), (3, 4), 1, "2*S_2"),
    ("view-by-four", lambda x: x.view(x.size(0), -1, 4).mean(-1), (2, 8), 1, "4*S_4"),
    ("view-half-size", lambda x: x.view(x.size(0), x.size(1) // 2, 2).amax(-1), (2, 6), 1, "2*S_2"),
    ("unflatten-pairs", lambda x: x.unflatten(1, (-1, 2)).sum(-1), (2, 6), 1, "2*S_2"),
    ("halves-added", lambda x: x[:, x.size(1) // 2 :] - x[:, : x.size(1) // 2], (2, 6), 1, "2*S_2"),
    ("reshape-after-crop", lambda x: x[:, 1:].reshape(x.size(0), -1, 2).sum(-1), (2, 7), 1, "1+2*S_2"),
    ("first-half", lambda x: x[:, : x.size(1) // 2] * 2, (2, 7), 1, "S"),
    ("attention-heads", _heads, (2, 5, 8), 1, "S"),
    ("flatten-after-global-pool", lambda x: F.adaptive_avg_pool2d(x, 1).flatten(1), (2, 3, 5, 4), 2, "S"),
    ("flatten-all", lambda x: x.flatten() * x.numel(), (2, 5), 1, "S"),
    ("arange-index", lambda x: x.index_select(1, torch.arange(x.size(1) - 1)), (2, 5), 1, "S"),
    ("even-odd-interleave", lambda x: torch.cat([x[:, :, ::2], x[:, :, 1::2]], 1), (1, 2, 6), 2, "2*S_2"),
    ("strided", lambda x: x[:, ::2] * 2 + x[:, 1::3].sum(1, keepdim=True), (2, 7), 1, "S"),
    ("strided-from-the-end", lambda x: x[:, -5::2] + x[:, x.size(1) // 2 :: 2].sum(1, keepdim=True), (2, 8), 1, "S"),
    ("unfold-windows", lambda x: x.unfold(1, 3, 2).sum(-1) + x.unfold(1, 2, 2).amax(-1)[:, :1], (2, 7), 1, "S"),
    ("max-pool1d", lambda x: F.max_pool1d(x, 3, 2, 1) * nn.MaxPool1d(2)(x).sum(-1, keepdim=True), (1, 2, 9), 2, "S"),
    ("size-as-float", lambda x: x / x.size(1) ** 0.5 + x * (x.size(1) / 2) - x * (0.5 * x.size(1) + 1), (2, 6), 1, "S"),
    ("pad-to-a-multiple", lambda x: F.pad(x, (1, (4 - x.size(1) % 4) % 4), value=2.0), (2, 6), 1, "S"),
    ("pad-rows-to-a-multiple", lambda x: F.pad(x, (0, 0, (-x.size(2)) % 3, 0)), (1, 2, 5, 3), 2, "S"),
    (
        "skip-join-at-any-size",  # a U-Net's decoder resized to its skip connection's size, whatever the ratio
        lambda x: torch.cat([x, F.interpolate(F.max_pool2d(x, 2), size=x.shape[2:], mode="bilinear")], 1),
        (1, 2, 7, 6),
        2,
        "S",
    ),
    ("nearest-to-another-size", lambda x: F.interpolate(x[:, :, ::2], size=x.shape[2:]), (1, 2, 7, 3), 2, "S"),
    (
        "aligned-corners-to-another-size",
        lambda x: F.interpolate(x[:, :, ::3], size=x.shape[2:], mode="bilinear", align_corners=True),
        (1, 2, 7, 3),
        2,
        "S",
    ),
    ("linear-by-1.5", lambda x: F.interpolate(x, scale_factor=1.5, mode="linear"), (1, 2, 9), 2, "S"),
    ("bilinear-by-half", lambda x: F.interpolate(x, scale_factor=0.5, mode="bilinear"), (1, 2, 9, 4), 2, "S"),
    ("repeat-dynamic", lambda x: x.repeat(2, 3), (2, 5), 1, "S"),
    ("adaptive-avg-pool-flatten", lambda x: F.adaptive_avg_pool2d(x, (3, 2)).flatten(1), (1, 2, 8, 7), 2, "S"),
    ("adaptive-max-pool", lambda x: F.adaptive_max_pool1d(x, 4), (1, 2, 9), 2, "S"),
    ("var-std", lambda x: x.var(1) + x.std(1, keepdim=True).sum(1) + x.var(1, correction=0), (2, 6), 1, "S"),
    ("group-norm", lambda x: F.group_norm(x, 2), (1, 4, 6), 2, "S"),
    ("glu-halves", lambda x: F.glu(x, 1), (2, 6), 1, "2*S_2"),
    ("linear-to-size", lambda x: F.interpolate(x, size=x.size(2) * 2, mode="linear"), (1, 2, 5), 2, "S"),
    ("nearest-to-size", lambda x: F.interpolate(x, size=(2 * x.size(2), 15)), (1, 2, 3, 5), 2, "S"),
]


@pytest.mark.parametrize(
    ("fn", "shape", "axis", "form"),
    [pytest.param(fn, shape, axis, form, id=name) for name, fn, shape, axis, form in SHAPE_ARITHMETIC_CASES],
)
def test_shape_arithmetic_over_a_dynamic_axis(
    tmp_path: Path, fn: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, ...], axis: int, form: str
):
    """Reshapes with -1 and sizes computed from a dynamic axis: where torch's guards need the size in
    steps (6*S rows viewed as pairs of pairs: S even), the axis is written over its own symbol; the
    export is checked at two sizes, then run at a third and refused at a size outside the steps.
    """
    path = export_model_to_nnef(
        Fn1(fn),
        torch.randn(*shape),
        tmp_path / "m.nnef",
        TractNNEF(check_io=True, dynamic_axes={"x": {axis: "S"}}),
        input_names=["x"],
    )
    model = TractModel(path)
    assert model.inputs[0][2].split(",")[axis] == form
    step = int(form.split("*")[0].split("+")[-1]) if "*" in form else 1
    third = list(shape)
    third[axis] += 3 * step
    x = torch.randn(*third)
    (got,) = model.run([x])
    torch.testing.assert_close(torch.from_numpy(got), fn(x), atol=1e-4, rtol=1e-4)
    if step > 1:
        third[axis] += 1
        with pytest.raises(ShapeError, match=f"on axis {axis}, where this model takes "):
            model.run([torch.randn(*third)])


@pytest.mark.parametrize(
    ("name", "module", "inputs"),
    [
        ("gather", Fn(lambda x, i: x.gather(1, i)), (r(3, 4), torch.tensor([[0, 3], [2, 2], [1, 0]]))),
        ("index", Fn(lambda x, i: x[i]), (r(4, 3), torch.tensor([3, 0]))),
        ("bitwise", Fn(lambda a, b: a & b), (ints(3, 4), ints(3, 4))),
        ("remainder-int", Fn(lambda a: a % 3), (ints(3, 4),)),
    ],
)
def test_khronos_refuses_tract_only_ops(tmp_path: Path, name: str, module: nn.Module, inputs: tuple[torch.Tensor, ...]):
    """What the NNEF specification cannot express is refused by name, pointing at TractNNEF."""
    with pytest.raises(TranslationError, match="TractNNEF") as err:
        export_model_to_nnef(module, inputs, tmp_path / "m.nnef", KhronosNNEF())
    assert "aten::" in str(err.value)
    assert not (tmp_path / "m.nnef").exists()


def test_unsupported_forms_say_why(tmp_path: Path):
    with pytest.raises(TranslationError, match="data-dependent"):
        export_model_to_nnef(
            Fn(lambda x: x.repeat_interleave(torch.tensor([1, 2, 1]), dim=1)), r(2, 3), tmp_path / "a.nnef", TractNNEF()
        )
    with pytest.raises(TranslationError, match="diagonal"):
        export_model_to_nnef(Fn(lambda x: torch.einsum("ii->i", x)), r(3, 3), tmp_path / "b.nnef", TractNNEF())
    with pytest.raises(TranslationError, match="no bit cast"):
        export_model_to_nnef(Fn(lambda x: x.view(torch.int32) + 1), r(3, 3), tmp_path / "d.nnef", TractNNEF())
    with pytest.raises(TranslationError, match="singular values"):
        export_model_to_nnef(
            Fn(lambda x: torch.linalg.matrix_norm(x, ord="nuc")), r(3, 3), tmp_path / "c.nnef", TractNNEF()
        )
