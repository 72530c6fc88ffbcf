//! Q4_0 block quantization, the GGML `block_q4_0` layout that tract reads.
//!
//! A block packs 32 consecutive values of the row-major tensor in 18 bytes: the scale `d` as a
//! little-endian f16, then 16 bytes where `byte[j] = q[j] | q[j + 16] << 4`.
//!
//! Encoding follows tract-linalg's quantizer exactly (and is tested byte for byte against it):
//! `m` is the value of largest magnitude with its sign (the first one on a tie, `+0.0` when the
//! block is all zeros or NaNs); `d = m / -8`; `id = 1 / d` (0 when `d == 0`);
//! `q = min(15, x * id + 8.5 as i8)` (a saturating cast, NaN -> 0). Decoding is `(q - 8) * f16(d)`.
//!
//! Non-finite input: NaN values are ignored when choosing the scale and encode as nibble 0
//! (they decode to `-8 * d`); a block holding an infinity gets an infinite scale, so every value
//! in it decodes to an infinity or NaN. Callers that need finite weights must reject them first.

use half::{bf16, f16, slice::HalfFloatSliceExt};
use rayon::prelude::*;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::view::TensorView;

/// Values per block.
pub const BLOCK_LEN: usize = 32;
/// Bytes per block: an f16 scale and 16 bytes of nibbles.
pub const BLOCK_BYTES: usize = 18;
/// Blocks handled per parallel task.
const BLOCKS_PER_TASK: usize = 2048;

/// Nibble order of the 16 data bytes of a block, as stored in a `.dat` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Q40Layout {
    /// GGML order, item type 0x3040 (tract >= 0.21.11): `byte[j] = q[j] | q[j + 16] << 4`.
    Ggml,
    /// Neighbour pairs, item type 0x2040 (tract < 0.21.11): `byte[j] = q[2j] | q[2j + 1] << 4`.
    Legacy,
}

impl Q40Layout {
    /// The `.dat` item type of this layout.
    pub fn item_type(self) -> u16 {
        match self {
            Q40Layout::Ggml => 0x3040,
            Q40Layout::Legacy => 0x2040,
        }
    }
}

/// Checks that `shape` can be stored as Q4_0: rank >= 2, and each row (the product of the
/// dimensions after the first) a whole number of 32-value blocks, as tract reads it.
pub fn check_shape(what: &str, shape: &[usize]) -> Result<()> {
    let bad = |reason: String| {
        Err(Error::Shape {
            what: what.to_string(),
            reason,
        })
    };
    if shape.len() < 2 {
        return bad(format!(
            "Q4_0 needs a tensor of rank >= 2, got shape {shape:?}; keep it in float"
        ));
    }
    let row: usize = shape[1..].iter().product();
    if !row.is_multiple_of(BLOCK_LEN) {
        return bad(format!(
            "Q4_0 packs each row (the dimensions after the first) in blocks of {BLOCK_LEN}, but \
             shape {shape:?} has rows of {row}, not a multiple of {BLOCK_LEN}; keep this tensor in float"
        ));
    }
    Ok(())
}

