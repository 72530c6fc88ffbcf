//! NNEF tensor files (`.dat`): the 128-byte header, dense payloads and Q4_0 block payloads.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::dtype::{DType, Flavor};
use crate::error::{Error, Result};
use crate::fsutil::{validate_label, AtomicFile};
use crate::q4_0::{self, Q40Input, Q40Layout};
use crate::view::{numel, TensorView};

/// Size of the header that starts every `.dat` file.
pub const HEADER_LEN: usize = 128;
/// The two magic bytes.
pub const MAGIC: [u8; 2] = [0x4E, 0xEF];
/// tract's vendor code (`"TR"` read as a little-endian u16: bytes `52 54`).
pub const VENDOR_TRACT: u16 = 0x5452;
/// Largest rank a header can describe.
pub const MAX_RANK: usize = 8;

/// The fields of a `.dat` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatHeader {
    /// Payload size in bytes.
    pub data_size: u32,
    /// Dimensions (rank = length).
    pub dims: Vec<u32>,
    /// Bits per item (`u32::MAX` for block formats).
    pub bits_per_item: u32,
    /// Item type code.
    pub item_type: u16,
    /// Vendor code: 0 (Khronos) or [`VENDOR_TRACT`].
    pub vendor: u16,
}

impl DatHeader {
    /// Serialises the header to its 128 bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..2].copy_from_slice(&MAGIC);
        h[2] = 1;
        h[3] = 0;
        h[4..8].copy_from_slice(&self.data_size.to_le_bytes());
        h[8..12].copy_from_slice(&(self.dims.len() as u32).to_le_bytes());
        for (i, d) in self.dims.iter().enumerate() {
            h[12 + 4 * i..16 + 4 * i].copy_from_slice(&d.to_le_bytes());
        }
        h[44..48].copy_from_slice(&self.bits_per_item.to_le_bytes());
        h[48..50].copy_from_slice(&self.item_type.to_le_bytes());
        h[50..52].copy_from_slice(&self.vendor.to_le_bytes());
        h
    }

    /// Parses and validates a header (magic, version, rank).
    pub fn decode(path: &str, h: &[u8; HEADER_LEN]) -> Result<DatHeader> {
        let bad = |reason: String| Error::Format {
            path: path.to_string(),
            reason,
        };
        if h[0..2] != MAGIC {
            return Err(bad(format!(
                "not an NNEF tensor file: magic bytes are {:02X} {:02X}, expected 4E EF",
                h[0], h[1]
            )));
        }
        if (h[2], h[3]) != (1, 0) {
            return Err(bad(format!(
                "unsupported .dat version {}.{} (expected 1.0)",
                h[2], h[3]
            )));
        }
        let u32_at = |o: usize| u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
        let rank = u32_at(8) as usize;
        if rank > MAX_RANK {
            return Err(bad(format!(
                "rank {rank} is above the maximum of {MAX_RANK}"
            )));
        }
        Ok(DatHeader {
            data_size: u32_at(4),
            dims: (0..rank).map(|i| u32_at(12 + 4 * i)).collect(),
            bits_per_item: u32_at(44),
            item_type: u16::from_le_bytes([h[48], h[49]]),
            vendor: u16::from_le_bytes([h[50], h[51]]),
        })
    }

    /// The header of a dense tensor, checking rank and the u32 size limits.
    pub fn for_dense(what: &str, dtype: DType, shape: &[usize], flavor: Flavor) -> Result<Self> {
        let dims = dims_u32(what, shape)?;
        let (item_type, bits) = dtype.item_code(flavor);
        let n = numel(shape).ok_or_else(|| too_large(what, "its element count overflows"))?;
        let size = if bits == 1 {
            n.div_ceil(8)
        } else {
            n.saturating_mul(dtype.size_of())
        };
        let data_size = payload_u32(what, size)?;
        Ok(DatHeader {
            data_size,
            dims,
            bits_per_item: bits,
            item_type,
            vendor: 0,
        })
    }

    /// The header of a Q4_0 tensor.
    pub fn for_q4_0(what: &str, shape: &[usize], layout: Q40Layout) -> Result<Self> {
        let dims = dims_u32(what, shape)?;
        q4_0::check_shape(what, shape)?;
        let size = numel(shape).unwrap_or(usize::MAX) / q4_0::BLOCK_LEN * q4_0::BLOCK_BYTES;
        Ok(DatHeader {
            data_size: payload_u32(what, size)?,
            dims,
            bits_per_item: u32::MAX,
            item_type: layout.item_type(),
            vendor: VENDOR_TRACT,
        })
    }
}

