"""Tensor files: every dtype read back by tract's reader and by the Khronos `nnef` package."""

import struct
import warnings

import nnef
import numpy as np
import pytest
import torch

from torch_to_nnef import _rust, read_dat, write_dat, write_dats
from torch_to_nnef.errors import (
    DeviceError,
    DTypeError,
    FormatError,
    MissingFolderError,
    NameClashError,
    OutputExistsError,
    TensorTooLargeError,
    UnsafePathError,
)

NUMPY_DTYPES = ["float16", "float32", "float64", "int8", "int16", "int32", "int64"]
NUMPY_DTYPES += ["uint8", "uint16", "uint32", "uint64", "bool"]
# Item codes written per target, read with an independent parser (struct) below.
TRACT_CODES = {"f": 0, "u": 2, "i": 3, "b": 5}
KHRONOS_CODES = {"f": 0, "u": 1, "i": 4, "b": 5}


def sample(dtype: str, shape, rng) -> np.ndarray:
    if dtype == "bool":
        return rng.integers(0, 2, size=shape).astype(bool)
    if dtype.startswith("float"):
        return (rng.standard_normal(shape) * 100).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


def parse_header(raw: bytes) -> dict:
    magic, major, minor, size, rank = struct.unpack_from("<2sBBII", raw, 0)
    dims = struct.unpack_from("<8I", raw, 12)[:rank]
    bits, item_type, vendor = struct.unpack_from("<IHH", raw, 44)
    assert raw[52:128] == bytes(76)
    return dict(magic=magic, version=(major, minor), size=size, dims=dims, bits=bits, item=item_type, vendor=vendor)


@pytest.mark.parametrize("dtype", NUMPY_DTYPES)
@pytest.mark.parametrize("target", ["tract", "khronos"])
def test_every_dtype_round_trips_through_both_readers(tmp_path, rng, dtype, target):
    array = sample(dtype, (3, 4, 5), rng)
    path = write_dat(tmp_path / "t.dat", array, target=target)
    raw = path.read_bytes()
    h = parse_header(raw)
    codes = TRACT_CODES if target == "tract" else KHRONOS_CODES
    bits = 1 if (dtype == "bool" and target == "khronos") else array.dtype.itemsize * 8
    assert h == dict(
        magic=b"\x4e\xef",
        version=(1, 0),
        size=(array.size + 7) // 8 if bits == 1 else array.nbytes,
        dims=(3, 4, 5),
        bits=bits,
        item=codes[array.dtype.kind],
        vendor=0,
    )
    assert len(raw) == 128 + h["size"]
    np.testing.assert_array_equal(_rust.tract_read_dat(path), array)
    ours = read_dat(path)
    assert isinstance(ours, np.ndarray) and ours.dtype == array.dtype
    np.testing.assert_array_equal(ours, array)
    if dtype == "bool" and target == "tract":
        return  # tract's one-byte booleans are outside what the Khronos reader supports (1 bit)
    with open(path, "rb") as f:
        khronos = nnef.read_tensor(f)
    np.testing.assert_array_equal(khronos, array)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda t: t.t(), id="transposed"),
        pytest.param(lambda t: t[:, ::2], id="step"),
        pytest.param(lambda t: t.unsqueeze(0).expand(3, -1, -1), id="expanded"),
        pytest.param(lambda t: t[1:, 2:5], id="offset"),
        pytest.param(lambda t: t.reshape(2, 3, 8).permute(2, 0, 1), id="permuted"),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.int64, torch.bool, torch.uint8])
def test_torch_views_are_written_in_logical_order(tmp_path, make, dtype):
    base = (torch.arange(48).reshape(6, 8) * 3 % 7).to(dtype)
    view = make(base)
    write_dat(tmp_path / "v.dat", view)
    np.testing.assert_array_equal(_rust.tract_read_dat(tmp_path / "v.dat"), view.numpy())


def test_negative_numpy_strides(tmp_path, rng):
    a = sample("float32", (5, 7), rng)[::-1, ::-2]
    write_dat(tmp_path / "n.dat", a)
    np.testing.assert_array_equal(_rust.tract_read_dat(tmp_path / "n.dat"), a)


def test_parameters_with_grad_and_scalars(tmp_path):
    p = torch.nn.Parameter(torch.randn(4, 3))
    write_dat(tmp_path / "p.dat", p)
    np.testing.assert_array_equal(read_dat(tmp_path / "p.dat"), p.detach().numpy())
    write_dat(tmp_path / "s.dat", torch.tensor(3.5))
    assert read_dat(tmp_path / "s.dat").shape == ()
    write_dat(tmp_path / "e.dat", np.zeros((0, 4), np.float32))
    assert read_dat(tmp_path / "e.dat").shape == (0, 4)


