"""Losses (``op/nn/loss.py``): regression and classification losses under their reductions, each checked numerically."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from cases_common import Named, quiet

from harness import Fn, OpCase, export_and_check, op_params, r
from torch_to_nnef import TractNNEF, export_model_to_nnef


def loss_cases(
    name: str, fn: Callable[..., torch.Tensor], inputs: tuple[torch.Tensor, ...], khronos: bool, covers: tuple[str, ...]
) -> list[OpCase]:
    """One case whose module returns the loss under the three reductions (none, mean, sum)."""

    def all_reductions(*xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(fn(*xs, reduction=reduction) for reduction in ("none", "mean", "sum"))

    return [OpCase(name, Fn(quiet(all_reductions)), inputs, covers=covers, khronos=khronos)]


LABELS = torch.tensor([0, 3, 1, 2, 3])
LABELS_2D = torch.tensor([[[0, 2], [1, 3]], [[3, 3], [0, 1]]])

CASES: list[OpCase] = [
    # losses
    *loss_cases("mse", F.mse_loss, (r(3, 4), r(3, 4)), True, covers=("aten::mse_loss",)),
    *loss_cases("l1", F.l1_loss, (r(3, 4), r(3, 4)), True, covers=("aten::l1_loss",)),
    *loss_cases(
        "smooth-l1",
        lambda a, b, reduction: F.smooth_l1_loss(a, b, reduction=reduction, beta=0.5),
        (r(3, 4), r(3, 4)),
        True,
        covers=("aten::smooth_l1_loss",),
    ),
    *loss_cases(
        "huber",
        lambda a, b, reduction: F.huber_loss(a, b, reduction=reduction, delta=0.7),
        (r(3, 4), r(3, 4)),
        True,
        covers=("aten::huber_loss",),
    ),
    *loss_cases("cross-entropy", F.cross_entropy, (r(5, 4), LABELS), True, covers=("aten::cross_entropy_loss",)),
    *loss_cases(
        "cross-entropy-smoothing",
        lambda a, t, reduction: F.cross_entropy(a, t, reduction=reduction, label_smoothing=0.2),
        (r(5, 4), LABELS),
        True,
        covers=("aten::cross_entropy_loss",),
    ),
    *loss_cases(
        "cross-entropy-weight-ignore",
        lambda a, t, w, reduction: F.cross_entropy(
            a, t, weight=w, ignore_index=3, reduction=reduction, label_smoothing=0.1
        ),
        (r(5, 4), LABELS, torch.rand(4) + 0.5),
        True,
        covers=("aten::cross_entropy_loss",),
    ),
    *loss_cases(
        "cross-entropy-2d", F.cross_entropy, (r(2, 4, 2, 2), LABELS_2D), True, covers=("aten::cross_entropy_loss",)
    ),
    *loss_cases(
        "cross-entropy-probabilities",
        F.cross_entropy,
        (r(5, 4), torch.softmax(r(5, 4), -1)),
        True,
        covers=("aten::cross_entropy_loss",),
    ),
    *loss_cases(
        "cross-entropy-probabilities-smoothing",
        lambda a, t, w, reduction: F.cross_entropy(a, t, weight=w, reduction=reduction, label_smoothing=0.3),
        (r(5, 4), torch.softmax(r(5, 4), -1), torch.rand(4) + 0.5),
        True,
        covers=("aten::cross_entropy_loss",),
    ),
    *loss_cases("nll", F.nll_loss, (torch.log_softmax(r(5, 4), -1), LABELS), True, covers=("aten::nll_loss_nd",)),
    *loss_cases(
        "nll-2d-weight",
        lambda x, t, w, reduction: F.nll_loss(x, t, weight=w, reduction=reduction),
        (torch.log_softmax(r(2, 4, 2, 2), 1), LABELS_2D, torch.rand(4) + 0.5),
        True,
        covers=("aten::nll_loss_nd",),
    ),
    OpCase(
        "nll-unbatched",
        Fn(lambda x, t: F.nll_loss(x, t)),
        (torch.log_softmax(r(4), -1), torch.tensor(2)),
        covers=("aten::nll_loss_nd",),
        khronos=True,
    ),
    *loss_cases(
        "bce",
        F.binary_cross_entropy,
        (torch.rand(3, 4) * 0.9 + 0.05, torch.rand(3, 4)),
        True,
        covers=("aten::binary_cross_entropy",),
    ),
    *loss_cases(
        "bce-weight",
        lambda p, t, w, reduction: F.binary_cross_entropy(p, t, weight=w, reduction=reduction),
        (torch.rand(3, 4) * 0.9 + 0.05, torch.rand(3, 4), torch.rand(4)),
        True,
        covers=("aten::binary_cross_entropy",),
    ),
    *loss_cases(
        "bce-with-logits",
        F.binary_cross_entropy_with_logits,
        (r(3, 4) * 3, torch.rand(3, 4)),
        True,
        covers=("aten::binary_cross_entropy_with_logits",),
    ),
    *loss_cases(
        "bce-with-logits-pos-weight",
        lambda x, t, pw, reduction: F.binary_cross_entropy_with_logits(x, t, pos_weight=pw, reduction=reduction),
        (r(3, 4) * 3, torch.rand(3, 4), torch.rand(4) * 3),
        True,
        covers=("aten::binary_cross_entropy_with_logits",),
    ),
    *loss_cases(
        "kl-div", F.kl_div, (torch.log_softmax(r(3, 4), -1), torch.softmax(r(3, 4), -1)), True, covers=("aten::kl_div",)
    ),
    OpCase(
        "kl-div-batchmean",
        Fn(lambda x, t: F.kl_div(x, t, reduction="batchmean")),
        (torch.log_softmax(r(3, 4), -1), torch.softmax(r(3, 4), -1)),
        covers=("aten::kl_div",),
        khronos=True,
    ),
    OpCase(
        "kl-div-zero-target",
        Fn(lambda x, t: F.kl_div(x, t, reduction="sum")),
        (torch.log_softmax(r(2, 3), -1), torch.tensor([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])),
        covers=("aten::kl_div",),
        khronos=True,
    ),
    OpCase(
        "kl-div-log-target",
        Fn(lambda x, t: F.kl_div(x, t, reduction="none", log_target=True)),
        (torch.log_softmax(r(3, 4), -1), torch.log_softmax(r(3, 4), -1)),
        covers=("aten::kl_div",),
        khronos=True,
    ),
]


@pytest.mark.parametrize(("target", "case"), op_params(CASES))
def test_op_table(tmp_path: Path, target: str, case: OpCase) -> None:
    """Each case exported and checked in tract (Khronos cases also by the Khronos parser and interpreter),
    translating the operators it covers."""
    export_and_check(tmp_path, target, case)


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


DYNAMIC: list[tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor], tuple[torch.Tensor, torch.Tensor]]] = [
    ("mse-mean", lambda x, y: F.mse_loss(x, y), (r(3, 4), r(3, 4))),
    (
        "bce-with-logits-sum",
        lambda x, y: F.binary_cross_entropy_with_logits(x, y, reduction="sum"),
        (r(3, 4), torch.rand(3, 4)),
    ),
]


@pytest.mark.parametrize("fn,inputs", [pytest.param(f, i, id=n) for n, f, i in DYNAMIC])
def test_dynamic_batch(
    tmp_path: Path, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], inputs: tuple[torch.Tensor, torch.Tensor]
) -> None:
    """The first axis of both inputs dynamic: the graph is written with the symbol and checked by tract."""
    target = TractNNEF(check_io=True, dynamic_axes={"x": {0: "B"}, "y": {0: "B"}})
    path = export_model_to_nnef(Named(fn), inputs, tmp_path / "m.nnef", target, input_names=["x", "y"])
    assert "tract_symbol B" in (path / "graph.nnef").read_text()
