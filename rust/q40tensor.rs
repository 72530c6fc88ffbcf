//! A Q4_0 tensor: a logical shape and its blocks (GGML order), either held as bytes or deferred:
//! a handle on float values that are Q4_0 values already (decoded from blocks), packed into
//! blocks only when they are written or asked for, so that a model's packed weights never all
//! exist at once.
//!
//! The handle type `V` belongs to the caller (an array it keeps alive, say); the core never reads
//! through it. To read a tensor, the caller resolves the handle to the values it holds now
//! ([`Q40Tensor::resolve`]), which gives a [`Q40Ref`]: a plain borrowed tensor that can cross
//! threads. Deferred values are checked as they are packed: values changed since they were
//! quantized are refused ([`Error::NotQ40Values`]).

use std::borrow::Cow;
use std::fmt;

use crate::dat::{self, DatHeader, DatSource};
use crate::error::{Error, Result};
use crate::q4_0::{self, Decoded, Q40Input, Q40Layout};

/// How deferred values are named in errors when they are packed to be read (rather than written
/// under a label).
pub const VALUES: &str = "Q4_0 values";

/// Q4_0 blocks (GGML order) with their logical shape, held or deferred (see the module
/// documentation); `V` is the handle on deferred values.
#[derive(Debug)]
pub struct Q40Tensor<V> {
    shape: Vec<usize>,
    data: Data<V>,
}

#[derive(Debug)]
enum Data<V> {
    Blocks(Vec<u8>),
    Values(V),
}

impl<V> Q40Tensor<V> {
    /// Quantizes `input`, the row-major values of a tensor of `shape`, on the current rayon pool
    /// or on `threads` threads (see [`q4_0::quantize`]).
    pub fn quantize(
        what: &str,
        input: Q40Input,
        shape: Vec<usize>,
        threads: Option<usize>,
    ) -> Result<Self> {
        let blocks = q4_0::quantize(what, input, &shape, threads)?;
        Ok(Q40Tensor {
            shape,
            data: Data::Blocks(blocks),
        })
    }

    /// A tensor of existing GGML-order blocks; refused unless `shape` can be stored as Q4_0 and
    /// `blocks` holds exactly its blocks.
    pub fn from_blocks(blocks: Vec<u8>, shape: Vec<usize>) -> Result<Self> {
        let h = DatHeader::for_q4_0("Q4_0 blocks", &shape, Q40Layout::Ggml)?;
        if h.data_size as usize != blocks.len() {
            return Err(Error::Shape {
                what: "Q4_0 blocks".into(),
                reason: format!(
                    "{} bytes do not match shape {shape:?} ({} bytes expected)",
                    blocks.len(),
                    h.data_size
                ),
            });
        }
        Ok(Q40Tensor {
            shape,
            data: Data::Blocks(blocks),
        })
    }

    /// A deferred tensor of `shape` whose values are behind `values`; refused unless `shape` can
    /// be stored as Q4_0. The values themselves are checked when they are packed.
    pub fn of_values(what: &str, values: V, shape: Vec<usize>) -> Result<Self> {
        DatHeader::for_q4_0(what, &shape, Q40Layout::Ggml)?;
        Ok(Q40Tensor {
            shape,
            data: Data::Values(values),
        })
    }

    /// Logical shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Size of the blocks in bytes (18 per 32 values).
    pub fn nbytes(&self) -> usize {
        self.shape.iter().product::<usize>() / q4_0::BLOCK_LEN * q4_0::BLOCK_BYTES
    }

    /// True when the blocks are packed from the handle's values only when needed.
    pub fn is_deferred(&self) -> bool {
        matches!(self.data, Data::Values(_))
    }

    /// The handle on the deferred values, `None` when the blocks are held.
    pub fn values(&self) -> Option<&V> {
        match &self.data {
            Data::Blocks(_) => None,
            Data::Values(v) => Some(v),
        }
    }

    /// Checks that an output of `len` values can hold this tensor decoded.
    pub fn check_decoded_len(&self, len: usize) -> Result<()> {
        check_decoded_len(&self.shape, len)
    }

    /// The tensor ready to be read: held blocks borrowed; deferred values given by `values`,
    /// which views what the handle holds now, with its shape (the blocks are packed for it).
    pub fn resolve<'a, E>(
        &'a self,
        values: impl FnOnce(&'a V) -> std::result::Result<(Q40Input<'a>, Vec<usize>), E>,
    ) -> std::result::Result<Q40Ref<'a>, E> {
        let source = match &self.data {
            Data::Blocks(blocks) => Source::Blocks(blocks),
            Data::Values(v) => {
                let (values, shape) = values(v)?;
                Source::Values { values, shape }
            }
        };
        Ok(Q40Ref {
            shape: &self.shape,
            source,
        })
    }
}

impl<V> fmt::Display for Q40Tensor<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Q40Tensor(shape={:?}, nbytes={}{})",
            self.shape,
            self.nbytes(),
            if self.is_deferred() { ", deferred" } else { "" }
        )
    }
}

