"""What is written depends on the target tract release (floors measured by tools/probe_tract_releases.py).

Each export is verified numerically in the linked tract; the graph text shows which form was chosen.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from test_quantized import X4, output_scale, quantize
from torch import nn
from torch.nn import functional as F

from harness import Fn, r
from torch_to_nnef import TractModel, TractNNEF, export_model_to_nnef
from torch_to_nnef.check.versions import (
    COPY_TRACT,
    CUMSUM_TRACT,
    GRID_SAMPLE_TRACT,
    NEAREST_UPSAMPLE_TRACT,
    OLDEST_TRACT,
    POOL_PADDING_TRACT,
    SCATTER_TRACT,
    TOPK_TRACT,
    version_text,
)
from torch_to_nnef.errors import InvalidArgumentError, TranslationError
from torch_to_nnef.export import UnsupportedOpsError


def before(version: tuple[int, int, int]) -> str:
    """The release just before ``version`` (patch - 1, or the oldest supported one)."""
    major, minor, patch = version
    return version_text(max((major, minor, patch - 1) if patch else OLDEST_TRACT, OLDEST_TRACT))


def export(tmp_path: Path, module: nn.Module, inputs: tuple[torch.Tensor, ...], version: str, **kw) -> str:
    path = export_model_to_nnef(
        module.eval(), inputs, tmp_path / f"m{version}.nnef", TractNNEF(version=version, check_io=True, **kw)
    )
    return (path / "graph.nnef").read_text()


def operators(graph: str) -> set[str]:
    body = graph.split("\ngraph ", 1)[1]
    return set(re.findall(r"=\s*([A-Za-z_][A-Za-z0-9_]*)\(", body))


class Twice(nn.Module):
    """The input itself, a result twice, and a computed value: outputs that repeat values."""

    def forward(self, x: torch.Tensor):
        y = torch.relu(x)
        return x, y, y, y + 1


@pytest.mark.parametrize("version", [before(COPY_TRACT), version_text(COPY_TRACT)])
def test_outputs_repeating_values(tmp_path: Path, version: str):
    graph = export(tmp_path, Twice(), (r(2, 3),), version)
    ops = operators(graph)
    assert "copy" not in ops and "tract_core_cast" in ops
    # the computed outputs are the ops themselves, not copies of them
    assert re.search(r"output_3 = add\(", graph)


def test_plain_model_has_no_copies(tmp_path: Path):
    model = nn.Sequential(nn.Linear(4, 5), nn.GELU(), nn.Linear(5, 2))
    assert "copy" not in operators(export(tmp_path, model, (r(3, 4),), "0.23.9"))


@pytest.mark.parametrize("version", [before(COPY_TRACT), version_text(COPY_TRACT)])
@pytest.mark.parametrize("kind", ["any", "all"])
def test_any_all(tmp_path: Path, version: str, kind: str):
    fn = (lambda x: (x > 0).any(1)) if kind == "any" else (lambda x: (x > -1).all(0, keepdim=True))
    ops = operators(export(tmp_path, Fn(fn), (r(3, 4),), version))
    assert (f"{kind}_reduce" in ops) == (version == version_text(COPY_TRACT))


@pytest.mark.parametrize("version", [before(CUMSUM_TRACT), version_text(CUMSUM_TRACT)])
def test_float_cumsum(tmp_path: Path, version: str):
    ops = operators(export(tmp_path, Fn(lambda x: x.cumsum(1)), (r(3, 6),), version))
    assert ("tract_core_cumsum" in ops) == (version == version_text(CUMSUM_TRACT))


def test_integer_cumsum_refused_before_its_release(tmp_path: Path):
    target = TractNNEF(version=before(CUMSUM_TRACT))
    with pytest.raises(UnsupportedOpsError) as err:
        export_model_to_nnef(Fn(lambda x: x.cumsum(0)), (torch.arange(6),), tmp_path / "m.nnef", target)
    text = str(err.value)
    assert "aten::cumsum" in text and "tract_core_cumsum" in text
    assert f"version='{version_text(CUMSUM_TRACT)}'" in text
    assert not (tmp_path / "m.nnef").exists()


@pytest.mark.parametrize("version", [before(NEAREST_UPSAMPLE_TRACT), version_text(NEAREST_UPSAMPLE_TRACT)])
def test_nearest_upsample(tmp_path: Path, version: str):
    module = Fn(lambda x: F.interpolate(x, scale_factor=2, mode="nearest"))
    ops = operators(export(tmp_path, module, (r(1, 2, 3, 4),), version))
    assert ("nearest_upsample" in ops) == (version == version_text(NEAREST_UPSAMPLE_TRACT))


def test_masked_scatter_refused_before_integer_cumsum(tmp_path: Path):
    """masked_scatter counts the mask's true positions with an integer cumulative sum."""
    module = Fn(lambda x, s: x.masked_scatter(x > 0, s))
    inputs = (r(3, 4), r(12))
    target = TractNNEF(version=before(CUMSUM_TRACT))
    with pytest.raises(UnsupportedOpsError) as err:
        export_model_to_nnef(module, inputs, tmp_path / "m.nnef", target)
    text = str(err.value)
    assert "aten::masked_scatter" in text and f"tract_core_cumsum needs tract >= {version_text(CUMSUM_TRACT)}" in text
    assert not (tmp_path / "m.nnef").exists()
    export(tmp_path, module, inputs, version_text(CUMSUM_TRACT))


