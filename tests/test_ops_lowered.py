"""The lower-level ATen kinds that older torch versions (2.5) leave after ``run_decompositions({})``.

The pinned torch keeps ``conv2d``, ``layer_norm``, ``linear``... at that step, so these models are captured
here with torch's core decomposition table instead (``run_decompositions`` is patched to use it), minus
the decompositions of the kinds under test that the table would lower further. Each case checks that the
captured graph really holds the kinds it is about, then exports it with ``check_io``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torch_to_nnef.capture.torch_export as capture_module
from optable import Fn, export_and_check, r
from torch_to_nnef import TractNNEF, export_model_to_nnef
from torch_to_nnef.capture.torch_export import capture
from torch_to_nnef.errors import TranslationError

aten = torch.ops.aten


def _core_table(keep: Sequence[Any]) -> Any:
    """torch's core decomposition table without the entries of ``keep``."""
    if hasattr(torch.export, "default_decompositions"):
        table = torch.export.default_decompositions()
    else:
        table = torch._decomp.core_aten_decompositions()
    for op in keep:
        if op in table:
            table.pop(op)
    return table


@pytest.fixture
def lowered(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Sequence[Any]], None]]:
    """Makes every capture decompose with the core table (keeping the ops given)."""
    original = torch.export.ExportedProgram.run_decompositions

    def use(keep: Sequence[Any]) -> None:
        table = _core_table(keep)

        def run(self: Any, decomp_table: Any = None, *args: Any, **kwargs: Any) -> Any:
            return original(self, table)

        monkeypatch.setattr(torch.export.ExportedProgram, "run_decompositions", run)
        # graphs the registry could translate as torch.export gives them are decomposed too
        monkeypatch.setattr(capture_module, "_translatable_as_is", lambda exported: False)

    yield use


