"""Normalisations (``op/nn/norm.py``): batch, layer, group, instance and RMS norms, weight norm, each checked
numerically.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from harness import OpCase, export_and_check, op_params, r


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


CASES: list[OpCase] = [
    OpCase(
        "batchnorm2d",
        nn.BatchNorm2d(3),
        (r(2, 3, 4, 4),),
        covers=("aten::_native_batch_norm_legit_no_training",),
        khronos=True,
    ),
    OpCase("layernorm", nn.LayerNorm(6), (r(2, 3, 6),), covers=("aten::layer_norm",), khronos=True),
    OpCase(
        "layernorm-no-affine",
        nn.LayerNorm(6, elementwise_affine=False),
        (r(2, 3, 6),),
        covers=("aten::layer_norm",),
        khronos=True,
    ),
    OpCase("groupnorm", nn.GroupNorm(2, 4), (r(2, 4, 3, 3),), covers=("aten::group_norm",), khronos=True),
    # normalisations
    OpCase("instance-norm1d", nn.InstanceNorm1d(3), (r(2, 3, 9),), covers=("aten::instance_norm",), khronos=True),
    OpCase(
        "instance-norm1d-affine",
        nn.InstanceNorm1d(3, affine=True),
        (r(2, 3, 9) * 3 + 1,),
        covers=("aten::instance_norm",),
        khronos=True,
    ),
    OpCase(
        "instance-norm2d-affine",
        nn.InstanceNorm2d(4, affine=True),
        (r(2, 4, 5, 3),),
        covers=("aten::instance_norm",),
        khronos=True,
    ),
    OpCase(
        "instance-norm2d-running-stats",
        running_stats(nn.InstanceNorm2d(3, track_running_stats=True)),
        (r(2, 3, 4, 4),),
        covers=("aten::instance_norm",),
        khronos=True,
    ),
    OpCase(
        "instance-norm1d-running-stats-affine",
        running_stats(nn.InstanceNorm1d(3, affine=True, track_running_stats=True)),
        (r(2, 3, 6),),
        covers=("aten::instance_norm",),
        khronos=True,
    ),
    OpCase("rms-norm", rms_affine(6), (r(2, 3, 6),), covers=("aten::rms_norm",), khronos=True),
    OpCase("rms-norm-2d-eps", rms_affine([3, 6], eps=1e-3), (r(2, 3, 6),), covers=("aten::rms_norm",), khronos=True),
    OpCase(
        "rms-norm-no-weight-eps-none",
        nn.RMSNorm(6, elementwise_affine=False),
        (r(2, 3, 6) * 1e-3,),
        covers=("aten::rms_norm",),
        khronos=True,
    ),
    OpCase(
        "weight-norm-linear", weight_normed(nn.Linear(4, 3)), (r(2, 4),), covers=("aten::_weight_norm",), khronos=True
    ),
    OpCase(
        "weight-norm-conv1d",
        weight_normed(nn.Conv1d(4, 3, 3)),
        (r(2, 4, 9),),
        covers=("aten::_weight_norm",),
        khronos=True,
    ),
]


@pytest.mark.parametrize(("target", "case"), op_params(CASES))
def test_op_table(tmp_path: Path, target: str, case: OpCase) -> None:
    """Each case exported and checked in tract (Khronos cases also by the Khronos parser and interpreter),
    translating the operators it covers."""
    export_and_check(tmp_path, target, case)