def test_nearest_upsample_dynamic_before_its_release(tmp_path: Path):
    module = nn.Upsample(scale_factor=2, mode="nearest")
    version = before(NEAREST_UPSAMPLE_TRACT)
    path = export_model_to_nnef(
        module,
        (r(1, 2, 5),),
        tmp_path / "m.nnef",
        TractNNEF(version=version, check_io=True, dynamic_axes={"x": {2: "T"}}),
        input_names=["x"],
    )
    assert "nearest_upsample" not in operators((path / "graph.nnef").read_text())


@pytest.mark.parametrize("version", [before(POOL_PADDING_TRACT), version_text(POOL_PADDING_TRACT)])
@pytest.mark.parametrize(
    "pool",
    [nn.AvgPool1d(4, 2, padding=2), nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, divisor_override=4)],
    ids=["include-pad", "divisor"],
)
def test_padded_average_pools(tmp_path: Path, version: str, pool: nn.Module):
    x = r(1, 2, 9) if isinstance(pool, nn.AvgPool1d) else r(1, 2, 8, 7)
    graph = export(tmp_path, pool, (x,), version)
    (pool_line,) = [line for line in graph.splitlines() if re.search(r"= (avg_pool|box)\(", line)]
    padding = re.search(r"padding = (\[.*?\])", pool_line).group(1)
    old = version != version_text(POOL_PADDING_TRACT)
    assert (set(re.findall(r"\d+", padding)) == {"0"}) == old
    assert ("box" in operators(graph)) == (not old and isinstance(pool, nn.AvgPool2d))


def test_large_float_literals_without_plus_sign(tmp_path: Path):
    graph = export(tmp_path, Fn(lambda x: x.logsumexp(1) + 1e30), (r(2, 5),), version_text(OLDEST_TRACT))
    assert "e38" in graph and "e+" not in graph


def test_releases_older_than_the_oldest_refused():
    older = (OLDEST_TRACT[0], OLDEST_TRACT[1], OLDEST_TRACT[2] - 1)
    with pytest.raises(InvalidArgumentError, match=f"oldest supported release {version_text(OLDEST_TRACT)}"):
        TractNNEF(version=version_text(older))


