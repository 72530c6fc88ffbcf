//! `.dat` files we write, read back by tract's own reader (tract-nnef), and golden headers.

use torch_to_nnef_core::dat::{read_dat, write_dat, DatContent, DatOptions, DatSource};
use torch_to_nnef_core::dtype::{DType, Flavor, ALL_DTYPES};
use torch_to_nnef_core::q4_0::{self, Q40Input, Q40Layout};
use torch_to_nnef_core::runner::tract_read_dat;
use torch_to_nnef_core::view::TensorView;

/// Deterministic pseudo-random bytes (xorshift), valid for every dtype once bools are masked.
fn bytes_for(dtype: DType, n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    let mut out: Vec<u8> = (0..n * dtype.size_of())
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect();
    if dtype == DType::Bool {
        out.iter_mut().for_each(|b| *b &= 1);
    }
    out
}

fn opts(flavor: Flavor) -> DatOptions {
    DatOptions {
        flavor,
        ..Default::default()
    }
}

#[test]
fn golden_headers_for_every_dtype_and_flavor() {
    // (dtype, flavor, item type, bits per item, payload bytes for 6 elements)
    let table: &[(DType, Flavor, u16, u32, u32)] = &[
        (DType::F16, Flavor::Tract, 0, 16, 12),
        (DType::F32, Flavor::Tract, 0, 32, 24),
        (DType::F64, Flavor::Tract, 0, 64, 48),
        (DType::I8, Flavor::Tract, 3, 8, 6),
        (DType::I16, Flavor::Tract, 3, 16, 12),
        (DType::I32, Flavor::Tract, 3, 32, 24),
        (DType::I64, Flavor::Tract, 3, 64, 48),
        (DType::U8, Flavor::Tract, 2, 8, 6),
        (DType::U16, Flavor::Tract, 2, 16, 12),
        (DType::U32, Flavor::Tract, 2, 32, 24),
        (DType::U64, Flavor::Tract, 2, 64, 48),
        (DType::Bool, Flavor::Tract, 5, 8, 6),
        (DType::I8, Flavor::Khronos, 4, 8, 6),
        (DType::I64, Flavor::Khronos, 4, 64, 48),
        (DType::U16, Flavor::Khronos, 1, 16, 12),
        (DType::U64, Flavor::Khronos, 1, 64, 48),
        (DType::F32, Flavor::Khronos, 0, 32, 24),
        (DType::Bool, Flavor::Khronos, 5, 1, 1),
    ];
    for &(dtype, flavor, item_type, bits, size) in table {
        let data = bytes_for(dtype, 6, 1);
        let view = TensorView::contiguous(dtype, &[2, 3], &data).unwrap();
        let mut out = Vec::new();
        DatSource::Dense(view)
            .write_to("t", &opts(flavor), &mut out)
            .unwrap();
        let mut expected = [0u8; 128];
        expected[..4].copy_from_slice(&[0x4E, 0xEF, 0x01, 0x00]);
        expected[4..8].copy_from_slice(&size.to_le_bytes());
        expected[8..12].copy_from_slice(&2u32.to_le_bytes());
        expected[12..16].copy_from_slice(&2u32.to_le_bytes());
        expected[16..20].copy_from_slice(&3u32.to_le_bytes());
        expected[44..48].copy_from_slice(&bits.to_le_bytes());
        expected[48..50].copy_from_slice(&item_type.to_le_bytes());
        assert_eq!(&out[..128], &expected[..], "{dtype:?} {flavor:?}");
        assert_eq!(out.len(), 128 + size as usize, "{dtype:?} {flavor:?}");
    }
}

#[test]
fn tract_reads_every_dtype_we_write() {
    let dir = tempfile::tempdir().unwrap();
    for flavor in [Flavor::Tract, Flavor::Khronos] {
        for (i, dtype) in ALL_DTYPES.into_iter().enumerate() {
            let shape = [3, 1, 5];
            let data = bytes_for(dtype, 15, i as u64 + 7);
            let path = dir.path().join(format!("{dtype}-{flavor:?}.dat"));
            let view = TensorView::contiguous(dtype, &shape, &data).unwrap();
            write_dat(&path, &DatSource::Dense(view), &opts(flavor), false).unwrap();
            let file = std::fs::File::open(&path).unwrap();
            let t = tract_nnef::tensors::read_tensor(file).unwrap();
            assert_eq!(t.datum_type(), dtype.to_tract(), "{dtype:?} {flavor:?}");
            assert_eq!(t.shape(), &shape);
            assert_eq!(
                t.try_as_plain_ram().unwrap().as_bytes(),
                &data[..],
                "{dtype:?} {flavor:?}"
            );
            let ours = read_dat(&path).unwrap();
            assert_eq!(
                ours.content,
                DatContent::Dense {
                    dtype,
                    bytes: data.clone()
                }
            );
        }
    }
}

