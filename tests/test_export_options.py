"""export_model_to_nnef's options: naming schemes, name checks, extensions, target flags, properties,
custom extractors; and that exporting leaves the caller's model as it was."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from torch_to_nnef import TractModel, TractNNEF, export_model_to_nnef
from torch_to_nnef.capture.torch_export import CaptureError
from torch_to_nnef.errors import InvalidArgumentError, NameClashError
from torch_to_nnef.ir import Graph, Node
from torch_to_nnef.nnef.builder import NNEFBuilder, Ref
from torch_to_nnef.op.custom_extractors import ModuleInfoExtractor


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.LayerNorm(16))
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def _graph_text(path: Path) -> str:
    return (path / "graph.nnef").read_text()


def _op_identifiers(text: str) -> list[str]:
    """Identifiers assigned by operations (not variables, inputs or outputs)."""
    body = text[text.index("graph network") :]
    return re.findall(r"^\s+(\w+) = (?!variable|tract_core_external|copy\((?:\w+)\);\n\})", body, flags=re.M)


@pytest.mark.parametrize(
    ("scheme", "expected"),
    [
        ("raw", r"^(?!encoder|head)\w+$"),
        ("natural_verbose", r"^(encoder_0|encoder_1|encoder_2|head)_\w+$"),
        ("natural_verbose_camel", r"^(encoder0|encoder1|encoder2|head)[A-Z]\w*$"),
        ("numeric", r"^v\d+$"),
    ],
)
def test_naming_schemes(tmp_path, scheme, expected):
    path = export_model_to_nnef(
        Block(),
        torch.randn(2, 8),
        tmp_path / "m.nnef",
        TractNNEF(check_io=True),
        input_names=["x"],
        output_names=["y"],
        nnef_variable_naming_scheme=scheme,
    )
    text = _graph_text(path)
    ops = [n for n in _op_identifiers(text) if n != "y"]
    assert len(ops) > 10 and all(re.match(expected, n) for n in ops), ops
    # inputs and outputs always keep the names given, and parameters their PyTorch labels
    assert "graph network( x ) -> ( y )" in text
    assert "label = 'encoder.0.weight'" in text
    assert TractModel(path).input_names == ["x"]


def test_unknown_naming_scheme_is_refused(tmp_path):
    with pytest.raises(InvalidArgumentError, match="natural_verbose"):
        export_model_to_nnef(
            Block(), torch.randn(2, 8), tmp_path / "m.nnef", TractNNEF(), nnef_variable_naming_scheme="x"
        )
    assert list(tmp_path.iterdir()) == []


def test_an_input_passed_straight_through_keeps_both_names(tmp_path):
    path = export_model_to_nnef(
        nn.Dropout(), torch.randn(2, 3), tmp_path / "m.nnef", TractNNEF(check_io=True), ["a"], ["b"]
    )
    tm = TractModel(path)
    assert (tm.input_names, tm.output_names) == (["a"], ["b"])


def test_custom_extensions_are_declared(tmp_path):
    path = export_model_to_nnef(
        nn.Conv1d(2, 3, 3),
        torch.randn(1, 2, 20),
        tmp_path / "m.nnef",
        TractNNEF(check_io=True, dynamic_axes={"x": {2: "S"}}),
        input_names=["x"],
        custom_extensions=["tract_assert S >= 3", "extension tract_registry tract_transformers;"],
    )
    text = _graph_text(path)
    assert "extension tract_assert S >= 3;" in text
    assert "extension tract_registry tract_transformers;" in text
    with pytest.raises(InvalidArgumentError, match="list of strings"):
        export_model_to_nnef(nn.ReLU(), torch.randn(2), tmp_path / "n.nnef", TractNNEF(), custom_extensions="x")
    with pytest.raises(InvalidArgumentError, match="not a valid NNEF extension"):
        export_model_to_nnef(
            nn.ReLU(), torch.randn(2), tmp_path / "n.nnef", TractNNEF(), custom_extensions=["a; graph x"]
        )


class Pairs(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.size(0), -1, 2).sum(-1)


def test_an_assertion_over_an_axis_in_steps_is_written_over_its_symbol(tmp_path):
    """``S`` is written ``2*S_2`` (the view needs it even): an assertion over ``S`` follows it."""
    path = export_model_to_nnef(
        Pairs(),
        torch.randn(2, 6),
        tmp_path / "m.nnef",
        TractNNEF(check_io=True, dynamic_axes={"x": {1: "S"}}),
        input_names=["x"],
        custom_extensions=["tract_assert S <= 4096"],
    )
    text = _graph_text(path)
    assert "extension tract_symbol S_2;" in text and "extension tract_symbol S;" not in text
    assert "extension tract_assert (2*S_2) <= 4096;" in text
    assert TractModel(path).inputs[0][2] == "2,2*S_2"


class PairsMasked(nn.Module):
    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return x.view(x.size(0), -1, 2).sum(-1) * mask[:, ::2]


def test_every_axis_of_a_letter_in_steps_takes_its_symbol(tmp_path):
    """Only x's view needs S even; the mask, given the same letter, is written over the same symbol."""
    target = TractNNEF(check_io=True, dynamic_axes={"x": {1: "S"}, "mask": {1: "S"}})
    path = export_model_to_nnef(
        PairsMasked(), (torch.randn(2, 6), torch.randn(2, 6)), tmp_path / "m.nnef", target, ["x", "mask"]
    )
    assert [shape for _, _, shape in TractModel(path).inputs] == ["2,2*S_2", "2,2*S_2"]