@pytest.mark.parametrize(
    ("floor", "operator", "fn", "inputs"),
    [
        (SCATTER_TRACT, "tract_core_scatter_elements", lambda x: x.scatter_add(1, IDX, x), (r(2, 3),)),
        pytest.param(
            SCATTER_TRACT,
            "tract_core_scatter_elements",
            lambda x: torch.scatter(x, 1, IDX, x, reduce="multiply"),
            (r(2, 3),),
            marks=pytest.mark.filterwarnings("ignore:The reduce argument of torch.scatter"),
        ),
        (SCATTER_TRACT, "tract_core_scatter_elements", lambda x: x.scatter_reduce(1, IDX, x, "amax"), (r(2, 3),)),
        (TOPK_TRACT, "tract_core_topk", lambda x: x.topk(2, 1).values, (r(2, 5),)),
    ],
    ids=["scatter", "scatter-reduce-argument", "scatter-reduce", "topk"],
)
def test_operators_refused_before_their_measured_release(tmp_path: Path, floor, operator, fn, inputs):
    with pytest.raises(UnsupportedOpsError, match=f"{operator} needs tract >= {version_text(floor)}"):
        export_model_to_nnef(Fn(fn), inputs, tmp_path / "m.nnef", TractNNEF(version=before(floor)))
    assert not (tmp_path / "m.nnef").exists()
    export(tmp_path, Fn(fn), inputs, version_text(floor))  # and run from that release on


IDX = torch.tensor([[0, 1, 0], [2, 2, 1]])


def _grid(*shape: int) -> torch.Tensor:
    return torch.rand(*shape) * 2.4 - 1.2  # sampling coordinates, some outside [-1, 1]


@pytest.mark.parametrize("version", ["0.23.2", version_text(GRID_SAMPLE_TRACT)])
def test_grid_sample(tmp_path: Path, version: str):
    """tract 0.23.2 does not define tract_core_grid_sample: 2-D bilinear sampling is composed for it."""
    module = Fn(lambda x, g: F.grid_sample(x, g, align_corners=False))
    ops = operators(export(tmp_path, module, (r(1, 2, 4, 5), _grid(1, 3, 3, 2)), version))
    assert ("tract_core_grid_sample" in ops) == (version == version_text(GRID_SAMPLE_TRACT))


def test_grid_sample_of_a_volume_refused_before_its_release(tmp_path: Path):
    module = Fn(lambda x, g: F.grid_sample(x, g, align_corners=True))
    target = TractNNEF(version=before(GRID_SAMPLE_TRACT))
    match = rf"5-D input .* needs tract_core_grid_sample: use TractNNEF\(version >= {version_text(GRID_SAMPLE_TRACT)}\)"
    with pytest.raises(TranslationError, match=match):
        export_model_to_nnef(module, (r(1, 2, 3, 4, 4), _grid(1, 2, 2, 2, 3)), tmp_path / "m.nnef", target)
    assert not (tmp_path / "m.nnef").exists()


@pytest.mark.filterwarnings("ignore:torch.ao.quantization is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:.*quantized tensor creation functions.*:UserWarning")
@pytest.mark.parametrize("version", [before(COPY_TRACT), version_text(COPY_TRACT)])
def test_quantized_requantization(tmp_path: Path, version: str):
    """Requantizations are a ``copy`` into an identifier of graph.quant, or, before ``copy`` was read, a
    cast to the integer type (tract gives it graph.quant's parameters); both give torch's integers.
    """
    model = quantize(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), (X4,), fuse=[["body.0", "body.1"]])
    path = export_model_to_nnef(model, (X4,), tmp_path / "q.nnef", TractNNEF(version=version), frontend="jit")
    graph = (path / "graph.nnef").read_text()
    old = version != version_text(COPY_TRACT)
    assert ("copy" in operators(graph)) != old
    assert (re.search(r"= tract_core_cast\(\w+, to = 'u8'\);", graph) is not None) == old
    with torch.no_grad():
        expected = model(X4).numpy()
    got = TractModel(path).run([X4.numpy()])[0]
    assert np.abs(got.astype(np.float64) - expected).max() <= 1e-3 * output_scale(model, (X4,))
