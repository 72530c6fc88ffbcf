"""Layer translations (convolutions, normalisations, pooling, resizing, attention), checked in tract."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from optable import Case, Fn, export_and_check, op_params, r
from torch_to_nnef import KhronosNNEF, TractModel, TractNNEF, export_model_to_nnef
from torch_to_nnef.capture.torch_export import CaptureError
from torch_to_nnef.errors import TranslationError


class Attention(nn.Module):
    """nn.MultiheadAttention called with masks and weights options; returns the output (and the weights)."""

    def __init__(self, batch_first: bool, need_weights: bool = False, average: bool = True, kdim: int = 8) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(8, 2, batch_first=batch_first, kdim=kdim, vdim=kdim)
        self.need_weights, self.average = need_weights, average

    def forward(self, q, k, v, attn_mask=None, key_padding_mask=None):
        out, weights = self.mha(
            q,
            k,
            v,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
            need_weights=self.need_weights,
            average_attn_weights=self.average,
        )
        return out if weights is None else (out, weights)


class SelfAttention(nn.Module):
    """Query, key and value are the same tensor (one packed input projection)."""

    def __init__(self) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(8, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mha(x, x, x, need_weights=False)[0]


class AdaptiveMaxValues(nn.Module):
    def __init__(self, pool: nn.Module) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x) * 2


def running_stats(norm: nn.Module) -> nn.Module:
    """Gives a norm layer's running statistics values other than their 0 / 1 defaults."""
    norm.running_mean.uniform_(-1, 1)
    norm.running_var.uniform_(0.5, 2)
    return norm


def weight_normed(layer: nn.Module) -> nn.Module:
    layer = nn.utils.parametrizations.weight_norm(layer)
    with torch.no_grad():
        layer.parametrizations.weight.original0.uniform_(0.5, 2)  # a gain that is not the initial norm
    return layer


def rms_affine(shape: int | list[int], eps: float | None = None) -> nn.Module:
    norm = nn.RMSNorm(shape, eps=eps)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    return norm


def up(**kw) -> nn.Module:
    return Fn(lambda x: F.interpolate(x, **kw))


BOOL_MASK = torch.tensor([[True, False, True, True, True, True]] * 5)
KEY_PADDING = torch.tensor([[False] * 5 + [True], [False] * 6])
QKV_BATCH_FIRST = (r(2, 5, 8), r(2, 6, 8), r(2, 6, 8))
QKV_SEQUENCE_FIRST = (r(5, 2, 8), r(6, 2, 8), r(6, 2, 8))

