"""Weights of a model built on the meta device found in their checkpoint's rows, through any view
that keeps whole rows (an expert's slice of stacked weights, a projection's half, a pending Q4_0
weight of either): the rows found hold the view's values, in its order."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from torch_to_nnef.io.checkpoint import SafetensorsCheckpoint
from torch_to_nnef.io.qtensor import fp_to_tract_q4_0_with_min_max_calibration
from torch_to_nnef.io.streamed import CheckpointRows, Rows

VIEWS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "whole": lambda w: w,
    "detached": lambda w: w.detach(),
    "one expert": lambda w: w[2],
    "upper halves": lambda w: w.narrow(1, 3, 3),
    "every other row": lambda w: w[:, ::2],
    "flattened slice": lambda w: w[1:3].reshape(-1, 32),
    "pending q4_0": lambda w: fp_to_tract_q4_0_with_min_max_calibration(w[1], 1.0) if w.device.type == "meta" else w[1],
}


@pytest.fixture
def stored(tmp_path) -> tuple[torch.Tensor, nn.Module, CheckpointRows]:
    values = torch.randn(4, 6, 32)
    save_file({"experts": values, "norm": torch.randn(32)}, tmp_path / "model.safetensors")
    module = nn.Module()
    with torch.device("meta"):
        module.experts = nn.Parameter(torch.empty(4, 6, 32), requires_grad=False)
        module.norm = nn.Parameter(torch.empty(32), requires_grad=False)
    checkpoint = SafetensorsCheckpoint([tmp_path / "model.safetensors"])
    return values, module, CheckpointRows.by_name(module, checkpoint)


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_a_view_of_a_weight_is_found_in_the_checkpoints_rows(stored, view: str):
    values, module, rows = stored
    parts = rows.rows_of(VIEWS[view](module.experts))
    assert parts is not None and {p.key for p in parts} == {"experts"}
    flat = values.reshape(-1, 32)
    got = torch.cat([flat[p.first : p.first + p.count] for p in parts])
    assert torch.equal(got, VIEWS[view](values).reshape(-1, 32))


def test_runs_of_consecutive_rows_are_merged(stored):
    _, module, rows = stored
    assert rows.rows_of(module.experts) == (Rows("experts", 0, 24),)
    assert rows.rows_of(module.experts[1:3]) == (Rows("experts", 6, 12),)
    assert rows.rows_of(module.experts.narrow(1, 0, 2)) == tuple(Rows("experts", 6 * e, 2) for e in range(4))
    assert rows.rows_of(module.norm) == (Rows("norm", 0, 1),)


@pytest.mark.parametrize(
    "other",
    [
        lambda m: m.experts.transpose(1, 2),  # values move within rows
        lambda m: m.experts[..., :16],  # part of each row
        lambda m: torch.empty_like(m.experts),  # another tensor
        lambda m: m.experts.t() if m.experts.dim() == 2 else m.experts.permute(2, 0, 1),
    ],
    ids=["transposed", "part of rows", "another tensor", "permuted"],
)
def test_what_is_not_whole_rows_of_a_weight_is_not_found(stored, other):
    _, module, rows = stored
    assert rows.rows_of(other(module)) is None