class HalvedPairs(nn.Module):
    """Needs the width's half, less 2, even: the form torch 2.11's guards take for a U-Net's skip joins."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch._check((x.size(1) // 2 - 2) % 2 == 0)
        return x[:, : x.size(1) // 2] * 2


def test_steps_of_a_remainder_of_a_floor_division(tmp_path):
    """``(W//2 - 2) % 2 == 0`` holds every 4 sizes, not every 2: the width is written ``4*W_4``."""
    path = export_model_to_nnef(
        HalvedPairs(),
        torch.randn(2, 44),
        tmp_path / "m.nnef",
        TractNNEF(check_io=True, dynamic_axes={"x": {1: "W"}}),
        input_names=["x"],
    )
    assert TractModel(path).inputs[0][2] == "2,4*W_4"


def test_properties_specific_and_identity(tmp_path):
    path = export_model_to_nnef(
        nn.ReLU(),
        torch.randn(2),
        tmp_path / "m.nnef",
        TractNNEF(specific_properties={"model_revision": "r7"}),
    )
    props = TractModel(path).properties
    assert props["model_revision"] == "r7"
    assert not {"hostname", "user", "command_line"} & set(props)  # no personal data unless asked
    path2 = export_model_to_nnef(
        nn.ReLU(), torch.randn(2), tmp_path / "m2.nnef", TractNNEF(dump_identity_properties=True)
    )
    import socket

    assert TractModel(path2).properties["hostname"] == socket.gethostname()
    with pytest.raises(NameClashError, match="torch_version"):
        export_model_to_nnef(
            nn.ReLU(), torch.randn(2), tmp_path / "m3.nnef", TractNNEF(specific_properties={"torch_version": "1"})
        )
    with pytest.raises(InvalidArgumentError, match="strings"):
        TractNNEF(specific_properties={"a": 1})  # type: ignore[dict-item]


def test_reify_sdpa_needs_a_recent_tract():
    with pytest.raises(InvalidArgumentError, match=r"tract >= 0\.22\.0"):
        TractNNEF(version="0.21.13", reify_sdpa_operator=True)


def test_export_restores_training_mode_and_outputs(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.BatchNorm1d(4)).train()
    x = torch.randn(3, 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_model_to_nnef(model, x, tmp_path / "m.nnef", TractNNEF(check_io=True))
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]) and type(v) is torch.Tensor
    model.eval()
    expected = model(x)
    export_model_to_nnef(model, x, tmp_path / "m2.nnef", TractNNEF(check_io=True))
    assert not model.training
    torch.testing.assert_close(model(x), expected, rtol=0, atol=0)