# (id, module, inputs, also for Khronos)
CASES: list[Case] = [
    # what torch 2.5 lowers attention's softmax to: zeros over a row that is all -inf
    (
        "safe-softmax-masked-row",
        Fn(
            lambda x: torch.ops.aten._safe_softmax(
                x.masked_fill(torch.tensor([False, True, False])[:, None], -math.inf), -1
            )
        ),
        (r(3, 5),),
        True,
    ),
    # convolutions
    ("conv3d", nn.Conv3d(2, 3, 3, padding=1), (r(1, 2, 5, 6, 4),), True),
    ("conv3d-stride-groups", nn.Conv3d(4, 6, (3, 1, 2), stride=(2, 1, 1), groups=2), (r(2, 4, 7, 5, 6),), True),
    ("conv1d-reflect", nn.Conv1d(2, 3, 3, padding=1, padding_mode="reflect"), (r(1, 2, 9),), True),
    # tract spells the 'replicate' border 'replicated': tract only.
    ("conv2d-replicate", nn.Conv2d(2, 3, 3, padding=2, padding_mode="replicate"), (r(1, 2, 7, 6),), False),
    ("conv-transpose1d", nn.ConvTranspose1d(3, 4, 3), (r(1, 3, 7),), True),
    ("conv-transpose1d-stride-pad", nn.ConvTranspose1d(3, 2, 4, stride=2, padding=1), (r(2, 3, 6),), True),
    (
        "conv-transpose1d-output-padding",
        nn.ConvTranspose1d(2, 3, 3, stride=3, padding=1, output_padding=2),
        (r(1, 2, 5),),
        True,
    ),
    (
        "conv-transpose1d-output-padding-within",
        nn.ConvTranspose1d(2, 3, 5, stride=2, padding=2, output_padding=1, bias=False),
        (r(1, 2, 6),),
        True,
    ),
    ("conv-transpose2d", nn.ConvTranspose2d(3, 5, 3, stride=2, padding=1), (r(1, 3, 4, 5),), True),
    (
        "conv-transpose2d-groups-dilation",
        nn.ConvTranspose2d(4, 6, (3, 2), stride=(1, 2), padding=(2, 0), dilation=(2, 1), groups=2),
        (r(2, 4, 5, 4),),
        True,
    ),
    (
        "conv-transpose2d-depthwise-output-padding",
        nn.ConvTranspose2d(4, 4, 3, stride=2, padding=0, output_padding=1, groups=4),
        (r(1, 4, 3, 3),),
        True,
    ),
    (
        "conv-transpose3d",
        nn.ConvTranspose3d(2, 3, (2, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), output_padding=(0, 1, 0)),
        (r(1, 2, 3, 4, 3),),
        True,
    ),
    # normalisations
    ("instance-norm1d", nn.InstanceNorm1d(3), (r(2, 3, 9),), True),
    ("instance-norm1d-affine", nn.InstanceNorm1d(3, affine=True), (r(2, 3, 9) * 3 + 1,), True),
    ("instance-norm2d-affine", nn.InstanceNorm2d(4, affine=True), (r(2, 4, 5, 3),), True),
    (
        "instance-norm2d-running-stats",
        running_stats(nn.InstanceNorm2d(3, track_running_stats=True)),
        (r(2, 3, 4, 4),),
        True,
    ),
    (
        "instance-norm1d-running-stats-affine",
        running_stats(nn.InstanceNorm1d(3, affine=True, track_running_stats=True)),
        (r(2, 3, 6),),
        True,
    ),
    ("rms-norm", rms_affine(6), (r(2, 3, 6),), True),
    ("rms-norm-2d-eps", rms_affine([3, 6], eps=1e-3), (r(2, 3, 6),), True),
    ("rms-norm-no-weight-eps-none", nn.RMSNorm(6, elementwise_affine=False), (r(2, 3, 6) * 1e-3,), True),
    ("weight-norm-linear", weight_normed(nn.Linear(4, 3)), (r(2, 4),), True),
    ("weight-norm-conv1d", weight_normed(nn.Conv1d(4, 3, 3)), (r(2, 4, 9),), True),
    # pooling
    ("maxpool1d-ceil", nn.MaxPool1d(3, 2, ceil_mode=True), (r(1, 2, 8),), True),
    ("maxpool2d-ceil-pad", nn.MaxPool2d(3, 2, padding=1, ceil_mode=True), (r(1, 2, 8, 7),), True),
    ("maxpool2d-ceil-exact", nn.MaxPool2d(2, ceil_mode=True), (r(1, 2, 6, 6),), True),
    ("maxpool2d-dilation", nn.MaxPool2d(2, stride=1, dilation=2), (r(1, 2, 7, 6),), True),
    ("avgpool1d-ceil", nn.AvgPool1d(3, 2, ceil_mode=True), (r(1, 2, 8),), True),
    ("avgpool1d-ceil-pad-include", nn.AvgPool1d(3, 2, padding=1, ceil_mode=True), (r(1, 2, 8),), True),
    (
        "avgpool2d-ceil-pad-exclude",
        nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False),
        (r(1, 2, 8, 7),),
        True,
    ),
    ("avgpool2d-ceil-include", nn.AvgPool2d((3, 2), (2, 3), padding=(1, 0), ceil_mode=True), (r(1, 2, 6, 7),), True),
    ("avgpool1d-pad-include", nn.AvgPool1d(4, 2, padding=2), (r(1, 2, 9),), True),
    ("avgpool2d-divisor", nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, divisor_override=4), (r(1, 2, 8, 7),), True),
    ("adaptive-avgpool1d-divisible", nn.AdaptiveAvgPool1d(3), (r(2, 3, 12),), True),
    ("adaptive-avgpool1d-uneven", nn.AdaptiveAvgPool1d(4), (r(2, 3, 7),), True),
    ("adaptive-avgpool2d-mixed", nn.AdaptiveAvgPool2d((3, 2)), (r(1, 3, 7, 6),), True),
    ("adaptive-avgpool2d-none", nn.AdaptiveAvgPool2d((None, 2)), (r(1, 3, 5, 5),), True),
    ("adaptive-maxpool1d-uneven", AdaptiveMaxValues(nn.AdaptiveMaxPool1d(3)), (r(2, 3, 7),), True),
    ("adaptive-maxpool2d", AdaptiveMaxValues(nn.AdaptiveMaxPool2d((2, 3))), (r(1, 3, 6, 7),), True),
    ("adaptive-maxpool2d-global", AdaptiveMaxValues(nn.AdaptiveMaxPool2d(1)), (r(1, 3, 5, 4),), True),
    # resizing
    ("upsample-nearest2d-scale", nn.Upsample(scale_factor=2), (r(1, 2, 3, 4),), True),
    ("upsample-nearest2d-size", nn.Upsample(size=(5, 7)), (r(1, 2, 3, 4),), True),
    ("upsample-nearest1d-scale3", nn.Upsample(scale_factor=3), (r(1, 2, 5),), True),
    ("upsample-nearest1d-fractional", up(scale_factor=2.5), (r(1, 2, 3),), True),
    ("upsample-nearest2d-down", up(size=(2, 3)), (r(1, 2, 5, 7),), True),
    ("upsample-nearest-exact2d", up(size=(5, 7), mode="nearest-exact"), (r(1, 2, 3, 4),), True),
    ("upsample-bilinear-scale", nn.Upsample(scale_factor=2, mode="bilinear"), (r(1, 2, 3, 4),), True),
    (
        "upsample-bilinear-align",
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
        (r(1, 2, 3, 4),),
        True,
    ),
    ("upsample-bilinear-size-align", up(size=(5, 7), mode="bilinear", align_corners=True), (r(2, 3, 3, 4),), True),
    ("upsample-bilinear-size", up(size=(5, 7), mode="bilinear"), (r(2, 3, 3, 4),), True),
    ("downsample-bilinear", up(size=(2, 3), mode="bilinear"), (r(1, 2, 5, 7),), True),
    ("upsample-bilinear-fractional", up(scale_factor=(1.5, 2.25), mode="bilinear"), (r(1, 2, 4, 4),), True),
    ("upsample-linear-scale", nn.Upsample(scale_factor=2.5, mode="linear"), (r(1, 2, 3),), True),
    ("upsample-linear-size-align", up(size=9, mode="linear", align_corners=True), (r(2, 3, 4),), True),
    (
        "upsample-nearest2d-default-overload",
        Fn(lambda x: torch.ops.aten.upsample_nearest2d.default(x, [6, 10], 1.5, 2.5)),
        (r(1, 2, 4, 4),),
        True,
    ),
    ("downsample-bilinear-antialias", up(size=(3, 4), mode="bilinear", antialias=True), (r(1, 2, 8, 9),), True),
    ("resize-bilinear-antialias-mixed", up(size=(2, 11), mode="bilinear", antialias=True), (r(1, 2, 7, 5),), True),
    (
        "downsample-bilinear-antialias-align",
        up(size=(3, 2), mode="bilinear", antialias=True, align_corners=True),
        (r(1, 2, 8, 9),),
        True,
    ),
    ("upsample-linear-to-one", up(size=1, mode="linear", align_corners=True), (r(1, 2, 4),), True),
    # channel rearrangements
    ("pixel-shuffle", nn.PixelShuffle(2), (r(2, 8, 3, 5),), True),
    ("pixel-unshuffle", nn.PixelUnshuffle(3), (r(1, 2, 6, 9),), True),
    ("channel-shuffle", nn.ChannelShuffle(3), (r(2, 6, 3, 2),), True),
    ("native-channel-shuffle", Fn(lambda x: torch.ops.aten.native_channel_shuffle(x, 2)), (r(1, 4, 5),), True),
    # attention
    ("mha-batch-first", Attention(True), QKV_BATCH_FIRST, True),
    ("mha-sequence-first-weights", Attention(False, need_weights=True), QKV_SEQUENCE_FIRST, True),
    ("mha-weights-per-head", Attention(False, need_weights=True, average=False), QKV_SEQUENCE_FIRST, True),
    ("mha-masks", Attention(True), (*QKV_BATCH_FIRST, BOOL_MASK, KEY_PADDING), True),
    ("mha-masks-weights", Attention(True, need_weights=True), (*QKV_BATCH_FIRST, BOOL_MASK, KEY_PADDING), True),
    ("mha-float-mask", Attention(True), (*QKV_BATCH_FIRST, r(5, 6)), True),
    ("mha-kdim", Attention(True, kdim=6), (r(2, 5, 8), r(2, 6, 6), r(2, 6, 6)), True),
    (
        "mha-self",
        SelfAttention(),
        (r(2, 5, 8),),
        True,
    ),
    (
        "baddbmm",
        Fn(lambda s, a, b: torch.baddbmm(s, a, b, beta=0.5, alpha=2.0)),
        (r(3, 1, 5), r(3, 4, 2), r(3, 2, 5)),
        True,
    ),
]


