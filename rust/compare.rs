//! Output comparison with tract's tolerance levels.

use half::f16;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::runner::RawTensor;

/// tract's named tolerance levels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    /// Bit-exact values.
    Exact,
    /// atol = rtol = 1e-7 (1e-3 for f16).
    Close,
    /// atol 1e-4, rtol 5e-4 (f16: 1e-3, 5e-3).
    Approximate,
    /// atol 5e-2, rtol 1e-2.
    Very,
    /// atol 0.1, rtol 0.05, 1e-4 of the elements may be outliers.
    Super,
    /// atol 0.2, rtol 0.1, 5e-4 of the elements may be outliers.
    Ultra,
}

impl Tolerance {
    /// Parses a level name.
    pub fn parse(s: &str) -> Result<Tolerance> {
        Ok(match s {
            "exact" => Tolerance::Exact,
            "close" => Tolerance::Close,
            "approximate" => Tolerance::Approximate,
            "very" => Tolerance::Very,
            "super" => Tolerance::Super,
            "ultra" => Tolerance::Ultra,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "unknown tolerance {s:?}: use exact, close, approximate, very, super or ultra"
                )))
            }
        })
    }

    /// `(atol, rtol, allowed outlier fraction)` for values of `dtype`.
    pub fn atol_rtol_outliers(self, dtype: DType) -> (f64, f64, f64) {
        let half = dtype == DType::F16;
        match self {
            Tolerance::Exact => (0.0, 0.0, 0.0),
            Tolerance::Close if half => (1e-3, 1e-3, 0.0),
            Tolerance::Close => (1e-7, 1e-7, 0.0),
            Tolerance::Approximate if half => (1e-3, 5e-3, 0.0),
            Tolerance::Approximate => (1e-4, 5e-4, 0.0),
            Tolerance::Very => (5e-2, 1e-2, 0.0),
            Tolerance::Super => (0.1, 0.05, 1e-4),
            Tolerance::Ultra => (0.2, 0.1, 5e-4),
        }
    }
}

/// How one output compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Whether the output passes at the tolerance.
    pub passed: bool,
    /// Why it failed when shapes or dtypes differ (empty otherwise).
    pub problem: String,
    /// Largest |expected - got| (NaN pairs and equal infinities count as 0).
    pub max_abs_err: f64,
    /// Largest |expected - got| / |expected| over non-zero expected values.
    pub max_rel_err: f64,
    /// Elements outside `atol + rtol * |got|`.
    pub outliers: usize,
    /// `outliers / numel`.
    pub outlier_fraction: f64,
    /// The fraction the tolerance allows.
    pub allowed_outlier_fraction: f64,
    /// Absolute tolerance used.
    pub atol: f64,
    /// Relative tolerance used.
    pub rtol: f64,
    /// Row-major index of the first outlier, if any.
    pub first_outlier: Option<usize>,
}

/// Reads tensor values as f64.
pub fn values_f64(t: &RawTensor) -> Vec<f64> {
    let b = &t.bytes;
    macro_rules! conv {
        ($ty:ty, $n:expr) => {
            b.chunks_exact($n)
                .map(|c| <$ty>::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect()
        };
    }
    match t.dtype {
        DType::F16 => b
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f64())
            .collect(),
        DType::F32 => conv!(f32, 4),
        DType::F64 => conv!(f64, 8),
        DType::I8 => conv!(i8, 1),
        DType::I16 => conv!(i16, 2),
        DType::I32 => conv!(i32, 4),
        DType::I64 => conv!(i64, 8),
        DType::U8 | DType::Bool => conv!(u8, 1),
        DType::U16 => conv!(u16, 2),
        DType::U32 => conv!(u32, 4),
        DType::U64 => conv!(u64, 8),
    }
}

/// Compares `got` (from tract) with `expected` (from PyTorch). An element passes when both are
/// NaN, both the same infinity, or both finite with `|expected - got| <= atol + rtol * |got|`;
/// integers and
/// booleans must match exactly. The f16 tolerances apply when `got` is f16.
pub fn compare(expected: &RawTensor, got: &RawTensor, tolerance: Tolerance) -> Report {
    let (atol, rtol, allowed) = tolerance.atol_rtol_outliers(got.dtype);
    let mut report = Report {
        passed: false,
        problem: String::new(),
        max_abs_err: 0.0,
        max_rel_err: 0.0,
        outliers: 0,
        outlier_fraction: 0.0,
        allowed_outlier_fraction: allowed,
        atol,
        rtol,
        first_outlier: None,
    };
    if expected.shape != got.shape {
        report.problem = format!(
            "shape mismatch: expected {:?}, got {:?}",
            expected.shape, got.shape
        );
        return report;
    }
    if expected.dtype.is_float() != got.dtype.is_float() {
        report.problem = format!(
            "dtype mismatch: expected {}, got {}",
            expected.dtype, got.dtype
        );
        return report;
    }
    let exact = tolerance == Tolerance::Exact || !got.dtype.is_float();
    let (atol, rtol) = if exact { (0.0, 0.0) } else { (atol, rtol) };
    report.atol = atol;
    report.rtol = rtol;
    let e = values_f64(expected);
    let g = values_f64(got);
    for (i, (&a, &b)) in e.iter().zip(&g).enumerate() {
        let same_special = (a.is_nan() && b.is_nan()) || (a.is_infinite() && a == b);
        let diff = if same_special { 0.0 } else { (a - b).abs() };
        let diff = if diff.is_nan() { f64::INFINITY } else { diff };
        report.max_abs_err = report.max_abs_err.max(diff);
        if a != 0.0 && diff > 0.0 {
            report.max_rel_err = report.max_rel_err.max(diff / a.abs());
        }
        // Unlike a plain `diff <= atol + rtol * |got|`, an infinity never matches a finite
        // value or the opposite infinity.
        let within = a.is_finite() && b.is_finite() && diff <= atol + rtol * b.abs();
        if !same_special && !within {
            report.outliers += 1;
            report.first_outlier.get_or_insert(i);
        }
    }
    let n = e.len().max(1);
    report.outlier_fraction = report.outliers as f64 / n as f64;
    report.passed = report.outlier_fraction <= allowed && (!exact || report.outliers == 0);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(v: &[f32]) -> RawTensor {
        RawTensor {
            dtype: DType::F32,
            shape: vec![v.len()],
            bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    #[test]
    fn levels_follow_tract() {
        let e = f32s(&[1.0, f32::NAN, f32::INFINITY, 100.0]);
        let g = f32s(&[1.00005, f32::NAN, f32::INFINITY, 100.01]);
        assert!(!compare(&e, &g, Tolerance::Close).passed);
        let r = compare(&e, &g, Tolerance::Approximate);
        assert!(r.passed, "{r:?}");
        assert!((r.max_abs_err - 0.01).abs() < 1e-3);
        let g2 = f32s(&[1.0, 0.0, f32::NEG_INFINITY, 100.0]);
        let r = compare(&e, &g2, Tolerance::Ultra);
        assert!(!r.passed);
        assert_eq!(r.outliers, 2);
        assert_eq!(r.first_outlier, Some(1));
    }

    #[test]
    fn shape_mismatch_fails() {
        let r = compare(&f32s(&[1.0]), &f32s(&[1.0, 2.0]), Tolerance::Ultra);
        assert!(!r.passed);
        assert!(r.problem.contains("shape"));
    }
}