fn too_large(what: &str, reason: &str) -> Error {
    Error::TooLarge {
        what: what.to_string(),
        reason: reason.to_string(),
    }
}

fn dims_u32(what: &str, shape: &[usize]) -> Result<Vec<u32>> {
    if shape.len() > MAX_RANK {
        return Err(too_large(
            what,
            &format!(
                "rank {} is above the NNEF maximum of {MAX_RANK}",
                shape.len()
            ),
        ));
    }
    shape
        .iter()
        .map(|&d| {
            u32::try_from(d).map_err(|_| {
                too_large(
                    what,
                    &format!("dimension {d} does not fit the u32 field of .dat"),
                )
            })
        })
        .collect()
}

fn payload_u32(what: &str, size: usize) -> Result<u32> {
    u32::try_from(size).map_err(|_| {
        too_large(
            what,
            &format!(
                "its payload is {size} bytes; a .dat file stores at most 4 GiB - 1 \
                 (u32 size field): split the tensor or quantize it"
            ),
        )
    })
}

/// What a `.dat` file holds once read.
#[derive(Debug, Clone, PartialEq)]
pub enum DatContent {
    /// A dense tensor: dtype and row-major bytes (booleans one byte each).
    Dense {
        /// Element type.
        dtype: DType,
        /// Row-major little-endian bytes.
        bytes: Vec<u8>,
    },
    /// Q4_0 blocks, always returned in GGML order (legacy files are converted).
    Q40 {
        /// The layout the file was written in.
        layout: Q40Layout,
        /// 18-byte blocks in GGML order.
        blocks: Vec<u8>,
    },
}

/// A tensor read from a `.dat` file.
#[derive(Debug, Clone, PartialEq)]
pub struct DatTensor {
    /// The raw header.
    pub header: DatHeader,
    /// Shape.
    pub shape: Vec<usize>,
    /// The payload.
    pub content: DatContent,
}

/// What to write: a dense view or Q4_0 blocks.
#[derive(Debug, Clone)]
pub enum DatSource<'a> {
    /// A dense tensor.
    Dense(TensorView<'a>),
    /// Q4_0 blocks (GGML order) with their logical shape.
    Q40 {
        /// Logical shape (rank >= 2).
        shape: Vec<usize>,
        /// Blocks in GGML order.
        blocks: &'a [u8],
    },
    /// Float values that are Q4_0 values already (decoded from blocks), packed into blocks as
    /// they are written: one tensor's blocks exist at a time. Values that do not decode back
    /// exactly from their blocks are refused.
    Q40Values {
        /// Logical shape (rank >= 2).
        shape: Vec<usize>,
        /// The values, row-major.
        values: Q40Input<'a>,
    },
}

/// How `.dat` files are written.
#[derive(Debug, Clone, Copy)]
pub struct DatOptions {
    /// Integer codes and bool packing.
    pub flavor: Flavor,
    /// Q4_0 item type: GGML order (0x3040) or the layout of tract < 0.21.11 (0x2040).
    pub q40_layout: Q40Layout,
}

impl Default for DatOptions {
    fn default() -> Self {
        DatOptions {
            flavor: Flavor::Tract,
            q40_layout: Q40Layout::Ggml,
        }
    }
}