/// A [`Q40Tensor`] ready to be read: its blocks, or the values they are packed from, borrowed.
#[derive(Debug, Clone)]
pub struct Q40Ref<'a> {
    shape: &'a [usize],
    source: Source<'a>,
}

#[derive(Debug, Clone)]
enum Source<'a> {
    Blocks(&'a [u8]),
    Values {
        values: Q40Input<'a>,
        shape: Vec<usize>,
    },
}

impl<'a> Q40Ref<'a> {
    /// Logical shape.
    pub fn shape(&self) -> &'a [usize] {
        self.shape
    }

    /// The blocks (GGML order): held ones borrowed, deferred ones packed now and checked to
    /// decode back to their values.
    pub fn blocks(&self) -> Result<Cow<'a, [u8]>> {
        match &self.source {
            Source::Blocks(blocks) => Ok(Cow::Borrowed(blocks)),
            Source::Values { values, shape } => {
                Ok(Cow::Owned(dat::pack_q4_0_values(VALUES, values, shape)?))
            }
        }
    }

    /// Decodes to f32 values, row-major.
    pub fn dequantize(&self) -> Result<Vec<f32>> {
        q4_0::dequantize(&self.blocks()?)
    }

    /// Decodes into `out`, which must hold exactly the tensor's values (see
    /// [`q4_0::dequantize_into`]).
    pub fn dequantize_into<T: Decoded>(&self, out: &mut [T]) -> Result<()> {
        check_decoded_len(self.shape, out.len())?;
        q4_0::dequantize_into(&self.blocks()?, out)
    }
}

impl<'a> From<Q40Ref<'a>> for DatSource<'a> {
    /// What writes the tensor: its blocks, or its values packed as they are written.
    fn from(r: Q40Ref<'a>) -> Self {
        match r.source {
            Source::Blocks(blocks) => DatSource::Q40 {
                shape: r.shape.to_vec(),
                blocks,
            },
            Source::Values { values, shape } => DatSource::Q40Values { shape, values },
        }
    }
}

