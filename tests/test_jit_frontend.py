"""The torch.jit.trace front-end: float op cases of the op tables through both front-ends, the
automatic choice between them, and its refusals (dynamic axes, unknown front-end)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

import test_ops_nn
import test_ops_tensor
from optable import Fn, r
from torch_to_nnef import TractNNEF, export_model_to_nnef
from torch_to_nnef.capture_jit import JitCaptureError, capture_jit
from torch_to_nnef.errors import InvalidArgumentError

SELECTED = {
    # layers: convolutions, norms, pooling, resizing, attention
    "conv3d-stride-groups",
    "conv1d-reflect",
    "conv2d-replicate",
    "conv-transpose1d-output-padding",
    "conv-transpose2d-groups-dilation",
    "instance-norm1d-affine",
    "instance-norm2d-running-stats",
    "rms-norm",
    "weight-norm-conv1d",
    "maxpool2d-ceil-pad",
    "maxpool2d-dilation",
    "avgpool2d-ceil-pad-exclude",
    "avgpool2d-divisor",
    "adaptive-avgpool2d-mixed",
    "adaptive-maxpool2d",
    "upsample-nearest2d-scale",
    "upsample-bilinear-align",
    "upsample-linear-scale",
    "pixel-shuffle",
    "channel-shuffle",
    "mha-batch-first",
    "mha-masks",
    "baddbmm",
    # tensor ops: arithmetic, reductions, creation, indexing, matmul
    "remainder-tensor",
    "div-floor",
    "int-arith-scalars",
    "bitwise-int",
    "prod-dim",
    "norm-2",
    "any-all-dims",
    "cumsum",
    "logsumexp",
    "arange-start-step",
    "zeros-ones-full",
    "tril",
    "roll",
    "flip",
    "unbind",
    "gather",
    "index-pair",
    "matmul-ranks-2-and-4",
    "einsum-attention",
}
CASES = [c for c in [*test_ops_nn.CASES, *test_ops_tensor.CASES] if c[0] in SELECTED]

EXTRA = [
    # what torch.jit.trace records differently from torch.export: batch_norm, _convolution, in-place relu6,
    # chunk, .to(dtype), shape arithmetic on traced sizes, the transformer layers' fused fast path
    (
        "conv-bn-relu6-inplace",
        nn.Sequential(nn.Conv2d(3, 8, 3), test_ops_nn.running_stats(nn.BatchNorm2d(8)), nn.ReLU6(inplace=True)),
        (r(2, 3, 10, 10),),
    ),
    ("chunk-reversed", Fn(lambda x: torch.cat(x.chunk(3, dim=1)[::-1], 1)), (r(2, 7),)),
    ("to-f16-and-back", Fn(lambda x: (x.to(torch.float16) * 2).float()), (r(3, 4),)),
    ("view-by-size", Fn(lambda x: x.view(x.size(0), -1).softmax(-1)), (r(2, 3, 4),)),
    ("narrow-expand-as", Fn(lambda x, y: x.narrow(1, 1, 4).expand_as(y) + y), (r(1, 6), r(3, 4))),
    (
        "two-constant-tensors",
        Fn(lambda x: x * torch.tensor([1.0, 2.0, 3.0]) + torch.tensor([4.0, 5.0, 6.0])),
        (r(2, 3),),
    ),
    ("transformer-encoder-layer", nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True), (r(2, 5, 16),)),
]


def test_selection_is_found():
    assert sorted(c[0] for c in CASES) == sorted(SELECTED)


@pytest.mark.parametrize("frontend", ["export", "jit"])
@pytest.mark.parametrize(
    ("module", "inputs"), [pytest.param(m, i, id=n) for n, m, i in [*((n, m, i) for n, m, i, _ in CASES), *EXTRA]]
)
def test_op_table_both_frontends(tmp_path: Path, frontend: str, module: nn.Module, inputs: tuple[torch.Tensor, ...]):
    export_model_to_nnef(module.eval(), inputs, tmp_path / "m.nnef", TractNNEF(check_io=True), frontend=frontend)


class DataDependent(nn.Module):
    """Python control flow on a tensor's value: torch.export refuses it, a trace freezes one branch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if bool(y.mean() > -100.0):
            return torch.relu(y)
        return y


