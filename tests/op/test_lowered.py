"""The lower-level ATen kinds that older torch versions (2.5) leave after ``run_decompositions({})``.

The pinned torch keeps ``conv2d``, ``layer_norm``, ``linear``... at that step, so these models are captured
here with torch's core decomposition table instead (``run_decompositions`` is patched to use it), minus
the decompositions of the kinds under test that the table would lower further. Each case checks that the
captured graph really holds the kinds it is about, then exports it with ``check_io``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torch_to_nnef.capture.torch_export as capture_module
from harness import Fn, OpCase, export_and_check, op_params, r
from torch_to_nnef import TractNNEF, export_model_to_nnef
from torch_to_nnef.capture.torch_export import capture
from torch_to_nnef.errors import TranslationError

aten = torch.ops.aten


def core_table(keep: Sequence[Any]) -> Any:
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
        table = core_table(keep)

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


def _write_every_third(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """As CohereCompass's rotary embedding recomposes its frequencies."""
    y = x.clone()
    y[..., 1:7:3] = z[..., 1:7:3]
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


@dataclass(frozen=True)
class LoweredCase(OpCase):
    """A case captured with torch's core decompositions, less those of ``keep``; the capture must hold
    the kinds it covers."""

    keep: list[Any]
    """The decompositions to leave out."""