def _kinds(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> set[str]:
    graph, _ = capture(module.eval(), inputs, [f"input_{i}" for i in range(len(inputs))])
    return {n.kind for n in graph.nodes}


class CircularConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _write_slices(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    y = x.clone()
    y[:, 1:3] = v
    y[:, -1:] = 0.5
    y[:2, :1] = v[:2, :1] * 2
    return y


def _write_rows(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    y = x.clone()
    y[:, 0] = v
    y[:, -1] = v * 2
    y[1] = 0.0
    return y


_SDPA = [aten._scaled_dot_product_flash_attention_for_cpu.default]
_PADS = [
    aten.reflection_pad1d.default,
    aten.reflection_pad2d.default,
    aten.reflection_pad3d.default,
    aten.replication_pad1d.default,
    aten.replication_pad2d.default,
    aten.replication_pad3d.default,
]

# torch 2.5 lowers max_pool3d to max_pool3d_with_indices whatever the table.
_MAX_POOL3D = {"aten::max_pool3d"} if hasattr(torch.export, "default_decompositions") else set()

# (id, module, inputs, also for Khronos, decompositions to leave out, kinds the capture must hold)
CASES: list[tuple[str, nn.Module, tuple[torch.Tensor, ...], bool, list[Any], set[str]]] = [
    (
        "embedding-bag",
        nn.EmbeddingBag(10, 4, mode="mean"),
        (torch.tensor([1, 2, 4, 5, 4, 3, 2, 9]), torch.tensor([0, 2, 5])),
        False,
        [],
        {"aten::_embedding_bag"},
    ),
    (
        "grid-sample-2d",
        Fn(lambda x, grid: F.grid_sample(x, grid, align_corners=False)),
        (r(1, 2, 4, 5), r(1, 3, 3, 2)),
        False,
        [],
        {"aten::grid_sampler_2d"},
    ),
    (
        "grid-sample-3d",
        Fn(lambda x, grid: F.grid_sample(x, grid, align_corners=True)),
        (r(1, 2, 3, 4, 5), r(1, 2, 3, 3, 3)),
        False,
        [],
        {"aten::grid_sampler_3d"},
    ),
    (
        "cnn-conv-batchnorm-maxpool",
        nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2)),
        (r(1, 3, 8, 8),),
        True,
        [],
        {"aten::convolution", "aten::max_pool2d_with_indices"},
    ),
    (
        "conv1d-stride-dilation-groups",
        nn.Conv1d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2),
        (r(2, 4, 11),),
        True,
        [],
        {"aten::convolution"},
    ),
    ("conv3d-no-bias", nn.Conv3d(2, 3, 2, bias=False), (r(1, 2, 4, 5, 3),), True, [], {"aten::convolution"}),
    (
        "conv-transpose2d-groups-output-padding",
        nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
        (r(1, 4, 4, 5),),
        True,
        [],
        {"aten::convolution"},
    ),
    (
        "conv-transpose1d-dilation",
        nn.ConvTranspose1d(2, 3, 3, stride=3, dilation=2),
        (r(1, 2, 5),),
        True,
        [],
        {"aten::convolution"},
    ),
    ("circular-conv", CircularConv(), (r(1, 2, 5, 6),), True, [], {"aten::slice_scatter", "aten::copy"}),
    (
        "maxpool1d-ceil",
        nn.MaxPool1d(3, stride=2, ceil_mode=True),
        (r(1, 2, 8),),
        True,
        [],
        {"aten::max_pool2d_with_indices"},
    ),
    (
        "maxpool3d-pad",
        nn.MaxPool3d(3, stride=2, padding=1),
        (r(1, 2, 5, 6, 4),),
        True,
        [],
        {"aten::max_pool3d_with_indices"},
    ),
    ("avgpool3d", nn.AvgPool3d(2), (r(1, 2, 4, 4, 6),), True, [], {"aten::avg_pool3d"}),
    (
        "maxpool3d",
        nn.MaxPool3d((2, 1, 3)),
        (r(1, 2, 4, 3, 6),),
        True,
        [aten.max_pool3d.default],
        _MAX_POOL3D,
    ),
    (
        "adaptive-avgpool3d",
        nn.AdaptiveAvgPool3d((1, 2, 3)),
        (r(1, 2, 3, 4, 7),),
        True,
        [],
        {"aten::_adaptive_avg_pool3d"},
    ),
    (
        "adaptive-avgpool2d",
        nn.AdaptiveAvgPool2d((2, 3)),
        (r(1, 2, 4, 7),),
        True,
        [],
        {"aten::_adaptive_avg_pool2d"},
    ),
    (
        "layernorm-linear",
        nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 4), nn.LayerNorm([2, 4], elementwise_affine=False)),
        (r(3, 2, 8),),
        True,
        [],
        {"aten::native_layer_norm", "aten::addmm"},
    ),
    (
        "addmm-beta-alpha",
        Fn(lambda b, x, y: torch.addmm(b, x, y, beta=0.5, alpha=2.0)),
        (r(4), r(3, 5), r(5, 4)),
        True,
        [],
        {"aten::addmm"},
    ),
    ("groupnorm", nn.GroupNorm(2, 4), (r(2, 4, 3, 5),), True, [], {"aten::native_group_norm"}),
    (
        "groupnorm-no-affine",
        nn.GroupNorm(3, 6, affine=False),
        (r(1, 6, 7),),
        True,
        [],
        {"aten::native_group_norm"},
    ),
    (
        "instance-norm",
        nn.InstanceNorm1d(3, affine=True),
        (r(2, 3, 6),),
        True,
        [aten._native_batch_norm_legit.no_stats],
        {"aten::_native_batch_norm_legit"},
    ),
    (
        "prelu-channels",
        nn.PReLU(4, init=0.1),
        (r(2, 4, 5),),
        True,
        [aten._prelu_kernel.default],
        {"aten::_prelu_kernel"},
    ),
    ("prelu-single", nn.PReLU(), (r(3, 5),), True, [aten._prelu_kernel.default], {"aten::_prelu_kernel"}),
    (
        "sdpa",
        Fn(F.scaled_dot_product_attention),
        (r(2, 3, 5, 4), r(2, 3, 6, 4), r(2, 3, 6, 4)),
        True,
        _SDPA,
        {"aten::_scaled_dot_product_flash_attention_for_cpu"},
    ),
    (
        "sdpa-causal-scale",
        Fn(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3)),
        (r(1, 2, 5, 4), r(1, 2, 5, 4), r(1, 2, 5, 4)),
        True,
        _SDPA,
        {"aten::_scaled_dot_product_flash_attention_for_cpu"},
    ),
    (
        "sdpa-float-mask",
        Fn(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m)),
        (r(1, 2, 5, 4), r(1, 2, 6, 4), r(1, 2, 6, 4), r(5, 6)),
        True,
        _SDPA,
        {"aten::_scaled_dot_product_flash_attention_for_cpu"},
    ),
    (
        "sdpa-bool-mask",
        Fn(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m > -0.5)),
        (r(1, 2, 5, 4), r(1, 2, 6, 4), r(1, 2, 6, 4), r(5, 6)),
        False,
        _SDPA,
        {"aten::_scaled_dot_product_flash_attention_for_cpu"},
    ),
    ("reflection-pad1d", nn.ReflectionPad1d((2, 1)), (r(1, 2, 5),), True, _PADS, {"aten::reflection_pad1d"}),
    ("reflection-pad2d", nn.ReflectionPad2d((1, 2, 0, 3)), (r(1, 2, 4, 5),), True, _PADS, {"aten::reflection_pad2d"}),
    ("reflection-pad3d", nn.ReflectionPad3d(1), (r(1, 2, 3, 3, 4),), True, _PADS, {"aten::reflection_pad3d"}),
    ("replication-pad1d", nn.ReplicationPad1d((3, 0)), (r(2, 3, 4),), True, _PADS, {"aten::replication_pad1d"}),
    ("replication-pad2d", nn.ReplicationPad2d(2), (r(1, 2, 3, 4),), True, _PADS, {"aten::replication_pad2d"}),
    ("replication-pad3d", nn.ReplicationPad3d(1), (r(1, 2, 3, 2, 4),), True, _PADS, {"aten::replication_pad3d"}),
    (
        "weight-norm-linear",
        nn.utils.parametrizations.weight_norm(nn.Linear(4, 3)),
        (r(2, 4),),
        True,
        [aten._weight_norm_interface.default],
        {"aten::_weight_norm_interface"},
    ),
    (
        "slice-writes",
        Fn(_write_slices),
        (r(4, 5), r(4, 2)),
        True,
        [],
        {"aten::slice_scatter", "aten::copy"},
    ),
    (
        "row-writes",
        Fn(_write_rows),
        (r(3, 4), r(3)),
        True,
        [aten.select_scatter.default],
        {"aten::select_scatter"},
    ),
    (
        "diagonal",
        Fn(lambda x, y: torch.diagonal(x, 1, 0, 2) + torch.diagonal(y, -2, -1, 1).sum(-1, keepdim=True)),
        (r(3, 2, 4), r(2, 5, 4)),
        True,
        [],
        {"aten::diagonal"},
    ),
]