# --- custom extractors --------------------------------------------------------------------------


class StepwiseScale(nn.Module):
    """Scales each time step in a Python loop: torch.export specialises the time axis inside."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.rand(channels) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, T, C]
        steps = [torch.tanh(x[:, t]) * self.scale for t in range(x.shape[1])]
        return torch.stack(steps, dim=1)


class StepwiseScaleExtractor(ModuleInfoExtractor):
    MODULE_CLASS = StepwiseScale

    def convert_to_nnef(
        self,
        g: NNEFBuilder,
        node: Node,
        name_to_tensor: dict[str, Ref],
        null_ref: Ref,
        torch_graph: Graph,
        **kwargs: Any,
    ) -> Ref:
        (x,) = node.args[0]
        scale = g.op("unsqueeze", self.variable(g, "scale"), axes=[0, 1])
        return g.op("mul", g.op("tanh", name_to_tensor[x.name]), scale, out=node.outputs[0].name)


class WithStepwise(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(6, 6)
        self.steps = StepwiseScale(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.steps(self.proj(x)).relu()


def test_custom_extractor_takes_over_a_submodule_and_keeps_dynamic_axes(tmp_path):
    model = WithStepwise().eval()
    path = export_model_to_nnef(
        model,
        torch.randn(2, 9, 6),
        tmp_path / "m.nnef.tgz",
        TractNNEF(check_io=True, dynamic_axes={"x": {1: "T"}}),  # checked at T = 9 and T = 16
        input_names=["x"],
    )
    tm = TractModel(path)
    assert tm.inputs == [("x", "F32", "2,T,6")]
    assert tm.outputs[0][2] == "2,T,6"
    x = torch.randn(2, 30, 6)
    torch.testing.assert_close(torch.from_numpy(tm.run([x])[0]), model(x), atol=1e-5, rtol=1e-5)
    assert model.steps.forward.__func__ is StepwiseScale.forward  # the module is given back unchanged


class CountedSteps(StepwiseScale):
    calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        CountedSteps.calls += 1
        return super().forward(x)


class CountedStepsExtractor(StepwiseScaleExtractor):
    MODULE_CLASS = CountedSteps


class ShapedStepsExtractor(StepwiseScaleExtractor):
    MODULE_CLASS = type("ShapedSteps", (CountedSteps,), {})
    OUTPUT_LIKE_INPUT = 0


@pytest.mark.parametrize("declared", [False, True], ids=["probed", "declared"])
def test_an_extractor_may_declare_its_output_shaped_as_an_input(tmp_path, declared):
    """With ``OUTPUT_LIKE_INPUT`` the module is not run to learn its output's shape."""
    model = WithStepwise().eval()
    model.steps = (ShapedStepsExtractor if declared else CountedStepsExtractor).MODULE_CLASS(6)  # type: ignore[misc]
    CountedSteps.calls = 0
    path = export_model_to_nnef(
        model, torch.randn(2, 9, 6), tmp_path / "m.nnef.tgz", TractNNEF(dynamic_axes={"x": {1: "T"}}), ["x"]
    )
    assert (CountedSteps.calls == 1) == declared  # once for the reference outputs, more when probed
    x = torch.randn(2, 17, 6)
    torch.testing.assert_close(torch.from_numpy(TractModel(path).run([x])[0]), model(x), atol=1e-5, rtol=1e-5)


