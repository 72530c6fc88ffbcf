"""export_model_to_nnef: the pipeline on small models, its options, checks and errors."""

from __future__ import annotations

import re
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from torch_to_nnef import KhronosNNEF, TractModel, TractNNEF, export_model_to_nnef
from torch_to_nnef.capture.torch_export import capture
from torch_to_nnef.errors import InvalidArgumentError, MissingFolderError, NameClashError
from torch_to_nnef.export import UnsupportedOpsError


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 8, 3, padding=1, groups=8),
            nn.Conv2d(8, 16, 1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


class AudioEncoder(nn.Module):
    """1-D conv front end and a feed-forward block over a dynamic time axis."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(20, 32, 5, padding=2)
        self.norm = nn.LayerNorm(32)
        self.ff = nn.Sequential(nn.Linear(32, 64), nn.SiLU(), nn.Linear(64, 32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x)).transpose(1, 2)
        y = y + self.ff(self.norm(y))
        return y.softmax(-1)


def test_small_cnn_both_targets(tmp_path):
    x = torch.randn(2, 3, 16, 16)
    export_model_to_nnef(SmallCNN(), x, tmp_path / "cnn.nnef.tgz", TractNNEF(check_io=True))
    export_model_to_nnef(SmallCNN(), x, tmp_path / "cnn_k.nnef.tgz", KhronosNNEF(check_io=True))


def test_dynamic_time_axis_is_checked_at_two_lengths(tmp_path):
    model = AudioEncoder()
    path = export_model_to_nnef(
        model,
        torch.randn(1, 20, 50),
        tmp_path / "audio.nnef.tgz",
        TractNNEF(version="0.21.5", check_io=True, dynamic_axes={"mel": {2: "T"}}),
        input_names=["mel"],
        output_names=["encoded"],
    )
    tm = TractModel(path)
    assert tm.inputs == [("mel", "F32", "1,20,T")]
    x = torch.randn(1, 20, 123)
    (got,) = tm.run([x])
    torch.testing.assert_close(torch.from_numpy(got), model.eval()(x), atol=1e-4, rtol=1e-4)


class FirstChunk(nn.Module):
    """Code that holds for at most 16 steps (as a chunked scan traced with one chunk)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch._check(x.shape[1] <= 16)
        return x.cumsum(1)


def test_a_size_bounded_by_the_models_code_is_asserted_in_tract(tmp_path, caplog):
    """A dynamic size that torch.export proves the code right for up to a bound only is said in a
    warning and asserted in the graph (``tract_assert``), for tract and for whoever runs it."""
    path = export_model_to_nnef(
        FirstChunk(),
        torch.randn(1, 5),
        tmp_path / "chunk.nnef.tgz",
        TractNNEF(check_io=True, dynamic_axes={"x": {1: "S"}}),
        input_names=["x"],
    )
    assert "S <= 16 only" in caplog.text
    with tarfile.open(path) as archive:
        member = archive.extractfile("graph.nnef")
        assert member is not None
        assert "extension tract_assert S<=16;" in member.read().decode()
    (got,) = TractModel(path).run([torch.ones(1, 16)])
    assert got[0, -1] == 16


class SparseSelection(nn.Module):
    """Sparse attention's key selection: the best ``min(4, T)`` keys of each query marked in a mask."""

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        picked = scores.topk(min(4, scores.shape[-1]), dim=-1).indices
        return torch.ones_like(scores, dtype=torch.bool).scatter(-1, picked, False).float()


def test_topk_of_at_most_a_number_of_a_dynamic_axis(tmp_path):
    """``topk(min(c, T))`` over a dynamic axis ``T``: all of it while it is shorter than ``c``, ``c`` after."""
    model = SparseSelection()
    path = export_model_to_nnef(
        model,
        torch.randn(1, 3, 3),
        tmp_path / "topk.nnef.tgz",
        TractNNEF(check_io=True, dynamic_axes={"scores": {1: "S", 2: "T"}}),
        input_names=["scores"],
    )
    tm = TractModel(path)
    for length in (2, 4, 9):
        x = torch.randn(1, 5, length, generator=torch.Generator().manual_seed(length))
        (got,) = tm.run([x])
        assert (got == 0).sum(-1).tolist() == [[min(4, length)] * 5]
        torch.testing.assert_close(torch.from_numpy(got), model(x))


class VarArgs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 8)

    def forward(self, scale: torch.Tensor, *frames: torch.Tensor) -> torch.Tensor:
        return sum(self.proj(f) for f in frames) * scale


def test_dynamic_axes_of_a_forward_taking_star_args(tmp_path):
    """Inputs given to ``*args`` take their dynamic axes by input name like the others."""
    model = VarArgs()
    path = export_model_to_nnef(
        model,
        (torch.randn(1, 1), torch.randn(5, 8), torch.randn(5, 8)),
        tmp_path / "varargs.nnef.tgz",
        TractNNEF(check_io=True, dynamic_axes={"a": {0: "S"}, "b": {0: "S"}}),
        input_names=["scale", "a", "b"],
    )
    assert [shape for _, _, shape in TractModel(path).inputs] == ["1,1", "S,8", "S,8"]


