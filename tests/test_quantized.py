"""Int8 quantized models (torch static quantization, eager and FX) exported through the jit
front-end and run by tract in integer arithmetic.

Each case states how far tract's output may be from the quantized torch model's (dequantized)
output, in quantization steps of the model's output (its scale):

- 0 (exact): quantize/dequantize and ops that only move integers or compare them (relu, max pool,
  flatten) give the very integers torch gives.
- 1 (one step): ops that requantize a sum (convolutions, linear layers, add, mul, cat, hardswish,
  sigmoid): tract and torch round the same real value, but compute it in a different order
  (tract: exact i32 accumulator times scale in f32, plus bias, then divided by the output scale;
  fbgemm: a fused multiplier), so a value falling on a rounding boundary may land one step apart.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.ao.quantization as tq
from torch import nn

from torch_to_nnef import KhronosNNEF, TractModel, TractNNEF, export_model_to_nnef
from torch_to_nnef.capture_jit import JitCaptureError
from torch_to_nnef.op.core import TranslationError

pytestmark = [
    pytest.mark.filterwarnings("ignore:torch.ao.quantization is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*quantized tensor creation functions.*:UserWarning"),
]

PER_TENSOR = tq.QConfig(activation=tq.default_observer, weight=tq.default_weight_observer)
PER_CHANNEL = tq.get_default_qconfig("fbgemm")  # weights symmetric per output channel


class Quantized(nn.Module):
    """QuantStub per input -> body -> DeQuantStub."""

    def __init__(self, body: nn.Module, inputs: int = 1) -> None:
        super().__init__()
        self.quants = nn.ModuleList(tq.QuantStub() for _ in range(inputs))
        self.body = body
        self.dequant = tq.DeQuantStub()

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.body(*(q(x) for q, x in zip(self.quants, xs))))


class Functional(nn.Module):
    """A FloatFunctional op (add, add_relu, mul, cat) of two quantized tensors."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.f = nn.quantized.FloatFunctional()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.name == "cat":
            return self.f.cat([a, b], dim=1)
        return getattr(self.f, self.name)(a, b)


def quantize(
    body: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    qconfig: tq.QConfig = PER_TENSOR,
    fuse: list[list[str]] | None = None,
) -> nn.Module:
    """Eager static quantization of ``body``, calibrated on ``inputs`` and a few random batches."""
    torch.manual_seed(0)
    model = Quantized(body, len(inputs)).eval()
    if fuse:
        tq.fuse_modules(model, fuse, inplace=True)
    model.qconfig = qconfig
    tq.prepare(model, inplace=True)
    with torch.no_grad():
        model(*inputs)
        for _ in range(4):
            model(*(torch.randn_like(x) * 2 for x in inputs))
    tq.convert(model, inplace=True)
    return model


def output_scale(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> float:
    """The scale of the quantized tensor that the model dequantizes last."""
    seen: list[float] = []
    hook = model.dequant.register_forward_pre_hook(lambda _m, args: seen.append(args[0].q_scale()))
    with torch.no_grad():
        model(*inputs)
    hook.remove()
    return seen[0]


def export_and_compare(tmp_path: Path, model: nn.Module, inputs: tuple[torch.Tensor, ...], steps: int) -> Path:
    """Exports through the jit front-end (chosen automatically), runs tract, and asserts its output
    is within ``steps`` quantization steps of the quantized torch model's output.
    """
    path = export_model_to_nnef(model, inputs, tmp_path / "q.nnef.tgz", TractNNEF())
    with torch.no_grad():
        expected = model(*inputs).numpy()
    got = TractModel(path).run([x.numpy() for x in inputs])[0]
    scale = output_scale(model, inputs)
    assert got.shape == expected.shape
    off = np.abs(got.astype(np.float64) - expected) / scale
    assert off.max() <= steps + 1e-3, f"{off.max():.3f} steps apart (allowed {steps})"
    return path


def r(*shape: int) -> torch.Tensor:
    return torch.randn(*shape)


X4 = r(2, 3, 8, 8)
X3 = r(2, 3, 12)
A, B = r(2, 4, 5, 5), r(2, 4, 5, 5) * 3

# (id, body, inputs, fused module lists, allowed steps)
CASES = [
    ("quantize-dequantize", nn.Identity(), (X4,), None, 0),
    ("conv1d", nn.Conv1d(3, 4, 3, dilation=2, padding=1), (X3,), None, 1),
    ("conv1d-relu", nn.Sequential(nn.Conv1d(3, 4, 3, stride=2), nn.ReLU()), (X3,), [["body.0", "body.1"]], 1),
    ("conv2d", nn.Conv2d(3, 4, 3, stride=2, padding=1), (X4,), None, 1),
    ("conv2d-groups-nobias", nn.Conv2d(3, 6, 3, groups=3, bias=False), (X4,), None, 1),
    ("conv2d-relu", nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), (X4,), [["body.0", "body.1"]], 1),
    ("linear", nn.Linear(12, 5), (r(3, 12),), None, 1),
    ("linear-3d", nn.Linear(12, 5), (r(2, 3, 12),), None, 1),
    ("linear-relu", nn.Sequential(nn.Linear(12, 5), nn.ReLU()), (r(3, 12),), [["body.0", "body.1"]], 1),
    ("add", Functional("add"), (A, B), None, 1),
    ("add-relu", Functional("add_relu"), (A, B), None, 1),
    ("mul", Functional("mul"), (A, B), None, 1),
    ("cat", Functional("cat"), (A, B), None, 1),
    ("relu", nn.ReLU(), (X4,), None, 0),
    ("hardswish", nn.Hardswish(), (X4,), None, 1),
    ("sigmoid", nn.Sigmoid(), (X4,), None, 1),
    ("maxpool-flatten", nn.Sequential(nn.MaxPool2d(2), nn.Flatten()), (X4,), None, 0),
]


@pytest.mark.parametrize(
    ("body", "inputs", "fuse", "steps"), [pytest.param(b, i, f, s, id=n) for n, b, i, f, s in CASES]
)
def test_quantized_op(tmp_path: Path, body: nn.Module, inputs: tuple[torch.Tensor, ...], fuse, steps: int):
    export_and_compare(tmp_path, quantize(body, inputs, fuse=fuse), inputs, steps)
