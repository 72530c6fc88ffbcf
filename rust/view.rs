//! Borrowed views of tensor memory, contiguous or strided, streamed to a writer without
//! materialising a contiguous copy.

use std::io::{self, Write};
use std::marker::PhantomData;

use crate::dtype::DType;

/// Bytes per buffered chunk when gathering strided elements.
const GATHER_CHUNK: usize = 1 << 16;

/// A borrowed dense tensor: its dtype, shape and memory.
#[derive(Debug, Clone)]
pub struct TensorView<'a> {
    dtype: DType,
    shape: Vec<usize>,
    memory: Memory<'a>,
}

#[derive(Debug, Clone)]
enum Memory<'a> {
    Contiguous(&'a [u8]),
    Strided(Strided<'a>),
}

/// A strided block of memory: base pointer and a byte stride per axis (possibly negative).
#[derive(Debug, Clone)]
struct Strided<'a> {
    base: *const u8,
    byte_strides: Vec<isize>,
    _lifetime: PhantomData<&'a [u8]>,
}

// SAFETY: a `Strided` is only built by `TensorView::strided`, whose contract makes every element
// reachable from `base` valid, immutable memory for `'a`; reading it from several threads is as
// safe as sharing the equivalent `&'a [u8]`.
unsafe impl Send for Strided<'_> {}
// SAFETY: see `Send` above: the view only ever reads.
unsafe impl Sync for Strided<'_> {}

impl<'a> TensorView<'a> {
    /// A view of row-major contiguous bytes. Fails if `bytes` does not hold exactly
    /// `prod(shape) * dtype.size_of()` bytes.
    pub fn contiguous(dtype: DType, shape: &[usize], bytes: &'a [u8]) -> Result<Self, String> {
        let numel = numel(shape).ok_or_else(|| format!("shape {shape:?} overflows"))?;
        let expected = numel.checked_mul(dtype.size_of());
        if expected != Some(bytes.len()) {
            return Err(format!(
                "shape {shape:?} of {dtype} needs {expected:?} bytes, got {}",
                bytes.len()
            ));
        }
        Ok(TensorView {
            dtype,
            shape: shape.to_vec(),
            memory: Memory::Contiguous(bytes),
        })
    }

    /// A view of strided memory.
    ///
    /// # Safety
    /// For every index `i` within `shape`, the `dtype.size_of()` bytes at
    /// `base + sum(i[k] * byte_strides[k])` must be readable and not mutated for `'a`.
    pub unsafe fn strided(
        dtype: DType,
        shape: &[usize],
        base: *const u8,
        byte_strides: &[isize],
    ) -> Self {
        assert_eq!(shape.len(), byte_strides.len(), "one stride per axis");
        TensorView {
            dtype,
            shape: shape.to_vec(),
            memory: Memory::Strided(Strided {
                base,
                byte_strides: byte_strides.to_vec(),
                _lifetime: PhantomData,
            }),
        }
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements (saturating on absurd shapes).
    pub fn numel(&self) -> usize {
        numel(&self.shape).unwrap_or(usize::MAX)
    }

    /// Size of the elements in memory, in bytes (saturating).
    pub fn nbytes(&self) -> usize {
        self.numel().saturating_mul(self.dtype.size_of())
    }

    /// The contiguous bytes, when the view is contiguous.
    pub fn as_contiguous(&self) -> Option<&'a [u8]> {
        match &self.memory {
            Memory::Contiguous(b) => Some(b),
            Memory::Strided(_) => None,
        }
    }

    /// Writes the elements in row-major order. Contiguous memory goes to `w` as one slice;
    /// strided memory is gathered through a small buffer, never copied whole.
    pub fn write_elements(&self, w: &mut dyn Write) -> io::Result<()> {
        match &self.memory {
            Memory::Contiguous(bytes) => w.write_all(bytes),
            Memory::Strided(s) => self.for_each_run(s, &mut |run| w.write_all(run)),
        }
    }

