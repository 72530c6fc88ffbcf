"""Recurrent layers (nn.LSTM, nn.GRU, nn.RNN and their cells): every option exported to TractNNEF
(a tract_core_scan loop, checked at the traced length and at a second one when the time axis is
dynamic) and to KhronosNNEF (unrolled over a static length), each compared with PyTorch.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from torch_to_nnef import KhronosNNEF, TractNNEF, export_model_to_nnef
from torch_to_nnef.check.tract import TractModel
from torch_to_nnef.errors import TranslationError
from torch_to_nnef.op.custom_extractors import ModuleInfoExtractor, extractor_for


class Layer(nn.Module):
    """A recurrent layer called with or without its initial state; returns every output."""

    def __init__(self, rnn: nn.Module, with_state: bool) -> None:
        super().__init__()
        self.rnn = rnn
        self.with_state = with_state

    def forward(
        self, x: torch.Tensor, h0: torch.Tensor | None = None, c0: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        state = tuple(s for s in (h0, c0) if s is not None)
        out = self.rnn(x, (state if len(state) > 1 else state[0]) if state else None)
        flat: list[torch.Tensor] = []
        for o in out:
            flat.extend(o if isinstance(o, tuple) else [o])
        return tuple(flat)


# (id, module, batch_first, unbatched, with_state)
LAYERS: list[tuple[str, Callable[[], nn.Module], bool, bool, bool]] = [
    ("lstm", lambda: nn.LSTM(4, 5), False, False, False),
    ("lstm-h0c0", lambda: nn.LSTM(4, 5), False, False, True),
    ("lstm-batch_first", lambda: nn.LSTM(4, 5, batch_first=True), True, False, False),
    ("lstm-bidir-2layers", lambda: nn.LSTM(4, 5, num_layers=2, bidirectional=True), False, False, False),
    (
        "lstm-bidir-2layers-batch_first-h0c0",
        lambda: nn.LSTM(4, 5, num_layers=2, bidirectional=True, batch_first=True),
        True,
        False,
        True,
    ),
    ("lstm-proj", lambda: nn.LSTM(4, 6, proj_size=3), False, False, False),
    ("lstm-proj-bidir-2layers-h0c0", lambda: nn.LSTM(4, 6, 2, proj_size=3, bidirectional=True), False, False, True),
    ("lstm-nobias", lambda: nn.LSTM(4, 5, bias=False), False, False, False),
    ("lstm-unbatched-h0c0", lambda: nn.LSTM(4, 5, bidirectional=True), False, True, True),
    ("gru", lambda: nn.GRU(4, 5), False, False, False),
    ("gru-h0", lambda: nn.GRU(4, 5), False, False, True),
    (
        "gru-bidir-2layers-batch_first",
        lambda: nn.GRU(4, 5, 2, batch_first=True, bidirectional=True),
        True,
        False,
        False,
    ),
    ("gru-nobias-h0", lambda: nn.GRU(4, 5, bias=False), False, False, True),
    ("rnn-tanh", lambda: nn.RNN(4, 5), False, False, False),
    ("rnn-relu-h0", lambda: nn.RNN(4, 5, nonlinearity="relu"), False, False, True),
    ("rnn-relu-bidir-2layers", lambda: nn.RNN(4, 5, 2, nonlinearity="relu", bidirectional=True), False, False, False),
    ("rnn-tanh-nobias-batch_first", lambda: nn.RNN(4, 5, bias=False, batch_first=True), True, False, False),
]

BATCH, LENGTH = 2, 5


def _layer_inputs(rnn: nn.Module, batch_first: bool, unbatched: bool, with_state: bool) -> tuple[torch.Tensor, ...]:
    x = torch.randn(BATCH, LENGTH, 4) if batch_first else torch.randn(LENGTH, BATCH, 4)
    if unbatched:
        x = x[:, 0]
    if not with_state:
        return (x,)
    d = 2 if rnn.bidirectional else 1
    lead = (rnn.num_layers * d,) if unbatched else (rnn.num_layers * d, BATCH)
    h = torch.randn(*lead, getattr(rnn, "proj_size", 0) or rnn.hidden_size)
    if isinstance(rnn, nn.LSTM):
        return (x, h, torch.randn(*lead, rnn.hidden_size))
    return (x, h)


def _names(rnn: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[list[str], list[str]]:
    lstm = isinstance(rnn, (nn.LSTM, nn.LSTMCell))
    ins = ["x", "h0", "c0"][: len(inputs)]
    if isinstance(rnn, (nn.LSTM, nn.GRU, nn.RNN)):
        return ins, ["y", "h_n", "c_n"] if lstm else ["y", "h_n"]
    return ins, ["h1", "c1"] if lstm else ["h1"]


def _export(tmp_path: Path, model: nn.Module, inputs: tuple[torch.Tensor, ...], target, rnn: nn.Module) -> Path:
    input_names, output_names = _names(rnn, inputs)
    return export_model_to_nnef(
        model.eval(), inputs, tmp_path / "m.nnef", target, input_names=input_names, output_names=output_names
    )


def _layer_params() -> list:
    return [
        pytest.param(name, make, bf, unbatched, state, target, id=f"{target}-{name}")
        for name, make, bf, unbatched, state in LAYERS
        for target in ("tract", "tract-dynamic", "khronos")
    ]


@pytest.mark.parametrize(("name", "make", "batch_first", "unbatched", "with_state", "target"), _layer_params())
def test_recurrent_layer(tmp_path, name, make, batch_first, unbatched, with_state, target):
    torch.manual_seed(0)
    rnn = make()
    inputs = _layer_inputs(rnn, batch_first, unbatched, with_state)
    if target == "khronos":
        tgt = KhronosNNEF(check_io=True)
    else:
        time_axis = 1 if batch_first and not unbatched else 0
        dynamic = {"x": {time_axis: "T"}} if target == "tract-dynamic" else None
        tgt = TractNNEF(check_io=True, dynamic_axes=dynamic)  # a dynamic axis is also checked at T + 7
    path = _export(tmp_path, Layer(rnn, with_state), inputs, tgt, rnn)
    graph = (path / "graph.nnef").read_text()
    if target == "khronos":
        assert "tract_" not in graph and "fragment" not in graph
    else:
        loops = 2 * rnn.num_layers if rnn.bidirectional else rnn.num_layers
        assert graph.count("= tract_core_scan(") == loops
    # parameters keep their PyTorch names, each written once
    labels = sorted(str(p.relative_to(path))[: -len(".dat")] for p in path.rglob("*.dat"))
    wanted = sorted(f"rnn.{k}" for k, _ in rnn.named_parameters())
    assert [lbl for lbl in labels if lbl.startswith("rnn.")] == wanted
    assert len(re.findall(r"variable<scalar>\(label = 'rnn\.", graph)) == len(wanted)


def test_dynamic_time_axis_runs_at_any_length(tmp_path):
    rnn = nn.LSTM(4, 5, num_layers=2, bidirectional=True, batch_first=True)
    model = Layer(rnn, False).eval()
    path = _export(tmp_path, model, (torch.randn(2, 6, 4),), TractNNEF(dynamic_axes={"x": {1: "T"}}), rnn)
    tm = TractModel(path)
    assert tm.inputs == [("x", "F32", "2,T,4")]
    assert tm.outputs[0][2] == "2,T,10"
    for length in (1, 23):
        x = torch.randn(2, length, 4)
        got = tm.run([x])
        for g, e in zip(got, model(x)):
            torch.testing.assert_close(torch.from_numpy(g), e, atol=1e-5, rtol=1e-4)


class Cell(nn.Module):
    def __init__(self, cell: nn.Module, with_state: bool) -> None:
        super().__init__()
        self.cell = cell
        self.with_state = with_state

    def forward(
        self, x: torch.Tensor, h0: torch.Tensor | None = None, c0: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        state = tuple(s for s in (h0, c0) if s is not None)
        out = self.cell(x, (state if len(state) > 1 else state[0]) if state else None)
        return out if isinstance(out, tuple) else (out,)


# (id, cell, unbatched, with_state)
CELLS: list[tuple[str, Callable[[], nn.Module], bool, bool]] = [
    ("lstmcell", lambda: nn.LSTMCell(4, 5), False, False),
    ("lstmcell-state", lambda: nn.LSTMCell(4, 5), False, True),
    ("lstmcell-nobias-unbatched-state", lambda: nn.LSTMCell(4, 5, bias=False), True, True),
    ("grucell", lambda: nn.GRUCell(4, 5), False, False),
    ("grucell-state", lambda: nn.GRUCell(4, 5), False, True),
    ("grucell-nobias-unbatched", lambda: nn.GRUCell(4, 5, bias=False), True, False),
    ("rnncell-tanh-state", lambda: nn.RNNCell(4, 5), False, True),
    ("rnncell-relu", lambda: nn.RNNCell(4, 5, nonlinearity="relu"), False, False),
]


def _cell_params() -> list:
    return [
        pytest.param(name, make, unbatched, state, target, id=f"{target}-{name}")
        for name, make, unbatched, state in CELLS
        for target in (["tract", "khronos"] if unbatched else ["tract", "tract-dynamic", "khronos"])
    ]


def _cell_inputs(cell: nn.Module, unbatched: bool, with_state: bool) -> tuple[torch.Tensor, ...]:
    x = torch.randn(4) if unbatched else torch.randn(BATCH, 4)
    if not with_state:
        return (x,)
    lead = () if unbatched else (BATCH,)
    return (x, *(torch.randn(*lead, 5) for _ in range(2 if isinstance(cell, nn.LSTMCell) else 1)))


@pytest.mark.parametrize(("name", "make", "unbatched", "with_state", "target"), _cell_params())
def test_recurrent_cell(tmp_path, name, make, unbatched, with_state, target):
    torch.manual_seed(0)
    cell = make()
    x, *state = _cell_inputs(cell, unbatched, with_state)
    if target == "khronos":
        tgt = KhronosNNEF(check_io=True)
    else:  # a dynamic batch: the zero initial state is tiled to it
        axes = {n: {0: "B"} for n in ("x", "h0", "c0")[: 1 + len(state)]}
        tgt = TractNNEF(check_io=True, dynamic_axes=axes if target == "tract-dynamic" else None)
    path = _export(tmp_path, Cell(cell, with_state), (x, *state), tgt, cell)
    labels = sorted(str(p.relative_to(path))[: -len(".dat")] for p in path.rglob("cell.*.dat"))
    assert labels == sorted(f"cell.{k}" for k, _ in cell.named_parameters())


class ConvLSTMHead(nn.Module):
    """A convolutional front-end, a bidirectional LSTM and a linear head, on ``[B, C, T]`` features."""

    def __init__(self) -> None:
        super().__init__()
        self.front = nn.Sequential(nn.Conv1d(8, 12, 3, padding=1), nn.ReLU(), nn.Conv1d(12, 12, 3, padding=1))
        self.rnn = nn.LSTM(12, 10, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(20, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(self.front(x).transpose(1, 2))
        return self.head(y).log_softmax(-1)


def test_lstm_inside_a_model_with_a_dynamic_time_axis(tmp_path):
    model = ConvLSTMHead().eval()
    path = export_model_to_nnef(
        model,
        torch.randn(2, 8, 9),
        tmp_path / "m.nnef.tgz",
        TractNNEF(check_io=True, dynamic_axes={"x": {2: "T"}}),  # checked at T = 9 and T = 16
        input_names=["x"],
        output_names=["y"],
    )
    tm = TractModel(path)
    assert tm.outputs[0][2] == "2,T,6"
    x = torch.randn(2, 8, 31)
    torch.testing.assert_close(torch.from_numpy(tm.run([x])[0]), model(x), atol=1e-4, rtol=1e-4)
    assert model.rnn.forward.__func__ is nn.LSTM.forward  # the module is given back unchanged


def test_the_recurrent_modules_have_built_in_extractors():
    for module in (nn.LSTM(2, 3), nn.GRU(2, 3), nn.RNN(2, 3), nn.LSTMCell(2, 3), nn.GRUCell(2, 3), nn.RNNCell(2, 3)):
        assert extractor_for(module) is not None, type(module).__name__


def test_khronos_rejects_a_dynamic_length(tmp_path):
    from torch_to_nnef.ir import Graph, Node, Value
    from torch_to_nnef.nnef.builder import NNEFBuilder, Ref
    from torch_to_nnef.op.recurrent import LSTMExtractor

    x = Value("x", "f32", ("T", 2, 4))
    outs = (Value("y", "f32", ("T", 2, 5)), Value("h", "f32", (1, 2, 5)), Value("c", "f32", (1, 2, 5)))
    node = Node("t2n_extract::m0", ([x],), outs)
    with pytest.raises(TranslationError, match=r"(?s)length T is dynamic.*KhronosNNEF.*TractNNEF"):
        LSTMExtractor(nn.LSTM(4, 5), "rnn").convert_to_nnef(
            NNEFBuilder(tract=False),
            node,
            {"x": Ref("x")},
            Ref("0.0"),
            Graph([x], list(outs), [node]),
            inference_target=KhronosNNEF(),
        )


class TwiceWithKeywords(nn.Module):
    """One GRU run on two sequences, its state passed by keyword: two loops, one copy of the weights."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(4, 5, batch_first=True)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ya, h = self.rnn(a)
        yb, _ = self.rnn(b, hx=h)
        return torch.cat([ya, yb], dim=1)


