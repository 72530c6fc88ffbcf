//! Our Q4_0 kernel against tract-linalg's own quantizer: byte-identical output, and a bounded
//! round-trip error.

use half::f16;
use proptest::prelude::*;
use torch_to_nnef_core::dtype::DType;
use torch_to_nnef_core::error::Error;
use torch_to_nnef_core::q4_0::{
    self, tract_reference_quantize, tract_reference_quantize_f16, tract_reference_quantize_view,
    Q40Input,
};
use torch_to_nnef_core::view::TensorView;

fn ours(values: &[f32], threads: Option<usize>) -> Vec<u8> {
    q4_0::quantize(
        "t",
        Q40Input::F32(values),
        &[values.len() / 32, 32],
        threads,
    )
    .unwrap()
}

fn lcg(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
        })
        .collect()
}

#[test]
fn random_inputs_match_tract_bytes() {
    for (seed, scale) in [(1, 1.0), (2, 1e-3), (3, 1e4), (4, 2.0e-30), (5, 3.0e30)] {
        let v = lcg(32 * 5000, seed, scale);
        let reference = tract_reference_quantize(&v);
        assert_eq!(ours(&v, None), reference, "seed {seed} all threads");
        assert_eq!(ours(&v, Some(1)), reference, "seed {seed} one thread");
        assert_eq!(ours(&v, Some(2)), reference, "seed {seed} two threads");
    }
}

#[test]
fn edge_cases_match_tract_bytes() {
    let block = |f: &dyn Fn(usize) -> f32| (0..32).map(f).collect::<Vec<f32>>();
    let cases: Vec<(&str, Vec<f32>)> = vec![
        ("zeros", vec![0.0; 32]),
        ("negative zeros", vec![-0.0; 32]),
        (
            "tie positive first",
            block(&|i| {
                if i == 3 {
                    2.0
                } else if i == 9 {
                    -2.0
                } else {
                    0.5
                }
            }),
        ),
        (
            "tie negative first",
            block(&|i| {
                if i == 3 {
                    -2.0
                } else if i == 9 {
                    2.0
                } else {
                    0.5
                }
            }),
        ),
        ("negative maximum", block(&|i| -(i as f32))),
        ("positive maximum", block(&|i| i as f32)),
        (
            "f16 max",
            block(&|i| if i % 2 == 0 { 65504.0 } else { -1.0 }),
        ),
        (
            "beyond f16",
            block(&|i| if i == 0 { 1e6 } else { i as f32 }),
        ),
        ("f16 subnormal scale", block(&|i| (i as f32) * 1e-7)),
        ("tiny", block(&|i| (i as f32 - 16.0) * 1e-40)),
        (
            "smallest subnormals",
            block(&|i| if i % 3 == 0 { 1e-45 } else { -1e-45 }),
        ),
        (
            "infinite reciprocal",
            block(&|i| if i == 5 { -1e-44 } else { 3e-45 }),
        ),
        ("f32 max", block(&|i| if i == 7 { f32::MAX } else { 1.0 })),
        ("constant", vec![0.25; 32]),
        (
            "subnormal scale, finite reciprocal",
            block(&|i| (i as f32 - 20.0) * 3e-39),
        ),
        (
            "reciprocal near f32 max",
            block(&|i| if i == 2 { 2.4e-38 } else { -(i as f32) * 1e-39 }),
        ),
        (
            "reciprocal just infinite",
            block(&|i| if i == 2 { 2.2e-38 } else { (i as f32) * 1e-40 }),
        ),
        ("rounding ties", block(&|i| (i as f32 - 16.0) / 2.0)),
        (
            "with NaN",
            block(&|i| if i == 4 { f32::NAN } else { i as f32 }),
        ),
        ("all NaN", vec![f32::NAN; 32]),
        (
            "with inf",
            block(&|i| if i == 4 { f32::INFINITY } else { i as f32 }),
        ),
        (
            "with -inf",
            block(&|i| if i == 0 { f32::NEG_INFINITY } else { 1.0 }),
        ),
    ];
    for (name, v) in cases {
        assert_eq!(ours(&v, Some(1)), tract_reference_quantize(&v), "{name}");
    }
}

#[test]
fn f16_input_matches_tract_bytes() {
    let v: Vec<f16> = lcg(32 * 3000, 9, 200.0)
        .into_iter()
        .map(f16::from_f32)
        .collect();
    let mut extremes: Vec<f16> = (0..32).map(|i| f16::from_bits(i as u16 * 0x0401)).collect();
    extremes[0] = f16::MAX;
    extremes[1] = f16::MIN;
    let all = [v, extremes].concat();
    let got = q4_0::quantize("t", Q40Input::F16(&all), &[all.len() / 32, 32], None).unwrap();
    assert_eq!(got, tract_reference_quantize_f16(&all));
}