/// Input element types the quantizer accepts.
#[derive(Debug, Clone, Copy)]
pub enum Q40Input<'a> {
    /// f32 values.
    F32(&'a [f32]),
    /// f16 values.
    F16(&'a [f16]),
    /// bf16 values (converted exactly to f32 first).
    Bf16(&'a [bf16]),
}

impl Q40Input<'_> {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Q40Input::F32(x) => x.len(),
            Q40Input::F16(x) => x.len(),
            Q40Input::Bf16(x) => x.len(),
        }
    }

    /// True when there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<'a> Q40Input<'a> {
    /// The values of a C-contiguous, aligned f32 or f16 view, or with `bf16` a u16 / i16 view
    /// holding bf16 bits; `what` names the tensor in errors.
    pub fn from_view(view: &TensorView<'a>, bf16: bool, what: &str) -> Result<Q40Input<'a>> {
        let dtype = view.dtype();
        let bytes = view.as_contiguous().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{what}: Q4_0 values must be C-contiguous; pass numpy.ascontiguousarray(x)"
            ))
        })?;
        let misaligned = || {
            Error::InvalidArgument(format!(
                "{what}: misaligned array memory; pass a copy (numpy.array(x))"
            ))
        };
        if !(bytes.as_ptr() as usize).is_multiple_of(dtype.size_of()) {
            return Err(misaligned());
        }
        Ok(match (dtype, bf16) {
            (DType::F32, false) => Q40Input::F32(cast_aligned(bytes).ok_or_else(misaligned)?),
            (DType::F16, false) => Q40Input::F16(cast_aligned(bytes).ok_or_else(misaligned)?),
            (DType::U16 | DType::I16, true) => {
                Q40Input::Bf16(cast_aligned(bytes).ok_or_else(misaligned)?)
            }
            _ => {
                return Err(Error::UnsupportedDtype {
                    what: format!("Q4_0 of {what}"),
                    dtype: if bf16 {
                        format!("{dtype} as bf16 bits")
                    } else {
                        dtype.to_string()
                    },
                    hint: "Q4_0 quantizes f32, f16 or bf16 values".into(),
                })
            }
        })
    }
}

/// Float types that every bit pattern is a value of.
trait AnyBits: Copy {}
impl AnyBits for f32 {}
impl AnyBits for f16 {}
impl AnyBits for bf16 {}

/// `bytes` as whole values of `T`, or `None` when they are not aligned for `T`.
fn cast_aligned<T: AnyBits>(bytes: &[u8]) -> Option<&[T]> {
    if !(bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return None;
    }
    let n = bytes.len() / std::mem::size_of::<T>();
    // SAFETY: the pointer is non-null (a slice's) and aligned for `T` (checked above), the `n`
    // values lie within `bytes` and share its lifetime, and every bit pattern is a `T` (AnyBits).
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const T, n) })
}

/// Quantizes one block of 32 f32 values.
#[inline(always)]
fn quantize_block(x: &[f32; BLOCK_LEN], out: &mut [u8]) {
    // Largest positive and most negative values, NaN ignored (f32::max/min keep the non-NaN
    // operand); lanes of 8 so that the compiler vectorizes the reduction.
    let mut hi = [0f32; 8];
    let mut lo = [0f32; 8];
    for chunk in x.chunks_exact(8) {
        for ((h, l), &v) in hi.iter_mut().zip(lo.iter_mut()).zip(chunk) {
            *h = h.max(v);
            *l = l.min(v);
        }
    }
    let hi = hi.iter().fold(0f32, |a, &b| a.max(b));
    let lo = lo.iter().fold(0f32, |a, &b| a.min(b));
    // The value of largest magnitude with its sign; on a tie between +a and -a the first one
    // in the block wins; +0.0 for a block of zeros and NaNs.
    let max = if hi > -lo {
        hi
    } else if -lo > hi {
        lo
    } else if hi == 0.0 {
        0.0
    } else {
        x.iter().copied().find(|v| v.abs() == hi).unwrap_or(0.0)
    };
    let scale = max / -8.0;
    let r_scale = if scale == 0.0 { 0.0 } else { 1.0 / scale };
    out[..2].copy_from_slice(&f16::from_f32(scale).to_bits().to_le_bytes());
    let mut q = [0u8; BLOCK_LEN];
    let mut nan = false;
    for &v in x {
        nan |= v.is_nan();
    }
    if !nan && hi.is_finite() && lo.is_finite() && r_scale.is_finite() {
        // Every |v * r_scale| <= 8 (up to rounding), so `v * r_scale + 8.5` lies in
        // [0, 17): a plain truncation gives what the saturating cast below gives.
        for i in 0..BLOCK_LEN {
            // Not fused: a multiply then an add, as the reference computes it.
            let y = x[i] * r_scale + 8.5;
            // SAFETY: `y` is finite and within i32's range (see above).
            let t: i32 = unsafe { y.to_int_unchecked() };
            q[i] = t.min(15) as u8;
        }
    } else {
        for (q, &v) in q.iter_mut().zip(x) {
            *q = ((v * r_scale + 8.5) as i8).min(15) as u8;
        }
    }
    for j in 0..BLOCK_LEN / 2 {
        out[2 + j] = q[j] | (q[j + BLOCK_LEN / 2] << 4);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
// SAFETY (callers): only called after `is_x86_feature_detected!("avx2")`.
unsafe fn quantize_blocks_f32_avx2(input: &[f32], out: &mut [u8]) {
    quantize_blocks_f32_generic(input, out)
}

#[inline(always)]
fn quantize_blocks_f32_generic(input: &[f32], out: &mut [u8]) {
    for (x, o) in input
        .chunks_exact(BLOCK_LEN)
        .zip(out.chunks_exact_mut(BLOCK_BYTES))
    {
        quantize_block(x.try_into().expect("32 values"), o);
    }
}

fn quantize_blocks_f32(input: &[f32], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { quantize_blocks_f32_avx2(input, out) };
        return;
    }
    quantize_blocks_f32_generic(input, out)
}

/// `x` widened to f32 in `tmp` (exact).
fn widened<'t, T>(x: &[T], tmp: &'t mut Vec<f32>) -> &'t [f32]
where
    [T]: HalfFloatSliceExt,
{
    tmp.resize(x.len(), 0.0);
    x.convert_to_f32_slice(tmp);
    tmp
}