def test_a_layer_called_twice_writes_its_weights_once(tmp_path):
    path = export_model_to_nnef(
        TwiceWithKeywords().eval(),
        (torch.randn(2, 3, 4), torch.randn(2, 6, 4)),
        tmp_path / "m.nnef",
        TractNNEF(check_io=True, dynamic_axes={"a": {1: "A"}, "b": {1: "T"}}),
        input_names=["a", "b"],
    )
    graph = (path / "graph.nnef").read_text()
    assert graph.count("= tract_core_scan(") == 2
    assert sorted(p.name for p in path.glob("rnn.*.dat")) == [
        "rnn.bias_hh_l0.dat",
        "rnn.bias_ih_l0.dat",
        "rnn.weight_hh_l0.dat",
        "rnn.weight_ih_l0.dat",
    ]
    assert graph.count("variable<scalar>(label = 'rnn.weight_ih_l0'") == 1


def test_the_layer_itself_as_the_model(tmp_path):
    rnn = nn.LSTM(4, 5, bidirectional=True).eval()
    path = export_model_to_nnef(
        rnn,
        (torch.randn(6, 2, 4),),
        tmp_path / "m.nnef",
        TractNNEF(check_io=True, dynamic_axes={"x": {0: "S"}}),
        input_names=["x"],
        output_names=["y", "h_n", "c_n"],
    )
    assert sorted(p.name for p in path.glob("*.dat"))[:2] == ["bias_hh_l0.dat", "bias_hh_l0_reverse.dat"]
    assert rnn.forward.__func__ is nn.LSTM.forward