CASES: list[LoweredCase] = [
    LoweredCase(
        "embedding-bag",
        nn.EmbeddingBag(10, 4, mode="mean"),
        (torch.tensor([1, 2, 4, 5, 4, 3, 2, 9]), torch.tensor([0, 2, 5])),
        covers=("aten::_embedding_bag",),
        khronos=False,
        keep=[],
    ),
    LoweredCase(
        "grid-sample-2d",
        Fn(lambda x, grid: F.grid_sample(x, grid, align_corners=False)),
        (r(1, 2, 4, 5), r(1, 3, 3, 2)),
        covers=("aten::grid_sampler_2d",),
        khronos=False,
        keep=[],
    ),
    LoweredCase(
        "grid-sample-3d",
        Fn(lambda x, grid: F.grid_sample(x, grid, align_corners=True)),
        (r(1, 2, 3, 4, 5), r(1, 2, 3, 3, 3)),
        covers=("aten::grid_sampler_3d",),
        khronos=False,
        keep=[],
    ),
    LoweredCase(
        "cnn-conv-batchnorm-maxpool",
        nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2)),
        (r(1, 3, 8, 8),),
        covers=("aten::convolution", "aten::max_pool2d_with_indices"),
        khronos=True,
        keep=[],
    ),
    LoweredCase(
        "conv1d-stride-dilation-groups",
        nn.Conv1d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2),
        (r(2, 4, 11),),
        covers=("aten::convolution",),
        khronos=True,
        keep=[],
    ),
    LoweredCase(
        "conv3d-no-bias",
        nn.Conv3d(2, 3, 2, bias=False),
        (r(1, 2, 4, 5, 3),),
        covers=("aten::convolution",),
        khronos=True,
        keep=[],
    ),
    LoweredCase(
        "conv-transpose2d-groups-output-padding",
        nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
        (r(1, 4, 4, 5),),
        covers=("aten::convolution",),
        khronos=True,
        keep=[],
    ),
    LoweredCase(
        "conv-transpose1d-dilation",
        nn.ConvTranspose1d(2, 3, 3, stride=3, dilation=2),
        (r(1, 2, 5),),
        covers=("aten::convolution",),
        khronos=True,
        keep=[],
    ),
    LoweredCase(
        "circular-conv",
        CircularConv(),
        (r(1, 2, 5, 6),),
        covers=("aten::copy", "aten::slice_scatter"),
        khronos=True,
        keep=[],
    ),
    LoweredCase(
        "maxpool1d-ceil",
        nn.MaxPool1d(3, stride=2, ceil_mode=True),
        (r(1, 2, 8),),
        covers=("aten::max_pool2d_with_indices",),
        khronos=True,
        keep=[],
    ),
    LoweredCase(
        "maxpool3d-pad",
        nn.MaxPool3d(3, stride=2, padding=1),
        (r(1, 2, 5, 6, 4),),
        covers=("aten::max_pool3d_with_indices",),
        khronos=True,
        keep=[],
    ),
    LoweredCase(
        "avgpool3d",
        nn.AvgPool3d(2),
        (r(1, 2, 4, 4, 6),),
        covers=("aten::avg_pool3d",),
        khronos=True,
        keep=[],
    ),
    LoweredCase(
        "maxpool3d",
        nn.MaxPool3d((2, 1, 3)),
        (r(1, 2, 4, 3, 6),),
        covers=tuple(sorted(_MAX_POOL3D)),
        khronos=True,
        keep=[aten.max_pool3d.default],
    ),
    LoweredCase(
        "adaptive-avgpool3d",
        nn.AdaptiveAvgPool3d((1, 2, 3)),
        (r(1, 2, 3, 4, 7),),
        covers=("aten::_adaptive_avg_pool3d",),
        khronos=True,
        keep=[],
    ),
    LoweredCase(
        "adaptive-avgpool2d",
        nn.AdaptiveAvgPool2d((2, 3)),
        (r(1, 2, 4, 7),),
        covers=("aten::_adaptive_avg_pool2d",),
        khronos=True,
        keep=[],
    ),
    LoweredCase(
        "layernorm-linear",
        nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 4), nn.LayerNorm([2, 4], elementwise_affine=False)),
        (r(3, 2, 8),),
        covers=("aten::addmm", "aten::native_layer_norm"),
        khronos=True,
        keep=[],
    ),
    LoweredCase(
        "addmm-beta-alpha",
        Fn(lambda b, x, y: torch.addmm(b, x, y, beta=0.5, alpha=2.0)),
        (r(4), r(3, 5), r(5, 4)),
        covers=("aten::addmm",),
        khronos=True,
        keep=[],
    ),
    LoweredCase(
        "groupnorm",
        nn.GroupNorm(2, 4),
        (r(2, 4, 3, 5),),
        covers=("aten::native_group_norm",),
        khronos=True,
        keep=[],
    ),
    LoweredCase(
        "groupnorm-no-affine",
        nn.GroupNorm(3, 6, affine=False),
        (r(1, 6, 7),),
        covers=("aten::native_group_norm",),
        khronos=True,
        keep=[],
    ),
    LoweredCase(
        "instance-norm",
        nn.InstanceNorm1d(3, affine=True),
        (r(2, 3, 6),),
        covers=("aten::_native_batch_norm_legit",),
        khronos=True,
        keep=[aten._native_batch_norm_legit.no_stats],
    ),
    LoweredCase(
        "prelu-channels",
        nn.PReLU(4, init=0.1),
        (r(2, 4, 5),),
        covers=("aten::_prelu_kernel",),
        khronos=True,
        keep=[aten._prelu_kernel.default],
    ),
    LoweredCase(
        "prelu-single",
        nn.PReLU(),
        (r(3, 5),),
        covers=("aten::_prelu_kernel",),
        khronos=True,
        keep=[aten._prelu_kernel.default],
    ),
    LoweredCase(
        "sdpa",
        Fn(F.scaled_dot_product_attention),
        (r(2, 3, 5, 4), r(2, 3, 6, 4), r(2, 3, 6, 4)),
        covers=("aten::_scaled_dot_product_flash_attention_for_cpu",),
        khronos=True,
        keep=_SDPA,
    ),
    LoweredCase(
        "sdpa-causal-scale",
        Fn(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3)),
        (r(1, 2, 5, 4), r(1, 2, 5, 4), r(1, 2, 5, 4)),
        covers=("aten::_scaled_dot_product_flash_attention_for_cpu",),
        khronos=True,
        keep=_SDPA,
    ),
    LoweredCase(
        "sdpa-float-mask",
        Fn(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m)),
        (r(1, 2, 5, 4), r(1, 2, 6, 4), r(1, 2, 6, 4), r(5, 6)),
        covers=("aten::_scaled_dot_product_flash_attention_for_cpu",),
        khronos=True,
        keep=_SDPA,
    ),
    LoweredCase(
        "sdpa-bool-mask",
        Fn(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m > -0.5)),
        (r(1, 2, 5, 4), r(1, 2, 6, 4), r(1, 2, 6, 4), r(5, 6)),
        covers=("aten::_scaled_dot_product_flash_attention_for_cpu",),
        khronos=False,
        keep=_SDPA,
    ),
    LoweredCase(
        "reflection-pad1d",
        nn.ReflectionPad1d((2, 1)),
        (r(1, 2, 5),),
        covers=("aten::reflection_pad1d",),
        khronos=True,
        keep=_PADS,
    ),
    LoweredCase(
        "reflection-pad2d",
        nn.ReflectionPad2d((1, 2, 0, 3)),
        (r(1, 2, 4, 5),),
        covers=("aten::reflection_pad2d",),
        khronos=True,
        keep=_PADS,
    ),
    LoweredCase(
        "reflection-pad3d",
        nn.ReflectionPad3d(1),
        (r(1, 2, 3, 3, 4),),
        covers=("aten::reflection_pad3d",),
        khronos=True,
        keep=_PADS,
    ),
    LoweredCase(
        "replication-pad1d",
        nn.ReplicationPad1d((3, 0)),
        (r(2, 3, 4),),
        covers=("aten::replication_pad1d",),
        khronos=True,
        keep=_PADS,
    ),
    LoweredCase(
        "replication-pad2d",
        nn.ReplicationPad2d(2),
        (r(1, 2, 3, 4),),
        covers=("aten::replication_pad2d",),
        khronos=True,
        keep=_PADS,
    ),
    LoweredCase(
        "replication-pad3d",
        nn.ReplicationPad3d(1),
        (r(1, 2, 3, 2, 4),),
        covers=("aten::replication_pad3d",),
        khronos=True,
        keep=_PADS,
    ),
    LoweredCase(
        "weight-norm-linear",
        nn.utils.parametrizations.weight_norm(nn.Linear(4, 3)),
        (r(2, 4),),
        covers=("aten::_weight_norm_interface",),
        khronos=True,
        keep=[aten._weight_norm_interface.default],
    ),
    LoweredCase(
        "slice-writes",
        Fn(_write_slices),
        (r(4, 5), r(4, 2)),
        covers=("aten::copy", "aten::slice_scatter"),
        khronos=True,
        keep=[],
    ),
    LoweredCase(
        "slice-scatter-step2-last-axis",
        Fn(lambda x, v: torch.slice_scatter(x, v, dim=-1, step=2)),
        (r(2, 3, 7), r(2, 3, 4)),
        covers=("aten::slice_scatter",),
        khronos=True,
        keep=[],
    ),
    LoweredCase(
        "slice-scatter-step3-start-end",
        Fn(lambda x, v: torch.slice_scatter(x, v, dim=1, start=1, end=8, step=3)),
        (r(2, 10), r(2, 3)),
        covers=("aten::slice_scatter",),
        khronos=True,
        keep=[],
    ),
    LoweredCase(
        "slice-scatter-step2-axis0-end-past",
        Fn(lambda x, v: torch.slice_scatter(x, v, dim=0, start=2, end=100, step=2)),
        (r(8, 3), r(3, 3)),
        covers=("aten::slice_scatter",),
        khronos=True,
        keep=[],
    ),
    LoweredCase(
        "slice-scatter-step3-negative-start",
        Fn(lambda x, v: torch.slice_scatter(x, v, dim=-1, start=-7, end=-1, step=3)),
        (r(3, 9), r(3, 2)),
        covers=("aten::slice_scatter",),
        khronos=True,
        keep=[],
    ),
    LoweredCase(
        "slice-scatter-step4-one-position",
        Fn(lambda x, v: torch.slice_scatter(x, v, dim=0, start=-2, step=4)),
        (r(5, 2), r(1, 2)),
        covers=("aten::slice_scatter",),
        khronos=True,
        keep=[],
    ),
    LoweredCase(
        "slice-writes-every-third",
        Fn(_write_every_third),
        (r(2, 3, 8), r(2, 3, 8)),
        covers=("aten::copy", "aten::slice_scatter"),
        khronos=True,
        keep=[],
    ),
    LoweredCase(
        "row-writes",
        Fn(_write_rows),
        (r(3, 4), r(3)),
        covers=("aten::select_scatter",),
        khronos=True,
        keep=[aten.select_scatter.default],
    ),
    LoweredCase(
        "diagonal",
        Fn(lambda x, y: torch.diagonal(x, 1, 0, 2) + torch.diagonal(y, -2, -1, 1).sum(-1, keepdim=True)),
        (r(3, 2, 4), r(2, 5, 4)),
        covers=("aten::diagonal",),
        khronos=True,
        keep=[],
    ),
]


