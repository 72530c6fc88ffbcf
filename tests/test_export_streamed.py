"""export_model_to_nnef of a model built without its weights, read from safetensors files as written.

The streamed archive is compared with the export of the same model with its weights loaded: every
tensor file byte for byte, and both run in tract on the same input.
"""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from torch_to_nnef import KhronosNNEF, TractModel, TractNNEF, compress_model, export_model_to_nnef, weights_on_meta
from torch_to_nnef.errors import CheckpointMismatchError, InvalidArgumentError


class Encoder(nn.Module):
    """A small vision encoder: convolutions, a batch norm (persistent buffers), a buffer its code
    computes (not saved), a projection tied to nothing and a head sharing the projection's weight."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 3, padding=1)
        self.norm = nn.BatchNorm2d(32)
        self.proj = nn.Linear(32, 64)
        self.head = nn.Linear(64, 64, bias=False)
        self.register_buffer("scale", torch.linspace(0.5, 1.5, 64), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.norm(self.conv(x))).mean(dim=(2, 3))
        return self.head(self.proj(y) * self.scale)


def _saved(tmp_path, model: nn.Module):
    """``model``'s state dict in two safetensors shards with their index."""
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    names = sorted(state)
    folder = tmp_path / "weights"
    folder.mkdir()
    shards = {"a.safetensors": names[: len(names) // 2], "b.safetensors": names[len(names) // 2 :]}
    for shard, keys in shards.items():
        save_file({k: state[k] for k in keys}, folder / shard)
    weight_map = {k: shard for shard, keys in shards.items() for k in keys}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return folder


def _members(path):
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


@pytest.fixture
def loaded():
    torch.manual_seed(0)
    model = Encoder().eval()
    with torch.no_grad():  # batch statistics that are not the defaults
        model.norm.running_mean.uniform_(-1, 1)
        model.norm.running_var.uniform_(0.5, 2)
    return model


@pytest.mark.parametrize("compressed", [False, True])
def test_model_on_meta_exports_from_its_checkpoint(tmp_path, loaded, compressed):
    folder = _saved(tmp_path, loaded)
    with weights_on_meta():
        empty = Encoder().eval()
    assert all(p.device.type == "meta" for p in empty.parameters())
    assert empty.scale.device.type == "cpu"  # computed by the model's code
    if compressed:
        loaded = compress_model(loaded, "min_max_q4_0")
        empty = compress_model(empty, "min_max_q4_0")
    x = torch.randn(1, 3, 8, 8)
    target = TractNNEF(check_io=False)
    ours = export_model_to_nnef(empty, x, tmp_path / "meta.nnef.tgz", target, weights_checkpoint=folder)
    theirs = export_model_to_nnef(loaded, x, tmp_path / "loaded.nnef.tgz", TractNNEF(check_io=True))
    a, b = _members(ours), _members(theirs)
    assert {n for n in a if n.endswith(".dat")} == {n for n in b if n.endswith(".dat")}
    assert {n: v for n, v in a.items() if n.endswith(".dat")} == {n: v for n, v in b.items() if n.endswith(".dat")}
    (got,) = TractModel(ours).run([x.numpy()])
    (want,) = TractModel(theirs).run([x.numpy()])
    np.testing.assert_array_equal(got, want)
    assert all(p.device.type == "meta" for p in empty.parameters())  # the model is left as it was


def test_a_model_on_meta_is_refused_what_needs_its_weights(tmp_path, loaded):
    folder = _saved(tmp_path, loaded)
    with weights_on_meta():
        empty = Encoder().eval()
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(InvalidArgumentError, match="check_io runs the model in PyTorch"):
        export_model_to_nnef(empty, x, tmp_path / "a.nnef.tgz", TractNNEF(check_io=True), weights_checkpoint=folder)
    with pytest.raises(InvalidArgumentError, match="needs torch.export"):
        export_model_to_nnef(
            empty, x, tmp_path / "a.nnef.tgz", TractNNEF(check_io=False), weights_checkpoint=folder, frontend="jit"
        )
    (folder / "b.safetensors").unlink()
    (folder / "model.safetensors.index.json").unlink()
    with pytest.raises(CheckpointMismatchError, match=r"holds no tensor for \d+ weight\(s\)"):
        export_model_to_nnef(empty, x, tmp_path / "a.nnef.tgz", TractNNEF(check_io=False), weights_checkpoint=folder)
    assert not (tmp_path / "a.nnef.tgz").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights"]


class Masked(nn.Module):
    """A boolean buffer saved with the weights (Khronos packs booleans in bits)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.register_buffer("mask", torch.zeros(4, dtype=torch.bool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(self.mask, x, self.lin(x))


@pytest.mark.parametrize("target", [TractNNEF(check_io=False), KhronosNNEF(check_io=False)], ids=["tract", "khronos"])
def test_boolean_weights_stream_for_either_target(tmp_path, target):
    loaded = Masked()
    loaded.mask[1] = True
    save_file(loaded.state_dict(), tmp_path / "w.safetensors")
    with weights_on_meta():
        empty = Masked()
    x = torch.randn(1, 4)
    ours = export_model_to_nnef(
        empty, x, tmp_path / "a.nnef.tgz", target, weights_checkpoint=tmp_path / "w.safetensors"
    )
    theirs = export_model_to_nnef(loaded, x, tmp_path / "b.nnef.tgz", target)
    a, b = _members(ours), _members(theirs)
    assert sorted(n for n in a if n.endswith(".dat")) == ["lin.bias.dat", "lin.weight.dat", "mask.dat"]
    assert {n: v for n, v in a.items() if n.endswith(".dat")} == {n: v for n, v in b.items() if n.endswith(".dat")}