fn check_decoded_len(shape: &[usize], len: usize) -> Result<()> {
    let n: usize = shape.iter().product();
    if len != n {
        return Err(Error::Shape {
            what: "dequantize_into".into(),
            reason: format!("the output holds {len} values, the tensor {n} (shape {shape:?})"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use half::f16;

    use super::*;
    use crate::dat::DatOptions;

    /// A deferred tensor's handle in these tests: the values themselves.
    type Tensor = Q40Tensor<Vec<f32>>;

    fn values(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919) % 61) as f32 / 7.0 - 4.0)
            .collect()
    }

    fn read(t: &Tensor) -> Q40Ref<'_> {
        t.resolve(|v| Ok::<_, Error>((Q40Input::F32(v), t.shape().to_vec())))
            .unwrap()
    }

    fn written(r: Q40Ref<'_>, opts: &DatOptions) -> Vec<u8> {
        let mut out = Vec::new();
        DatSource::from(r).write_to("t", opts, &mut out).unwrap();
        out
    }

    #[test]
    fn quantized_tensor_holds_the_kernel_blocks() {
        let x = values(4 * 64);
        let t = Tensor::quantize("t", Q40Input::F32(&x), vec![4, 64], Some(2)).unwrap();
        let expected = q4_0::quantize("t", Q40Input::F32(&x), &[4, 64], None).unwrap();
        assert_eq!(t.shape(), &[4, 64]);
        assert_eq!(t.nbytes(), 8 * 18);
        assert!(!t.is_deferred() && t.values().is_none());
        assert_eq!(t.to_string(), "Q40Tensor(shape=[4, 64], nbytes=144)");
        let r = t
            .resolve(|_| Err::<(Q40Input, Vec<usize>), &str>("held blocks need no values"))
            .unwrap();
        assert_eq!(r.blocks().unwrap(), &expected[..]);
        assert_eq!(
            r.dequantize().unwrap(),
            q4_0::dequantize(&expected).unwrap()
        );
    }

    #[test]
    fn quantize_refuses_shapes_without_whole_blocks() {
        let x = values(48);
        let err = Tensor::quantize("w", Q40Input::F32(&x), vec![48], None).unwrap_err();
        assert!(matches!(err, Error::Shape { .. }), "{err}");
        let err = Tensor::quantize("w", Q40Input::F32(&x), vec![2, 24], None).unwrap_err();
        assert!(
            err.to_string().starts_with("w: Q4_0 packs each row"),
            "{err}"
        );
    }

    #[test]
    fn from_blocks_checks_the_size_against_the_shape() {
        let x = values(2 * 32);
        let blocks = q4_0::quantize("t", Q40Input::F32(&x), &[2, 32], None).unwrap();
        let t = Tensor::from_blocks(blocks.clone(), vec![2, 32]).unwrap();
        assert_eq!(read(&t).blocks().unwrap(), &blocks[..]);
        let err = Tensor::from_blocks(blocks[..35].to_vec(), vec![2, 32]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Q4_0 blocks: 35 bytes do not match shape [2, 32] (36 bytes expected)"
        );
        let err = Tensor::from_blocks(blocks, vec![64]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Q4_0 blocks: Q4_0 needs a tensor of rank >= 2"),
            "{err}"
        );
    }

    #[test]
    fn deferred_values_pack_to_the_blocks_they_came_from() {
        let held =
            Tensor::quantize("t", Q40Input::F32(&values(3 * 96)), vec![3, 96], None).unwrap();
        let decoded = read(&held).dequantize().unwrap();
        let deferred = Tensor::of_values("t", decoded.clone(), vec![3, 96]).unwrap();
        assert!(deferred.is_deferred());
        assert_eq!(deferred.values(), Some(&decoded));
        assert_eq!(deferred.nbytes(), held.nbytes());
        assert_eq!(
            deferred.to_string(),
            "Q40Tensor(shape=[3, 96], nbytes=162, deferred)"
        );
        let (d, h) = (read(&deferred), read(&held));
        assert!(matches!(d.blocks().unwrap(), Cow::Owned(_)));
        assert!(matches!(h.blocks().unwrap(), Cow::Borrowed(_)));
        assert_eq!(d.blocks().unwrap(), h.blocks().unwrap());
        assert_eq!(d.dequantize().unwrap(), decoded);
        for legacy in [false, true] {
            let opts = DatOptions {
                q40_layout: if legacy {
                    Q40Layout::Legacy
                } else {
                    Q40Layout::Ggml
                },
                ..DatOptions::default()
            };
            assert_eq!(written(d.clone(), &opts), written(h.clone(), &opts));
        }
    }

    #[test]
    fn deferred_values_changed_since_quantized_are_refused() {
        let held =
            Tensor::quantize("t", Q40Input::F32(&values(2 * 32)), vec![2, 32], None).unwrap();
        let mut changed = read(&held).dequantize().unwrap();
        // A value of the second block well below its largest one, so that the scale stays.
        let amax = changed[32..].iter().fold(0f32, |m, v| m.max(v.abs()));
        let i = (32..64).find(|&i| changed[i].abs() < amax / 2.0).unwrap();
        changed[i] += 1e-3;
        let deferred = Tensor::of_values("w", changed, vec![2, 32]).unwrap();
        let err = read(&deferred).blocks().unwrap_err();
        assert!(
            matches!(err, Error::NotQ40Values { ref what, index } if what == VALUES && index == i),
            "{err}"
        );
        let mut out = vec![0f32; 64];
        let err = read(&deferred).dequantize_into(&mut out).unwrap_err();
        assert!(
            matches!(err, Error::NotQ40Values { index, .. } if index == i),
            "{err}"
        );
        // Written under a label, the label names them.
        let mut file = Vec::new();
        let err = DatSource::from(read(&deferred))
            .write_to("layer.w", &DatOptions::default(), &mut file)
            .unwrap_err();
        assert!(
            matches!(err, Error::NotQ40Values { ref what, index } if what == "layer.w" && index == i),
            "{err}"
        );
    }

    #[test]
    fn of_values_checks_the_shape_and_resolve_passes_errors_through() {
        let err = Tensor::of_values("w", values(96), vec![2, 48]).unwrap_err();
        assert!(
            err.to_string().starts_with("w: Q4_0 packs each row"),
            "{err}"
        );
        let err = Tensor::of_values("w", vec![], vec![1; 9]).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
        let t = Tensor::of_values("w", values(64), vec![2, 32]).unwrap();
        let err = t
            .resolve(|_| Err::<(Q40Input, Vec<usize>), _>("the handle is gone"))
            .unwrap_err();
        assert_eq!(err, "the handle is gone");
    }

    #[test]
    fn dequantize_into_checks_the_output_then_decodes() {
        let x = values(2 * 64);
        let t = Tensor::quantize("t", Q40Input::F32(&x), vec![2, 64], None).unwrap();
        let r = read(&t);
        let expected = r.dequantize().unwrap();
        let mut out32 = vec![0f32; 128];
        r.dequantize_into(&mut out32).unwrap();
        assert_eq!(out32, expected);
        let mut out16 = vec![f16::ZERO; 128];
        r.dequantize_into(&mut out16).unwrap();
        let rounded: Vec<f16> = expected.iter().map(|&v| f16::from_f32(v)).collect();
        assert_eq!(out16, rounded);
        let mut short = vec![0f32; 127];
        let err = r.dequantize_into(&mut short).unwrap_err();
        let message = "dequantize_into: the output holds 127 values, the tensor 128 \
                       (shape [2, 64])";
        assert_eq!(err.to_string(), message);
        assert_eq!(t.check_decoded_len(127).unwrap_err().to_string(), message);
        t.check_decoded_len(128).unwrap();
    }
}
