"""Pooling (``op/nn/pool.py``): max and average pooling (ceil mode, padding, dilation, divisor), adaptive pooling, each
checked numerically.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness import Fn, OpCase, export_and_check, op_params, r


class AdaptiveMaxValues(nn.Module):
    def __init__(self, pool: nn.Module) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x) * 2


CASES: list[OpCase] = [
    OpCase("maxpool2d", nn.MaxPool2d(2), (r(1, 2, 6, 6),), covers=("aten::max_pool2d",), khronos=True),
    OpCase(
        "maxpool2d-pad",
        nn.MaxPool2d(3, stride=2, padding=1),
        (r(1, 2, 7, 7),),
        covers=("aten::max_pool2d",),
        khronos=True,
    ),
    OpCase("avgpool2d", nn.AvgPool2d(2), (r(1, 2, 6, 6),), covers=("aten::avg_pool2d",), khronos=True),
    OpCase(
        "avgpool2d-pad-exclude",
        nn.AvgPool2d(3, 1, 1, count_include_pad=False),
        (r(1, 2, 5, 5),),
        covers=("aten::avg_pool2d",),
        khronos=True,
    ),
    OpCase(
        "adaptive-avgpool",
        nn.AdaptiveAvgPool2d(1),
        (r(1, 3, 5, 5),),
        covers=("aten::adaptive_avg_pool2d",),
        khronos=True,
    ),
    # other kinds and overloads of the core ATen set
    OpCase(
        "adaptive-avg-pool-3d",
        Fn(lambda x: F.adaptive_avg_pool3d(x, 1)),
        (r(1, 2, 4, 4, 4),),
        covers=("aten::adaptive_avg_pool3d",),
        khronos=True,
    ),
    OpCase(
        "max-pool-1d-indices",
        Fn(lambda x: F.max_pool1d(x, 2, return_indices=True)[0]),
        (r(1, 2, 6),),
        covers=("aten::max_pool1d_with_indices",),
        khronos=True,
    ),
    # area resizing (adaptive average pooling)
    OpCase(
        "area-down",
        Fn(lambda x: F.interpolate(x, size=(2, 3), mode="area")),
        (r(1, 2, 4, 6),),
        covers=("aten::adaptive_avg_pool2d",),
        khronos=True,
    ),
    OpCase(
        "area-uneven",
        Fn(lambda x: F.interpolate(x, size=(3, 4), mode="area")),
        (r(1, 2, 5, 7),),
        covers=("aten::adaptive_avg_pool2d",),
        khronos=True,
    ),
    # pooling
    OpCase(
        "maxpool1d-ceil", nn.MaxPool1d(3, 2, ceil_mode=True), (r(1, 2, 8),), covers=("aten::max_pool1d",), khronos=True
    ),
    OpCase(
        "maxpool2d-ceil-pad",
        nn.MaxPool2d(3, 2, padding=1, ceil_mode=True),
        (r(1, 2, 8, 7),),
        covers=("aten::max_pool2d",),
        khronos=True,
    ),
    OpCase(
        "maxpool2d-ceil-exact",
        nn.MaxPool2d(2, ceil_mode=True),
        (r(1, 2, 6, 6),),
        covers=("aten::max_pool2d",),
        khronos=True,
    ),
    OpCase(
        "maxpool2d-dilation",
        nn.MaxPool2d(2, stride=1, dilation=2),
        (r(1, 2, 7, 6),),
        covers=("aten::max_pool2d",),
        khronos=True,
    ),
    OpCase(
        "avgpool1d-ceil", nn.AvgPool1d(3, 2, ceil_mode=True), (r(1, 2, 8),), covers=("aten::avg_pool1d",), khronos=True
    ),
    OpCase(
        "avgpool1d-ceil-pad-include",
        nn.AvgPool1d(3, 2, padding=1, ceil_mode=True),
        (r(1, 2, 8),),
        covers=("aten::avg_pool1d",),
        khronos=True,
    ),
    OpCase(
        "avgpool2d-ceil-pad-exclude",
        nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False),
        (r(1, 2, 8, 7),),
        covers=("aten::avg_pool2d",),
        khronos=True,
    ),
    OpCase(
        "avgpool2d-ceil-include",
        nn.AvgPool2d((3, 2), (2, 3), padding=(1, 0), ceil_mode=True),
        (r(1, 2, 6, 7),),
        covers=("aten::avg_pool2d",),
        khronos=True,
    ),
    OpCase(
        "avgpool1d-pad-include",
        nn.AvgPool1d(4, 2, padding=2),
        (r(1, 2, 9),),
        covers=("aten::avg_pool1d",),
        khronos=True,
    ),
    OpCase(
        "avgpool2d-divisor",
        nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, divisor_override=4),
        (r(1, 2, 8, 7),),
        covers=("aten::avg_pool2d",),
        khronos=True,
    ),
    OpCase(
        "adaptive-avgpool1d-divisible",
        nn.AdaptiveAvgPool1d(3),
        (r(2, 3, 12),),
        covers=("aten::adaptive_avg_pool1d",),
        khronos=True,
    ),
    OpCase(
        "adaptive-avgpool1d-uneven",
        nn.AdaptiveAvgPool1d(4),
        (r(2, 3, 7),),
        covers=("aten::adaptive_avg_pool1d",),
        khronos=True,
    ),
    OpCase(
        "adaptive-avgpool2d-mixed",
        nn.AdaptiveAvgPool2d((3, 2)),
        (r(1, 3, 7, 6),),
        covers=("aten::adaptive_avg_pool2d",),
        khronos=True,
    ),
    OpCase(
        "adaptive-avgpool2d-none",
        nn.AdaptiveAvgPool2d((None, 2)),
        (r(1, 3, 5, 5),),
        covers=("aten::adaptive_avg_pool2d",),
        khronos=True,
    ),
    OpCase(
        "adaptive-maxpool1d-uneven",
        AdaptiveMaxValues(nn.AdaptiveMaxPool1d(3)),
        (r(2, 3, 7),),
        covers=("aten::adaptive_max_pool1d",),
        khronos=True,
    ),
    OpCase(
        "adaptive-maxpool2d",
        AdaptiveMaxValues(nn.AdaptiveMaxPool2d((2, 3))),
        (r(1, 3, 6, 7),),
        covers=("aten::adaptive_max_pool2d",),
        khronos=True,
    ),
    OpCase(
        "adaptive-maxpool2d-global",
        AdaptiveMaxValues(nn.AdaptiveMaxPool2d(1)),
        (r(1, 3, 5, 4),),
        covers=("aten::adaptive_max_pool2d",),
        khronos=True,
    ),
]


@pytest.mark.parametrize(("target", "case"), op_params(CASES))
def test_op_table(tmp_path: Path, target: str, case: OpCase) -> None:
    """Each case exported and checked in tract (Khronos cases also by the Khronos parser and interpreter),
    translating the operators it covers."""
    export_and_check(tmp_path, target, case)
