"""Shape operators (``op/shape.py``): views and reshapes, transposes, squeezes, concatenation and splits, expansion and
repetition, flips and rolls, pads, windows, channel rearrangements, strided views, and shape arithmetic over dynamic
axes, each checked numerically.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from cases_common import Named, OlderForm, check_older_form, retarget
from torch import nn
from torch.nn import functional as F

from harness import Fn, Fn1, OpCase, export_and_check, ints, op_params, r
from torch_to_nnef import TractModel, TractNNEF, export_model_to_nnef
from torch_to_nnef.errors import ShapeError, TranslationError

aten = torch.ops.aten

CASES: list[OpCase] = [
    OpCase("transpose", Fn(lambda x: x.transpose(0, 2)), (r(2, 3, 4),), covers=("aten::transpose",), khronos=True),
    OpCase("permute", Fn(lambda x: x.permute(2, 0, 1)), (r(2, 3, 4),), covers=("aten::permute",), khronos=True),
    OpCase("t", Fn(lambda x: x.t()), (r(2, 3),), covers=("aten::t",), khronos=True),
    OpCase("view", Fn(lambda x: x.view(6, 4)), (r(2, 3, 4),), covers=("aten::view",), khronos=True),
    OpCase("reshape-infer", Fn(lambda x: x.reshape(-1, 2)), (r(2, 3, 4),), covers=("aten::reshape",), khronos=True),
    OpCase("flatten", nn.Flatten(), (r(2, 3, 4),), covers=("aten::flatten",), khronos=True),
    OpCase("unsqueeze", Fn(lambda x: x.unsqueeze(-1)), (r(2, 3),), covers=("aten::unsqueeze",), khronos=True),
    OpCase("squeeze", Fn(lambda x: x.squeeze(1)), (r(2, 1, 3),), covers=("aten::squeeze",), khronos=True),
    OpCase("cat", Fn(lambda a, b: torch.cat([a, b], dim=1)), (r(2, 3), r(2, 5)), covers=("aten::cat",), khronos=True),
    OpCase(
        "split",
        Fn(lambda x: torch.split(x, [2, 3], dim=1)[1]),
        (r(2, 5),),
        covers=("aten::split_with_sizes",),
        khronos=True,
    ),
    OpCase("chunk", Fn(lambda x: sum(torch.chunk(x, 3, dim=-1))), (r(2, 6),), covers=("aten::split",), khronos=True),
    OpCase(
        "stack", Fn(lambda a, b: torch.stack([a, b], dim=1)), (r(2, 3), r(2, 3)), covers=("aten::stack",), khronos=True
    ),
    OpCase("expand", Fn(lambda x: x.expand(2, 3, 4)), (r(3, 1),), covers=("aten::expand",), khronos=True),
    OpCase("repeat", Fn(lambda x: x.repeat(2, 1, 3)), (r(3, 2),), covers=("aten::repeat",), khronos=True),
    OpCase(
        "pad-constant",
        Fn(lambda x: nn.functional.pad(x, (1, 2, 0, 1), value=0.5)),
        (r(1, 2, 3, 3),),
        covers=("aten::pad",),
        khronos=True,
    ),
    OpCase("pad-reflect", nn.ReflectionPad1d((2, 1)), (r(1, 2, 5),), covers=("aten::pad",), khronos=True),
    # Khronos 'replicate' is written as the specification spells it, which tract's reader lacks:
    # only the Khronos interpreter checks it.
    OpCase("pad-replicate", nn.ReplicationPad2d((1, 0, 2, 1)), (r(1, 2, 3, 3),), covers=("aten::pad",), khronos=True),
    OpCase(
        "pad-circular",
        Fn(lambda x: nn.functional.pad(x, (1, 2, 2, 0), mode="circular")),
        (r(1, 2, 5, 6),),
        covers=("aten::pad",),
        khronos=True,
    ),
    OpCase(
        "pad-negative-crops",
        Fn(lambda x: nn.functional.pad(x, (-1, 2, 0, -2))),
        (r(1, 2, 5, 6),),
        covers=("aten::pad",),
        khronos=True,
    ),
    # composite aliases torch >= 2.6 keeps whole: lowered with torch's own decompositions
    OpCase(
        "vstack-flipud-hstack-vectors",
        Fn(lambda a, b: torch.vstack([torch.flipud(a), torch.hstack([b, b])])),
        (r(3, 8), r(4)),
        covers=("aten::flipud", "aten::hstack", "aten::vstack"),
        khronos=True,
    ),
    OpCase(
        "alias-swapaxes-concat-fliplr-hstack-expit",
        Fn(
            lambda a: torch.concat(
                [torch.hstack([a.swapaxes(0, 1), torch.special.expit(torch.fliplr(a.t()))]), a.t()], 1
            )
        ),
        (r(3, 4),),
        covers=("aten::cat", "aten::fliplr", "aten::hstack", "aten::t", "aten::transpose"),
        khronos=True,
    ),
    # other kinds and overloads of the core ATen set
    OpCase(
        "constant-pad-nd",
        Fn(lambda x: aten.constant_pad_nd(x, [1, 2], 0.5)),
        (r(2, 3),),
        covers=("aten::constant_pad_nd",),
        khronos=True,
    ),
    # strided views (read from the contiguous input)
    OpCase(
        "as-strided",
        Fn(lambda x: torch.as_strided(x, (3, 2), (1, 3), 1) * 2),
        (r(4, 3),),
        covers=("aten::as_strided",),
        khronos=True,
    ),
    OpCase(
        "as-strided-overlapping",
        Fn(lambda x: torch.as_strided(x, (4, 3), (2, 1))),
        (r(12),),
        covers=("aten::as_strided",),
        khronos=True,
    ),
    # windows (Tensor.unfold)
    OpCase("tensor-unfold", Fn(lambda x: x.unfold(1, 3, 2)), (r(2, 7),), covers=("aten::unfold",), khronos=True),
    OpCase("tensor-unfold-dim0", Fn(lambda x: x.unfold(0, 2, 1)), (r(5, 3),), covers=("aten::unfold",), khronos=True),
    # meshgrid
    OpCase(
        "meshgrid-ij",
        Fn(lambda a, b: torch.meshgrid(a, b, indexing="ij")),
        (r(3), r(4)),
        covers=("aten::meshgrid",),
        khronos=True,
    ),
    OpCase(
        "meshgrid-xy",
        Fn(lambda a, b: torch.meshgrid(a, b, indexing="xy")),
        (r(3), r(4)),
        covers=("aten::meshgrid",),
        khronos=True,
    ),
    OpCase(
        "meshgrid-3",
        Fn(lambda a, b, c: torch.meshgrid(a, b, c, indexing="xy")),
        (r(3), r(4), r(2)),
        covers=("aten::meshgrid",),
        khronos=True,
    ),
    # channel rearrangements
    OpCase("pixel-shuffle", nn.PixelShuffle(2), (r(2, 8, 3, 5),), covers=("aten::pixel_shuffle",), khronos=True),
    OpCase("pixel-unshuffle", nn.PixelUnshuffle(3), (r(1, 2, 6, 9),), covers=("aten::pixel_unshuffle",), khronos=True),
    OpCase("channel-shuffle", nn.ChannelShuffle(3), (r(2, 6, 3, 2),), covers=("aten::channel_shuffle",), khronos=True),
    OpCase(
        "native-channel-shuffle",
        Fn(lambda x: torch.ops.aten.native_channel_shuffle(x, 2)),
        (r(1, 4, 5),),
        covers=("aten::native_channel_shuffle",),
        khronos=True,
    ),
    # rolls, flips, unbind, repeat_interleave
    OpCase("roll", Fn(lambda x: torch.roll(x, 2, 1)), (r(3, 5),), covers=("aten::roll",), khronos=True),
    OpCase(
        "roll-negative-multi",
        Fn(lambda x: torch.roll(x, (-1, 3), (0, -1))),
        (r(3, 4),),
        covers=("aten::roll",),
        khronos=True,
    ),
    OpCase("roll-flat", Fn(lambda x: torch.roll(x, -5)), (r(3, 4),), covers=("aten::roll",), khronos=True),
    OpCase(
        "roll-larger-than-axis", Fn(lambda x: torch.roll(x, 7, 1)), (r(2, 5),), covers=("aten::roll",), khronos=True
    ),
    OpCase("flip", Fn(lambda x: torch.flip(x, (0, -1))), (r(3, 4, 2),), covers=("aten::flip",), khronos=True),
    OpCase("flip-int", Fn(lambda x: x.flip(1)), (ints(3, 4),), covers=("aten::flip",), khronos=True),
    OpCase(
        "unbind",
        Fn(lambda x: sum(t * (i + 1) for i, t in enumerate(x.unbind(1)))),
        (r(2, 3, 4),),
        covers=("aten::unbind",),
        khronos=True,
    ),
    OpCase(
        "unbind-negative",
        Fn(lambda x: x.unbind(-1)[2] - x.unbind(-1)[0]),
        (r(2, 3),),
        covers=("aten::unbind",),
        khronos=True,
    ),
    OpCase(
        "repeat-interleave",
        Fn(lambda x: x.repeat_interleave(2, dim=1)),
        (r(2, 3, 4),),
        covers=("aten::repeat_interleave",),
        khronos=True,
    ),
    OpCase(
        "repeat-interleave-flat",
        Fn(lambda x: x.repeat_interleave(3)),
        (r(2, 3),),
        covers=("aten::repeat_interleave",),
        khronos=True,
    ),
    OpCase(
        "repeat-interleave-negative-dim",
        Fn(lambda x: x.repeat_interleave(2, dim=-1)),
        (ints(2, 3),),
        covers=("aten::repeat_interleave",),
        khronos=True,
    ),
]


@pytest.mark.parametrize(("target", "case"), op_params(CASES))
def test_op_table(tmp_path: Path, target: str, case: OpCase) -> None:
    """Each case exported and checked in tract (Khronos cases also by the Khronos parser and interpreter),
    translating the operators it covers."""
    export_and_check(tmp_path, target, case)


# Kinds that other torch releases leave in the graph and the pinned one turns into others (views,
# copies): the captured graph is rewritten back to them (same values), then exported and checked.
OLDER_FORMS: list[OlderForm] = [
    OlderForm(
        "reshape",
        Fn(lambda x: x.reshape(3, 2) * 2),
        (r(2, 3),),
        covers=("aten::reshape",),
        khronos=True,
        rewrite=retarget(aten.view.default, aten.reshape.default, lambda n: n.args),
        form="aten::reshape",
    ),
    OlderForm(
        "flatten",
        Fn(lambda x: x.flatten(1)),
        (r(2, 3, 4),),
        covers=("aten::flatten",),
        khronos=True,
        rewrite=retarget(aten.view.default, aten.flatten.using_ints, lambda n: (n.args[0], 1, -1)),
        form="aten::flatten",
    ),
    OlderForm(
        "unflatten",
        Fn(lambda x: x.unflatten(1, (2, 2))),
        (r(3, 4),),
        covers=("aten::unflatten",),
        khronos=True,
        rewrite=retarget(aten.view.default, aten.unflatten.int, lambda n: (n.args[0], 1, [2, 2])),
        form="aten::unflatten",
    ),
]


@pytest.mark.parametrize(("target", "case"), op_params(OLDER_FORMS))
def test_older_torch_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, case: OlderForm) -> None:
    check_older_form(tmp_path, monkeypatch, target, case)


def _heads(x: torch.Tensor) -> torch.Tensor:
    """Attention's split into heads and back, over a dynamic sequence."""
    b, s, _ = x.shape
    heads = x.reshape(b, s, 2, -1).transpose(1, 2)
    return (heads * heads.sum(2, keepdim=True)).transpose(1, 2).reshape(b, s, -1)


