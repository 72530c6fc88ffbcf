"""Q4_0 QTensors: the tensor type, exporting them for each tract release, and the compression registry."""

from __future__ import annotations

import copy
import io
import logging
import struct
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from torch_to_nnef import KhronosNNEF, TractModel, TractNNEF, export_model_to_nnef, quantize_q4_0, read_dat
from torch_to_nnef.capture.torch_export import capture
from torch_to_nnef.errors import DTypeError, ShapeError
from torch_to_nnef.io.compress import (
    DEFAULT_COMPRESSION,
    DEFAULT_COMPRESSION_REGISTRY,
    CompressionRegistryError,
    compress_model,
    load_compression_registry,
)
from torch_to_nnef.io.q4_0 import Q40Tensor, tract_reference_q4_0
from torch_to_nnef.io.qtensor import (
    QTensor,
    QTensorError,
    QTensorTractScaleOnly,
    fp_to_tract_q4_0_with_min_max_calibration,
)

Q40, Q40_LEGACY, FLOAT = 0x3040, 0x2040, 0


def dat_header(path: Path) -> tuple[list[int], int]:
    """(dims, item type) from a .dat header."""
    raw = path.read_bytes()[:128]
    assert raw[:2] == b"\x4e\xef"
    rank = struct.unpack_from("<I", raw, 8)[0]
    dims = list(struct.unpack_from(f"<{rank}I", raw, 12))
    return dims, struct.unpack_from("<H", raw, 48)[0]


def payload(path: Path) -> bytes:
    return path.read_bytes()[128:]


def outputs(model: nn.Module, *args: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        out = model(*args)
    return [o.clone() for o in (out if isinstance(out, tuple) else (out,))]


def assert_unchanged(model: nn.Module, before: list[torch.Tensor], *args: torch.Tensor) -> None:
    for a, b in zip(outputs(model, *args), before):
        assert torch.equal(a, b)


class LinearStack(nn.Sequential):
    def __init__(self) -> None:
        super().__init__(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 64), nn.ReLU(), nn.Linear(64, 32))


class EmbedLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, 64)
        self.proj = nn.Linear(64, 32)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.relu(self.embed(ids)))