OP_PARAMS = op_params(CASES)


@pytest.mark.parametrize(("target", "module", "inputs"), OP_PARAMS)
def test_nn_op_table(tmp_path: Path, target: str, module: nn.Module, inputs: tuple[torch.Tensor, ...]):
    """Each layer case is exported and verified in tract; Khronos cases also by the Khronos parser."""
    export_and_check(tmp_path, target, module, inputs)


class Decoder(nn.Module):
    """A transposed convolution and an instance norm over a dynamic time axis."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.ConvTranspose1d(4, 3, 4, stride=2, padding=1)
        self.norm = nn.InstanceNorm1d(3, affine=True)
        self.up2 = nn.ConvTranspose1d(3, 2, 3, stride=2, output_padding=1)  # output padding beyond the crop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up2(torch.relu(self.norm(self.up(x))))


def test_dynamic_time_axis(tmp_path):
    model = Decoder().eval()
    path = export_model_to_nnef(
        model,
        torch.randn(1, 4, 11),
        tmp_path / "decoder.nnef.tgz",
        TractNNEF(check_io=True, dynamic_axes={"x": {2: "T"}}),
        input_names=["x"],
    )
    tm = TractModel(path)
    assert tm.inputs[0][2] == "1,4,T"
    x = torch.randn(1, 4, 23)
    (got,) = tm.run([x])
    want = model(x)
    assert got.shape == want.shape == (1, 2, 94)
    torch.testing.assert_close(torch.from_numpy(got), want, atol=1e-4, rtol=1e-4)


def test_khronos_rejects_tract_only_layers(tmp_path):
    """A Khronos export of a layer the specification cannot express names the op and the fix."""
    with pytest.raises(TranslationError, match=r"(?s)gelu.*TractNNEF"):
        export_model_to_nnef(
            nn.Sequential(nn.ConvTranspose1d(2, 2, 3), nn.GELU()), r(1, 2, 5), tmp_path / "m", KhronosNNEF()
        )


def test_resize_by_a_fractional_factor_over_a_dynamic_axis(tmp_path):
    # the length (3*T)//2 and each output's source position computed at run time (checked at two lengths)
    module, x = nn.Upsample(scale_factor=1.5, mode="linear"), r(1, 2, 5)
    if tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2]) < (2, 6):
        with pytest.raises(CaptureError, match="specialised to 5"):  # torch 2.5's interpolate sizes in Python
            export_model_to_nnef(module, x, tmp_path / "m", TractNNEF(dynamic_axes={"x": {2: "T"}}), ["x"])
        return
    target = TractNNEF(check_io=True, dynamic_axes={"x": {2: "T"}})
    path = export_model_to_nnef(module, x, tmp_path / "m", target, input_names=["x"])
    assert "tract_core_gather" in (path / "graph.nnef").read_text()

    class Antialiased(nn.Module):
        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return F.interpolate(v, scale_factor=0.5, mode="bilinear", antialias=True)

    with pytest.raises(TranslationError, match="linear-antialias resizing over a dynamic axis"):
        export_model_to_nnef(
            Antialiased(), r(1, 2, 6, 6), tmp_path / "n", TractNNEF(dynamic_axes={"v": {2: "H"}}), ["v"]
        )