class PlainTensorScale(nn.Module):
    """Holds a plain tensor attribute (neither parameter nor buffer): its shape probe cannot run in a
    fake mode of its own and falls back to the tracing modes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.rand(6) + 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) * self.scale


class PlainTensorScaleExtractor(ModuleInfoExtractor):
    MODULE_CLASS = PlainTensorScale

    def convert_to_nnef(self, g, node, name_to_tensor, null_ref, torch_graph, **kwargs):
        (x,) = node.args[0]
        scale = g.op("unsqueeze", self.variable(g, "scale"), axes=[0, 1])
        return g.op("mul", g.op("tanh", name_to_tensor[x.name]), scale, out=node.outputs[0].name)


def test_an_extractor_module_with_a_plain_tensor_attribute(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="torch_to_nnef.op.custom_extractors")

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scaled = PlainTensorScale()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.scaled(x)

    export_model_to_nnef(
        M().eval(), torch.randn(2, 5, 6), tmp_path / "m.nnef", TractNNEF(check_io=True, dynamic_axes={"x": {1: "T"}})
    )
    assert "probed under the tracing modes" in caplog.text


def test_a_packed_sequence_is_refused_with_a_clear_error(tmp_path):
    from torch_to_nnef.ir import Graph, Node, Value
    from torch_to_nnef.nnef.builder import NNEFBuilder, Ref
    from torch_to_nnef.op.recurrent import GRUExtractor

    data, sizes = Value("data", "f32", (7, 4)), Value("sizes", "i64", (4,))  # a PackedSequence, flattened
    outs = (Value("y", "f32", (7, 5)), Value("h", "f32", (1, 2, 5)))
    node = Node("t2n_extract::m0", ([data, sizes],), outs)
    with pytest.raises(TranslationError, match="pad_packed_sequence"):
        GRUExtractor(nn.GRU(4, 5), "rnn").convert_to_nnef(
            NNEFBuilder(tract=True),
            node,
            {"data": Ref("data"), "sizes": Ref("sizes")},
            Ref("0.0"),
            Graph([data, sizes], list(outs), [node]),
            inference_target=TractNNEF(),
        )
