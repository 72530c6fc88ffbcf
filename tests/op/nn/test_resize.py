"""Resizing and sampling (``op/nn/resize.py``): nearest, linear, bilinear and bicubic interpolation (with
antialiasing), grid sampling, each checked numerically.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from cases_common import Named
from torch import nn

from harness import Fn, OpCase, export_and_check, op_params, r
from torch_to_nnef import KhronosNNEF, TractNNEF, export_model_to_nnef
from torch_to_nnef.capture.torch_export import CaptureError
from torch_to_nnef.errors import TranslationError


def grid(*shape: int) -> torch.Tensor:
    """Sampling coordinates, some outside [-1, 1]."""
    return torch.rand(*shape) * 2.4 - 1.2


def up(**kw) -> nn.Module:
    return Fn(lambda x: F.interpolate(x, **kw))


CASES: list[OpCase] = [
    # other kinds and overloads of the core ATen set
    OpCase(
        "nearest-exact-1d",
        Fn(lambda x: F.interpolate(x, scale_factor=2, mode="nearest-exact")),
        (r(1, 2, 4),),
        covers=("aten::_upsample_nearest_exact1d",),
        khronos=True,
    ),
    # grid sampling
    *[
        OpCase(
            f"grid-sample-{mode}-{padding}-align{int(align)}",
            Fn(lambda x, g, m=mode, p=padding, a=align: F.grid_sample(x, g, mode=m, padding_mode=p, align_corners=a)),
            (r(2, 3, 4, 5), grid(2, 3, 6, 2)),
            covers=("aten::grid_sampler",),
            khronos=True,
        )
        for mode in ("bilinear", "nearest")
        for padding in ("zeros", "border")
        for align in (False, True)
    ],
    OpCase(
        "grid-sample-reflection",
        Fn(lambda x, g: F.grid_sample(x, g, padding_mode="reflection", align_corners=False)),
        (r(1, 2, 4, 5), grid(1, 3, 3, 2)),
        covers=("aten::grid_sampler",),
        khronos=False,
    ),
    OpCase(
        "grid-sample-bicubic",
        Fn(lambda x, g: F.grid_sample(x, g, mode="bicubic", align_corners=True)),
        (r(1, 2, 4, 5), grid(1, 3, 3, 2)),
        covers=("aten::grid_sampler",),
        khronos=False,
    ),
    OpCase(
        "grid-sample-3d",
        Fn(lambda x, g: F.grid_sample(x, g, padding_mode="border", align_corners=True)),
        (r(1, 2, 3, 4, 5), grid(1, 2, 3, 2, 3)),
        covers=("aten::grid_sampler",),
        khronos=False,
    ),
    # bicubic resizing
    OpCase(
        "bicubic-x2",
        Fn(lambda x: F.interpolate(x, scale_factor=2, mode="bicubic")),
        (r(1, 2, 4, 5),),
        covers=("aten::upsample_bicubic2d",),
        khronos=True,
    ),
    OpCase(
        "bicubic-size-align",
        Fn(lambda x: F.interpolate(x, size=(7, 3), mode="bicubic", align_corners=True)),
        (r(1, 2, 4, 5),),
        covers=("aten::upsample_bicubic2d",),
        khronos=True,
    ),
    OpCase(
        "bicubic-down",
        Fn(lambda x: F.interpolate(x, size=(3, 2), mode="bicubic")),
        (r(2, 1, 6, 5),),
        covers=("aten::upsample_bicubic2d",),
        khronos=True,
    ),
    OpCase(
        "bicubic-antialias-down",
        Fn(lambda x: F.interpolate(x, size=(3, 2), mode="bicubic", antialias=True)),
        (r(1, 2, 7, 5),),
        covers=("aten::_upsample_bicubic2d_aa",),
        khronos=True,
    ),
    OpCase(
        "bicubic-antialias-up",
        Fn(lambda x: F.interpolate(x, scale_factor=2, mode="bicubic", antialias=True)),
        (r(1, 2, 3, 4),),
        covers=("aten::_upsample_bicubic2d_aa",),
        khronos=True,
    ),
    OpCase(
        "bicubic-antialias-align",
        Fn(lambda x: F.interpolate(x, size=(4, 3), mode="bicubic", antialias=True, align_corners=True)),
        (r(1, 1, 7, 6),),
        covers=("aten::_upsample_bicubic2d_aa",),
        khronos=True,
    ),
    # resizing
    OpCase(
        "upsample-nearest2d-scale",
        nn.Upsample(scale_factor=2),
        (r(1, 2, 3, 4),),
        covers=("aten::upsample_nearest2d",),
        khronos=True,
    ),
    OpCase(
        "upsample-nearest2d-size",
        nn.Upsample(size=(5, 7)),
        (r(1, 2, 3, 4),),
        covers=("aten::upsample_nearest2d",),
        khronos=True,
    ),
    OpCase(
        "upsample-nearest1d-scale3",
        nn.Upsample(scale_factor=3),
        (r(1, 2, 5),),
        covers=("aten::upsample_nearest1d",),
        khronos=True,
    ),
    OpCase(
        "upsample-nearest1d-fractional",
        up(scale_factor=2.5),
        (r(1, 2, 3),),
        covers=("aten::upsample_nearest1d",),
        khronos=True,
    ),
    OpCase(
        "upsample-nearest2d-down", up(size=(2, 3)), (r(1, 2, 5, 7),), covers=("aten::upsample_nearest2d",), khronos=True
    ),
    OpCase(
        "upsample-nearest-exact2d",
        up(size=(5, 7), mode="nearest-exact"),
        (r(1, 2, 3, 4),),
        covers=("aten::_upsample_nearest_exact2d",),
        khronos=True,
    ),
    OpCase(
        "upsample-bilinear-scale",
        nn.Upsample(scale_factor=2, mode="bilinear"),
        (r(1, 2, 3, 4),),
        covers=("aten::upsample_bilinear2d",),
        khronos=True,
    ),
    OpCase(
        "upsample-bilinear-align",
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
        (r(1, 2, 3, 4),),
        covers=("aten::upsample_bilinear2d",),
        khronos=True,
    ),
    OpCase(
        "upsample-bilinear-size-align",
        up(size=(5, 7), mode="bilinear", align_corners=True),
        (r(2, 3, 3, 4),),
        covers=("aten::upsample_bilinear2d",),
        khronos=True,
    ),
    OpCase(
        "upsample-bilinear-size",
        up(size=(5, 7), mode="bilinear"),
        (r(2, 3, 3, 4),),
        covers=("aten::upsample_bilinear2d",),
        khronos=True,
    ),
    OpCase(
        "downsample-bilinear",
        up(size=(2, 3), mode="bilinear"),
        (r(1, 2, 5, 7),),
        covers=("aten::upsample_bilinear2d",),
        khronos=True,
    ),
    OpCase(
        "upsample-bilinear-fractional",
        up(scale_factor=(1.5, 2.25), mode="bilinear"),
        (r(1, 2, 4, 4),),
        covers=("aten::upsample_bilinear2d",),
        khronos=True,
    ),
    OpCase(
        "upsample-linear-scale",
        nn.Upsample(scale_factor=2.5, mode="linear"),
        (r(1, 2, 3),),
        covers=("aten::upsample_linear1d",),
        khronos=True,
    ),
    OpCase(
        "upsample-linear-size-align",
        up(size=9, mode="linear", align_corners=True),
        (r(2, 3, 4),),
        covers=("aten::upsample_linear1d",),
        khronos=True,
    ),
    OpCase(
        "upsample-nearest2d-default-overload",
        Fn(lambda x: torch.ops.aten.upsample_nearest2d.default(x, [6, 10], 1.5, 2.5)),
        (r(1, 2, 4, 4),),
        covers=("aten::upsample_nearest2d",),
        khronos=True,
    ),
    OpCase(
        "downsample-bilinear-antialias",
        up(size=(3, 4), mode="bilinear", antialias=True),
        (r(1, 2, 8, 9),),
        covers=("aten::_upsample_bilinear2d_aa",),
        khronos=True,
    ),
    OpCase(
        "resize-bilinear-antialias-mixed",
        up(size=(2, 11), mode="bilinear", antialias=True),
        (r(1, 2, 7, 5),),
        covers=("aten::_upsample_bilinear2d_aa",),
        khronos=True,
    ),
    OpCase(
        "downsample-bilinear-antialias-align",
        up(size=(3, 2), mode="bilinear", antialias=True, align_corners=True),
        (r(1, 2, 8, 9),),
        covers=("aten::_upsample_bilinear2d_aa",),
        khronos=True,
    ),
    OpCase(
        "upsample-linear-to-one",
        up(size=1, mode="linear", align_corners=True),
        (r(1, 2, 4),),
        covers=("aten::upsample_linear1d",),
        khronos=True,
    ),
]


@pytest.mark.parametrize(("target", "case"), op_params(CASES))
def test_op_table(tmp_path: Path, target: str, case: OpCase) -> None:
    """Each case exported and checked in tract (Khronos cases also by the Khronos parser and interpreter),
    translating the operators it covers."""
    export_and_check(tmp_path, target, case)


def test_grid_sample_native_and_composed_agree(tmp_path: Path) -> None:
    """tract_core_grid_sample for recent tract, the composition of plain operators for older releases."""
    module = Fn(lambda x, g: F.grid_sample(x, g, align_corners=False))
    inputs = (r(1, 2, 4, 5), grid(1, 3, 3, 2))
    native = export_model_to_nnef(module, inputs, tmp_path / "native.nnef", TractNNEF(check_io=True))
    composed = export_model_to_nnef(
        module, inputs, tmp_path / "composed.nnef", TractNNEF(version="0.23.0", check_io=True)
    )
    assert "tract_core_grid_sample" in (native / "graph.nnef").read_text()
    assert "tract_core_grid_sample" not in (composed / "graph.nnef").read_text()


def test_grid_sample_reflection_needs_recent_tract(tmp_path: Path) -> None:
    module = Fn(lambda x, g: F.grid_sample(x, g, padding_mode="reflection", align_corners=False))
    with pytest.raises(TranslationError, match="tract_core_grid_sample"):
        export_model_to_nnef(module, (r(1, 2, 4, 5), grid(1, 3, 3, 2)), tmp_path / "m.nnef", KhronosNNEF())


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


DYNAMIC: list[tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor], tuple[torch.Tensor, torch.Tensor]]] = [
    ("grid-sample", lambda x, g: F.grid_sample(x, g, align_corners=False), (r(2, 2, 4, 5), grid(2, 3, 6, 2))),
]


@pytest.mark.parametrize("fn,inputs", [pytest.param(f, i, id=n) for n, f, i in DYNAMIC])
def test_dynamic_batch(
    tmp_path: Path, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], inputs: tuple[torch.Tensor, torch.Tensor]
) -> None:
    """The first axis of both inputs dynamic: the graph is written with the symbol and checked by tract."""
    target = TractNNEF(check_io=True, dynamic_axes={"x": {0: "B"}, "y": {0: "B"}})
    path = export_model_to_nnef(Named(fn), inputs, tmp_path / "m.nnef", target, input_names=["x", "y"])
    assert "tract_symbol B" in (path / "graph.nnef").read_text()