def test_parameters_keep_their_pytorch_names_and_model_is_untouched(tmp_path):
    model = SmallCNN().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path = export_model_to_nnef(model, torch.randn(1, 3, 8, 8), tmp_path / "m.nnef", TractNNEF())
    labels = {str(p.relative_to(path))[: -len(".dat")] for p in path.rglob("*.dat")}
    assert "features.0.weight" in labels and "head.bias" in labels
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]) and type(v) is torch.Tensor


def test_unsupported_ops_are_all_listed_at_once(tmp_path):
    class Bad(nn.Module):
        def forward(self, x):
            return torch.special.bessel_j0(x) + torch.special.i1e(x)

    with pytest.raises(UnsupportedOpsError) as err:
        export_model_to_nnef(Bad(), torch.randn(3, 4), tmp_path / "b.nnef", TractNNEF())
    message = str(err.value)
    assert "aten::special_bessel_j0" in message and "aten::special_i1e" in message and "f32[3, 4]" in message
    assert "test_export.py" in message  # the user's source line
    assert not (tmp_path / "b.nnef").exists()


def test_bad_inputs(tmp_path):
    x = torch.randn(2, 3)
    with pytest.raises(InvalidArgumentError, match="nn.Module"):
        export_model_to_nnef(lambda t: t, x, tmp_path / "a.nnef", TractNNEF())  # type: ignore[arg-type]
    with pytest.raises(NameClashError, match="2 input names for 1"):
        export_model_to_nnef(nn.ReLU(), x, tmp_path / "a.nnef", TractNNEF(), input_names=["a", "b"])
    with pytest.raises(NameClashError, match="more than once"):
        export_model_to_nnef(nn.ReLU(), x, tmp_path / "a.nnef", TractNNEF(), input_names=["x"], output_names=["x"])
    with pytest.raises(InvalidArgumentError, match="single letter"):
        TractNNEF(dynamic_axes={"x": {0: "batch"}})
    with pytest.raises(InvalidArgumentError, match="older than the oldest supported"):
        TractNNEF(version="0.19.2")
    with pytest.raises(MissingFolderError):
        export_model_to_nnef(nn.ReLU(), x, tmp_path / "missing" / "a.nnef", TractNNEF())
    with pytest.raises(InvalidArgumentError, match="tensor or a"):
        export_model_to_nnef(nn.ReLU(), "x", tmp_path / "a.nnef", TractNNEF())
    assert list(tmp_path.iterdir()) == []


def test_readme_example_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    test_input = torch.rand(1, 10, 100)
    model = nn.Sequential(nn.Conv1d(10, 20, 3))
    export_model_to_nnef(
        model=model,
        args=test_input,
        file_path_export=Path("mybeautifulmodel.nnef.tgz"),
        inference_target=TractNNEF(version="0.21.5", check_io=True, dynamic_axes={"input": {2: "S"}}),
        input_names=["input"],
        output_names=["output"],
        debug_bundle_path=Path("./debug.tgz"),
    )
    props = TractModel("mybeautifulmodel.nnef.tgz").properties
    assert props["inference_target"] == "TractNNEF 0.21.5"
    assert props["exported_class"] == "torch.nn.modules.container.Sequential"
    assert props["torch_version"] == torch.__version__
    assert not Path("debug.tgz").exists()  # only written when the check fails


def test_khronos_check_runs_the_khronos_interpreter(tmp_path, monkeypatch, caplog):
    from torch_to_nnef.errors import IOMismatchError
    from torch_to_nnef.op import elementwise

    caplog.set_level("INFO", logger="torch_to_nnef.check.export_check")
    export_model_to_nnef(nn.Sigmoid(), torch.randn(2, 8), tmp_path / "a.nnef.tgz", KhronosNNEF(check_io=True))
    checks = [r.getMessage() for r in caplog.records if r.getMessage().startswith("checking with")]
    assert checks == [
        "checking with tract (standard NNEF registry)",
        "checking with the Khronos NNEF-Tools interpreter",
    ]
    monkeypatch.setitem(elementwise.UNARY, "aten::sigmoid", "tanh")  # a deliberately wrong translation
    with pytest.raises(IOMismatchError):
        export_model_to_nnef(nn.Sigmoid(), torch.randn(2, 8), tmp_path / "b.nnef", KhronosNNEF(check_io=True))


def test_failed_check_writes_a_replayable_bundle(tmp_path, monkeypatch):
    import subprocess
    import sys
    import tarfile

    from torch_to_nnef.errors import IOMismatchError
    from torch_to_nnef.op import elementwise

    monkeypatch.setitem(elementwise.UNARY, "aten::sigmoid", "tanh")  # a deliberately wrong translation
    bundle = tmp_path / "debug.tgz"
    with pytest.raises(IOMismatchError, match="(?s)MISMATCH.*debug bundle written to"):
        export_model_to_nnef(
            nn.Sigmoid(),
            torch.randn(2, 8),
            tmp_path / "m.nnef.tgz",
            TractNNEF(check_io=True),
            input_names=["x"],
            output_names=["y"],
            debug_bundle_path=bundle,
        )
    with tarfile.open(bundle) as tar:
        names = set(tar.getnames())
    assert {"model/m.nnef.tgz", "inputs.npz", "expected.npz", "report.json", "versions.json", "replay.sh"} <= names
    replay = subprocess.run(
        [sys.executable, "-m", "torch_to_nnef.debug_bundle", str(bundle)], capture_output=True, text=True
    )
    assert replay.returncode == 1 and "y: MISMATCH" in replay.stderr


