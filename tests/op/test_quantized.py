"""Int8 quantized models (torch static quantization, eager and FX) exported through the jit
front-end and run by tract in integer arithmetic.

Each case states how far tract's output may be from the quantized torch model's (dequantized)
output, in quantization steps of the model's output (its scale). Every op below is exact (0 steps):
tract computes the same integers as torch's fbgemm kernels on these inputs (and on 20 other random
batches per op when this table was written): quantize (round half to even, saturate), dequantize,
integer convolutions and matmuls (exact i32 accumulators, float bias, one rounding), and the ops
computed in f32 between a dequantization and a requantization (add, mul, cat, relu, hardswish,
sigmoid). Whole models allow two steps: a value that falls on a rounding boundary may round the
other way when tract and fbgemm order the float epilogue differently (scale x accumulator + bias),
and a one-step difference inside the model can grow by the next layers. Measured on the small CNN
over 30 random batches: 4 of 300 outputs differ, by at most 1 step (per-tensor weights) or 2 steps
(per-channel weights); the FX MLP is checked at one step.
"""

from __future__ import annotations

import logging
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.ao.quantization as tq
from torch import nn

from torch_to_nnef import KhronosNNEF, TractModel, TractNNEF, export_model_to_nnef
from torch_to_nnef.capture.jit import JitCaptureError
from torch_to_nnef.errors import TranslationError

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
        if self.name == "mul_relu":  # no FloatFunctional method: the quantized kernel once converted
            if isinstance(self.f, nn.quantized.QFunctional):
                return torch.ops.quantized.mul_relu(a, b, self.f.scale, self.f.zero_point)
            return torch.relu(self.f.mul(a, b))
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


class Fn(nn.Module):
    """A module around a function of one tensor."""

    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def r(*shape: int) -> torch.Tensor:
    return torch.randn(*shape)


X4 = r(2, 3, 8, 8)
X3 = r(2, 3, 12)
A, B = r(2, 4, 5, 5), r(2, 4, 5, 5) * 3

# (id, body, inputs, fused module lists, allowed steps)
CASES = [
    ("quantize-dequantize", nn.Identity(), (X4,), None, 0),
    ("conv1d", nn.Conv1d(3, 4, 3, dilation=2, padding=1), (X3,), None, 0),
    ("conv1d-relu", nn.Sequential(nn.Conv1d(3, 4, 3, stride=2), nn.ReLU()), (X3,), [["body.0", "body.1"]], 0),
    ("conv2d", nn.Conv2d(3, 4, 3, stride=2, padding=1), (X4,), None, 0),
    ("conv2d-groups-nobias", nn.Conv2d(3, 6, 3, groups=3, bias=False), (X4,), None, 0),
    ("conv2d-relu", nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), (X4,), [["body.0", "body.1"]], 0),
    ("linear", nn.Linear(12, 5), (r(3, 12),), None, 0),
    ("linear-3d", nn.Linear(12, 5), (r(2, 3, 12),), None, 0),
    ("linear-relu", nn.Sequential(nn.Linear(12, 5), nn.ReLU()), (r(3, 12),), [["body.0", "body.1"]], 0),
    ("add", Functional("add"), (A, B), None, 0),
    ("add-relu", Functional("add_relu"), (A, B), None, 0),
    ("mul", Functional("mul"), (A, B), None, 0),
    ("mul-relu", Functional("mul_relu"), (A, B), None, 0),
    ("cat", Functional("cat"), (A, B), None, 0),
    ("relu", nn.ReLU(), (X4,), None, 0),
    ("hardswish", nn.Hardswish(), (X4,), None, 0),
    ("sigmoid", nn.Sigmoid(), (X4,), None, 0),
    ("maxpool-flatten", nn.Sequential(nn.MaxPool2d(2), nn.Flatten()), (X4,), None, 0),
    # ATen ops on quantized tensors under a non-default overload (upsample_nearest2d.vec, mean.dim)
    ("interpolate-nearest", Fn(lambda x: nn.functional.interpolate(x, scale_factor=2, mode="nearest")), (X4,), None, 0),
    ("mean-over-axes", Fn(lambda x: x.mean((2, 3), keepdim=True)), (X4,), None, 1),
]


@pytest.mark.parametrize(
    ("body", "inputs", "fuse", "steps"), [pytest.param(b, i, f, s, id=n) for n, b, i, f, s in CASES]
)
def test_quantized_op(tmp_path: Path, body: nn.Module, inputs: tuple[torch.Tensor, ...], fuse, steps: int):
    export_and_compare(tmp_path, quantize(body, inputs, fuse=fuse), inputs, steps)