@pytest.mark.parametrize(("target", "case"), op_params(CASES))
def test_lowered_op_table(
    tmp_path: Path, lowered: Callable[[Sequence[Any]], None], target: str, case: LoweredCase
) -> None:
    lowered(case.keep)
    assert set(case.covers) <= _kinds(case.module, case.inputs)
    export_and_check(tmp_path, target, case)


def test_slice_scatter_step_dynamic_batch(tmp_path: Path, lowered: Callable[[Sequence[Any]], None]) -> None:
    """A strided write on the last axis keeps a dynamic first axis."""

    class EveryOther(nn.Module):
        def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
            y = x.clone()
            y[:, 1::2] = z * 2
            return y

    lowered([])
    inputs = (r(3, 7), r(3, 3))
    assert "aten::slice_scatter" in _kinds(EveryOther(), inputs)
    target = TractNNEF(check_io=True, dynamic_axes={"x": {0: "B"}, "z": {0: "B"}})
    path = export_model_to_nnef(EveryOther(), inputs, tmp_path / "m.nnef", target, input_names=["x", "z"])
    assert "tract_symbol B" in (path / "graph.nnef").read_text()


def test_slice_scatter_step_over_a_dynamic_axis_is_refused(
    tmp_path: Path, lowered: Callable[[Sequence[Any]], None]
) -> None:
    class EveryOther(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = x.clone()
            y[:, ::2] = 0.0
            return y

    lowered([])
    target = TractNNEF(dynamic_axes={"x": {1: "S"}})
    with pytest.raises(TranslationError, match="step"):
        export_model_to_nnef(EveryOther(), (r(2, 6),), tmp_path / "m.nnef", target, input_names=["x"])


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