def test_non_tensor_outputs_are_dropped_with_a_warning(tmp_path, caplog):
    class Mixed(nn.Module):
        def forward(self, x):
            return {"y": x * 2, "none": None, "n": 3, "nested": (x + 1, None)}

    path = export_model_to_nnef(Mixed(), torch.randn(2, 3), tmp_path / "m.nnef", TractNNEF(check_io=True))
    assert [n for n, _, _ in TractModel(path).outputs] == ["output_0", "output_1"]
    assert "NoneType among its outputs" in caplog.text and "int among its outputs" in caplog.text


class ReturnsNoTensor(nn.Module):
    def __init__(self, returns: Callable[[torch.Tensor], Any]) -> None:
        super().__init__()
        self.returns = returns

    def forward(self, x: torch.Tensor) -> Any:
        return self.returns(x)


@pytest.mark.parametrize(
    ("returns", "said"),
    [
        (lambda x: x.shape[0], "returned 2 (an int)"),
        (lambda x: None, "returned None"),
        (lambda x: (x.shape[1], None), "returned a tuple of 3 (an int), None"),
        (lambda x: {}, "returned a dict of nothing"),
    ],
    ids=["shape", "none", "tuple", "empty-dict"],
)
@pytest.mark.parametrize("target", [TractNNEF(check_io=True), KhronosNNEF(check_io=True)], ids=["tract", "khronos"])
def test_a_forward_returning_no_tensor_is_refused(tmp_path, returns, said, target):
    """An export without outputs would pass any check: refused, naming what the forward returned."""
    with pytest.raises(InvalidArgumentError, match=rf"ReturnsNoTensor\.forward {re.escape(said)}, no tensor"):
        export_model_to_nnef(ReturnsNoTensor(returns), torch.randn(2, 3), tmp_path / "m.nnef", target)
    assert not (tmp_path / "m.nnef").exists()


class TinyEncoder(nn.Module):
    """A BERT-style encoder layer: multi-head attention with a key padding mask, then a GELU MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 32)
        self.layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, activation="gelu", batch_first=True)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.layer(self.embed(ids), src_key_padding_mask=mask)


def test_transformer_encoder_layer(tmp_path):
    ids = torch.randint(0, 50, (2, 7))
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[1, 5:] = True
    export_model_to_nnef(
        TinyEncoder(), (ids, mask), tmp_path / "enc.nnef.tgz", TractNNEF(check_io=True), input_names=["ids", "mask"]
    )


def test_names_starting_with_a_logical_literal(tmp_path: Path):
    """tract's parser reads an identifier starting with ``true`` or ``false`` as the literal: such
    module names and ops get other identifiers, and such I/O names are refused."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.true_branch = nn.Linear(4, 4)
            self.falsey = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.true_divide(self.true_branch(x), self.falsey(x).abs() + 1)

    for scheme in ("raw", "natural_verbose", "natural_verbose_camel"):
        export_model_to_nnef(
            Net(),
            torch.randn(2, 4),
            tmp_path / f"{scheme}.nnef.tgz",
            TractNNEF(check_io=True),
            input_names=["x"],
            output_names=["y"],
            nnef_variable_naming_scheme=scheme,
        )
    with pytest.raises(InvalidArgumentError, match="'true_input' starts with 'true'.*choose another name"):
        export_model_to_nnef(
            Net(), torch.randn(2, 4), tmp_path / "bad.nnef.tgz", TractNNEF(), input_names=["true_input"]
        )
    assert not (tmp_path / "bad.nnef.tgz").exists()


class InPlace(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        y.add_(1.0)
        return torch.relu(y)


def test_decomposition_pass_only_when_the_graph_needs_it(tmp_path, monkeypatch):
    """A graph of functional ops the registry translates is translated as torch.export gives it; one
    that writes in place (or runs dropout in training mode) goes through the decomposition pass."""
    calls = []
    original = torch.export.ExportedProgram.run_decompositions

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.export.ExportedProgram, "run_decompositions", counted)
    x = torch.randn(2, 3, 16, 16)
    export_model_to_nnef(SmallCNN(), x, tmp_path / "cnn.nnef.tgz", TractNNEF(check_io=True))
    assert calls == []
    export_model_to_nnef(InPlace(), x, tmp_path / "inplace.nnef.tgz", TractNNEF(check_io=True))
    assert calls == [1]
    training = nn.Sequential(nn.Linear(16, 16), nn.Dropout(0.5)).train()
    capture(training, [torch.randn(2, 16)], ["x"])
    assert calls == [1, 1]
