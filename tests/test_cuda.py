"""Models living on a CUDA device export and check like CPU ones (skipped without CUDA)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torch_to_nnef import KhronosNNEF, TractModel, TractNNEF, export_model_to_nnef

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )


@pytest.mark.parametrize("target", [TractNNEF(check_io=True), KhronosNNEF(check_io=True)], ids=["tract", "khronos"])
def test_cuda_cnn(tmp_path, target):
    model = _cnn().cuda().eval()
    x = torch.randn(2, 3, 16, 16, device="cuda")
    path = export_model_to_nnef(model, x, tmp_path / "cnn.nnef.tgz", target)
    (got,) = TractModel(path, registries=() if isinstance(target, KhronosNNEF) else ("tract_core",)).run([x.cpu()])
    torch.testing.assert_close(torch.from_numpy(got), model(x).cpu(), atol=1e-4, rtol=1e-4)
    assert all(p.device.type == "cuda" for p in model.parameters())  # the model stays where it was


def test_cuda_transformer_with_dynamic_length(tmp_path):
    layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).cuda().eval()
    export_model_to_nnef(
        model,
        torch.randn(1, 10, 32, device="cuda"),
        tmp_path / "enc.nnef.tgz",
        TractNNEF(check_io=True, dynamic_axes={"x": {1: "S"}}),  # second length drawn on the device too
        input_names=["x"],
    )


def test_cuda_f16_model_with_f32_islands(tmp_path):
    model = nn.Sequential(nn.Linear(32, 64), nn.GELU(approximate="tanh"), nn.LayerNorm(64), nn.Linear(64, 8))
    model = model.cuda().half().eval()
    path = export_model_to_nnef(
        model,
        torch.randn(4, 32, device="cuda", dtype=torch.float16),
        tmp_path / "half.nnef.tgz",
        TractNNEF(check_io=True, force_linear_accumulation_in_f32=True, force_norm_in_f32=True),
    )
    assert TractModel(path).outputs[0][1] == "F16"


def test_cuda_q4_0_model(tmp_path):
    from torch_to_nnef.io.compress import compress_model

    model = nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 32)).cuda().eval()
    compress_model(model, "min_max_q4_0")
    x = torch.randn(3, 64, device="cuda")
    expected = model(x)
    path = export_model_to_nnef(model, x, tmp_path / "q.nnef", TractNNEF(check_io=True))
    assert (path / "0.weight.dat").stat().st_size == 128 + 96 * 64 // 32 * 18  # Q4_0 blocks, not floats
    torch.testing.assert_close(model(x), expected, rtol=0, atol=0)