class SmallCNN(nn.Module):
    """conv-bn-relu twice, a residual add, global average pooling and a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()
        self.conv2, self.bn2, self.relu2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()
        self.skip = nn.quantized.FloatFunctional()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)
        for bn in (self.bn1, self.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.skip.add(y, self.relu2(self.bn2(self.conv2(y))))
        return self.fc(torch.flatten(self.pool(y), 1))


CNN_FUSE = [["body.conv1", "body.bn1", "body.relu1"], ["body.conv2", "body.bn2", "body.relu2"]]


def test_small_cnn_conv_bn_relu_fused(tmp_path: Path):
    x = r(2, 3, 16, 16)
    export_and_compare(tmp_path, quantize(SmallCNN(), (x,), fuse=CNN_FUSE), (x,), steps=2)


def test_small_cnn_per_channel_weights(tmp_path: Path):
    x = r(2, 3, 16, 16)
    export_and_compare(tmp_path, quantize(SmallCNN(), (x,), PER_CHANNEL, CNN_FUSE), (x,), steps=2)


def test_per_channel_conv(tmp_path: Path):
    x = X4
    model = quantize(nn.Conv2d(3, 6, 3, padding=1), (x,), PER_CHANNEL)
    w = model.body.weight()
    assert w.qscheme() == torch.per_channel_affine and not w.q_per_channel_zero_points().any()
    assert len(set(w.q_per_channel_scales().tolist())) == 6  # one scale per output channel
    export_and_compare(tmp_path, model, (x,), steps=0)


def test_fx_quantized_mlp(tmp_path: Path):
    from torch.ao.quantization import QConfigMapping, quantize_fx

    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8), nn.Hardswish(), nn.Linear(8, 4)).eval()
    x = r(4, 16)
    prepared = quantize_fx.prepare_fx(mlp, QConfigMapping().set_global(PER_TENSOR), (x,))
    with torch.no_grad():
        for _ in range(4):
            prepared(torch.randn(4, 16) * 2)
    model = quantize_fx.convert_fx(prepared)
    path = export_model_to_nnef(model, (x,), tmp_path / "mlp.nnef", TractNNEF(check_io=True))
    with torch.no_grad():
        expected = model(x).numpy()
    got = TractModel(path).run([x.numpy()])[0]
    step = model.get_submodule("4").scale
    assert np.abs(got - expected).max() <= step + 1e-6


def test_archive_keeps_int8_weights_and_their_parameters(tmp_path: Path):
    model = quantize(nn.Conv2d(3, 4, 3), (X4,))
    path = export_and_compare(tmp_path, model, (X4,), steps=0)
    with tarfile.open(path) as tar:
        quant = tar.extractfile("graph.quant").read().decode()
        weight_dat = tar.extractfile("body.weight.dat").read()
        graph = tar.extractfile("graph.nnef").read().decode()
    w = model.body.weight()
    line = next(x for x in quant.splitlines() if x.startswith('"body_weight"'))
    assert f"scale = {w.q_scale()!r}" in line and "zero_point = 0" in line and "signed = true" in line
    assert "body_weight = variable<integer>(label = 'body.weight', shape = [4, 3, 3, 3]);" in graph
    assert weight_dat[128:] == w.int_repr().numpy().tobytes()  # raw int8 after the 128-byte header
    assert "bits = 8, signed = false" in quant  # the uint8 activations


def test_khronos_refuses_quantized_models(tmp_path: Path):
    model = quantize(nn.Conv2d(3, 4, 3), (X4,))
    with pytest.raises(TranslationError, match="quantized models export to TractNNEF only"):
        export_model_to_nnef(model, (X4,), tmp_path / "k.nnef", KhronosNNEF())


def test_asymmetric_per_channel_weights_are_refused(tmp_path: Path):
    affine = tq.QConfig(
        activation=tq.default_observer,
        weight=tq.PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_affine),
    )
    model = quantize(nn.Conv2d(3, 4, 3), (X4,), affine)
    with pytest.raises(JitCaptureError, match="per-channel weight body.weight has non-zero zero points"):
        export_model_to_nnef(model, (X4,), tmp_path / "a.nnef", TractNNEF())


class QuantizedOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.quant = tq.QuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quant(x)


def test_quantized_outputs_are_refused(tmp_path: Path):
    model = QuantizedOutput().eval()
    model.qconfig = PER_TENSOR
    tq.prepare(model, inplace=True)
    model(X4)
    tq.convert(model, inplace=True)
    with pytest.raises(JitCaptureError, match="returns the quantized tensor .*DeQuantStub"):
        export_model_to_nnef(model, (X4,), tmp_path / "o.nnef", TractNNEF())


@pytest.mark.parametrize("scheme", ["raw", "numeric", "natural_verbose_camel"])
def test_auto_frontend_picks_jit_for_quantized_models(tmp_path: Path, caplog: pytest.LogCaptureFixture, scheme: str):
    model = quantize(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), (X4,), fuse=[["body.0", "body.1"]])
    with caplog.at_level(logging.INFO, logger="torch_to_nnef"):
        export_model_to_nnef(
            model, (X4,), tmp_path / "m.nnef", TractNNEF(check_io=True), nnef_variable_naming_scheme=scheme
        )
    chosen = [rec.getMessage() for rec in caplog.records if "capturing with torch.jit.trace" in rec.getMessage()]
    assert chosen and "is a torch quantized module" in chosen[0]
    assert not any("torch.export refused" in rec.getMessage() for rec in caplog.records)  # not even tried


def test_dynamic_axes_on_a_quantized_model_say_why(tmp_path: Path):
    model = quantize(nn.Conv1d(3, 4, 3), (X3,))
    target = TractNNEF(dynamic_axes={"input_0": {2: "S"}})
    with pytest.raises(JitCaptureError, match="dynamic axes .* torch.jit.trace"):
        export_model_to_nnef(model, (X3,), tmp_path / "d.nnef", target)


def test_export_frontend_names_the_quantized_module(tmp_path: Path):
    from torch_to_nnef.capture.torch_export import CaptureError

    model = quantize(nn.Conv2d(3, 4, 3), (X4,))
    with pytest.raises(
        CaptureError, match="quants.0 is a torch quantized module \\(Quantize\\); use frontend='jit' or 'auto'"
    ):
        export_model_to_nnef(model, (X4,), tmp_path / "e.nnef", TractNNEF(), frontend="export")


def test_signed_int8_activations(tmp_path: Path):
    signed = tq.QConfig(
        activation=tq.MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_affine),
        weight=tq.default_weight_observer,
    )
    model = quantize(nn.Identity(), (X4,), signed)
    path = export_and_compare(tmp_path, model, (X4,), steps=0)
    with tarfile.open(path) as tar:
        quant = tar.extractfile("graph.quant").read().decode()
    assert "bits = 8, signed = true" in quant and "signed = false" not in quant