class ConvNet(nn.Module):
    """Conv2d kernels whose rows (all dimensions after the first) hold whole 32-value blocks, through
    a wide last axis or a 2x2 kernel over 8 channels, and one whose rows do not (8 x 3 x 3 = 72).
    """

    def __init__(self) -> None:
        super().__init__()
        self.wide = nn.Conv2d(4, 8, kernel_size=(3, 32))
        self.small = nn.Conv2d(8, 8, kernel_size=3, padding=1)
        self.square = nn.Conv2d(8, 16, kernel_size=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.square(self.small(torch.relu(self.wide(x))))


class TiedLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(64, 32)
        self.head = nn.Linear(32, 64, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(ids))


def export(model: nn.Module, args: tuple[torch.Tensor, ...], path: Path, target: object) -> Path:
    before = outputs(model, *args)
    written = export_model_to_nnef(model, args, path, target, overwrite=True)  # type: ignore[arg-type]
    assert_unchanged(model, before, *args)
    return written


def expected_item(version: str) -> int:
    return Q40 if TractNNEF(version=version).version_tuple >= (0, 21, 11) else Q40_LEGACY


VERSIONS = ["0.21.6", "0.21.10", "0.21.11", "0.21.12", "0.23.9"]


# --- the tensor type ------------------------------------------------------------------------------


def test_q4_0_blocks_match_tract_quantizer_and_values_are_dequantized() -> None:
    w = torch.randn(48, 128)
    q = fp_to_tract_q4_0_with_min_max_calibration(w)
    assert isinstance(q, QTensorTractScaleOnly) and isinstance(q, QTensor) and isinstance(q, nn.Parameter)
    assert not q.requires_grad
    assert q.to_q4_0().to_bytes() == tract_reference_q4_0(w.numpy()) == quantize_q4_0(w).to_bytes()
    assert torch.equal(q.dequantize(), torch.from_numpy(quantize_q4_0(w).dequantize()))
    assert not torch.equal(q.dequantize(), w)
    assert q.q4_0_nbytes == 48 * 128 // 32 * 18
    # Q4_0 values quantize back to the same blocks: a saved state dict loses nothing.
    assert quantize_q4_0(q.detach()).to_bytes() == q.to_q4_0().to_bytes()


def test_f16_weight_keeps_dtype() -> None:
    w = torch.randn(8, 64, dtype=torch.float16)
    q = fp_to_tract_q4_0_with_min_max_calibration(w)
    assert q.dtype == torch.float16
    assert q.to_q4_0().to_bytes() == quantize_q4_0(w).to_bytes()


def test_percentile_clips_each_block_before_scaling() -> None:
    w = torch.randn(4, 64)
    w[0, 5] = 40.0  # an outlier: without clipping its block's scale is 5
    q = fp_to_tract_q4_0_with_min_max_calibration(w, percentile=0.9)
    k = int(np.ceil(0.9 * 32))
    blocks = w.reshape(-1, 32)
    bound = blocks.abs().kthvalue(k, dim=1, keepdim=True).values
    clipped = torch.clamp(blocks, -bound, bound).reshape(w.shape)
    assert q.to_q4_0().to_bytes() == quantize_q4_0(clipped).to_bytes()
    assert q.detach()[0, 5] < 40.0
    with pytest.raises(QTensorError, match="percentile"):
        fp_to_tract_q4_0_with_min_max_calibration(w, percentile=0.0)


@pytest.mark.parametrize(
    ("tensor", "error", "match"),
    [
        (torch.randn(64), ShapeError, "rank >= 2"),
        (torch.randn(4, 30), ShapeError, "30"),
        (torch.ones(4, 32, dtype=torch.int32), DTypeError, "float"),
        (torch.tensor([[float("nan")] * 32]), QTensorError, "NaN"),
    ],
)
def test_factory_refuses_what_q4_0_cannot_hold(tensor: torch.Tensor, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        fp_to_tract_q4_0_with_min_max_calibration(tensor)


def test_deepcopy_state_dict_to_and_save() -> None:
    model = LinearStack()
    compress_model(model, "min_max_q4_0")
    q = model[0].weight
    assert isinstance(q, QTensorTractScaleOnly)
    x = torch.randn(3, 64)
    before = outputs(model, x)

    clone = copy.deepcopy(model)
    assert type(clone[0].weight) is QTensorTractScaleOnly and clone[0].weight is not q
    assert clone[0].weight.to_q4_0().to_bytes() == q.to_q4_0().to_bytes()
    assert_unchanged(clone, before, x)

    state = model.state_dict()
    assert type(state["0.weight"]) is torch.Tensor and torch.equal(state["0.weight"], q.detach())

    assert type(q.to(torch.float64)) is torch.Tensor  # a tensor op gives plain values
    model.double()
    assert model[0].weight is q and q.dtype == torch.float64  # module conversion keeps the QTensor
    model.float()
    assert q.to_q4_0().to_bytes() == clone[0].weight.to_q4_0().to_bytes()

    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert type(loaded[0].weight) is QTensorTractScaleOnly
    assert loaded[0].weight.to_q4_0().to_bytes() == q.to_q4_0().to_bytes()
    buffer = io.BytesIO()
    torch.save({"w": q}, buffer)
    buffer.seek(0)
    reloaded = torch.load(buffer, weights_only=True)["w"]
    assert type(reloaded) is QTensorTractScaleOnly and torch.equal(reloaded.detach(), q.detach())
    assert reloaded.to_q4_0().to_bytes() == q.to_q4_0().to_bytes()


def test_values_changed_in_place_are_requantized_or_refused() -> None:
    model = LinearStack()
    saved = copy.deepcopy(model)
    compress_model(model, "min_max_q4_0")
    blocks = model[0].weight.to_q4_0().to_bytes()
    model.load_state_dict(model.state_dict())  # the same Q4_0 values: accepted
    assert model[0].weight.to_q4_0().to_bytes() == blocks
    model.load_state_dict(saved.state_dict())  # float values: Q4_0 cannot hold them
    with pytest.raises(QTensorError, match="changed in place"):
        model[0].weight.to_q4_0()


def test_capture_traces_the_parameter_back_to_its_qtensor() -> None:
    model = compress_model(LinearStack(), "min_max_q4_0").eval()
    graph, _ = capture(model, [torch.randn(2, 64)], ["x"])
    by_name = {p.torch_name: p.tensor for p in graph.parameters.values()}
    for name in ("0.weight", "2.weight", "4.weight"):
        assert by_name[name] is model.get_parameter(name)
    assert not isinstance(by_name["0.bias"], QTensor)


# --- export -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_linear_stack_exports_q4_0_blocks(tmp_path: Path, version: str) -> None:
    model = LinearStack()
    floats = {n: m.weight.detach().clone() for n, m in model.named_children() if isinstance(m, nn.Linear)}
    compress_model(model, "min_max_q4_0")
    x = torch.randn(5, 64)
    out = export(model, (x,), tmp_path / "m", TractNNEF(version=version, check_io=True))
    for name, w in floats.items():
        dat = out / f"{name}.weight.dat"
        assert dat_header(dat) == (list(w.shape), expected_item(version))
        assert dat.stat().st_size == 128 + w.numel() // 32 * 18
        if expected_item(version) == Q40:
            assert payload(dat) == quantize_q4_0(w).to_bytes() == tract_reference_q4_0(w.numpy())
        read = read_dat(dat)
        assert isinstance(read, Q40Tensor)
        assert np.array_equal(read.dequantize(), quantize_q4_0(w).dequantize())
        assert dat_header(out / f"{name}.bias.dat")[1] == FLOAT
    # tract's own output from the archive matches PyTorch on the quantized model.
    got = TractModel(out).run([x.numpy()])[0]
    np.testing.assert_allclose(got, outputs(model, x)[0].numpy(), atol=1e-4, rtol=1e-4)


def test_tract_without_q4_0_is_refused(tmp_path: Path) -> None:
    model = compress_model(LinearStack(), "min_max_q4_0")
    with pytest.raises(QTensorError, match=r"tract 0\.21\.5 cannot read Q4_0.*0\.weight"):
        export_model_to_nnef(model, torch.randn(2, 64), tmp_path / "m", TractNNEF(version="0.21.5"))
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("version", ["0.21.10", "0.21.11", "0.23.9"])
def test_embedding_and_linear(tmp_path: Path, version: str) -> None:
    model = compress_model(EmbedLinear(), "min_max_q4_0_with_embeddings")
    assert isinstance(model.embed.weight, QTensor) and isinstance(model.proj.weight, QTensor)
    ids = torch.randint(0, 100, (2, 7))
    out = export(model, (ids,), tmp_path / "m", TractNNEF(version=version, check_io=True))
    assert dat_header(out / "embed.weight.dat") == ([100, 64], expected_item(version))
    assert dat_header(out / "proj.weight.dat") == ([32, 64], expected_item(version))
    assert "datum_type = 'f32'" in (out / "graph.nnef").read_text()


@pytest.mark.parametrize(("version", "conv_item"), [("0.21.11", FLOAT), ("0.21.12", Q40), ("0.23.9", Q40)])
def test_conv2d(tmp_path: Path, version: str, conv_item: int, caplog: pytest.LogCaptureFixture) -> None:
    model = ConvNet()
    with caplog.at_level(logging.WARNING, logger="torch_to_nnef.io.compress"):
        compress_model(model, "min_max_q4_0_all")
    assert isinstance(model.wide.weight, QTensor) and isinstance(model.square.weight, QTensor)
    assert type(model.small.weight) is nn.Parameter  # kernel [8, 8, 3, 3]: stays float
    assert "small.weight stays float" in caplog.text
    x = torch.randn(1, 4, 6, 40)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="torch_to_nnef.io.qtensor"):
        out = export(model, (x,), tmp_path / "m", TractNNEF(version=version, check_io=True))
    assert dat_header(out / "wide.weight.dat") == ([8, 4, 3, 32], conv_item)
    assert dat_header(out / "small.weight.dat") == ([8, 8, 3, 3], FLOAT)
    assert dat_header(out / "square.weight.dat") == ([16, 8, 2, 2], conv_item)
    if conv_item == FLOAT:
        assert "wide.weight written as dequantized floats" in caplog.text and "0.21.12" in caplog.text
        values = np.frombuffer(payload(out / "wide.weight.dat"), dtype=np.float32).reshape(8, 4, 3, 32)
        assert np.array_equal(values, model.wide.weight.detach().numpy())
    else:
        assert payload(out / "wide.weight.dat") == model.wide.weight.to_q4_0().to_bytes()
        assert payload(out / "square.weight.dat") == model.square.weight.to_q4_0().to_bytes()
        assert not caplog.text


class MatmulBoth(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.left = fp_to_tract_q4_0_with_min_max_calibration(torch.randn(16, 64))
        self.right = fp_to_tract_q4_0_with_min_max_calibration(torch.randn(64, 32))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.matmul(self.left, x), torch.matmul(x.t(), self.right)


def test_matmul_q4_0_on_the_left_float_on_the_right(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = MatmulBoth()
    with caplog.at_level(logging.WARNING, logger="torch_to_nnef.io.qtensor"):
        out = export(model, (torch.randn(64, 5),), tmp_path / "m", TractNNEF(check_io=True))
    assert dat_header(out / "left.dat") == ([16, 64], Q40)
    assert dat_header(out / "right.dat") == ([64, 32], FLOAT)
    assert "right written as dequantized floats" in caplog.text and "contracts its first axis" in caplog.text


class ConcatenatedInputs(nn.Module):
    """Linear layers fed by concatenations: along the axis they contract (transposed on the way,
    as Zamba's heads are), and along another one."""

    def __init__(self) -> None:
        super().__init__()
        self.contracted = nn.Linear(64, 32)
        self.other = nn.Linear(32, 32)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # a, b: [B, 32, T]
        heads = torch.cat([a.relu(), b.sigmoid()], dim=1).transpose(1, 2)  # [B, T, 64]
        times = torch.cat([a, b], dim=2).transpose(1, 2)  # [B, 2T, 32]
        return self.contracted(heads).sum(1) + self.other(times).sum(1)


def test_a_concatenation_along_the_contracted_axis_keeps_the_weight_float(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """tract splits such a product over the concatenated pieces, slicing the weight: Q4_0 blocks
    cannot be sliced, so that weight is written as floats; the other keeps its blocks and loads."""
    model = compress_model(ConcatenatedInputs(), "min_max_q4_0")
    with caplog.at_level(logging.WARNING, logger="torch_to_nnef.io.qtensor"):
        out = export(model, (torch.randn(2, 32, 5), torch.randn(2, 32, 5)), tmp_path / "m", TractNNEF(check_io=True))
    assert dat_header(out / "contracted.weight.dat") == ([32, 64], FLOAT)
    assert dat_header(out / "other.weight.dat") == ([32, 32], Q40)
    assert "contracted.weight written as dequantized floats" in caplog.text
    assert "concatenation along the contracted axis" in caplog.text and "other.weight written" not in caplog.text


def test_khronos_target_writes_dequantized_floats(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = compress_model(LinearStack(), "min_max_q4_0")
    with caplog.at_level(logging.WARNING, logger="torch_to_nnef.io.qtensor"):
        out = export(model, (torch.randn(2, 64),), tmp_path / "m", KhronosNNEF(check_io=True))
    assert dat_header(out / "0.weight.dat") == ([96, 64], FLOAT)
    assert "no Q4_0" in caplog.text


def test_tied_weights(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = TiedLM()
    with caplog.at_level(logging.WARNING, logger="torch_to_nnef.io.compress"):
        compress_model(model, "min_max_q4_0")
    assert type(model.head.weight) is nn.Parameter and model.head.weight is model.embed.weight
    assert "head.weight stays float: it is shared with embed (Embedding)" in caplog.text
    compress_model(model, "min_max_q4_0_with_embeddings")
    assert isinstance(model.head.weight, QTensor) and model.head.weight is model.embed.weight
    out = export(model, (torch.randint(0, 64, (1, 9)),), tmp_path / "m", TractNNEF(check_io=True))
    dats = sorted(p.name for p in out.glob("*.dat"))
    assert len(dats) == 1 and dats[0] in ("embed.weight.dat", "head.weight.dat")  # one weight, written once
    assert dat_header(out / dats[0]) == ([64, 32], Q40)


# --- the registry -----------------------------------------------------------------------------------


def test_default_registry() -> None:
    assert set(DEFAULT_COMPRESSION) == {"min_max_q4_0", "min_max_q4_0_with_embeddings", "min_max_q4_0_all"}
    assert load_compression_registry(DEFAULT_COMPRESSION_REGISTRY) is DEFAULT_COMPRESSION
    model = EmbedLinear()
    assert DEFAULT_COMPRESSION["min_max_q4_0"](model) is model  # in place
    assert isinstance(model.proj.weight, QTensor) and type(model.embed.weight) is nn.Parameter
    with pytest.raises(CompressionRegistryError, match="no compressor named 'q8'.*min_max_q4_0_all"):
        compress_model(model, "q8")


def test_non_quantizable_weights_stay_float(caplog: pytest.LogCaptureFixture) -> None:
    model = nn.Sequential(nn.Linear(30, 8), nn.Linear(8, 64), nn.Conv1d(60, 4, 3), nn.Embedding(10, 20))
    weights = [m.weight for m in model]
    with caplog.at_level(logging.WARNING, logger="torch_to_nnef.io.compress"):
        compress_model(model, "min_max_q4_0_all")
    assert all(m.weight is w for m, w in zip(model, weights))
    for name in ("0.weight", "1.weight", "2.weight", "3.weight"):
        assert f"{name} stays float" in caplog.text


def test_unknown_options_are_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    model = nn.Linear(64, 8)
    with caplog.at_level(logging.WARNING, logger="torch_to_nnef.io.compress"):
        compress_model(model, "min_max_q4_0", group_size=64)
    assert isinstance(model.weight, QTensor) and "group_size" in caplog.text


@pytest.fixture
def user_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    package = tmp_path / "t2n_user_registry"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "reg.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch_to_nnef.io.qtensor import fp_to_tract_q4_0_with_min_max_calibration

            def first_layer_only(model, **kwargs):
                model[0].weight = fp_to_tract_q4_0_with_min_max_calibration(model[0].weight)
                return model

            REGISTRY = {"first_layer": first_layer_only}
            NOT_A_MAPPING = [first_layer_only]
            NOT_CALLABLE = {"x": 3}
            RETURNS_NONE = {"none": lambda model, **kw: None}
            """
        )
    )
    (package / "broken.py").write_text("import t2n_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "t2n_user_registry"
    for name in [m for m in sys.modules if m.startswith("t2n_user_registry")]:
        del sys.modules[name]


def test_user_registry(user_registry: str, tmp_path: Path) -> None:
    registry = load_compression_registry(f"{user_registry}.reg.REGISTRY")
    model = compress_model(LinearStack(), "first_layer", f"{user_registry}.reg.REGISTRY")
    assert isinstance(model[0].weight, QTensor) and type(model[2].weight) is nn.Parameter
    assert list(registry) == ["first_layer"]
    out = export(model, (torch.randn(2, 64),), tmp_path / "m", TractNNEF(check_io=True))
    assert dat_header(out / "0.weight.dat")[1] == Q40 and dat_header(out / "2.weight.dat")[1] == FLOAT


@pytest.mark.parametrize(
    ("path", "match"),
    [
        ("REGISTRY", "not a dotted path"),
        ("t2n_missing_pkg.reg.REGISTRY", "no module named 't2n_missing_pkg'"),
        ("{pkg}.nope.REGISTRY", r"no module named '{pkg}\.nope'"),
        ("{pkg}.broken.REGISTRY", "importing .*broken failed.*t2n_no_such_dependency"),
        ("{pkg}.reg.MISSING", r"has no 'MISSING' \(its mappings: NOT_CALLABLE, REGISTRY, RETURNS_NONE\)"),
        ("{pkg}.reg.NOT_A_MAPPING", "is a list, not a mapping"),
        ("{pkg}.reg.NOT_CALLABLE", "entries 'x' are not name -> function"),
    ],
)
def test_user_registry_errors(user_registry: str, path: str, match: str) -> None:
    with pytest.raises(CompressionRegistryError, match=match.format(pkg=user_registry)):
        load_compression_registry(path.format(pkg=user_registry))


def test_compressor_must_return_the_model(user_registry: str) -> None:
    with pytest.raises(CompressionRegistryError, match="returned a NoneType"):
        compress_model(nn.Linear(64, 8), "none", f"{user_registry}.reg.RETURNS_NONE")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_inplace_quantization_reuses_the_weight_memory(dtype: torch.dtype) -> None:
    weight = torch.randn(8, 64).to(dtype)
    copy = weight.clone()
    fresh = fp_to_tract_q4_0_with_min_max_calibration(copy)
    reused = fp_to_tract_q4_0_with_min_max_calibration(weight, inplace=True)
    assert reused.data_ptr() == weight.data_ptr()  # no second buffer
    assert torch.equal(weight, fresh.dequantize()) and torch.equal(reused.dequantize(), fresh.dequantize())
    # nor held blocks: they are packed from the values when asked for, to the same bytes
    assert reused.to_q4_0().deferred and not fresh.to_q4_0().deferred
    assert reused.to_q4_0().to_bytes() == fresh.to_q4_0().to_bytes()
    assert reused.q4_0_nbytes == fresh.q4_0_nbytes == 8 * 64 // 32 * 18


def test_inplace_bf16_quantization_keeps_its_blocks() -> None:
    """bf16 cannot hold every Q4_0 value: its blocks are kept, and exported as they are."""
    weight = torch.randn(8, 64).to(torch.bfloat16)
    fresh = fp_to_tract_q4_0_with_min_max_calibration(weight.clone())
    reused = fp_to_tract_q4_0_with_min_max_calibration(weight, inplace=True)
    assert not reused.to_q4_0().deferred
    assert reused.to_q4_0().to_bytes() == fresh.to_q4_0().to_bytes()


def test_deferred_blocks_survive_copies_and_casts(tmp_path: Path) -> None:
    model = compress_model(LinearStack(), "min_max_q4_0")
    blocks = model[0].weight.to_q4_0().to_bytes()
    twin = copy.deepcopy(model)
    assert twin[0].weight.data_ptr() != model[0].weight.data_ptr()
    assert twin[0].weight.to_q4_0().to_bytes() == blocks
    torch.save(model, tmp_path / "m.pt")
    assert torch.load(tmp_path / "m.pt", weights_only=False)[0].weight.to_q4_0().to_bytes() == blocks
    model.half()  # f16 roundings of Q4_0 values are Q4_0 values
    assert isinstance(model[0].weight, QTensorTractScaleOnly) and model[0].weight.dtype == torch.float16
    assert model[0].weight.to_q4_0().to_bytes() == blocks


@pytest.mark.parametrize("deferred", [False, True], ids=["blocks", "values-only"])
def test_a_parameter_made_from_a_qtensor_is_that_qtensor(tmp_path: Path, deferred: bool) -> None:
    """``module.weight = nn.Parameter(q, requires_grad=False)``, as compressors are often written:
    the parameter is a QTensor of the same blocks and memory, and exports as Q4_0."""
    model = LinearStack()
    x = torch.randn(5, 64)
    for linear in model.children():
        if isinstance(linear, nn.Linear):
            q = fp_to_tract_q4_0_with_min_max_calibration(linear.weight)
            if deferred:
                q = QTensorTractScaleOnly(q.dequantize().clone(), None)
            linear.weight = nn.Parameter(q, requires_grad=False)
            param = linear.weight
            assert isinstance(param, QTensorTractScaleOnly) and isinstance(param, nn.Parameter)
            assert not param.requires_grad and param.data_ptr() == q.data_ptr()
            assert param.to_q4_0().to_bytes() == q.to_q4_0().to_bytes()
            assert type(param.detach()) is torch.Tensor and type(param.dequantize()) is torch.Tensor
    expected = outputs(model, x)
    out = export(model, (x,), tmp_path / "m", TractNNEF(check_io=True))
    for name, linear in model.named_children():
        if isinstance(linear, nn.Linear):
            dat = out / f"{name}.weight.dat"
            assert dat_header(dat) == (list(linear.weight.shape), Q40)
            assert payload(dat) == linear.weight.to_q4_0().to_bytes()
    np.testing.assert_allclose(TractModel(out).run([x.numpy()])[0], expected[0].numpy(), atol=1e-4, rtol=1e-4)


def test_a_qtensor_needs_its_blocks_argument() -> None:
    with pytest.raises(TypeError, match="blocks"):
        QTensorTractScaleOnly(torch.zeros(2, 32))  # type: ignore[call-arg]