/// The index of the first of `x` that differs from `decoded` rounded to `T`.
fn first_unequal<T: Default + Clone + PartialEq>(decoded: &[f32], x: &[T]) -> Option<usize>
where
    [T]: HalfFloatSliceExt,
{
    let mut narrow = vec![T::default(); decoded.len()];
    narrow.convert_from_f32_slice(decoded);
    narrow.iter().zip(x).position(|(d, v)| d != v)
}

/// Quantizes the blocks of one task; with `check`, also returns the index of the first value
/// that its block does not decode back to (rounded to the input's type), if any.
fn quantize_task(
    input: &Q40Input,
    first_block: usize,
    out: &mut [u8],
    check: bool,
) -> Option<usize> {
    let n_blocks = out.len() / BLOCK_BYTES;
    let range = first_block * BLOCK_LEN..(first_block + n_blocks) * BLOCK_LEN;
    let mut tmp = Vec::new();
    let values: &[f32] = match input {
        Q40Input::F32(x) => &x[range.clone()],
        Q40Input::F16(x) => widened(&x[range.clone()], &mut tmp),
        Q40Input::Bf16(x) => widened(&x[range.clone()], &mut tmp),
    };
    quantize_blocks_f32(values, out);
    if !check {
        return None;
    }
    // Decoded in f32 (exact), rounded to the input's type by the slice conversions (vectorized),
    // compared with the input (`-0.0 == 0.0`).
    let mut decoded = vec![0f32; values.len()];
    decode_blocks(out, &mut decoded);
    let lost = match input {
        Q40Input::F32(_) => decoded.iter().zip(values).position(|(d, v)| d != v),
        Q40Input::F16(x) => first_unequal(&decoded, &x[range.clone()]),
        Q40Input::Bf16(x) => first_unequal(&decoded, &x[range.clone()]),
    };
    lost.map(|i| range.start + i)
}

/// Checks that `input` can be quantized as a tensor of `shape`: whole blocks per row, as many
/// values as the shape holds.
pub fn check_input(what: &str, input: &Q40Input, shape: &[usize]) -> Result<()> {
    check_shape(what, shape)?;
    let numel = crate::view::numel(shape).unwrap_or(usize::MAX);
    if numel != input.len() {
        return Err(Error::Shape {
            what: what.to_string(),
            reason: format!(
                "shape {shape:?} has {numel} values but {} were given",
                input.len()
            ),
        });
    }
    Ok(())
}