SHAPE_ARITHMETIC_CASES: list[tuple[str, Callable[[torch.Tensor], torch.Tensor], tuple[int, ...], int, str]] = [
    # (id, function, example shape, dynamic axis 'S', that axis as the export takes it)
    ("view-fixed-parts", lambda x: x.view(2, -1, 2) * 2, (6, 6), 0, "2*S_2"),  # 6*S / 4 rows: S even
    ("view-trailing-pair", lambda x: x.view(-1, 2).sum(1), (3, 4), 1, "2*S_2"),
    ("view-by-four", lambda x: x.view(x.size(0), -1, 4).mean(-1), (2, 8), 1, "4*S_4"),
    ("view-half-size", lambda x: x.view(x.size(0), x.size(1) // 2, 2).amax(-1), (2, 6), 1, "2*S_2"),
    ("unflatten-pairs", lambda x: x.unflatten(1, (-1, 2)).sum(-1), (2, 6), 1, "2*S_2"),
    ("halves-added", lambda x: x[:, x.size(1) // 2 :] - x[:, : x.size(1) // 2], (2, 6), 1, "2*S_2"),
    ("reshape-after-crop", lambda x: x[:, 1:].reshape(x.size(0), -1, 2).sum(-1), (2, 7), 1, "1+2*S_2"),
    ("first-half", lambda x: x[:, : x.size(1) // 2] * 2, (2, 7), 1, "S"),
    ("attention-heads", _heads, (2, 5, 8), 1, "S"),
    ("flatten-after-global-pool", lambda x: F.adaptive_avg_pool2d(x, 1).flatten(1), (2, 3, 5, 4), 2, "S"),
    ("flatten-all", lambda x: x.flatten() * x.numel(), (2, 5), 1, "S"),
    ("arange-index", lambda x: x.index_select(1, torch.arange(x.size(1) - 1)), (2, 5), 1, "S"),
    ("even-odd-interleave", lambda x: torch.cat([x[:, :, ::2], x[:, :, 1::2]], 1), (1, 2, 6), 2, "2*S_2"),
    ("strided", lambda x: x[:, ::2] * 2 + x[:, 1::3].sum(1, keepdim=True), (2, 7), 1, "S"),
    ("strided-from-the-end", lambda x: x[:, -5::2] + x[:, x.size(1) // 2 :: 2].sum(1, keepdim=True), (2, 8), 1, "S"),
    ("unfold-windows", lambda x: x.unfold(1, 3, 2).sum(-1) + x.unfold(1, 2, 2).amax(-1)[:, :1], (2, 7), 1, "S"),
    ("max-pool1d", lambda x: F.max_pool1d(x, 3, 2, 1) * nn.MaxPool1d(2)(x).sum(-1, keepdim=True), (1, 2, 9), 2, "S"),
    ("size-as-float", lambda x: x / x.size(1) ** 0.5 + x * (x.size(1) / 2) - x * (0.5 * x.size(1) + 1), (2, 6), 1, "S"),
    ("pad-to-a-multiple", lambda x: F.pad(x, (1, (4 - x.size(1) % 4) % 4), value=2.0), (2, 6), 1, "S"),
    ("pad-rows-to-a-multiple", lambda x: F.pad(x, (0, 0, (-x.size(2)) % 3, 0)), (1, 2, 5, 3), 2, "S"),
    (
        "skip-join-at-any-size",  # a U-Net's decoder resized to its skip connection's size, whatever the ratio
        lambda x: torch.cat([x, F.interpolate(F.max_pool2d(x, 2), size=x.shape[2:], mode="bilinear")], 1),
        (1, 2, 7, 6),
        2,
        "S",
    ),
    ("nearest-to-another-size", lambda x: F.interpolate(x[:, :, ::2], size=x.shape[2:]), (1, 2, 7, 3), 2, "S"),
    (
        "aligned-corners-to-another-size",
        lambda x: F.interpolate(x[:, :, ::3], size=x.shape[2:], mode="bilinear", align_corners=True),
        (1, 2, 7, 3),
        2,
        "S",
    ),
    ("linear-by-1.5", lambda x: F.interpolate(x, scale_factor=1.5, mode="linear"), (1, 2, 9), 2, "S"),
    ("bilinear-by-half", lambda x: F.interpolate(x, scale_factor=0.5, mode="bilinear"), (1, 2, 9, 4), 2, "S"),
    ("repeat-dynamic", lambda x: x.repeat(2, 3), (2, 5), 1, "S"),
    ("adaptive-avg-pool-flatten", lambda x: F.adaptive_avg_pool2d(x, (3, 2)).flatten(1), (1, 2, 8, 7), 2, "S"),
    ("adaptive-max-pool", lambda x: F.adaptive_max_pool1d(x, 4), (1, 2, 9), 2, "S"),
    ("var-std", lambda x: x.var(1) + x.std(1, keepdim=True).sum(1) + x.var(1, correction=0), (2, 6), 1, "S"),
    ("group-norm", lambda x: F.group_norm(x, 2), (1, 4, 6), 2, "S"),
    ("glu-halves", lambda x: F.glu(x, 1), (2, 6), 1, "2*S_2"),
    ("linear-to-size", lambda x: F.interpolate(x, size=x.size(2) * 2, mode="linear"), (1, 2, 5), 2, "S"),
    ("nearest-to-size", lambda x: F.interpolate(x, size=(2 * x.size(2), 15)), (1, 2, 3, 5), 2, "S"),
]


@pytest.mark.parametrize(
    ("fn", "shape", "axis", "form"),
    [pytest.param(fn, shape, axis, form, id=name) for name, fn, shape, axis, form in SHAPE_ARITHMETIC_CASES],
)
def test_shape_arithmetic_over_a_dynamic_axis(
    tmp_path: Path, fn: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, ...], axis: int, form: str
):
    """Reshapes with -1 and sizes computed from a dynamic axis: where torch's guards need the size in
    steps (6*S rows viewed as pairs of pairs: S even), the axis is written over its own symbol; the
    export is checked at two sizes, then run at a third and refused at a size outside the steps.
    """
    path = export_model_to_nnef(
        Fn1(fn),
        torch.randn(*shape),
        tmp_path / "m.nnef",
        TractNNEF(check_io=True, dynamic_axes={"x": {axis: "S"}}),
        input_names=["x"],
    )
    model = TractModel(path)
    assert model.inputs[0][2].split(",")[axis] == form
    step = int(form.split("*")[0].split("+")[-1]) if "*" in form else 1
    third = list(shape)
    third[axis] += 3 * step
    x = torch.randn(*third)
    (got,) = model.run([x])
    torch.testing.assert_close(torch.from_numpy(got), fn(x), atol=1e-4, rtol=1e-4)
    if step > 1:
        third[axis] += 1
        with pytest.raises(ShapeError, match=f"on axis {axis}, where this model takes "):
            model.run([torch.randn(*third)])


def test_unsupported_forms_say_why(tmp_path: Path):
    with pytest.raises(TranslationError, match="data-dependent"):
        export_model_to_nnef(
            Fn(lambda x: x.repeat_interleave(torch.tensor([1, 2, 1]), dim=1)), r(2, 3), tmp_path / "a.nnef", TractNNEF()
        )
    with pytest.raises(TranslationError, match="no bit cast"):
        export_model_to_nnef(Fn(lambda x: x.view(torch.int32) + 1), r(3, 3), tmp_path / "d.nnef", TractNNEF())
    with pytest.raises(TranslationError, match="singular values"):
        export_model_to_nnef(
            Fn(lambda x: torch.linalg.matrix_norm(x, ord="nuc")), r(3, 3), tmp_path / "c.nnef", TractNNEF()
        )


DYNAMIC: list[tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor], tuple[torch.Tensor, torch.Tensor]]] = [
    ("meshgrid", lambda x, y: torch.stack(torch.meshgrid(x[:, 0], y[0], indexing="xy")), (r(3, 4), r(3, 4))),
]


@pytest.mark.parametrize("fn,inputs", [pytest.param(f, i, id=n) for n, f, i in DYNAMIC])
def test_dynamic_batch(
    tmp_path: Path, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], inputs: tuple[torch.Tensor, torch.Tensor]
) -> None:
    """The first axis of both inputs dynamic: the graph is written with the symbol and checked by tract."""
    target = TractNNEF(check_io=True, dynamic_axes={"x": {0: "B"}, "y": {0: "B"}})
    path = export_model_to_nnef(Named(fn), inputs, tmp_path / "m.nnef", target, input_names=["x", "y"])
    assert "tract_symbol B" in (path / "graph.nnef").read_text()


DYNAMIC_CASES: list[tuple[str, Callable[[torch.Tensor], torch.Tensor], tuple[int, ...]]] = [
    ("roll-dynamic", lambda x: torch.roll(x, 2, 1) + torch.roll(x, -1, 1) * 10, (2, 5)),
    ("roll-flat-dynamic", lambda x: torch.roll(x, 3), (2, 5)),
    ("flip-dynamic", lambda x: torch.flip(x, (0, 1)), (2, 5)),
    ("repeat-interleave-dynamic", lambda x: x.repeat_interleave(2, dim=1) * 2, (2, 5)),
    ("numel-dynamic", lambda x: x / x.numel() + x.size(1), (2, 5)),
]


@pytest.mark.parametrize(("fn", "shape"), [pytest.param(fn, shape, id=name) for name, fn, shape in DYNAMIC_CASES])
def test_dynamic_axis(tmp_path: Path, fn: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, ...]):
    """Symbolic sizes: check_io also runs the export at a second length of S."""
    path = export_model_to_nnef(
        Fn1(fn),
        torch.randn(*shape),
        tmp_path / "m.nnef",
        TractNNEF(check_io=True, dynamic_axes={"x": {1: "S"}}),
        input_names=["x"],
    )
    model = TractModel(path)
    assert model.inputs[0][2] == f"{shape[0]},S"
    x = torch.randn(shape[0], 11)
    (got,) = model.run([x])
    torch.testing.assert_close(torch.from_numpy(got), fn(x), atol=1e-4, rtol=1e-4)