#[test]
fn shapes_that_cannot_be_blocked_are_refused() {
    let v = vec![0f32; 48];
    for shape in [vec![48], vec![2, 24], vec![3, 16]] {
        let err = q4_0::quantize("w", Q40Input::F32(&v), &shape, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("Q4_0"), "{shape:?}: {err}");
    }
}

#[test]
fn rows_of_whole_blocks_are_accepted_whatever_the_last_axis() {
    // A conv kernel [16, 8, 2, 2]: rows of 32 values, as tract reads them.
    let v = lcg(16 * 32, 7, 3.0);
    let ours = q4_0::quantize("k", Q40Input::F32(&v), &[16, 8, 2, 2], None).unwrap();
    assert_eq!(ours, tract_reference_quantize(&v));
}

#[test]
fn dequantize_into_writes_the_same_values_in_place() {
    let v = lcg(32 * 64, 11, 5.0);
    let blocks = ours(&v, None);
    let mut out = vec![f32::NAN; v.len()];
    q4_0::dequantize_into(&blocks, &mut out).unwrap();
    assert_eq!(out, q4_0::dequantize(&blocks).unwrap());
    let mut short = vec![0f32; v.len() - 32];
    let err = q4_0::dequantize_into(&blocks, &mut short)
        .unwrap_err()
        .to_string();
    assert!(err.contains("decode to"), "{err}");
}

proptest! {
    #[test]
    fn round_trip_error_is_bounded(v in prop::collection::vec(-1000f32..1000f32, 32..=32 * 8)) {
        let n = v.len() / 32 * 32;
        let v = &v[..n];
        let blocks = ours(v, None);
        let back = q4_0::dequantize(&blocks).unwrap();
        for (b, (x, y)) in v.chunks(32).zip(back.chunks(32)).enumerate() {
            let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 8.0;
            // Half a step of rounding, one step at the clamped end, plus the f16 rounding of d.
            let bound = d * (1.0 + 8.0 / 1024.0) + 8.0 * 2f32.powi(-24);
            for (a, c) in x.iter().zip(y) {
                prop_assert!((a - c).abs() <= bound, "block {}: {} -> {} (bound {})", b, a, c, bound);
            }
        }
    }
}

#[test]
fn dequantize_into_f16_rounds_the_f32_values() {
    let values: Vec<f32> = (0..256)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
        .collect();
    let blocks = ours(&values, None);
    let wide = q4_0::dequantize(&blocks).unwrap();
    let mut narrow = vec![f16::ZERO; values.len()];
    q4_0::dequantize_into(&blocks, &mut narrow).unwrap();
    for (n, w) in narrow.iter().zip(&wide) {
        assert_eq!(n.to_bits(), f16::from_f32(*w).to_bits());
    }
    let mut short = vec![f16::ZERO; 3];
    assert!(q4_0::dequantize_into(&blocks, &mut short).is_err());
}

#[test]
fn checked_quantization_finds_the_first_value_lost() {
    let v = lcg(32 * 3000, 9, 2.0);
    let blocks = ours(&v, None);
    let shape = [v.len() / 32, 32];
    let decoded = q4_0::dequantize(&blocks).unwrap();
    let (again, lost) = q4_0::quantize_checked("t", Q40Input::F32(&decoded), &shape).unwrap();
    assert_eq!((again, lost), (blocks.clone(), None));
    let halves: Vec<f16> = decoded.iter().map(|&x| f16::from_f32(x)).collect();
    let (_, lost) = q4_0::quantize_checked("t", Q40Input::F16(&halves), &shape).unwrap();
    assert_eq!(lost, None);
    // Two values moved off the grid, in different tasks: the first one (row-major) is reported.
    let mut moved = decoded.clone();
    for i in [32 * 2500 + 7, 32 * 1200 + 17] {
        moved[i] += moved[i].abs().max(1e-3) * 0.01;
    }
    let (_, lost) = q4_0::quantize_checked("t", Q40Input::F32(&moved), &shape).unwrap();
    assert_eq!(lost, Some(32 * 1200 + 17));
    // The raw values themselves are not Q4_0 values.
    let (_, lost) = q4_0::quantize_checked("t", Q40Input::F32(&v), &shape).unwrap();
    assert!(lost.is_some());
}

/// `bytes` copied `offset` bytes after a `align`-aligned address of a fresh buffer (the buffer
/// returned holds them at `offset..offset + bytes.len()`).
fn placed(bytes: &[u8], align: usize, offset: usize) -> (Vec<u8>, usize) {
    let mut buffer = vec![0u8; bytes.len() + 2 * align];
    let start = (align - buffer.as_ptr() as usize % align) % align + offset;
    buffer[start..start + bytes.len()].copy_from_slice(bytes);
    (buffer, start)
}

