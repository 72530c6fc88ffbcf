"""export_model_to_nnef: an op table and small models, each checked numerically in tract."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from optable import Case, Fn, export_and_check, op_params, r
from torch_to_nnef import KhronosNNEF, TractModel, TractNNEF, export_model_to_nnef
from torch_to_nnef.capture.torch_export import capture
from torch_to_nnef.errors import InvalidArgumentError, MissingFolderError, NameClashError
from torch_to_nnef.export import UnsupportedOpsError

# (id, module, inputs, also for Khronos)
CASES: list[Case] = [
    ("relu", Fn(torch.relu), (r(2, 5),), True),
    ("sigmoid", Fn(torch.sigmoid), (r(2, 5),), True),
    ("tanh", Fn(torch.tanh), (r(2, 5),), True),
    ("exp", Fn(torch.exp), (r(2, 5),), True),
    ("log", Fn(lambda x: torch.log(x.abs() + 0.1)), (r(2, 5),), True),
    ("sqrt", Fn(lambda x: torch.sqrt(x.abs())), (r(2, 5),), True),
    ("rsqrt", Fn(lambda x: torch.rsqrt(x.abs() + 0.5)), (r(2, 5),), True),
    ("abs-neg", Fn(lambda x: -torch.abs(x)), (r(2, 5),), True),
    ("sin-cos", Fn(lambda x: torch.sin(x) + torch.cos(x)), (r(2, 5),), True),
    ("floor-ceil", Fn(lambda x: torch.floor(x * 3) + torch.ceil(x * 3)), (r(2, 5),), True),
    ("sign", Fn(torch.sign), (r(2, 5),), True),
    ("reciprocal", Fn(lambda x: torch.reciprocal(x.abs() + 1)), (r(2, 5),), True),
    ("add-broadcast", Fn(lambda a, b: a + b), (r(2, 3, 4), r(4)), True),
    ("sub-alpha", Fn(lambda a, b: torch.sub(a, b, alpha=2)), (r(2, 3), r(2, 3)), True),
    ("mul-scalar", Fn(lambda a: a * 3), (r(2, 3),), True),
    ("div", Fn(lambda a, b: a / (b.abs() + 1)), (r(2, 3), r(3)), True),
    ("rsub-scalar", Fn(lambda a: 1 - a), (r(2, 3),), True),
    ("silu", nn.SiLU(), (r(2, 8),), True),
    ("hardtanh", nn.Hardtanh(-0.5, 0.5), (r(2, 8),), True),
    ("clamp-min", Fn(lambda x: torch.clamp(x, min=0.1)), (r(2, 8),), True),
    ("relu6", nn.ReLU6(), (r(2, 8) * 8,), True),
    ("softmax", nn.Softmax(dim=1), (r(2, 5, 3),), True),
    ("linear-2d", nn.Linear(6, 4), (r(3, 6),), True),
    ("linear-3d", nn.Linear(6, 4), (r(2, 3, 6),), True),
    ("linear-no-bias", nn.Linear(6, 4, bias=False), (r(3, 6),), True),
    ("matmul", Fn(torch.matmul), (r(2, 3, 4), r(2, 4, 5)), True),
    ("matmul-broadcast", Fn(torch.matmul), (r(2, 3, 4), r(4, 5)), True),
    ("conv1d", nn.Conv1d(3, 4, 3), (r(1, 3, 10),), True),
    ("conv1d-stride-pad-dil", nn.Conv1d(3, 4, 3, stride=2, padding=2, dilation=2), (r(1, 3, 16),), True),
    ("conv1d-same", nn.Conv1d(3, 4, 4, padding="same"), (r(1, 3, 10),), True),
    ("conv2d", nn.Conv2d(3, 4, 3, padding=1), (r(1, 3, 8, 8),), True),
    ("conv2d-depthwise", nn.Conv2d(4, 4, 3, groups=4, bias=False), (r(1, 4, 8, 8),), True),
    ("conv2d-stride", nn.Conv2d(3, 4, (3, 2), stride=(2, 1)), (r(2, 3, 9, 7),), True),
    ("batchnorm2d", nn.BatchNorm2d(3), (r(2, 3, 4, 4),), True),
    ("layernorm", nn.LayerNorm(6), (r(2, 3, 6),), True),
    ("layernorm-no-affine", nn.LayerNorm(6, elementwise_affine=False), (r(2, 3, 6),), True),
    ("transpose", Fn(lambda x: x.transpose(0, 2)), (r(2, 3, 4),), True),
    ("permute", Fn(lambda x: x.permute(2, 0, 1)), (r(2, 3, 4),), True),
    ("t", Fn(lambda x: x.t()), (r(2, 3),), True),
    ("view", Fn(lambda x: x.view(6, 4)), (r(2, 3, 4),), True),
    ("reshape-infer", Fn(lambda x: x.reshape(-1, 2)), (r(2, 3, 4),), True),
    ("flatten", nn.Flatten(), (r(2, 3, 4),), True),
    ("unsqueeze", Fn(lambda x: x.unsqueeze(-1)), (r(2, 3),), True),
    ("squeeze", Fn(lambda x: x.squeeze(1)), (r(2, 1, 3),), True),
    ("mean", Fn(lambda x: x.mean(1)), (r(2, 3, 4),), True),
    ("mean-keepdim", Fn(lambda x: x.mean((1, 2), keepdim=True)), (r(2, 3, 4),), True),
    ("sum", Fn(lambda x: x.sum(-1)), (r(2, 3, 4),), True),
    ("cat", Fn(lambda a, b: torch.cat([a, b], dim=1)), (r(2, 3), r(2, 5)), True),
    ("maxpool2d", nn.MaxPool2d(2), (r(1, 2, 6, 6),), True),
    ("maxpool2d-pad", nn.MaxPool2d(3, stride=2, padding=1), (r(1, 2, 7, 7),), True),
    ("avgpool2d", nn.AvgPool2d(2), (r(1, 2, 6, 6),), True),
    ("avgpool2d-pad-exclude", nn.AvgPool2d(3, 1, 1, count_include_pad=False), (r(1, 2, 5, 5),), True),
    ("adaptive-avgpool", nn.AdaptiveAvgPool2d(1), (r(1, 3, 5, 5),), True),
    ("dropout-eval", nn.Dropout(0.5), (r(2, 3),), True),
    (
        "tan-asin-acos-atan",
        Fn(lambda x: torch.tan(x) + torch.asin(x) + torch.acos(x) + torch.atan(x)),
        (r(2, 5) / 3,),
        True,
    ),
    ("sinh-cosh", Fn(lambda x: torch.sinh(x) * torch.cosh(x)), (r(2, 5),), True),
    ("compare-where", Fn(lambda a, b: torch.where(a > b, a, b * 2)), (r(2, 5), r(5)), True),
    ("eq-ne-or", Fn(lambda a: torch.where((a.floor() == 0) | (a.ceil() != 1), a, -a)), (r(3, 4),), True),
    ("round-half-even", Fn(lambda a: torch.round(a * 2)), (torch.tensor([[0.25, 0.75, -0.25, 1.25, 3.3]]),), False),
    ("le-lt-ge scalars", Fn(lambda a: ((a <= 0.5) & (a > -0.5)).float() + (a < 0).float()), (r(3, 4),), True),
    ("logical-not", Fn(lambda a: torch.where(~(a > 0), a, 0.0)), (r(3, 4),), True),
    ("minimum-maximum", Fn(lambda a, b: torch.minimum(a, b) + torch.maximum(a, b) * 2), (r(2, 4), r(4)), True),
    ("min-max-other", Fn(lambda a, b: torch.min(a, b) + torch.max(a, b) * 2), (r(2, 4), r(4)), True),
    # composite aliases torch >= 2.6 keeps whole: lowered with torch's own decompositions
    (
        "alias-multiply-divide-subtract",
        Fn(lambda a, b: torch.multiply(a, b) + torch.divide(a, b.abs() + 1) - torch.subtract(a, b, alpha=2)),
        (r(3, 4), r(4)),
        True,
    ),
    (
        "alias-greater-less-not-equal",
        Fn(lambda a, b: (torch.greater(a, b) | torch.less_equal(a, 0.2)).float() + torch.not_equal(a, b).float()),
        (r(3, 4), r(3, 4)),
        True,
    ),
    (
        "alias-absolute-negative-arctan2",
        Fn(lambda a, b: torch.absolute(a) + torch.negative(b) + torch.arctan2(a, b)),
        (r(3, 4), r(3, 4)),
        True,
    ),
    (
        "vstack-flipud-hstack-vectors",
        Fn(lambda a, b: torch.vstack([torch.flipud(a), torch.hstack([b, b])])),
        (r(3, 8), r(4)),
        True,
    ),
    (
        "alias-swapaxes-concat-fliplr-hstack-expit",
        Fn(
            lambda a: torch.concat(
                [torch.hstack([a.swapaxes(0, 1), torch.special.expit(torch.fliplr(a.t()))]), a.t()], 1
            )
        ),
        (r(3, 4),),
        True,
    ),
    (
        "min-max-other-int",
        Fn(lambda a, b: torch.min(a, torch.full_like(a, 3)) - torch.max(a, b)),
        (torch.randint(-5, 5, (3, 4)), torch.randint(-5, 5, (3, 1))),
        False,  # the specification's min and max take scalar tensors
    ),
    ("pow-scalar", Fn(lambda a: torch.pow(a.abs() + 0.1, 1.7)), (r(2, 4),), True),
    ("pow-square", Fn(lambda a: a**2), (r(2, 4),), True),
    ("pow-scalar-base", Fn(lambda a: 2.0**a + torch.pow(0.5, a)), (r(2, 4),), True),
    ("leaky-relu", nn.LeakyReLU(0.2), (r(2, 8),), True),
    ("elu", nn.ELU(0.7), (r(2, 8),), True),
    ("selu", nn.SELU(), (r(2, 8),), True),
    ("celu", nn.CELU(1.5), (r(2, 8),), True),
    ("hardsigmoid", nn.Hardsigmoid(), (r(2, 8) * 4,), True),
    ("hardswish", nn.Hardswish(), (r(2, 8) * 4,), True),
    ("gelu-tanh", nn.GELU(approximate="tanh"), (r(2, 8) * 3,), True),
    ("gelu", nn.GELU(), (r(2, 8) * 3,), False),
    ("log-softmax", nn.LogSoftmax(dim=-1), (r(2, 3, 8) * 5,), True),
    ("slice", Fn(lambda x: x[:, 1:3]), (r(2, 5),), True),
    ("slice-step-negative", Fn(lambda x: x[..., ::2] + x[..., -3:]), (r(2, 3, 6),), True),
    ("select", Fn(lambda x: x[:, 1] * x[-1]), (r(3, 3),), True),
    ("split", Fn(lambda x: torch.split(x, [2, 3], dim=1)[1]), (r(2, 5),), True),
    ("chunk", Fn(lambda x: sum(torch.chunk(x, 3, dim=-1))), (r(2, 6),), True),
    ("stack", Fn(lambda a, b: torch.stack([a, b], dim=1)), (r(2, 3), r(2, 3)), True),
    ("expand", Fn(lambda x: x.expand(2, 3, 4)), (r(3, 1),), True),
    ("repeat", Fn(lambda x: x.repeat(2, 1, 3)), (r(3, 2),), True),
    ("pad-constant", Fn(lambda x: nn.functional.pad(x, (1, 2, 0, 1), value=0.5)), (r(1, 2, 3, 3),), True),
    ("pad-reflect", nn.ReflectionPad1d((2, 1)), (r(1, 2, 5),), True),
    # Khronos 'replicate' is written as the specification spells it, which tract's reader lacks:
    # only the Khronos interpreter checks it.
    ("pad-replicate", nn.ReplicationPad2d((1, 0, 2, 1)), (r(1, 2, 3, 3),), True),
    ("pad-circular", Fn(lambda x: nn.functional.pad(x, (1, 2, 2, 0), mode="circular")), (r(1, 2, 5, 6),), True),
    ("pad-negative-crops", Fn(lambda x: nn.functional.pad(x, (-1, 2, 0, -2))), (r(1, 2, 5, 6),), True),
    ("conv2d-circular", nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular"), (r(1, 2, 5, 6),), True),
    ("promote-f32-i64", Fn(lambda a, b: a + b), (r(2, 3), torch.arange(3)), False),
    (
        "promote-i32-i64-alpha",
        Fn(lambda a, b: torch.sub(a, b, alpha=3)),
        (torch.arange(6).int(), torch.arange(6)),
        False,
    ),
    ("promote-compare-int-float", Fn(lambda a: (a > 1.5).float()), (torch.arange(6),), False),
    ("type-as", Fn(lambda a, b: a.type_as(b) * b), (torch.arange(6).reshape(2, 3), r(2, 3)), False),
    ("type-as-half", Fn(lambda a, b: (a.half() * 2).type_as(b) + b), (r(2, 3), r(2, 3)), False),
    ("f16-scalar-ops", Fn(lambda a: (a * 3 + 1).masked_fill(a > 0, 2.0)), (r(2, 5).half(),), False),
    ("embedding", nn.Embedding(10, 4), (torch.tensor([[1, 2, 9], [0, 0, 3]]),), False),
    ("index-select", Fn(lambda x, i: torch.index_select(x, 1, i)), (r(3, 5), torch.tensor([4, 0, 2])), False),
    ("amax-amin", Fn(lambda x: x.amax(1) - x.amin(-1, keepdim=True).squeeze(-1)), (r(2, 5),), True),
    ("max-dim", Fn(lambda x: x.max(1).values + x.min(1)[0]), (r(2, 5),), True),
    ("max-indices", Fn(lambda x: x.max(-1, keepdim=True).indices), (r(2, 5),), True),
    ("max-all", Fn(lambda x: x.max()), (r(2, 5),), True),
    ("argmax", Fn(lambda x: x.argmax(1)), (r(3, 7),), True),
    ("argmin-flat", Fn(lambda x: x.argmin()), (r(3, 7),), True),
    ("var", Fn(lambda x: x.var(1)), (r(3, 7),), True),
    ("softplus", nn.Softplus(beta=2.0, threshold=5.0), (r(2, 8) * 4,), True),
    ("mish", nn.Mish(), (r(2, 8) * 4,), True),
    ("softsign", nn.Softsign(), (r(2, 8) * 4,), True),
    ("prelu-channels", nn.PReLU(3, init=0.1), (r(2, 3, 5),), True),
    ("prelu-single", nn.PReLU(), (r(2, 4),), True),
    ("glu", nn.GLU(dim=1), (r(2, 6, 3),), True),
    ("groupnorm", nn.GroupNorm(2, 4), (r(2, 4, 3, 3),), True),
    (
        "masked-fill-inf",
        Fn(lambda x: x.masked_fill(x > 0.5, float("-inf")).softmax(-1) + x.masked_fill(x < 0, 2.0)),
        (r(3, 7),),
        True,
    ),
    ("full-like", Fn(lambda x: torch.full_like(x, 3.5) + torch.zeros_like(x) * torch.ones_like(x)), (r(2, 3),), True),
    ("sdpa", Fn(nn.functional.scaled_dot_product_attention), (r(2, 4, 5, 8), r(2, 4, 6, 8), r(2, 4, 6, 8)), True),
    (
        "sdpa-causal-scale",
        Fn(lambda q, k, v: nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3)),
        (r(1, 2, 5, 8), r(1, 2, 5, 8), r(1, 2, 5, 8)),
        True,
    ),
    (
        "sdpa-bool-mask",
        Fn(lambda q, k, v, m: nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m)),
        (r(1, 2, 4, 8), r(1, 2, 6, 8), r(1, 2, 6, 8), torch.arange(24).reshape(4, 6) % 3 != 0),
        True,
    ),
    (
        "sdpa-float-mask",
        Fn(lambda q, k, v, m: nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m)),
        (r(1, 2, 4, 8), r(1, 2, 6, 8), r(1, 2, 6, 8), r(1, 1, 4, 6)),
        True,
    ),
    ("std-keepdim-biased", Fn(lambda x: x.std(-1, keepdim=True, correction=0)), (r(3, 7),), True),
]


OP_PARAMS = op_params(CASES)


@pytest.mark.parametrize(("target", "module", "inputs"), OP_PARAMS)
def test_op_table(tmp_path: Path, target: str, module: nn.Module, inputs: tuple[torch.Tensor, ...]):
    """Each op case is exported and verified in tract; Khronos cases also by the Khronos parser."""
    export_and_check(tmp_path, target, module, inputs)


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


@pytest.mark.parametrize(
    "fn",
    [lambda a, b: a + b * 2, lambda a, b: torch.minimum(a, b), lambda a, b: (a < b).float()],
    ids=["add-mul", "minimum", "lt"],
)
def test_khronos_refuses_integer_arithmetic(tmp_path, fn):
    """The specification's arithmetic and comparisons take float tensors: its parser rejects an
    integer ``add``, so the export says so instead of writing it; tract takes it."""
    from torch_to_nnef.errors import TranslationError

    args = (torch.randint(-5, 5, (2, 3)), torch.randint(-5, 5, (2, 3)))
    with pytest.raises(TranslationError, match="i64 tensors: the NNEF specification's arithmetic"):
        export_model_to_nnef(Fn(fn), args, tmp_path / "k.nnef", KhronosNNEF())
    assert not (tmp_path / "k.nnef").exists()
    export_model_to_nnef(Fn(fn), args, tmp_path / "t.nnef", TractNNEF(check_io=True))


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
