"""Convolutions (``op/nn/conv.py``): 1-D to 3-D, strided, dilated, grouped, padded (with every padding mode),
transposed, and the patches of unfold/fold, each checked numerically.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness import Fn, OpCase, export_and_check, op_params, r
from torch_to_nnef import TractModel, TractNNEF, export_model_to_nnef

CASES: list[OpCase] = [
    OpCase("conv1d", nn.Conv1d(3, 4, 3), (r(1, 3, 10),), covers=("aten::conv1d",), khronos=True),
    OpCase(
        "conv1d-stride-pad-dil",
        nn.Conv1d(3, 4, 3, stride=2, padding=2, dilation=2),
        (r(1, 3, 16),),
        covers=("aten::conv1d",),
        khronos=True,
    ),
    OpCase("conv1d-same", nn.Conv1d(3, 4, 4, padding="same"), (r(1, 3, 10),), covers=("aten::conv1d",), khronos=True),
    OpCase("conv2d", nn.Conv2d(3, 4, 3, padding=1), (r(1, 3, 8, 8),), covers=("aten::conv2d",), khronos=True),
    OpCase(
        "conv2d-depthwise",
        nn.Conv2d(4, 4, 3, groups=4, bias=False),
        (r(1, 4, 8, 8),),
        covers=("aten::conv2d",),
        khronos=True,
    ),
    OpCase(
        "conv2d-stride",
        nn.Conv2d(3, 4, (3, 2), stride=(2, 1)),
        (r(2, 3, 9, 7),),
        covers=("aten::conv2d",),
        khronos=True,
    ),
    OpCase(
        "conv2d-circular",
        nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular"),
        (r(1, 2, 5, 6),),
        covers=("aten::conv2d",),
        khronos=True,
    ),
    # patches
    OpCase(
        "unfold-F",
        Fn(lambda x: F.unfold(x, 2, padding=1, stride=2)),
        (r(1, 2, 4, 5),),
        covers=("aten::im2col",),
        khronos=True,
    ),
    OpCase(
        "unfold-F-dilated",
        Fn(lambda x: F.unfold(x, (2, 3), dilation=(2, 1))),
        (r(2, 3, 5, 6),),
        covers=("aten::im2col",),
        khronos=True,
    ),
    OpCase("unfold-F-unbatched", Fn(lambda x: F.unfold(x, 3)), (r(2, 4, 4),), covers=("aten::im2col",), khronos=True),
    OpCase(
        "fold-F",
        Fn(lambda x: F.fold(x, (4, 5), 2, padding=1, stride=2)),
        (r(1, 8, 9),),
        covers=("aten::col2im",),
        khronos=True,
    ),
    OpCase(
        "fold-F-overlap",
        Fn(lambda x: F.fold(x, (4, 4), 3, padding=1)),
        (r(2, 18, 16),),
        covers=("aten::col2im",),
        khronos=True,
    ),
    OpCase(
        "fold-F-uneven",
        Fn(lambda x: F.fold(x, (5, 6), 2, stride=2)),
        (r(1, 12, 6),),
        covers=("aten::col2im",),
        khronos=True,
    ),
    OpCase(
        "fold-unfold-round-trip",
        Fn(lambda x: F.fold(F.unfold(x, 2, stride=2), (4, 6), 2, stride=2)),
        (r(1, 3, 4, 6),),
        covers=("aten::col2im", "aten::im2col"),
        khronos=True,
    ),
    # convolutions
    OpCase("conv3d", nn.Conv3d(2, 3, 3, padding=1), (r(1, 2, 5, 6, 4),), covers=("aten::conv3d",), khronos=True),
    OpCase(
        "conv3d-stride-groups",
        nn.Conv3d(4, 6, (3, 1, 2), stride=(2, 1, 1), groups=2),
        (r(2, 4, 7, 5, 6),),
        covers=("aten::conv3d",),
        khronos=True,
    ),
    OpCase(
        "conv1d-reflect",
        nn.Conv1d(2, 3, 3, padding=1, padding_mode="reflect"),
        (r(1, 2, 9),),
        covers=("aten::conv1d",),
        khronos=True,
    ),
    # tract spells the 'replicate' border 'replicated': tract only.
    OpCase(
        "conv2d-replicate",
        nn.Conv2d(2, 3, 3, padding=2, padding_mode="replicate"),
        (r(1, 2, 7, 6),),
        covers=("aten::conv2d",),
        khronos=True,
    ),
    OpCase(
        "conv-transpose1d", nn.ConvTranspose1d(3, 4, 3), (r(1, 3, 7),), covers=("aten::conv_transpose1d",), khronos=True
    ),
    OpCase(
        "conv-transpose1d-stride-pad",
        nn.ConvTranspose1d(3, 2, 4, stride=2, padding=1),
        (r(2, 3, 6),),
        covers=("aten::conv_transpose1d",),
        khronos=True,
    ),
    OpCase(
        "conv-transpose1d-output-padding",
        nn.ConvTranspose1d(2, 3, 3, stride=3, padding=1, output_padding=2),
        (r(1, 2, 5),),
        covers=("aten::conv_transpose1d",),
        khronos=True,
    ),
    OpCase(
        "conv-transpose1d-output-padding-within",
        nn.ConvTranspose1d(2, 3, 5, stride=2, padding=2, output_padding=1, bias=False),
        (r(1, 2, 6),),
        covers=("aten::conv_transpose1d",),
        khronos=True,
    ),
    OpCase(
        "conv-transpose2d",
        nn.ConvTranspose2d(3, 5, 3, stride=2, padding=1),
        (r(1, 3, 4, 5),),
        covers=("aten::conv_transpose2d",),
        khronos=True,
    ),
    OpCase(
        "conv-transpose2d-groups-dilation",
        nn.ConvTranspose2d(4, 6, (3, 2), stride=(1, 2), padding=(2, 0), dilation=(2, 1), groups=2),
        (r(2, 4, 5, 4),),
        covers=("aten::conv_transpose2d",),
        khronos=True,
    ),
    OpCase(
        "conv-transpose2d-depthwise-output-padding",
        nn.ConvTranspose2d(4, 4, 3, stride=2, padding=0, output_padding=1, groups=4),
        (r(1, 4, 3, 3),),
        covers=("aten::conv_transpose2d",),
        khronos=True,
    ),
    OpCase(
        "conv-transpose3d",
        nn.ConvTranspose3d(2, 3, (2, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), output_padding=(0, 1, 0)),
        (r(1, 2, 3, 4, 3),),
        covers=("aten::conv_transpose3d",),
        khronos=True,
    ),
]


@pytest.mark.parametrize(("target", "case"), op_params(CASES))
def test_op_table(tmp_path: Path, target: str, case: OpCase) -> None:
    """Each case exported and checked in tract (Khronos cases also by the Khronos parser and interpreter),
    translating the operators it covers."""
    export_and_check(tmp_path, target, case)


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