def test_without_its_extractor_the_loop_specialises_the_axis(tmp_path):
    class Loop(StepwiseScale):  # same forward, no extractor registered for this class
        pass

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.steps = Loop(6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.steps(x)

    with pytest.raises(CaptureError, match=r"(?s)T.*specialis"):
        export_model_to_nnef(
            M(), torch.randn(2, 9, 6), tmp_path / "m.nnef", TractNNEF(dynamic_axes={"x": {1: "T"}}), ["x"]
        )
    assert list(tmp_path.iterdir()) == []


# --- f16 models, target flags, attention -----------------------------------------------------------


class HalfBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(16, 16)
        self.norm = nn.LayerNorm(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.lin(x).view(x.shape[0], x.shape[1], 2, 8).transpose(1, 2)
        a = nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
        return self.norm(a.transpose(1, 2).reshape(x.shape[0], x.shape[1], 16))


@pytest.mark.parametrize(
    ("flags", "casts"),
    [
        ({}, 0),
        ({"force_linear_accumulation_in_f32": True}, 4),  # input, weight, bias up; output down
        ({"force_norm_in_f32": True}, 4),
        ({"force_attention_inner_in_f32": True}, 2),
        ({"force_attention_inner_in_f32": True, "reify_sdpa_operator": True}, 2),
    ],
)
def test_f16_model_with_f32_islands(tmp_path, flags, casts):
    model = HalfBlock().half()
    path = export_model_to_nnef(
        model,
        torch.randn(1, 6, 16).half(),
        tmp_path / "m.nnef",
        # PyTorch's reference runs wholly in f16 while the islands compute in f32: values near zero
        # may differ by an f16 step, hence the 'very' level
        TractNNEF(check_io=True, dynamic_axes={"x": {1: "S"}}, check_io_tolerance="very", **flags),
        input_names=["x"],
    )
    text = _graph_text(path)
    assert text.count("tract_core_cast(") == casts
    assert ("tract_transformers_sdpa(" in text) == bool(flags.get("reify_sdpa_operator"))
    assert TractModel(path).outputs[0][1] == "F16"


@pytest.mark.parametrize("reify", [False, True])
def test_causal_attention_over_a_dynamic_length(tmp_path, reify):
    class Att(nn.Module):
        def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
            return nn.functional.scaled_dot_product_attention(q, kv, kv, is_causal=True)

    x = torch.randn(2, 3, 7, 8)
    export_model_to_nnef(
        Att(),
        (x, x.clone()),
        tmp_path / "m.nnef",
        TractNNEF(check_io=True, reify_sdpa_operator=reify, dynamic_axes={"q": {2: "S"}, "kv": {2: "S"}}),
        input_names=["q", "kv"],
    )


def test_data_dependent_control_flow_names_the_line(tmp_path):
    class Branchy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:  # the line the message must point at
                return x * 2
            return x

    with pytest.raises(CaptureError) as err:
        export_model_to_nnef(Branchy(), torch.randn(2, 3), tmp_path / "m.nnef", TractNNEF())
    message = str(err.value)
    assert "test_export_options.py" in message and "depends on the values inside a tensor" in message
    assert "torch.where" in message
    assert list(tmp_path.iterdir()) == []


def test_an_untranslated_output_in_use_is_named(tmp_path):
    class Indices(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            values, indices = nn.functional.adaptive_max_pool1d(x, 2, return_indices=True)
            return values + indices.float()

    from torch_to_nnef.export import UnsupportedOpsError

    with pytest.raises(UnsupportedOpsError, match="adaptive_max_pool1d.*indices"):
        export_model_to_nnef(Indices(), torch.randn(1, 2, 8), tmp_path / "m.nnef", TractNNEF())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(
    tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2]) < (2, 6),
    reason="torch 2.5's torch.export asserts the chunked axis even (a[:, : b.shape[1]]): the check at S = 17 breaks it",
)
def test_splits_and_reshapes_over_a_dynamic_axis(tmp_path):
    class Shapes(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            a, b = x.chunk(2, dim=1)  # sizes (S + 1) // 2 and S - (S + 1) // 2
            _, d = torch.split(x, [3, x.shape[1] - 3], dim=1)
            y = x.view(2, 1, -1, 1)
            z = x.unsqueeze(0).view(2, x.shape[1], 1, 1)
            return a[:, : b.shape[1]] * b, d, y.flatten(1), x.reshape(-1), z.squeeze((2, 3))

    path = export_model_to_nnef(
        Shapes(),
        torch.randn(2, 10),
        tmp_path / "m.nnef",
        TractNNEF(check_io=True, dynamic_axes={"x": {1: "S"}}),  # also checked at S = 17
        input_names=["x"],
    )
    text = _graph_text(path)
    assert "(S+1)/2" in text  # chunk bounds stay symbolic