    /// Calls `f` with successive runs of row-major element bytes.
    fn for_each_run(
        &self,
        s: &Strided<'a>,
        f: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let item = self.dtype.size_of();
        if self.shape.contains(&0) {
            return Ok(());
        }
        if self.shape.is_empty() {
            // SAFETY: a rank-0 view has one element at `base` (constructor contract).
            let one = unsafe { std::slice::from_raw_parts(s.base, item) };
            return f(one);
        }
        let rank = self.shape.len();
        let inner = self.shape[rank - 1];
        let inner_stride = s.byte_strides[rank - 1];
        let mut buffer: Vec<u8> = Vec::with_capacity(GATHER_CHUNK.max(item));
        let mut index = vec![0usize; rank - 1];
        loop {
            let offset: isize = index
                .iter()
                .zip(&s.byte_strides)
                .map(|(&i, &st)| i as isize * st)
                .sum();
            // SAFETY: `offset` addresses an element inside the view (constructor contract).
            let row = unsafe { s.base.offset(offset) };
            if inner_stride == item as isize {
                // SAFETY: the `inner` elements of this row are adjacent (stride == item size).
                let run = unsafe { std::slice::from_raw_parts(row, inner * item) };
                if !buffer.is_empty() {
                    f(&buffer)?;
                    buffer.clear();
                }
                f(run)?;
            } else {
                for j in 0..inner {
                    // SAFETY: element `j` of this row is inside the view (constructor contract).
                    let elem = unsafe {
                        std::slice::from_raw_parts(row.offset(j as isize * inner_stride), item)
                    };
                    buffer.extend_from_slice(elem);
                    if buffer.len() + item > GATHER_CHUNK {
                        f(&buffer)?;
                        buffer.clear();
                    }
                }
            }
            // Advance the outer multi-index.
            let mut axis = rank - 1;
            loop {
                if axis == 0 {
                    if !buffer.is_empty() {
                        f(&buffer)?;
                    }
                    return Ok(());
                }
                axis -= 1;
                index[axis] += 1;
                if index[axis] < self.shape[axis] {
                    break;
                }
                index[axis] = 0;
            }
        }
    }
}

/// Product of dims, `None` on overflow.
pub fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_transpose_streams_in_row_major_order() {
        // 2x3 row-major i16 matrix viewed transposed (3x2).
        let values: Vec<i16> = vec![0, 1, 2, 10, 11, 12];
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        // SAFETY: strides (2, 6) over a 3x2 shape stay inside the 12-byte buffer.
        let view = unsafe { TensorView::strided(DType::I16, &[3, 2], bytes.as_ptr(), &[2, 6]) };
        let mut out = Vec::new();
        view.write_elements(&mut out).unwrap();
        let got: Vec<i16> = out
            .chunks(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(got, vec![0, 10, 1, 11, 2, 12]);
    }

    #[test]
    fn negative_strides_and_rank0() {
        let values: Vec<u8> = vec![1, 2, 3, 4];
        // SAFETY: base points at the last element and the stride walks backwards inside.
        let rev = unsafe { TensorView::strided(DType::U8, &[4], values.as_ptr().add(3), &[-1]) };
        let mut out = Vec::new();
        rev.write_elements(&mut out).unwrap();
        assert_eq!(out, vec![4, 3, 2, 1]);
        // SAFETY: rank 0: one element at base.
        let scalar = unsafe { TensorView::strided(DType::U8, &[], values.as_ptr().add(1), &[]) };
        let mut out = Vec::new();
        scalar.write_elements(&mut out).unwrap();
        assert_eq!(out, vec![2]);
    }

    #[test]
    fn contiguous_checks_length() {
        assert!(TensorView::contiguous(DType::F32, &[2, 2], &[0u8; 15]).is_err());
        assert!(TensorView::contiguous(DType::F32, &[2, 2], &[0u8; 16]).is_ok());
    }
}
