"""The torch.jit.trace front-end: every case of the op tables through it, the forms the trace records
differently from torch.export, the automatic choice between the front-ends, and the refusals (dynamic
axes, writes it cannot express, unknown front-end)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import test_activation
import test_attention
import test_conv
import test_creation
import test_elementwise
import test_indexing
import test_linalg
import test_loss
import test_lowered
import test_norm
import test_pool
import test_recurrent
import test_reductions
import test_resize
import test_shape
import test_signal
import torch
from torch import nn

from harness import Fn, OpCase, r
from torch_to_nnef import TractNNEF, export_model_to_nnef
from torch_to_nnef.capture.jit import JitCaptureError, capture_jit
from torch_to_nnef.errors import InvalidArgumentError


def _recurrent() -> list[tuple[str, nn.Module, tuple[torch.Tensor, ...]]]:
    """The recurrent layers and cells of test_recurrent, with their inputs."""
    torch.manual_seed(0)
    cases = []
    for name, make, batch_first, unbatched, with_state in test_recurrent.LAYERS:
        rnn = make()
        inputs = test_recurrent._layer_inputs(rnn, batch_first, unbatched, with_state)
        cases.append((name, test_recurrent.Layer(rnn, with_state), inputs))
    for name, make, unbatched, with_state in test_recurrent.CELLS:
        cell = make()
        cases.append(
            (name, test_recurrent.Cell(cell, with_state), test_recurrent._cell_inputs(cell, unbatched, with_state))
        )
    return cases


def _entries(cases: Sequence[OpCase]) -> list[tuple[str, nn.Module, tuple[torch.Tensor, ...]]]:
    return [(case.id, case.module, case.inputs) for case in cases]


TABLES: dict[str, Sequence[tuple[str, nn.Module, tuple[torch.Tensor, ...]]]] = {
    "elementwise": _entries(test_elementwise.CASES),
    "elementwise-older-forms": _entries(test_elementwise.OLDER_FORMS),
    "reductions": _entries(test_reductions.CASES),
    "shape": _entries(test_shape.CASES),
    "shape-older-forms": _entries(test_shape.OLDER_FORMS),
    "indexing": _entries(test_indexing.CASES),
    "creation": _entries(test_creation.CASES),
    "linalg": _entries(test_linalg.CASES),
    "activation": _entries(test_activation.CASES),
    "conv": _entries(test_conv.CASES),
    "norm": _entries(test_norm.CASES),
    "pool": _entries(test_pool.CASES),
    "resize": _entries(test_resize.CASES),
    "loss": _entries(test_loss.CASES),
    "attention": _entries(test_attention.CASES),
    "lowered": _entries(test_lowered.CASES),
    "signal": _entries(test_signal.CASES),
    "signal-warned": _entries(test_signal.WARNED),
    "mha": _entries(test_attention.MHA_CASES),
    "sdpa": _entries(test_attention.SDPA_CASES),
    "recurrent": _recurrent(),
}
"""The op tables, each case named ``<table>/<id>`` here (ids repeat across tables)."""

NOT_APPLICABLE = {
    "creation/full-bool": "torch.jit.trace itself fails on torch.full with a bool fill value (an internal assert "
    "of TorchScript's alias analysis: it finds no aten::full overload for a bool Scalar)",
}
"""Op-table cases that torch.jit.trace cannot capture, with the reason."""

CASES = [
    (f"{table}/{case[0]}", case[1], case[2])
    for table, cases in TABLES.items()
    for case in cases
    if f"{table}/{case[0]}" not in NOT_APPLICABLE
]


def _write_back(x: torch.Tensor) -> torch.Tensor:
    y = x.clone()
    t = y.transpose(0, 1)
    t[0] = 1.0  # through a select of a transpose
    y.view(-1)[:3].mul_(2)  # in place, through a slice of a reshape
    y[:, :2].relu_()
    y[2, 3] = 7.0  # a copy_ of a constant into a 0-d view
    return y + t.sum()  # t, taken before the last writes, sees them


def _stale_view(x: torch.Tensor) -> torch.Tensor:
    y = x.clone().unsqueeze(0)
    row = y[0, 1]
    y.add_(1)
    z = y.permute(2, 0, 1)
    z[1] += 2.0  # through a select of a permute: column 1 of y
    return y * row  # row, taken before the writes, sees both


def _transposed_copy_written(x: torch.Tensor) -> torch.Tensor:
    flat = x.clone().t().reshape(-1)  # a copy: x.t() is not contiguous
    flat[1:3] = 0.0
    return flat


def _transposed_copy_written_then_base_read(x: torch.Tensor) -> torch.Tensor:
    y = x.clone()
    y.t().reshape(-1)[1:3] = 0.0  # reshape may copy or view: unknown to the trace
    return y


def _copies_written(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    y = x.clone()
    copied = y.to(torch.float32, copy=True)
    copied.add_(1.0)
    contiguous = y.t().contiguous()  # a copy: y.t() is not contiguous
    contiguous.mul_(3.0)
    y.sub_(2.0)  # neither copy sees it
    return y, copied, contiguous


EXTRA = [
    # what torch.jit.trace records differently from torch.export: batch_norm, _convolution, in-place relu6,
    # chunk, .to(dtype), shape arithmetic on traced sizes, the transformer layers' fused fast path, writes
    # through views
    (
        "conv-bn-relu6-inplace",
        nn.Sequential(nn.Conv2d(3, 8, 3), test_norm.running_stats(nn.BatchNorm2d(8)), nn.ReLU6(inplace=True)),
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
    ("writes-through-views", Fn(_write_back), (r(3, 4),)),
    ("views-taken-before-writes", Fn(_stale_view), (r(3, 4),)),
    ("write-into-a-reshaped-copy", Fn(_transposed_copy_written), (r(3, 4),)),
    ("copies-written", Fn(_copies_written), (r(3, 4),)),
]


def test_not_applicable_cases_are_in_the_tables():
    ids = {f"{table}/{case[0]}" for table, cases in TABLES.items() for case in cases}
    assert set(NOT_APPLICABLE) <= ids
    assert len(CASES) + len(NOT_APPLICABLE) == sum(len(cases) for cases in TABLES.values())


@pytest.mark.parametrize(
    ("module", "inputs"),
    [
        pytest.param(
            m,
            i,
            id=n,
            # torch warns about these (see test_signal.WARNED)
            marks=[pytest.mark.filterwarnings("ignore::UserWarning")] if n.startswith("signal-warned/") else [],
        )
        for n, m, i in CASES
    ],
)
def test_op_table_through_jit(tmp_path: Path, module: nn.Module, inputs: tuple[torch.Tensor, ...]):
    """Every op-table case, captured by torch.jit.trace, checked in tract (the tables check torch.export)."""
    export_model_to_nnef(module.eval(), inputs, tmp_path / "m.nnef", TractNNEF(check_io=True), frontend="jit")


@pytest.mark.parametrize("frontend", ["export", "jit"])
@pytest.mark.parametrize(("module", "inputs"), [pytest.param(m, i, id=n) for n, m, i in EXTRA])
def test_traced_forms_both_frontends(
    tmp_path: Path, frontend: str, module: nn.Module, inputs: tuple[torch.Tensor, ...]
):
    export_model_to_nnef(module.eval(), inputs, tmp_path / "m.nnef", TractNNEF(check_io=True), frontend=frontend)


def _diagonal_zeroed(x: torch.Tensor) -> torch.Tensor:
    y = x.clone()
    y.diagonal().fill_(0.0)
    return y


def _split_zeroed(x: torch.Tensor) -> torch.Tensor:
    y = x.clone()
    y.split(2)[0].zero_()
    return y


def _added_out(x: torch.Tensor) -> torch.Tensor:
    buf = torch.empty(3, 4)
    torch.add(x, 1.0, out=buf)
    return buf * 2


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        pytest.param(_diagonal_zeroed, "writes in place into .* through aten::diagonal.*out of place", id="diagonal"),
        pytest.param(_split_zeroed, "writes in place into .* through aten::split", id="split"),
        pytest.param(_added_out, "out= tensor; assign the result instead", id="out"),
        pytest.param(
            _transposed_copy_written_then_base_read,
            "aten::reshape on the non-contiguous .* may be a copy or a view; clone it first",
            id="reshape-copy-or-view",
        ),
        pytest.param(lambda x: torch.fft.fft(x), "output .* is complex .*view_as_real", id="complex-output"),
    ],
)
def test_jit_refusals_say_what_to_change(tmp_path: Path, fn: Callable[[torch.Tensor], torch.Tensor], match: str):
    with pytest.raises(JitCaptureError, match=match):
        export_model_to_nnef(Fn(fn), (r(3, 4),), tmp_path / "m.nnef", TractNNEF(), frontend="jit")


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
    from torch_to_nnef.capture.torch_export import CaptureError

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise CaptureError("torch.export could not capture Sequential: (a refusal for this test)")

    monkeypatch.setattr(export_module, "capture", refuse)
    model = nn.Sequential(nn.Conv1d(3, 4, 3), nn.ReLU())
    with caplog.at_level(logging.WARNING, logger="torch_to_nnef"):
        export_model_to_nnef(model.eval(), (r(1, 3, 9),), tmp_path / "m.nnef", TractNNEF(check_io=True))
    refused = [rec.getMessage() for rec in caplog.records if "torch.export refused" in rec.getMessage()]
    assert refused and "a refusal for this test" in refused[0]


def test_auto_does_not_freeze_a_data_dependent_branch(tmp_path: Path):
    from torch_to_nnef.capture.torch_export import CaptureError

    with pytest.raises(CaptureError, match="(?s)values inside a tensor.*jit.trace was tried too.*only the path"):
        export_model_to_nnef(DataDependent().eval(), (r(1, 3, 9),), tmp_path / "m.nnef", TractNNEF())


def test_jit_frontend_asked_for_traces_one_branch_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING, logger="torch_to_nnef"):
        export_model_to_nnef(
            DataDependent().eval(), (r(1, 3, 9),), tmp_path / "m.nnef", TractNNEF(check_io=True), frontend="jit"
        )
    assert any("torch.jit.trace: Converting a tensor to a Python boolean" in rec.getMessage() for rec in caplog.records)


def test_export_frontend_alone_does_not_fall_back(tmp_path: Path):
    from torch_to_nnef.capture.torch_export import CaptureError

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
    assert "test_jit.py" in line and "x * 2" in line
    assert [p.torch_name for p in graph.parameters.values()] == ["0.weight", "0.bias"]


@pytest.mark.parametrize(
    ("fn", "inputs", "match"),
    [
        pytest.param(
            lambda x, s, e: x[torch.arange(s, e)],
            (r(10), torch.tensor(2), torch.tensor(5)),
            "aten::index at .*: arange has a length computed from the values of a tensor",
            id="indexed-by-a-range",
        ),
        pytest.param(
            lambda n: torch.arange(n).view(-1, 1),
            (torch.tensor(3),),
            "aten::view at .*: arange has a length computed from the values of a tensor",
            id="range-reshaped",
        ),
        pytest.param(
            lambda x, n: x[: n.item()],
            (r(10), torch.tensor(3)),
            "only the path this example takes: .*Converting a tensor to a Python number",
            id="item-in-a-slice",
        ),
        pytest.param(
            lambda x, n: x[:n],
            (r(10), torch.tensor(3)),
            "aten::Int at .*turns the tensor input_1 into a Python number",
            id="tensor-in-a-slice",
        ),
    ],
)
def test_auto_refuses_numbers_from_tensors_it_cannot_follow(
    tmp_path: Path, fn: Callable[..., torch.Tensor], inputs: tuple[torch.Tensor, ...], match: str
):
    """torch.export refuses a number read from a tensor; the jit front-end, tried next, refuses it unless it keeps
    the tensor (a range's bounds, a fill value) and follows the range's length (elementwise ops): nothing is
    frozen at the traced value."""
    from torch_to_nnef.capture.torch_export import CaptureError

    with pytest.raises(CaptureError, match=f"(?s)reads a number from a tensor.*jit.trace was tried too.*{match}"):
        export_model_to_nnef(Fn(fn), inputs, tmp_path / "m.nnef", TractNNEF())


def test_export_frontend_refuses_a_number_read_from_a_tensor(tmp_path: Path):
    from torch_to_nnef.capture.torch_export import CaptureError

    with pytest.raises(CaptureError, match="reads a number from a tensor .*frontend='auto' tries next") as err:
        export_model_to_nnef(
            Fn(lambda x: torch.arange(x.max())),
            (torch.tensor([3, 5]),),
            tmp_path / "m.nnef",
            TractNNEF(),
            frontend="export",
        )
    assert "was tried too" not in str(err.value)


def test_jit_graph_gives_a_range_of_tensor_bounds_a_size_from_data():
    graph, _ = capture_jit(
        Fn(lambda s, e: (torch.arange(s, e)[None, :] * 2).float()), [torch.tensor(1), torch.tensor(4)], ["s", "e"]
    )
    arange = next(n for n in graph.nodes if n.kind == "aten::arange")
    assert arange.overload == "start" and arange.args[:2] == tuple(graph.inputs)
    assert arange.outputs[0].shape == ("u0",)
    assert [n.kind for n in graph.nodes] == ["aten::arange", "aten::unsqueeze", "aten::mul", "aten::_to_copy"]
    assert graph.outputs[0].shape == (1, "u0") and graph.outputs[0].dtype == "f32"