impl DatSource<'_> {
    /// The header this source is written with.
    pub fn header(&self, what: &str, opts: &DatOptions) -> Result<DatHeader> {
        match self {
            DatSource::Dense(v) => DatHeader::for_dense(what, v.dtype(), v.shape(), opts.flavor),
            DatSource::Q40 { shape, blocks } => {
                let h = DatHeader::for_q4_0(what, shape, opts.q40_layout)?;
                if h.data_size as usize != blocks.len() {
                    return Err(Error::Shape {
                        what: what.to_string(),
                        reason: format!(
                            "{} bytes of Q4_0 blocks do not match shape {shape:?} ({} bytes)",
                            blocks.len(),
                            h.data_size
                        ),
                    });
                }
                Ok(h)
            }
            DatSource::Q40Values { shape, values } => {
                q4_0::check_input(what, values, shape)?;
                DatHeader::for_q4_0(what, shape, opts.q40_layout)
            }
        }
    }

    /// Writes header and payload to `w`. Contiguous dense data is handed over in one slice.
    pub fn write_to(&self, what: &str, opts: &DatOptions, w: &mut dyn Write) -> Result<()> {
        let header = self.header(what, opts)?;
        let io = |e| Error::io(what, e);
        w.write_all(&header.encode()).map_err(io)?;
        match (self.payload(what, opts, &header)?, self) {
            (Some(payload), _) => w.write_all(&payload).map_err(io),
            (None, DatSource::Dense(v)) => v.write_elements(w).map_err(io),
            (None, _) => unreachable!("only strided dense views have no payload in one piece"),
        }
    }

    /// The payload (what follows `header`) in one piece: borrowed when the source holds it as
    /// written (contiguous dense data, GGML-order blocks), made now otherwise (packed booleans,
    /// legacy-order or packed blocks); `None` for a strided dense view, written run by run.
    pub fn payload(
        &self,
        what: &str,
        opts: &DatOptions,
        header: &DatHeader,
    ) -> Result<Option<Cow<'_, [u8]>>> {
        let io = |e| Error::io(what, e);
        let legacy = |mut blocks: Vec<u8>| {
            if opts.q40_layout == Q40Layout::Legacy {
                q4_0::ggml_to_legacy(&mut blocks);
            }
            blocks
        };
        Ok(Some(match self {
            DatSource::Dense(v) if v.dtype() == DType::Bool && header.bits_per_item == 1 => {
                let mut bools = Vec::with_capacity(v.numel());
                v.write_elements(&mut bools).map_err(io)?;
                Cow::Owned(pack_bits(&bools))
            }
            DatSource::Dense(v) => match v.as_contiguous() {
                Some(bytes) => Cow::Borrowed(bytes),
                None => return Ok(None),
            },
            DatSource::Q40 { blocks, .. } => match opts.q40_layout {
                Q40Layout::Ggml => Cow::Borrowed(*blocks),
                Q40Layout::Legacy => Cow::Owned(legacy(blocks.to_vec())),
            },
            DatSource::Q40Values { shape, values } => {
                Cow::Owned(legacy(pack_q4_0_values(what, values, shape)?))
            }
        }))
    }

    /// Size of the whole file (header + payload).
    pub fn file_len(&self, what: &str, opts: &DatOptions) -> Result<u64> {
        Ok(HEADER_LEN as u64 + self.header(what, opts)?.data_size as u64)
    }
}

/// The Q4_0 blocks of values that must be Q4_0 values already (see [`DatSource::Q40Values`]).
pub fn pack_q4_0_values(what: &str, values: &Q40Input, shape: &[usize]) -> Result<Vec<u8>> {
    let (blocks, mismatch) = q4_0::quantize_checked(what, *values, shape)?;
    if let Some(i) = mismatch {
        return Err(Error::NotQ40Values {
            what: what.to_string(),
            index: i,
        });
    }
    Ok(blocks)
}