/// Quantizes a tensor to Q4_0 blocks (GGML order), on the current rayon pool, or on `threads`
/// threads when given (`Some(1)` runs on the calling thread only).
pub fn quantize(
    what: &str,
    input: Q40Input,
    shape: &[usize],
    threads: Option<usize>,
) -> Result<Vec<u8>> {
    Ok(quantize_impl(what, input, shape, threads, false)?.0)
}

/// Quantizes values that should be Q4_0 values already (decoded from blocks): the blocks, and
/// the index of the first value that they do not decode back to (rounded to the input's type),
/// `None` when quantizing lost nothing. The check runs block by block as they are made.
pub fn quantize_checked(
    what: &str,
    input: Q40Input,
    shape: &[usize],
) -> Result<(Vec<u8>, Option<usize>)> {
    quantize_impl(what, input, shape, None, true)
}

fn quantize_impl(
    what: &str,
    input: Q40Input,
    shape: &[usize],
    threads: Option<usize>,
    check: bool,
) -> Result<(Vec<u8>, Option<usize>)> {
    check_input(what, &input, shape)?;
    let numel = input.len();
    let mut out = vec![0u8; numel / BLOCK_LEN * BLOCK_BYTES];
    let run = |out: &mut [u8]| {
        out.par_chunks_mut(BLOCKS_PER_TASK * BLOCK_BYTES)
            .enumerate()
            .filter_map(|(i, o)| quantize_task(&input, i * BLOCKS_PER_TASK, o, check))
            .min()
    };
    let mismatch = match threads {
        Some(1) => quantize_task(&input, 0, &mut out, check),
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map_err(|e| Error::InvalidArgument(format!("cannot start {n} threads: {e}")))?
            .install(|| run(&mut out)),
        None => run(&mut out),
    };
    Ok((out, mismatch))
}

/// Decodes Q4_0 blocks (GGML order) to f32 values.
pub fn dequantize(blocks: &[u8]) -> Result<Vec<f32>> {
    let mut out = vec![0f32; blocks.len() / BLOCK_BYTES * BLOCK_LEN];
    dequantize_into(blocks, &mut out)?;
    Ok(out)
}

/// A float type Q4_0 blocks decode to: each value is computed in f32 (exactly: a 4-bit integer
/// times an f16 scale) and rounded to the nearest `Self`.
pub trait Decoded: Copy + Send + Sync {
    /// The nearest value of this type (ties to even).
    fn from_f32(x: f32) -> Self;
}

impl Decoded for f32 {
    fn from_f32(x: f32) -> Self {
        x
    }
}

impl Decoded for f16 {
    fn from_f32(x: f32) -> Self {
        f16::from_f32(x)
    }
}

/// Decodes Q4_0 blocks (GGML order) into `out`, which must hold exactly their values (no
/// allocation: a caller can decode over the buffer it quantized, f32 or f16).
pub fn dequantize_into<T: Decoded>(blocks: &[u8], out: &mut [T]) -> Result<()> {
    let shape_error = |reason: String| Error::Shape {
        what: "Q4_0 blocks".into(),
        reason,
    };
    if !blocks.len().is_multiple_of(BLOCK_BYTES) {
        return Err(shape_error(format!(
            "{} bytes is not a whole number of {BLOCK_BYTES}-byte blocks",
            blocks.len()
        )));
    }
    if out.len() != blocks.len() / BLOCK_BYTES * BLOCK_LEN {
        return Err(shape_error(format!(
            "{} blocks decode to {} values, but the output holds {}",
            blocks.len() / BLOCK_BYTES,
            blocks.len() / BLOCK_BYTES * BLOCK_LEN,
            out.len()
        )));
    }
    out.par_chunks_mut(BLOCK_LEN * BLOCKS_PER_TASK)
        .zip(blocks.par_chunks(BLOCK_BYTES * BLOCKS_PER_TASK))
        .for_each(|(o, b)| decode_blocks(b, o));
    Ok(())
}

