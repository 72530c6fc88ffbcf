"""Q4_0: byte-identical to tract's own quantizer, bounded round-trip error, clear errors."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from torch_to_nnef import _rust, quantize_q4_0, read_dat, write_dat
from torch_to_nnef.errors import DTypeError, QTensorError, ShapeError
from torch_to_nnef.io.q4_0 import Q40Tensor, tract_reference_q4_0


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape", [(4, 32), (64, 4096), (3, 5, 96)])
def test_bytes_equal_tracts_quantizer(rng, dtype, shape):
    w = (rng.standard_normal(shape) * rng.uniform(1e-3, 1e3)).astype(dtype)
    assert quantize_q4_0(w).to_bytes() == tract_reference_q4_0(w)
    assert quantize_q4_0(torch.from_numpy(w), threads=1).to_bytes() == tract_reference_q4_0(w)


def test_edge_blocks_equal_tracts_quantizer():
    blocks = [
        np.zeros(32),
        -np.arange(32.0),
        np.where(np.arange(32) == 3, -2.0, np.where(np.arange(32) == 9, 2.0, 0.5)),
        np.full(32, 65504.0),
        np.full(32, 1e-42),
        np.linspace(-1e-7, 1e-7, 32),
    ]
    w = np.stack(blocks).astype(np.float32)
    assert quantize_q4_0(w).to_bytes() == tract_reference_q4_0(w)


def test_bf16_quantizes_like_its_f32_values(rng):
    t = torch.from_numpy(rng.standard_normal((8, 64)).astype(np.float32)).to(torch.bfloat16)
    assert quantize_q4_0(t).to_bytes() == quantize_q4_0(t.float()).to_bytes()


def test_non_contiguous_input(rng):
    w = rng.standard_normal((64, 32)).astype(np.float32)
    assert quantize_q4_0(w.T.copy()).to_bytes() == quantize_q4_0(np.asfortranarray(w).T).to_bytes()


def test_nan_and_inf_behaviour_is_as_documented():
    w = np.arange(64, dtype=np.float32).reshape(2, 32)
    w[0, 4] = np.nan
    w[1, 7] = np.inf
    q = quantize_q4_0(w)
    assert q.to_bytes() == tract_reference_q4_0(w)
    back = q.dequantize()
    # Row 0: the scale comes from 31 (NaN ignored); NaN encodes as code 0, i.e. -8 * d = 31.
    d = np.float32(31 / -8)
    codes = np.minimum(np.trunc(np.delete(w[0], 4) * (1 / d) + np.float32(8.5)), 15)
    np.testing.assert_array_equal(np.delete(back[0], 4), (codes - 8) * d)
    assert back[0, 4] == 31.0
    # Row 1: an infinite scale; the infinity itself decodes to +inf, every other value to NaN.
    assert back[1, 7] == np.inf
    assert np.isnan(np.delete(back[1], 7)).all()


@pytest.mark.parametrize("shape", [(64,), (4, 48), (2, 3, 16)])
def test_unblockable_shapes_are_refused(shape):
    with pytest.raises(ShapeError, match="Q4_0"):
        quantize_q4_0(np.zeros(shape, np.float32))


def test_other_dtypes_are_refused():
    with pytest.raises(DTypeError):
        quantize_q4_0(np.zeros((2, 32), np.int32))
    with pytest.raises(DTypeError):
        quantize_q4_0(np.zeros((2, 32), np.float64))


@pytest.mark.parametrize("legacy", [False, True])
def test_dat_files_read_by_tract(tmp_path, rng, legacy):
    w = rng.standard_normal((16, 64)).astype(np.float32)
    q = quantize_q4_0(w)
    path = write_dat(tmp_path / "w.dat", q, q4_0_legacy=legacy)
    raw = path.read_bytes()
    assert raw[48:52] == (b"\x40\x20" if legacy else b"\x40\x30") + b"RT"
    assert len(raw) == 128 + 16 * 64 // 32 * 18
    np.testing.assert_array_equal(_rust.tract_read_dat(path), q.dequantize())
    back = read_dat(path)
    assert isinstance(back, Q40Tensor) and back.to_bytes() == q.to_bytes() and back.shape == [16, 64]


def test_from_blocks_checks_sizes():
    q = quantize_q4_0(np.ones((2, 32), np.float32))
    assert Q40Tensor.from_blocks(q.to_bytes(), [2, 32]).to_bytes() == q.to_bytes()
    with pytest.raises(ShapeError):
        Q40Tensor.from_blocks(q.to_bytes()[:-1], [2, 32])


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 6), st.sampled_from([32, 64, 128])),
        elements=st.floats(-1e4, 1e4, width=32),
    )
)
def test_round_trip_error_is_bounded(w):
    back = quantize_q4_0(w).dequantize().reshape(w.shape[0], -1, 32)
    blocks = w.reshape(w.shape[0], -1, 32)
    d = np.abs(blocks).max(axis=-1, keepdims=True) / 8
    bound = d * (1 + 8 / 1024) + 8 * 2.0**-24
    assert (np.abs(back - blocks) <= bound).all()


def test_dequantize_into_f16_and_f32_buffers():
    w = np.random.default_rng(5).standard_normal((6, 64)).astype(np.float32)
    q = quantize_q4_0(w)
    wide = np.empty_like(w)
    q.dequantize_into(wide)
    np.testing.assert_array_equal(wide, q.dequantize())
    narrow = np.empty(w.shape, dtype=np.float16)
    q.dequantize_into(narrow)
    np.testing.assert_array_equal(narrow, q.dequantize().astype(np.float16))  # rounded to nearest
    with pytest.raises(Exception, match="float32 or float16"):
        q.dequantize_into(np.empty(w.shape, dtype=np.float64))
    with pytest.raises(Exception, match="holds 3 values"):
        q.dequantize_into(np.empty(3, dtype=np.float16))


# --- deferred Q4_0: blocks packed from Q4_0 values when written -------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 4), st.sampled_from([32, 96])),
        elements=st.floats(-6e4, 6e4, width=32) | st.floats(-(2.0**-17), 2.0**-17, width=32) | st.just(0.0),
    ),
    st.sampled_from([np.float32, np.float16]),
)
def test_decoded_values_pack_back_to_their_blocks(w, dtype):
    """Quantizing decoded values (f32, or rounded to f16, subnormal scales included) gives the same
    values back, and the same bytes for every block whose scale did not underflow to zero (such a
    block decodes to zeros whatever its codes)."""
    q = quantize_q4_0(w)
    decoded = np.empty(w.shape, dtype=dtype)
    q.dequantize_into(decoded)
    deferred = Q40Tensor.of_values(decoded)
    assert deferred.deferred and not q.deferred
    assert deferred.nbytes == q.nbytes and deferred.shape == q.shape
    np.testing.assert_array_equal(deferred.dequantize(), q.dequantize())
    ours, theirs = (np.frombuffer(b, np.uint8).reshape(-1, 18) for b in (deferred.to_bytes(), q.to_bytes()))
    scaled = theirs[:, :2].copy().view(np.float16)[:, 0] != 0
    np.testing.assert_array_equal(ours[scaled], theirs[scaled])


@pytest.mark.parametrize("legacy", [False, True])
def test_deferred_dat_is_byte_identical(tmp_path, rng, legacy):
    q = quantize_q4_0(rng.standard_normal((8, 64)).astype(np.float32))
    values = np.empty((8, 64), np.float16)
    q.dequantize_into(values)
    held = write_dat(tmp_path / "held.dat", q, q4_0_legacy=legacy).read_bytes()
    deferred = write_dat(tmp_path / "deferred.dat", Q40Tensor.of_values(values), q4_0_legacy=legacy)
    assert deferred.read_bytes() == held
    np.testing.assert_array_equal(_rust.tract_read_dat(deferred), q.dequantize())


def test_values_that_are_not_q4_0_values_are_refused_when_written(tmp_path, rng):
    q = quantize_q4_0(rng.standard_normal((4, 64)).astype(np.float32))
    values = q.dequantize()
    values[2, 5] += 1e-3  # no longer a code times its block's scale
    deferred = Q40Tensor.of_values(values, name="w")
    with pytest.raises(QTensorError, match=r"value 133 \(row-major\) is not a Q4_0 value"):
        write_dat(tmp_path / "w.dat", deferred)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(QTensorError, match="not a Q4_0 value"):
        deferred.to_bytes()


def test_deferred_values_must_be_contiguous_floats_in_whole_blocks():
    with pytest.raises(ShapeError):
        Q40Tensor.of_values(np.zeros((2, 48), np.float32))
    with pytest.raises(DTypeError):
        Q40Tensor.of_values(np.zeros((2, 32), np.float64))
    with pytest.raises(Exception, match="C-contiguous"):
        Q40Tensor.of_values(np.zeros((32, 4), np.float32).T)