/// Packs booleans MSB-first, one bit each (the Khronos layout).
fn pack_bits(bools: &[u8]) -> Vec<u8> {
    bools
        .chunks(8)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u8, |acc, (i, &b)| acc | (((b != 0) as u8) << (7 - i)))
        })
        .collect()
}

/// Writes one tensor to `path`, atomically.
pub fn write_dat(
    path: &Path,
    source: &DatSource,
    opts: &DatOptions,
    overwrite: bool,
) -> Result<()> {
    let what = path.display().to_string();
    let len = source.file_len(&what, opts)?;
    let mut out = AtomicFile::create(path, overwrite)?;
    if len >= 1 << 20 {
        out.preallocate(len);
    }
    source.write_to(&what, opts, out.file())?;
    out.commit(overwrite)
}

/// Writes many tensors into `dir` in parallel, as `<label>.dat` (a `/` in a label makes a
/// sub-folder). `dir` is created if missing (its parent must exist). Every file is written
/// atomically; all labels and headers are checked before anything is written.
pub fn write_dats(
    dir: &Path,
    tensors: &[(String, DatSource)],
    opts: &DatOptions,
    overwrite: bool,
) -> Result<Vec<PathBuf>> {
    let mut seen = std::collections::HashSet::new();
    for (label, source) in tensors {
        validate_label("tensor", label)?;
        if !seen.insert(label.as_str()) {
            return Err(Error::DuplicateLabel {
                label: label.clone(),
            });
        }
        source.header(label, opts)?;
    }
    if !dir.is_dir() {
        crate::fsutil::check_output_path(dir, false)?;
        std::fs::create_dir(dir).map_err(|e| Error::io(dir, e))?;
    }
    tensors
        .par_iter()
        .map(|(label, source)| {
            let path = dir.join(format!("{label}.dat"));
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            write_dat(&path, source, opts, overwrite)?;
            Ok(path)
        })
        .collect()
}

/// Reads a `.dat` file, validating the header against the file size before allocating.
pub fn read_dat(path: &Path) -> Result<DatTensor> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    read_dat_from(&path.display().to_string(), BufReader::new(file), Some(len))
}

/// Reads a `.dat` stream. When `stream_len` is known, a header whose size disagrees with it is
/// refused before any allocation; otherwise the payload is read without trusting the header.
pub fn read_dat_from(what: &str, mut r: impl Read, stream_len: Option<u64>) -> Result<DatTensor> {
    let bad = |reason: String| Error::Format {
        path: what.to_string(),
        reason,
    };
    let mut h = [0u8; HEADER_LEN];
    r.read_exact(&mut h).map_err(|_| {
        bad(format!(
            "truncated: shorter than the {HEADER_LEN}-byte .dat header"
        ))
    })?;
    let header = DatHeader::decode(what, &h)?;
    let shape: Vec<usize> = header.dims.iter().map(|&d| d as usize).collect();
    let n = numel(&shape).ok_or_else(|| bad(format!("shape {shape:?} overflows")))?;
    let (expected, kind) =
        if header.vendor == VENDOR_TRACT && matches!(header.item_type, 0x3040 | 0x2040) {
            let layout = if header.item_type == 0x3040 {
                Q40Layout::Ggml
            } else {
                Q40Layout::Legacy
            };
            q4_0::check_shape(what, &shape).map_err(|e| bad(e.to_string()))?;
            (n / q4_0::BLOCK_LEN * q4_0::BLOCK_BYTES, Err(layout))
        } else if header.vendor == 0 {
            let dtype =
                DType::from_item_code(header.item_type, header.bits_per_item).ok_or_else(|| {
                    bad(format!(
                        "unsupported item type {} with {} bits per item",
                        header.item_type, header.bits_per_item
                    ))
                })?;
            let size = if header.bits_per_item == 1 {
                n.div_ceil(8)
            } else {
                n.checked_mul(dtype.size_of())
                    .ok_or_else(|| bad("size overflows".into()))?
            };
            (size, Ok((dtype, header.bits_per_item == 1)))
        } else {
            return Err(bad(format!(
                "unsupported vendor 0x{:04X} / item type 0x{:04X}",
                header.vendor, header.item_type
            )));
        };
    if expected != header.data_size as usize {
        return Err(bad(format!(
            "header says {} payload bytes but shape {shape:?} needs {expected}",
            header.data_size
        )));
    }
    if let Some(len) = stream_len {
        if len != HEADER_LEN as u64 + expected as u64 {
            return Err(bad(format!(
                "file is {len} bytes but its header describes {} (truncated or trailing data)",
                HEADER_LEN as u64 + expected as u64
            )));
        }
    }
    // Never trust the header for the allocation: grow from what actually arrives.
    let mut payload = Vec::new();
    r.by_ref()
        .take(expected as u64)
        .read_to_end(&mut payload)
        .map_err(|e| Error::io(what, e))?;
    if payload.len() != expected {
        return Err(bad(format!(
            "truncated: payload has {} of {expected} bytes",
            payload.len()
        )));
    }
    let content = match kind {
        Ok((dtype, packed)) => {
            let bytes = if packed {
                unpack_bits(&payload, n)
            } else {
                payload
            };
            DatContent::Dense { dtype, bytes }
        }
        Err(layout) => {
            if layout == Q40Layout::Legacy {
                q4_0::legacy_to_ggml(&mut payload);
            }
            DatContent::Q40 {
                layout,
                blocks: payload,
            }
        }
    };
    Ok(DatTensor {
        header,
        shape,
        content,
    })
}