fn message(result: Result<impl std::fmt::Debug, Error>) -> String {
    result.unwrap_err().to_string()
}

#[test]
fn views_of_floats_are_quantized_like_the_slices() {
    let v = lcg(32 * 6, 21, 4.0);
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let (buffer, at) = placed(&bytes, 4, 0);
    let view = TensorView::contiguous(DType::F32, &[6, 32], &buffer[at..at + bytes.len()]).unwrap();
    let Q40Input::F32(got) = Q40Input::from_view(&view, false, "w").unwrap() else {
        panic!("f32 values expected")
    };
    assert_eq!(got, &v[..]);
    assert_eq!(
        tract_reference_quantize_view(&view).unwrap(),
        ours(&v, None)
    );

    let halves: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
    let bytes: Vec<u8> = halves.iter().flat_map(|x| x.to_le_bytes()).collect();
    let (buffer, at) = placed(&bytes, 2, 0);
    let view = TensorView::contiguous(DType::F16, &[6, 32], &buffer[at..at + bytes.len()]).unwrap();
    let Q40Input::F16(got) = Q40Input::from_view(&view, false, "w").unwrap() else {
        panic!("f16 values expected")
    };
    assert_eq!(got, &halves[..]);
    assert_eq!(
        tract_reference_quantize_view(&view).unwrap(),
        tract_reference_quantize_f16(&halves)
    );

    // bf16 given as the bits of a u16 or i16 array.
    let brain: Vec<half::bf16> = v.iter().map(|&x| half::bf16::from_f32(x)).collect();
    let bytes: Vec<u8> = brain.iter().flat_map(|x| x.to_le_bytes()).collect();
    let (buffer, at) = placed(&bytes, 2, 0);
    for dtype in [DType::U16, DType::I16] {
        let view = TensorView::contiguous(dtype, &[6, 32], &buffer[at..at + bytes.len()]).unwrap();
        let Q40Input::Bf16(got) = Q40Input::from_view(&view, true, "w").unwrap() else {
            panic!("bf16 values expected")
        };
        assert_eq!(got, &brain[..]);
    }
}

#[test]
fn views_that_cannot_be_read_as_floats_are_refused() {
    let bytes = vec![0u8; 4 * 64];
    let (buffer, at) = placed(&bytes, 4, 1);
    let misaligned = TensorView::contiguous(DType::F32, &[2, 32], &buffer[at..at + 256]).unwrap();
    assert_eq!(
        message(Q40Input::from_view(&misaligned, false, "w")),
        "w: misaligned array memory; pass a copy (numpy.array(x))"
    );
    assert_eq!(
        message(tract_reference_quantize_view(&misaligned)),
        "misaligned array memory"
    );

    let (buffer, at) = placed(&bytes, 8, 0);
    // SAFETY: a [32, 2] view with byte strides (4, 128) reads f32 values inside the 256 bytes.
    let transposed =
        unsafe { TensorView::strided(DType::F32, &[32, 2], buffer[at..].as_ptr(), &[4, 128]) };
    assert_eq!(
        message(Q40Input::from_view(&transposed, false, "w")),
        "w: Q4_0 values must be C-contiguous; pass numpy.ascontiguousarray(x)"
    );
    assert_eq!(
        message(tract_reference_quantize_view(&transposed)),
        "array must be C-contiguous"
    );

    let floats = |dtype: DType| {
        TensorView::contiguous(
            dtype,
            &[256 / dtype.size_of() / 32, 32],
            &buffer[at..at + 256],
        )
        .unwrap()
    };
    let refusals = [
        (DType::F64, false, "Q4_0 of w: dtype f64 is not supported."),
        (DType::U16, false, "Q4_0 of w: dtype u16 is not supported."),
        (
            DType::F32,
            true,
            "Q4_0 of w: dtype f32 as bf16 bits is not supported.",
        ),
        (
            DType::I32,
            true,
            "Q4_0 of w: dtype i32 as bf16 bits is not supported.",
        ),
    ];
    for (dtype, bf16, expected) in refusals {
        let err = message(Q40Input::from_view(&floats(dtype), bf16, "w"));
        assert_eq!(
            err,
            format!("{expected} Q4_0 quantizes f32, f16 or bf16 values"),
            "{dtype} bf16={bf16}"
        );
    }
    assert_eq!(
        message(tract_reference_quantize_view(&floats(DType::I32))),
        "tract Q4_0 reference: dtype i32 is not supported. pass f32 or f16"
    );
}