def test_auto_falls_back_to_jit_with_the_reason_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    from torch_to_nnef import export as export_module
    from torch_to_nnef.capture import CaptureError

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise CaptureError("torch.export could not capture Sequential: (a refusal for this test)")

    monkeypatch.setattr(export_module, "capture", refuse)
    model = nn.Sequential(nn.Conv1d(3, 4, 3), nn.ReLU())
    with caplog.at_level(logging.WARNING, logger="torch_to_nnef"):
        export_model_to_nnef(model.eval(), (r(1, 3, 9),), tmp_path / "m.nnef", TractNNEF(check_io=True))
    refused = [rec.getMessage() for rec in caplog.records if "torch.export refused" in rec.getMessage()]
    assert refused and "a refusal for this test" in refused[0]


def test_auto_does_not_freeze_a_data_dependent_branch(tmp_path: Path):
    from torch_to_nnef.capture import CaptureError

    with pytest.raises(CaptureError, match="(?s)values inside a tensor.*jit.trace was tried too.*only the path"):
        export_model_to_nnef(DataDependent().eval(), (r(1, 3, 9),), tmp_path / "m.nnef", TractNNEF())


def test_jit_frontend_asked_for_traces_one_branch_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING, logger="torch_to_nnef"):
        export_model_to_nnef(
            DataDependent().eval(), (r(1, 3, 9),), tmp_path / "m.nnef", TractNNEF(check_io=True), frontend="jit"
        )
    assert any("torch.jit.trace: Converting a tensor to a Python boolean" in rec.getMessage() for rec in caplog.records)


def test_export_frontend_alone_does_not_fall_back(tmp_path: Path):
    from torch_to_nnef.capture import CaptureError

    with pytest.raises(CaptureError, match="values inside a tensor") as err:
        export_model_to_nnef(DataDependent().eval(), (r(1, 3, 9),), tmp_path / "m.nnef", TractNNEF(), frontend="export")
    assert "jit.trace" not in str(err.value)


def test_unknown_frontend_is_refused(tmp_path: Path):
    with pytest.raises(InvalidArgumentError, match="frontend 'onnx' is unknown"):
        export_model_to_nnef(Fn(torch.relu), (r(2),), tmp_path / "m.nnef", TractNNEF(), frontend="onnx")


def test_dynamic_axes_are_refused_by_the_jit_frontend(tmp_path: Path):
    target = TractNNEF(dynamic_axes={"input_0": {1: "S"}})
    with pytest.raises(JitCaptureError, match="dynamic axes .* torch.jit.trace front-end.*frontend='export'"):
        export_model_to_nnef(Fn(torch.relu), (r(2, 5),), tmp_path / "m.nnef", target, frontend="jit")


def test_jit_graph_keeps_module_paths_dtypes_shapes_and_source_lines():
    model = nn.Sequential(nn.Conv1d(3, 4, 3), nn.Sequential(nn.ReLU(), nn.Flatten()))
    graph, _ = capture_jit(model.eval(), [r(2, 3, 8)], ["x"])
    by_kind = {n.kind: n for n in graph.nodes}
    conv = by_kind["aten::convolution"]
    assert conv.module_path == "0" and conv.module_class == "Conv1d"
    assert conv.outputs[0].dtype == "f32" and conv.outputs[0].shape == (2, 4, 6)
    assert len(conv.args) == 9 and conv.args[3] == [1] and conv.args[8] == 1  # convolution's ATen schema
    assert by_kind["aten::relu"].module_path == "1.0" and by_kind["aten::relu"].module_class == "ReLU"
    assert by_kind["aten::flatten"].outputs[0].shape == (2, 24)
    line = capture_jit(Fn(lambda x: x * 2), [r(3)], ["x"])[0].nodes[0].source
    assert "test_jit_frontend.py" in line and "x * 2" in line
    assert [p.torch_name for p in graph.parameters.values()] == ["0.weight", "0.bias"]