/// Decodes whole blocks into as many values (32 per block).
fn decode_blocks<T: Decoded>(blocks: &[u8], out: &mut [T]) {
    for (o, b) in out
        .chunks_exact_mut(BLOCK_LEN)
        .zip(blocks.chunks_exact(BLOCK_BYTES))
    {
        let d = f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
        for j in 0..BLOCK_LEN / 2 {
            o[j] = T::from_f32(((b[2 + j] & 0x0F) as i32 - 8) as f32 * d);
            o[j + BLOCK_LEN / 2] = T::from_f32(((b[2 + j] >> 4) as i32 - 8) as f32 * d);
        }
    }
}

/// Unpacks the 32 nibbles of a block in element order.
fn nibbles(data: &[u8], layout: Q40Layout) -> [u8; BLOCK_LEN] {
    let mut q = [0u8; BLOCK_LEN];
    for j in 0..BLOCK_LEN / 2 {
        let (lo, hi) = (data[j] & 0x0F, data[j] >> 4);
        match layout {
            Q40Layout::Ggml => (q[j], q[j + BLOCK_LEN / 2]) = (lo, hi),
            Q40Layout::Legacy => (q[2 * j], q[2 * j + 1]) = (lo, hi),
        }
    }
    q
}

fn pack(q: &[u8; BLOCK_LEN], layout: Q40Layout, data: &mut [u8]) {
    for j in 0..BLOCK_LEN / 2 {
        data[j] = match layout {
            Q40Layout::Ggml => q[j] | (q[j + BLOCK_LEN / 2] << 4),
            Q40Layout::Legacy => q[2 * j] | (q[2 * j + 1] << 4),
        };
    }
}

fn relayout(blocks: &mut [u8], from: Q40Layout, to: Q40Layout) {
    for b in blocks.chunks_exact_mut(BLOCK_BYTES) {
        let q = nibbles(&b[2..], from);
        pack(&q, to, &mut b[2..]);
    }
}

/// Converts blocks in place from GGML order to the legacy (0x2040) order.
pub fn ggml_to_legacy(blocks: &mut [u8]) {
    relayout(blocks, Q40Layout::Ggml, Q40Layout::Legacy)
}

/// Converts blocks in place from the legacy (0x2040) order to GGML order.
pub fn legacy_to_ggml(blocks: &mut [u8]) {
    relayout(blocks, Q40Layout::Legacy, Q40Layout::Ggml)
}

/// tract-linalg's own Q4_0 quantizer, single-threaded: the reference our kernel is checked and
/// benchmarked against.
pub fn tract_reference_quantize(input: &[f32]) -> Vec<u8> {
    use tract_linalg::block_quant::{BlockQuant, Q4_0};
    let blob = Q4_0.quant_f32(input).expect("tract Q4_0 quantizer");
    blob.as_bytes().to_vec()
}

/// tract-linalg's own Q4_0 quantizer on f16 input.
pub fn tract_reference_quantize_f16(input: &[f16]) -> Vec<u8> {
    use tract_linalg::block_quant::{BlockQuant, Q4_0};
    let blob = Q4_0.quant_f16(input).expect("tract Q4_0 quantizer");
    blob.as_bytes().to_vec()
}

/// tract-linalg's own Q4_0 quantizer on a C-contiguous, aligned f32 or f16 view.
pub fn tract_reference_quantize_view(view: &TensorView) -> Result<Vec<u8>> {
    let bytes = view
        .as_contiguous()
        .ok_or_else(|| Error::InvalidArgument("array must be C-contiguous".into()))?;
    let misaligned = || Error::InvalidArgument("misaligned array memory".into());
    if !(bytes.as_ptr() as usize).is_multiple_of(view.dtype().size_of()) {
        return Err(misaligned());
    }
    match view.dtype() {
        DType::F32 => Ok(tract_reference_quantize(
            cast_aligned(bytes).ok_or_else(misaligned)?,
        )),
        DType::F16 => Ok(tract_reference_quantize_f16(
            cast_aligned(bytes).ok_or_else(misaligned)?,
        )),
        dtype => Err(Error::UnsupportedDtype {
            what: "tract Q4_0 reference".into(),
            dtype: dtype.to_string(),
            hint: "pass f32 or f16".into(),
        }),
    }
}