fn unpack_bits(bytes: &[u8], n: usize) -> Vec<u8> {
    (0..n).map(|i| (bytes[i / 8] >> (7 - i % 8)) & 1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense(dtype: DType, shape: &[usize], bytes: &[u8]) -> Vec<u8> {
        let view = TensorView::contiguous(dtype, shape, bytes).unwrap();
        let mut out = Vec::new();
        DatSource::Dense(view)
            .write_to("t", &DatOptions::default(), &mut out)
            .unwrap();
        out
    }

    #[test]
    fn golden_header_f32() {
        let out = dense(DType::F32, &[2, 3], &[0u8; 24]);
        let mut expected = [0u8; 128];
        expected[..4].copy_from_slice(&[0x4E, 0xEF, 1, 0]);
        expected[4] = 24; // payload size
        expected[8] = 2; // rank
        expected[12] = 2; // dims[0]
        expected[16] = 3; // dims[1]
        expected[44] = 32; // bits
        assert_eq!(&out[..128], &expected[..]);
        assert_eq!(out.len(), 128 + 24);
    }

    #[test]
    fn bool_packing_round_trips() {
        let bools = [1u8, 0, 1, 1, 0, 0, 0, 0, 1, 1];
        let packed = pack_bits(&bools);
        assert_eq!(packed, vec![0b1011_0000, 0b1100_0000]);
        assert_eq!(unpack_bits(&packed, 10), bools);
    }

    #[test]
    fn huge_header_is_refused_without_allocation() {
        let mut h = DatHeader {
            data_size: u32::MAX - 3,
            dims: vec![u32::MAX / 4],
            bits_per_item: 32,
            item_type: 0,
            vendor: 0,
        }
        .encode()
        .to_vec();
        h.extend_from_slice(&[0u8; 16]);
        let err = read_dat_from("x", &h[..], None).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        let err = read_dat_from("x", &h[..], Some(h.len() as u64)).unwrap_err();
        assert!(err.to_string().contains("header describes"), "{err}");
    }

    #[test]
    fn too_large_payload_is_refused() {
        let err = DatHeader::for_dense("big", DType::F32, &[1 << 30], Flavor::Tract).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
        DatHeader::for_dense("ok", DType::U8, &[u32::MAX as usize], Flavor::Tract).unwrap();
    }
}