#[test]
fn strided_views_are_written_in_row_major_order() {
    let dir = tempfile::tempdir().unwrap();
    // A 4x6 f32 matrix, viewed transposed (6x4) and with every other column (4x3).
    let values: Vec<f32> = (0..24).map(|v| v as f32).collect();
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    // SAFETY: both views address elements inside the 96-byte buffer.
    let transposed = unsafe { TensorView::strided(DType::F32, &[6, 4], bytes.as_ptr(), &[4, 24]) };
    let every_other = unsafe { TensorView::strided(DType::F32, &[4, 3], bytes.as_ptr(), &[24, 8]) };
    for (name, view, expected) in [
        (
            "t",
            transposed,
            (0..6)
                .flat_map(|c| (0..4).map(move |r| (r * 6 + c) as f32))
                .collect::<Vec<_>>(),
        ),
        (
            "e",
            every_other,
            (0..4)
                .flat_map(|r| (0..3).map(move |c| (r * 6 + 2 * c) as f32))
                .collect(),
        ),
    ] {
        let path = dir.path().join(format!("{name}.dat"));
        write_dat(
            &path,
            &DatSource::Dense(view.clone()),
            &DatOptions::default(),
            false,
        )
        .unwrap();
        let t = tract_read_dat(&path).unwrap();
        assert_eq!(t.shape, view.shape());
        let got: Vec<f32> = t
            .bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn q4_0_files_in_both_layouts_read_back_in_tract() {
    let dir = tempfile::tempdir().unwrap();
    let shape = [8usize, 64];
    let values: Vec<f32> = (0..512)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
        .collect();
    let blocks = q4_0::quantize("w", Q40Input::F32(&values), &shape, None).unwrap();
    let ours = q4_0::dequantize(&blocks).unwrap();
    for layout in [Q40Layout::Ggml, Q40Layout::Legacy] {
        let path = dir.path().join(format!("{layout:?}.dat"));
        let o = DatOptions {
            q40_layout: layout,
            ..Default::default()
        };
        write_dat(
            &path,
            &DatSource::Q40 {
                shape: shape.to_vec(),
                blocks: &blocks,
            },
            &o,
            false,
        )
        .unwrap();
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(
            &raw[48..52],
            &[
                (layout.item_type() & 0xFF) as u8,
                (layout.item_type() >> 8) as u8,
                0x52,
                0x54
            ]
        );
        assert_eq!(&raw[44..48], &[0xFF; 4]);
        let t = tract_read_dat(&path).unwrap();
        let got: Vec<f32> = t
            .bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(got, ours, "{layout:?}");
        // Our reader gives the blocks back in GGML order whatever the file layout.
        match read_dat(&path).unwrap().content {
            DatContent::Q40 {
                layout: l,
                blocks: b,
            } => {
                assert_eq!(l, layout);
                assert_eq!(b, blocks);
            }
            other => panic!("expected Q4_0, got {other:?}"),
        }
    }
}

#[test]
fn corrupt_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = bytes_for(DType::F32, 6, 3);
    let path = dir.path().join("ok.dat");
    let view = TensorView::contiguous(DType::F32, &[6], &data).unwrap();
    write_dat(
        &path,
        &DatSource::Dense(view),
        &DatOptions::default(),
        false,
    )
    .unwrap();
    let good = std::fs::read(&path).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated header", good[..100].to_vec()),
        ("truncated payload", good[..good.len() - 1].to_vec()),
        ("trailing bytes", [good.clone(), vec![0]].concat()),
        ("bad magic", [vec![0u8, 0], good[2..].to_vec()].concat()),
        ("rank 9", {
            let mut g = good.clone();
            g[8] = 9;
            g
        }),
        ("unknown item type", {
            let mut g = good.clone();
            g[48] = 9;
            g
        }),
        ("size disagrees", {
            let mut g = good.clone();
            g[4] = 25;
            g
        }),
    ];
    for (name, bytes) in cases {
        let p = dir.path().join(format!("{name}.dat"));
        std::fs::write(&p, &bytes).unwrap();
        let err = read_dat(&p).unwrap_err();
        assert!(
            matches!(err, torch_to_nnef_core::error::Error::Format { .. }),
            "{name}: {err}"
        );
    }
}

#[test]
fn huge_declared_size_reads_nothing_large() {
    // A header claiming a 4 GiB - 1 payload, followed by 8 bytes: refused before allocation.
    let dir = tempfile::tempdir().unwrap();
    let mut h = vec![0u8; 128];
    h[..4].copy_from_slice(&[0x4E, 0xEF, 1, 0]);
    h[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    h[8..12].copy_from_slice(&1u32.to_le_bytes());
    h[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    h[44..48].copy_from_slice(&8u32.to_le_bytes());
    h[48..50].copy_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&[0u8; 8]);
    let p = dir.path().join("huge.dat");
    std::fs::write(&p, &h).unwrap();
    let err = read_dat(&p).unwrap_err().to_string();
    assert!(err.contains("header describes"), "{err}");
}
