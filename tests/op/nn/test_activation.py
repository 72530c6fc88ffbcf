"""Activations (``op/nn/activation.py``): the ReLU family, sigmoid-like and smooth activations, GELU, GLU, PReLU,
softmax and log-softmax, each checked numerically.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness import Fn, OpCase, export_and_check, op_params, r
from torch_to_nnef import KhronosNNEF, TractNNEF, export_model_to_nnef
from torch_to_nnef.errors import TranslationError

aten = torch.ops.aten

CASES: list[OpCase] = [
    OpCase("silu", nn.SiLU(), (r(2, 8),), covers=("aten::silu",), khronos=True),
    OpCase("softmax", nn.Softmax(dim=1), (r(2, 5, 3),), covers=("aten::softmax",), khronos=True),
    OpCase("leaky-relu", nn.LeakyReLU(0.2), (r(2, 8),), covers=("aten::leaky_relu",), khronos=True),
    OpCase("elu", nn.ELU(0.7), (r(2, 8),), covers=("aten::elu",), khronos=True),
    OpCase("selu", nn.SELU(), (r(2, 8),), covers=("aten::selu",), khronos=True),
    OpCase("celu", nn.CELU(1.5), (r(2, 8),), covers=("aten::celu",), khronos=True),
    OpCase("hardsigmoid", nn.Hardsigmoid(), (r(2, 8) * 4,), covers=("aten::hardsigmoid",), khronos=True),
    OpCase("hardswish", nn.Hardswish(), (r(2, 8) * 4,), covers=("aten::hardswish",), khronos=True),
    OpCase("gelu-tanh", nn.GELU(approximate="tanh"), (r(2, 8) * 3,), covers=("aten::gelu",), khronos=True),
    OpCase("gelu", nn.GELU(), (r(2, 8) * 3,), covers=("aten::gelu",), khronos=True),
    # the exact form over its whole range: tails, the flat middle, values near zero
    OpCase(
        "gelu-range",
        nn.GELU(),
        (torch.cat([torch.linspace(-12, 12, 961), torch.logspace(-30, 0, 64), -torch.logspace(-30, 0, 64)]),),
        covers=("aten::gelu",),
        khronos=True,
    ),
    OpCase("log-softmax", nn.LogSoftmax(dim=-1), (r(2, 3, 8) * 5,), covers=("aten::log_softmax",), khronos=True),
    OpCase("softplus", nn.Softplus(beta=2.0, threshold=5.0), (r(2, 8) * 4,), covers=("aten::softplus",), khronos=True),
    OpCase("mish", nn.Mish(), (r(2, 8) * 4,), covers=("aten::mish",), khronos=True),
    # f16: the constants take the input's type (a literal would make tract compute in f32)
    OpCase(
        "softplus-f16",
        nn.Softplus(beta=2.0, threshold=5.0),
        ((r(2, 8) * 4).half(),),
        covers=("aten::softplus",),
        khronos=False,
    ),
    OpCase("mish-f16", nn.Mish(), ((r(2, 8) * 4).half(),), covers=("aten::mish",), khronos=False),
    OpCase("prelu-channels", nn.PReLU(3, init=0.1), (r(2, 3, 5),), covers=("aten::prelu",), khronos=True),
    OpCase("prelu-single", nn.PReLU(), (r(2, 4),), covers=("aten::prelu",), khronos=True),
    OpCase("glu", nn.GLU(dim=1), (r(2, 6, 3),), covers=("aten::glu",), khronos=True),
    # log-sigmoid
    OpCase("log-sigmoid", Fn(F.logsigmoid), (r(3, 4) * 30,), covers=("aten::log_sigmoid",), khronos=True),
    # activations
    OpCase("relu6", Fn(F.relu6), (r(3, 4) * 8,), covers=("aten::relu6",), khronos=True),
    OpCase("threshold", Fn(lambda x: F.threshold(x, 0.1, -2.0)), (r(3, 4),), covers=("aten::threshold",), khronos=True),
    OpCase(
        "rrelu-eval",
        Fn(lambda x: F.rrelu(x, 0.1, 0.3, training=False)),
        (r(3, 4),),
        covers=("aten::rrelu",),
        khronos=True,
    ),
    # other kinds and overloads of the core ATen set
    OpCase(
        "aten-log-softmax",
        Fn(lambda x: aten._log_softmax(x, 1, False)),
        (r(2, 5),),
        covers=("aten::_log_softmax",),
        khronos=True,
    ),
    OpCase(
        "aten-softmax", Fn(lambda x: aten._softmax(x, 0, False)), (r(2, 5),), covers=("aten::_softmax",), khronos=True
    ),
    # what torch 2.5 lowers attention's softmax to: zeros over a row that is all -inf
    OpCase(
        "safe-softmax-masked-row",
        Fn(
            lambda x: torch.ops.aten._safe_softmax(
                x.masked_fill(torch.tensor([False, True, False])[:, None], -math.inf), -1
            )
        ),
        (r(3, 5),),
        covers=("aten::_safe_softmax",),
        khronos=True,
    ),
]


@pytest.mark.parametrize(("target", "case"), op_params(CASES))
def test_op_table(tmp_path: Path, target: str, case: OpCase) -> None:
    """Each case exported and checked in tract (Khronos cases also by the Khronos parser and interpreter),
    translating the operators it covers."""
    export_and_check(tmp_path, target, case)


def test_rrelu_in_training_mode_is_refused(tmp_path: Path):
    module = Fn(lambda x: torch.ops.aten.rrelu(x, 0.1, 0.3, True))
    with pytest.raises(TranslationError, match="eval mode"):
        export_model_to_nnef(module, (r(2, 3),), tmp_path / "m.nnef", TractNNEF())


def test_khronos_rejects_tract_only_layers(tmp_path):
    """A layer the specification's text cannot express names the op and the targets that write it."""
    model = nn.Sequential(nn.Embedding(10, 4), nn.GELU())
    with pytest.raises(TranslationError, match=r"(?s)aten::embedding.*1\.0\.5 text.*KhronosNNEF\(\) writes it"):
        export_model_to_nnef(model, torch.tensor([[1, 7]]), tmp_path / "m", KhronosNNEF(strict_spec=True))
    assert not (tmp_path / "m").exists()
    export_model_to_nnef(model, torch.tensor([[1, 7]]), tmp_path / "m", KhronosNNEF(check_io=True))