@pytest.mark.parametrize(
    ("target", "module", "inputs", "keep", "kinds"),
    [
        pytest.param(target, module, inputs, keep, kinds, id=f"{target}-{name}")
        for name, module, inputs, khronos, keep, kinds in CASES
        for target in (["tract", "khronos"] if khronos else ["tract"])
    ],
)
def test_lowered_op_table(
    tmp_path: Path,
    lowered: Callable[[Sequence[Any]], None],
    target: str,
    module: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    keep: list[Any],
    kinds: set[str],
) -> None:
    lowered(keep)
    assert kinds <= _kinds(module, inputs)
    export_and_check(tmp_path, target, module, inputs)


def test_slice_scatter_with_a_step_is_refused(tmp_path: Path, lowered: Callable[[Sequence[Any]], None]) -> None:
    def every_other(x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        y[:, ::2] = 0.0
        return y

    lowered([])
    assert "aten::slice_scatter" in _kinds(Fn(every_other), (r(2, 5),))
    with pytest.raises(TranslationError, match="step"):
        export_model_to_nnef(Fn(every_other), (r(2, 5),), tmp_path / "m.nnef", TractNNEF())


def test_max_pool_indices_in_use_are_named(tmp_path: Path, lowered: Callable[[Sequence[Any]], None]) -> None:
    """Only the values of max_pool2d_with_indices are translated: a model that uses the indices is refused."""

    class Indices(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            values, indices = F.max_pool2d(x, 2, return_indices=True)
            return values + indices.float()

    from torch_to_nnef.export import UnsupportedOpsError

    lowered([])
    assert "aten::max_pool2d_with_indices" in _kinds(Indices(), (r(1, 2, 4, 4),))
    with pytest.raises(UnsupportedOpsError, match="max_pool2d_with_indices.*indices"):
        export_model_to_nnef(Indices(), (r(1, 2, 4, 4),), tmp_path / "m.nnef", TractNNEF())