def test_bf16_is_refused_unless_asked(tmp_path):
    t = torch.randn(4, 8, dtype=torch.bfloat16)
    with pytest.raises(DTypeError, match="bfloat16.*cast"):
        write_dat(tmp_path / "b.dat", t)
    assert not (tmp_path / "b.dat").exists()
    write_dat(tmp_path / "b.dat", t, bf16="f32")
    np.testing.assert_array_equal(read_dat(tmp_path / "b.dat"), t.float().numpy())
    write_dat(tmp_path / "h.dat", t, bf16="f16")
    assert read_dat(tmp_path / "h.dat").dtype == np.float16


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: torch.randn(3, dtype=torch.complex64), id="complex"),
        pytest.param(lambda: np.array(["a"], dtype=object), id="object"),
        pytest.param(lambda: np.zeros(3, dtype="datetime64[s]"), id="datetime"),
        pytest.param(lambda: torch.quantize_per_tensor(torch.randn(4), 0.1, 0, torch.qint8), id="quantized"),
    ],
)
def test_unsupported_dtypes_are_refused(tmp_path, make):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized tensor creation is deprecated in torch
        tensor = make()
    with pytest.raises(DTypeError, match="cast|int_repr|support"):
        write_dat(tmp_path / "x.dat", tensor)


def test_meta_tensors_are_refused(tmp_path):
    with pytest.raises(DeviceError, match="meta device"):
        write_dat(tmp_path / "m.dat", torch.empty(3, 3, device="meta"))
    with pytest.raises(DeviceError):
        write_dats(tmp_path / "d", {"a": torch.zeros(2), "m": torch.empty(2, device="meta")})
    assert not (tmp_path / "d").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_are_copied_one_at_a_time(tmp_path):
    tensors = {f"t{i}": torch.randn(64, 32, device="cuda") for i in range(3)}
    tensors["cpu"] = torch.randn(5)
    write_dats(tmp_path / "out", tensors)
    for k, v in tensors.items():
        np.testing.assert_array_equal(read_dat(tmp_path / "out" / f"{k}.dat"), v.cpu().numpy())


def test_payloads_of_4_gib_are_refused_without_memory(tmp_path):
    huge = np.broadcast_to(np.zeros(1, np.float32), (1 << 30,))  # 4 GiB logical, 4 bytes real
    with pytest.raises(TensorTooLargeError, match="4 GiB"):
        write_dat(tmp_path / "h.dat", huge)
    with pytest.raises(TensorTooLargeError, match="rank 9"):
        write_dat(tmp_path / "r.dat", np.zeros((1,) * 9, np.float32))
    assert list(tmp_path.iterdir()) == []


def test_many_tensors_with_sub_folders(tmp_path, rng):
    tensors = {f"encoder/layers.{i}/weight": sample("float32", (8, 4), rng) for i in range(20)}
    tensors["encoder/norm.bias"] = torch.arange(4)
    written = write_dats(tmp_path / "out", tensors)
    assert set(written) == set(tensors)
    for label, t in tensors.items():
        expected = t.numpy() if isinstance(t, torch.Tensor) else t
        np.testing.assert_array_equal(_rust.tract_read_dat(tmp_path / "out" / f"{label}.dat"), expected)


@pytest.mark.parametrize("label", ["../escape", "/abs", "a/../../b", "", "a//b"])
def test_labels_that_escape_are_refused(tmp_path, label):
    with pytest.raises(UnsafePathError):
        write_dats(tmp_path / "out", {"ok": np.zeros(2), label: np.zeros(2)})
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "escape.dat").exists()


def test_existing_outputs_and_missing_folders(tmp_path):
    target = tmp_path / "x.dat"
    target.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        write_dat(target, np.zeros(3, np.float32))
    assert target.read_bytes() == b"precious"
    write_dat(target, np.ones(3, np.float32), overwrite=True)
    np.testing.assert_array_equal(read_dat(target), np.ones(3, np.float32))
    with pytest.raises(MissingFolderError, match="does not exist"):
        write_dat(tmp_path / "missing" / "y.dat", np.zeros(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.dat"]


def test_name_clash_in_a_batch(tmp_path):
    with pytest.raises(NameClashError):
        _rust.check_labels(["a", "b", "a"])


def test_corrupt_files_raise_format_errors(tmp_path):
    good = write_dat(tmp_path / "g.dat", np.arange(10, dtype=np.int32)).read_bytes()
    cases = {
        "empty": b"",
        "short_header": good[:50],
        "truncated": good[:-3],
        "magic": b"\x00\x00" + good[2:],
        "version": good[:2] + b"\x02\x00" + good[4:],
        "huge_claim": good[:4] + struct.pack("<I", 0xFFFFFFF0) + good[8:],
        "vendor": good[:50] + b"ZZ" + good[52:],
    }
    for name, raw in cases.items():
        (tmp_path / f"{name}.dat").write_bytes(raw)
        with pytest.raises(FormatError):
            read_dat(tmp_path / f"{name}.dat")
